"""Whether XLA's CPU backend at a lower LLVM optimisation level computes the same bits: a way to cut the
test suite's compile time, checked before use.

    python -m benchmarks.xla_opt_level [--level 0]

Runs ``jax.jit(jax.value_and_grad(...))`` of every test case of ``tests/cases.py`` (each registered loss
and option set through ``losskit.jax.loss_fn``; float32 and float64; the case's own input and one 64
times its rows, noise added but to probabilities) in three new processes: the default XLA flags,
``XLA_FLAGS=--xla_backend_optimization_level=<level>``, and the default flags again (the control). Prints
each process's wall time, how many results differ from the first process's in any bit, how many in
value, and the largest relative difference of an element in units of the result's dtype eps. The suite
asserts bits (one path against another) and a few eps (against mpmath): a flag that changes bits would
have it test programs that users do not run.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_RUN = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
import losskit as lk, losskit.jax as lj
from cases import all_cases, cases_for
results = {{}}
for cid, name, case_name in all_cases():
    case = cases_for(name)[case_name]
    f = lj.loss_fn(lk.REGISTRY[name][0](impl="xp", **case.options))
    for dtype in (np.float32, np.float64):
        for repeat in (1, 64):
            z = np.repeat(case.input, repeat, axis=0).astype(dtype)
            if repeat > 1 and lk.REGISTRY[name][0].input_name != "probs":  # probabilities stay in [0, 1]
                z = z + (np.random.default_rng(0).normal(size=z.shape) * 0.3).astype(dtype)
            y = np.repeat(np.asarray(case.target), repeat, axis=0)
            y = y.astype(dtype) if y.dtype.kind == "f" else y
            value, grad = jax.jit(jax.value_and_grad(lambda z: f(z, jnp.asarray(y), None, None)))(jnp.asarray(z))
            key = f"{{cid}}|{{np.dtype(dtype).name}}|{{repeat}}"
            results[key + "|value"], results[key + "|grad"] = np.asarray(value), np.asarray(grad)
np.savez({path!r}, **results)
"""


def _run(path: Path, xla_flags: str | None) -> float:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _RUN.format(tests=tests, path=str(path))], env=env, check=True)
    return time.perf_counter() - start


def compare(default: dict, other: dict) -> tuple[int, int, float]:
    """``(results whose bits differ, results whose values differ, the largest relative difference of an
    element in eps of the result's dtype)``: values compared as ``np.array_equal(a, b, equal_nan=True)``
    does (-0.0 equals 0.0, NaN equals NaN); a NaN or an infinity against another value is an infinite
    difference; the relative difference is ``|a - b| / |a|`` (``|a|`` at least the dtype's ``tiny``)."""
    bits = values = 0
    worst = 0.0
    for key, a in default.items():
        b = other[key]
        if a.tobytes() == b.tobytes():
            continue
        bits += 1
        if np.array_equal(a, b, equal_nan=True):
            continue
        values += 1
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        differ = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
        if not np.all(np.isfinite(a64[differ]) & np.isfinite(b64[differ])):
            worst = math.inf
            continue
        relative = np.abs(a64[differ] - b64[differ]) / np.maximum(np.abs(a64[differ]), np.finfo(a.dtype).tiny)
        worst = max(worst, float(relative.max()) / float(np.finfo(a.dtype).eps))
    return bits, values, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=0, help="--xla_backend_optimization_level (XLA's default: 2)")
    args = parser.parse_args()
    flag = f"--xla_backend_optimization_level={args.level}"
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder, f"{name}.npz") for name in ("default", "again", "flag")}
        seconds = {"default": _run(paths["default"], None), "flag": _run(paths["flag"], flag),
                   "again": _run(paths["again"], None)}
        results = {name: dict(np.load(path)) for name, path in paths.items()}
    print(f"default flags: {seconds['default']:.1f} s, again {seconds['again']:.1f} s; {flag}: {seconds['flag']:.1f} s")
    for label, other in (("default flags, a second process", "again"), (flag, "flag")):
        bits, values, worst = compare(results["default"], results[other])
        print(f"{label}: {bits} of {len(results['default'])} results differ in bits, {values} in value; "
              f"the largest relative difference {worst:.1f} eps")


if __name__ == "__main__":
    main()
