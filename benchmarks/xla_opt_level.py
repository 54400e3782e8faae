"""Whether XLA's CPU backend at a lower LLVM optimisation level computes the same bits: a way to cut the
test suite's compile time, checked before use.

    python -m benchmarks.xla_opt_level [--level 0]

Runs ``jax.jit(jax.value_and_grad(...))`` of every test case of ``tests/cases.py`` (each registered loss
and option set through ``losskit.jax.loss_fn``; float32 and float64; the case's own input and one 64
times its rows with noise added) in two new processes, one with the default XLA flags and one with
``XLA_FLAGS=--xla_backend_optimization_level=<level>``, and prints each process's wall time, how many
results differ in any bit, and the largest difference in units of the result's dtype eps. The suite
asserts bits (one path against another) and a few eps (against mpmath): a flag that changes bits would
have it test programs that users do not run.
"""

from __future__ import annotations

import argparse
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
            if repeat > 1:
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


def compare(default: dict, other: dict) -> tuple[int, float]:
    """``(results whose bits differ, the largest difference in eps of the result's dtype)``."""
    differ, worst = 0, 0.0
    for key, a in default.items():
        b = other[key]
        if a.tobytes() == b.tobytes():
            continue
        differ += 1
        scale = np.maximum(np.abs(a).astype(np.float64), np.finfo(a.dtype).tiny)
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b) / scale)) / float(np.finfo(a.dtype).eps))
    return differ, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=0, help="--xla_backend_optimization_level (XLA's default: 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        default_path, other_path = Path(folder, "default.npz"), Path(folder, "other.npz")
        seconds = _run(default_path, None)
        other_seconds = _run(other_path, f"--xla_backend_optimization_level={args.level}")
        default, other = dict(np.load(default_path)), dict(np.load(other_path))
    differ, worst = compare(default, other)
    print(f"default flags: {seconds:.1f} s; --xla_backend_optimization_level={args.level}: {other_seconds:.1f} s")
    print(f"{differ} of {len(default)} results differ in bits; the largest difference {worst:.1f} eps")


if __name__ == "__main__":
    main()
