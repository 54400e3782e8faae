"""Distillation's gradient against mpmath, by how near the teacher is: the error of the compiled rows and of
losskit.jax, in eps of each row's largest entry, grouped by the noise between student and teacher (and so by
the rows' KL). What ``losses._shared.EXACT_GRADIENT_BELOW`` was chosen from.

    python -m benchmarks.distillation_accuracy                 # T = 2, 8 rows of 16 logits of scale 3 per group
    PYTHONPATH=<a worktree of another commit>/src python -m benchmarks.distillation_accuracy   # that code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

NOISES = (0.03, 0.1, 0.2, 0.4, 0.8, 1.6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=2.0)
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import losskit as lk
    import losskit.jax as lj

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import mp_catalogue as mc  # the tests' mpmath references

    t_ = args.temperature
    rng = np.random.default_rng(3)
    print("| dtype | noise | KL of the rows | compiled rows, max eps | losskit.jax, max eps |\n|---|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for noise in NOISES:
            z = (rng.standard_normal((8, 16)) * 3).astype(dtype)
            t = (z + noise * rng.standard_normal(z.shape)).astype(dtype)
            kl = np.asarray(lk.DistillationLoss(temperature=t_, reduction="none")(
                z.astype(np.float64), t.astype(np.float64))) / t_ ** 2
            fused = lk.DistillationLoss(temperature=t_, reduction="sum", impl="fused").grad(z, t)
            xla = np.asarray(jax.grad(lj.loss_fn(lk.DistillationLoss(temperature=t_, reduction="sum")))(
                jnp.asarray(z), jnp.asarray(t)))
            worst = [0.0, 0.0]
            for i in range(z.shape[0]):
                exact = np.array([float(v) for v in mc.distillation(z[i].tolist(), t[i].tolist(), t_)[1]])
                unit = np.abs(exact).max() * np.finfo(dtype).eps
                worst = [max(worst[0], np.abs(fused[i] - exact).max() / unit),
                         max(worst[1], np.abs(xla[i] - exact).max() / unit)]
            print(f"| {np.dtype(dtype).name} | {noise} | {kl.min():.2g} to {kl.max():.2g} | {worst[0]:.1f} | "
                  f"{worst[1]:.1f} |")


if __name__ == "__main__":
    main()
