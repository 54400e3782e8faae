"""XLA's compile time of a loss's ``losskit.jax`` program, and how much of it the reference branch takes.

    python -m benchmarks.xla_compile                              # the class-axis losses below
    python -m benchmarks.xla_compile --loss distillation_loss --repeats 5

For each loss: ``jax.jit(jax.grad(lambda z: sum(loss(z, target, weight, normalizer))))`` at 6 x 4 float64 (the
common tests' size), lowered and compiled anew each round (a new function: no cache), its lowering and
backend-compile seconds, median of the rounds after the first. "without the reference" compiles the same
program with the sweep's ``lax.cond`` to the reference (the branch a row of a non-finite max takes) left out:
the share of the compile that branch costs, every user's first call and every test's program included.
"""

from __future__ import annotations

import argparse
import statistics
import time

LOSSES = ("softmax_cross_entropy", "kl_divergence", "softmax_focal_loss", "distillation_loss")


def _seconds(name: str, repeats: int, reference: bool) -> tuple[float, float, int]:
    """``(lowering s, compile s, lines of the lowered text)``, medians after a first round."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import losskit.jax as lj
    from losskit.jax import rows

    rng = np.random.default_rng(0)
    z, w = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.uniform(size=6))
    target = {"kl_divergence": jnp.asarray(rng.dirichlet(np.ones(4), size=6)),
              "distillation_loss": jnp.asarray(rng.normal(size=(6, 4)))}.get(name, jnp.asarray(rng.integers(0, 4, 6)))
    original = rows.sweep_for
    if not reference:
        def sweep_for(loss, plan, with_grad=True):
            sweep = original(loss, plan, with_grad)
            return None if sweep is None else sweep._replace(limits=True)  # no cond: the sweep's own limits

        rows.sweep_for = sweep_for
    try:
        fn, times, lines = getattr(lj, name), [], 0
        for i in range(repeats + 1):
            program = jax.jit(jax.grad(lambda z, i=i: jnp.sum(fn(z, target, weight=w, normalizer=2.5))))
            start = time.perf_counter()
            lowered = program.lower(z)
            middle = time.perf_counter()
            lowered.compile()
            times.append((middle - start, time.perf_counter() - middle))
            lines = len(lowered.as_text().splitlines())
    finally:
        rows.sweep_for = original
    rest = times[1:]
    return statistics.median(t[0] for t in rest), statistics.median(t[1] for t in rest), lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", nargs="*", default=list(LOSSES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    print("| loss | lowering s | compile s | lines | without the reference: lowering s | compile s | lines |")
    print("|---|---|---|---|---|---|---|")
    for name in args.loss:
        full, bare = _seconds(name, args.repeats, True), _seconds(name, args.repeats, False)
        print(f"| {name} | {full[0]:.3f} | {full[1]:.3f} | {full[2]} | {bare[0]:.3f} | {bare[1]:.3f} | {bare[2]} |")


if __name__ == "__main__":
    main()
