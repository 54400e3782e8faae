"""What softmax CE's passes cost under ``jax.jit`` on the CPU, each timed alone, beside optax's and
losskit.jax's whole forward + gradient: where XLA's time goes at a vocabulary's width.

    python -m benchmarks.xla_passes                      # 4096 x 32000 float32
    python -m benchmarks.xla_passes --rows 1024 128256
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m benchmarks.xla_passes   # huge pages for XLA's buffers

The passes: a row max and a row sum (reads only), a sum of exps (YNNPACK fuses the exp into its
read), a sum whose terms hold a select (XLA writes them to a new ``[N, K]`` array first), the same over
``lax.map`` blocks of 64 rows (one block's buffer, reused), an exp written to a new ``[N, K]`` array
and an add written to one (every jitted call's output is a fresh buffer: its pages are faulted in and
zeroed by the kernel on first write). Rounds alternate, a warm-up first; median milliseconds. The row
count must be a multiple of 64.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _blocked(jax, jnp, summand, rows=64):
    """``sum(summand(z, m), axis=-1)`` in ``lax.map`` blocks of ``rows`` rows (the row count a multiple)."""
    def run(z, m):
        n = z.shape[0]
        parts = (z.reshape(n // rows, rows, -1), m.reshape(n // rows, rows))
        return jax.lax.map(lambda p: jnp.sum(summand(*p), axis=-1), parts).reshape(n)
    return run


def passes(jax, jnp, optax, lj, lk):
    """label -> (jitted function, how many of the inputs (z, y, row max) it takes)."""
    ce = lj.loss_fn(lk.SoftmaxCrossEntropy())

    def selected(z, m):  # a summand holding a select: XLA writes it out before YNNPACK sums it
        d = z - m[:, None]
        return jnp.where(d > -1, jnp.exp(d), d)

    return {
        "sum of a select (whole)": (jax.jit(lambda z, m: jnp.sum(selected(z, m), axis=-1)), 3),
        "sum of a select (lax.map, 64 rows)": (jax.jit(_blocked(jax, jnp, selected)), 3),
        "row max (read)": (jax.jit(lambda z: jnp.max(z, axis=-1)), 1),
        "row sum (read)": (jax.jit(lambda z: jnp.sum(z, axis=-1)), 1),
        "sum of exp(z - max) (read)": (jax.jit(lambda z, m: jnp.sum(jnp.exp(z - m[:, None]), axis=-1)), 3),
        "exp(z - max) written": (jax.jit(lambda z, m: jnp.exp(z - m[:, None])), 3),
        "z + 1 written": (jax.jit(lambda z: z + 1), 1),
        "optax CE fwd+grad": (jax.jit(jax.value_and_grad(
            lambda z, y: optax.losses.softmax_cross_entropy_with_integer_labels(z, y).mean())), 2),
        "losskit.jax CE fwd+grad": (jax.jit(jax.value_and_grad(lambda z, y: ce(z, y))), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs=2, type=int, default=(4096, 32000), metavar=("N", "K"))
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp
    import optax

    import losskit as lk
    import losskit.jax as lj

    n, k = args.rows
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((n, k), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, k, n).astype(np.int32))
    row_max = jnp.max(z, axis=-1)
    inputs = {1: (z,), 2: (z, y), 3: (z, row_max)}
    table = passes(jax, jnp, optax, lj, lk)
    samples = {label: [] for label in table}
    for round_ in range(args.repeats + 1):
        for label, (fn, kind) in table.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*inputs[kind]))
            if round_:  # round 0 compiles
                samples[label].append(time.perf_counter() - start)
    print(f"| pass, {n} x {k} float32 | median ms |")
    print("|---|---|")
    for label, times in samples.items():
        print(f"| {label} | {statistics.median(times) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
