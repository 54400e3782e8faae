"""Distillation's forward + gradient on NumPy (the compiled rows) and under ``jax.jit`` (losskit.jax), with
teachers independent of the student and near it: what the centred value of near rows costs.

    python -m benchmarks.distillation_rows                     # 4096 x 32000 float32, T = 2
    PYTHONPATH=<a worktree of another commit>/src python -m benchmarks.distillation_rows   # that code

Teachers: independent N(0, 4) logits (a value near T^2, about half the rows below the centred form's
threshold) and the student's plus N(0, 0.05^2) (every row near). No peer here: the catalogue
(``python -m benchmarks.catalogue --only distillation_loss [--near-teachers]``) has them. Rounds
alternate, a warm-up first; median milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs=2, type=int, default=(4096, 32000), metavar=("N", "K"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-jax", action="store_true", help="the NumPy path only")
    args = parser.parse_args()
    import losskit as lk

    rng = np.random.default_rng(0)
    z = rng.standard_normal(args.rows, dtype=np.float32) * 2
    teachers = {"independent": rng.standard_normal(args.rows, dtype=np.float32) * 2,
                "near": (z + 0.05 * rng.standard_normal(args.rows, dtype=np.float32)).astype(np.float32)}
    loss = lk.DistillationLoss(temperature=2.0)
    calls = {("NumPy", kind): (lambda t=t: loss.value_and_grad(z, t)) for kind, t in teachers.items()}
    if not args.no_jax:
        import jax
        import jax.numpy as jnp

        import losskit.jax as lj

        step = jax.jit(jax.value_and_grad(lambda a, b: lj.loss_fn(loss)(a, b)))
        jz = jnp.asarray(z)
        for kind, t in teachers.items():
            jt = jnp.asarray(t)
            calls["losskit.jax", kind] = lambda jt=jt: jax.block_until_ready(step(jz, jt))
    samples = {key: [] for key in calls}
    for round_ in range(args.repeats + 1):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:  # round 0 compiles
                samples[key].append(time.perf_counter() - start)
    print(f"| path | teachers | median ms ({args.rows[0]} x {args.rows[1]}) |")
    print("|---|---|---|")
    for (path, kind), times in samples.items():
        print(f"| {path} | {kind} | {statistics.median(times) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
