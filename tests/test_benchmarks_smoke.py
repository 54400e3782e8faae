"""The benchmark command runs end to end at tiny sizes, so it never rots (timings are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
