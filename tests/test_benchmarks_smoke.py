"""The benchmark command runs end to end at tiny sizes, so it never rots (timings are not checked)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run_prints_a_row_per_case_and_implementation(tmp_path):
    report = tmp_path / "bench.md"
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--markdown", str(report)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = report.read_text()
    for case in ("ce fwd+grad 64 x 100", "ce fwd+grad 16 x 300", "ce fwd+grad 128 x 10", "bce fwd+grad",
                 "mse fwd+grad", "losskit linear_cross_entropy"):
        assert case in text, case
    rows = [line for line in text.splitlines() if line.startswith("| ce fwd+grad 64 x 100 |")]
    assert any("| losskit |" in row for row in rows) and len(rows) >= 2


def test_eval_benchmark_smoke_run_fills_its_section(tmp_path):
    report = tmp_path / "bench.md"
    report.write_text("# Benchmarks\n\nkept\n")
    out = subprocess.run([sys.executable, "-m", "benchmarks.eval", "--rows-scale", "0.0001", "--repeats", "1",
                          "--data", str(tmp_path), "--markdown", str(report)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")  # the section is added, the rest kept
    for kind in ("pyarrow iter_batches", "pyarrow read_table", "losskit eval", "losskit eval --dask"):
        assert text.count(f"| {kind} |") == 2, kind  # a row in the binary and the multiclass table
    assert text.count("Dask (") == 2 and "largest relative difference" in text


def test_xla_passes_benchmark_smoke_run_prints_every_pass():
    pytest.importorskip("optax")
    out = subprocess.run([sys.executable, "-m", "benchmarks.xla_passes", "--rows", "64", "300", "--repeats", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("row max (read)", "sum of a select (whole)", "sum of a select (lax.map, 64 rows)",
                  "exp(z - max) written", "z + 1 written", "optax CE fwd+grad", "losskit.jax CE fwd+grad"):
        assert f"| {label} |" in out.stdout, label


def test_distillation_rows_benchmark_smoke_run_prints_both_paths_and_teachers():
    pytest.importorskip("jax")
    out = subprocess.run([sys.executable, "-m", "benchmarks.distillation_rows", "--rows", "8", "300", "--repeats", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for path in ("NumPy", "losskit.jax"):
        for kind in ("independent", "near"):
            assert f"| {path} | {kind} |" in out.stdout, (path, kind)


@pytest.mark.parametrize(("module", "row", "cells"), [("class_axis_layout", "| (2, 5, 8, 9) |", 7),
                                                      ("long_rows", "| 3 x 300 |", 8)])
def test_softmax_ce_benchmark_smoke_runs_check_torch_and_print_every_implementation(module, row, cells):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--smoke"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]  # it also stops when losskit and torch disagree
    line = next(line for line in out.stdout.splitlines() if line.startswith(row))
    values = [cell.strip() for cell in line.strip("|").split("|")][1:]
    assert len(values) == cells and all(float(value.rstrip("x")) > 0 for value in values), line


@pytest.mark.parametrize("workers", ["0", "2"])
def test_suite_profile_plugin_adds_each_tests_time_and_its_outermost_numba_compiles(tmp_path, workers):
    """`python -m pytest -p benchmarks.suite_profile` (BENCHMARKS.md's suite profile), in one process and
    in two xdist workers: a test that compiles a kernel calling another compiled function counts one
    numba compile; a jitted JAX function, one XLA program; a test that compiles nothing, neither."""
    pytest.importorskip("jax")
    (tmp_path / "test_tiny.py").write_text(
        "import numba\n"
        "@numba.njit\n"
        "def inner(x):\n    return x + 1.0\n"
        "@numba.njit\n"
        "def outer(x):\n    return inner(x) * 2.0\n"
        "def test_compiles():\n    assert outer(1.0) == 4.0\n"
        "def test_jits():\n    import jax\n    assert float(jax.jit(lambda x: x * 3.0)(2.0)) == 6.0\n"
        "def test_compiles_nothing():\n    assert 2.0 * 3.0 == 6.0\n")
    profile = tmp_path / "profile"
    env = {**os.environ, "LOSSKIT_SUITE_PROFILE": str(profile), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", workers, "-p", "no:cacheprovider", "-p",
                          "benchmarks.suite_profile", "--rootdir", str(tmp_path),
                          str(tmp_path / "test_tiny.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    from benchmarks.suite_profile import read

    rows = {nodeid.split("::")[-1]: (wall, values) for nodeid, wall, values in read(profile)}
    assert set(rows) == {"test_compiles", "test_jits", "test_compiles_nothing"}
    assert rows["test_compiles"][1]["numba_n"] == 1 and rows["test_compiles"][1]["numba_s"] > 0
    assert 0 < rows["test_compiles"][1]["numba_s"] <= rows["test_compiles"][0]
    assert rows["test_jits"][1]["xla_n"] >= 1 and rows["test_jits"][1]["numba_n"] == 0
    assert rows["test_compiles_nothing"][1]["numba_n"] == rows["test_compiles_nothing"][1]["xla_n"] == 0
    assert "suite profile: 3 tests" in out.stdout and "(1 outermost compiles)" in out.stdout


def test_xla_opt_level_counts_the_results_that_differ_and_by_how_many_eps():
    """benchmarks.xla_opt_level's comparison (BENCHMARKS.md: why the suite keeps XLA's default flags)."""
    from benchmarks.xla_opt_level import compare

    eps64 = np.finfo(np.float64).eps
    one_ulp32 = np.nextafter(np.float32(1), np.float32(2))
    same = {"a": np.array([1.0, -0.0, np.nan]), "b": np.array([1.0], np.float32)}
    assert compare(same, {k: v.copy() for k, v in same.items()}) == (0, 0, 0.0)
    # -0.0 against 0.0 differs in bits only; a float32 result one ulp off
    assert compare(same, {"a": np.array([1.0, 0.0, np.nan]), "b": np.array([one_ulp32])}) == (2, 1, 1.0)
    # one result, three elements off: counted once, by its largest relative difference (not its last)
    many = {"c": np.array([2.0, 4.0, 8.0])}
    off = {"c": np.array([2.0 + 8 * 2.0 * eps64, 4.0 + 2 * 4.0 * eps64, 8.0 + 8.0 * eps64])}
    assert compare(many, off) == (1, 1, 8.0)
    # a NaN or an infinity against a number is an infinite difference, whatever the other elements
    assert compare(many, {"c": np.array([2.0, np.nan, 8.0])}) == (1, 1, math.inf)
    assert compare(many, {"c": np.array([np.inf, 4.0, 8.0])}) == (1, 1, math.inf)


def test_python_threads_benchmark_gives_the_prange_kernels_bits_on_both_threads(capsys):
    """The design comparison behind BENCHMARKS.md's 2026-12-06 12:20 section: the serial kernel run on two
    halves of the rows equals the prange kernel to the bit (``run`` raises otherwise), one row per size."""
    from benchmarks import python_threads

    rows = python_threads.run((3 * python_threads.WIDTH + 1, python_threads.WIDTH), 1)
    assert [size for size, _ in rows] == [3 * python_threads.WIDTH, python_threads.WIDTH]
    assert all(ms[name] > 0 for _, ms in rows for name in ("prange", "threads", "serial"))
