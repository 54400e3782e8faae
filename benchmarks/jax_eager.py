"""Eager ``losskit.jax`` calls: an eager ``jax.grad`` of the mean loss, its first call at a new shape, the
calls after it, and the XLA programs each lowers.

    python -m benchmarks.jax_eager                                   # this tree
    PYTHONPATH=/path/to/other/checkout/src python -m benchmarks.jax_eager   # another tree, for a before/after

Run in a new process each time (the first call is the point); softmax CE on 256 x 10 float32 with integer
labels, Huber on 4096 float32 values. "then" is the median of ``--repeats`` rounds of 50 calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import losskit.jax as lj

    lowered = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: lowered.append(event)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None)
    rng = np.random.default_rng(0)
    cases = (("softmax_cross_entropy", rng.normal(size=(256, 10)).astype(np.float32), rng.integers(0, 10, 256)),
             ("huber_loss", rng.normal(size=4096).astype(np.float32), rng.normal(size=4096).astype(np.float32)))
    for name, z, y in cases:
        fn, z, y = getattr(lj, name), jnp.asarray(z), jnp.asarray(y)
        grad = jax.grad(lambda z, fn=fn, y=y: fn(z, y))
        lowered.clear()
        start = time.perf_counter()
        jax.block_until_ready(grad(z))
        first, programs = time.perf_counter() - start, len(lowered)
        for _ in range(5):
            jax.block_until_ready(grad(z))
        lowered.clear()
        rounds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(50):
                jax.block_until_ready(grad(z))
            rounds.append((time.perf_counter() - start) / 50)
        print(f"{name} {tuple(z.shape)}: first eager grad {first:.3f} s ({programs} programs lowered), "
              f"then {statistics.median(rounds) * 1e3:.3f} ms a call ({len(lowered)} programs lowered)")


if __name__ == "__main__":
    main()
