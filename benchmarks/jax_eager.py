"""Eager ``losskit.jax`` calls: an eager ``jax.grad`` of the mean loss, its first call at a new shape, the
calls after it, and the XLA programs each lowers.

    python -m benchmarks.jax_eager                                   # this tree
    PYTHONPATH=/path/to/other/checkout/src python -m benchmarks.jax_eager   # another tree, for a before/after
    python -m benchmarks.jax_eager --fused                           # the fused linear losses' JAX forms instead

Run in a new process each time (the first call is the point); softmax CE on 256 x 10 float32 with integer
labels, Huber on 4096 float32 values; with ``--fused``, ``linear_logprobs`` (a weighted sum of them), DPO,
GRPO and the JSD on hidden states of 4 x 64 tokens, D = 64, a vocabulary of 2000, float32, the gradient in
the hidden states. "then" is the median of ``--repeats`` rounds of 50 calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _catalogue_cases(jax, jnp, lj, rng):
    for name, z, y in (("softmax_cross_entropy", rng.normal(size=(256, 10)).astype(np.float32),
                        rng.integers(0, 10, 256)),
                       ("huber_loss", rng.normal(size=4096).astype(np.float32),
                        rng.normal(size=4096).astype(np.float32))):
        fn, z, y = getattr(lj, name), jnp.asarray(z), jnp.asarray(y)
        yield f"{name} {tuple(z.shape)}", jax.grad(lambda z, fn=fn, y=y: fn(z, y)), z


def _fused_cases(jax, jnp, lj, rng):
    b, t, d, v = 4, 64, 64, 2000
    hidden = jnp.asarray(rng.normal(size=(b, t, d)).astype(np.float32))
    classifier = jnp.asarray((rng.normal(size=(v, d)) / 8).astype(np.float32))
    target = rng.integers(0, v, (b, t))
    target[:, :8] = -100  # the prompt
    target = jnp.asarray(target)
    weights = jnp.linspace(0.0, 1.0, t, dtype=jnp.float32)
    losses = {
        "linear_logprobs": lambda h: jnp.sum(lj.linear_logprobs(h, classifier, target) * weights),
        "linear_preference_loss (DPO)": lambda h: lj.linear_preference_loss(
            h, classifier, target, ref_logps=jnp.zeros(b, jnp.float32)),
        "linear_grpo_loss": lambda h: lj.linear_grpo_loss(
            h, classifier, target, old_logps=jnp.full((b, t), -7.0, jnp.float32), advantages=jnp.ones(b, jnp.float32)),
        "linear_jsd_loss": lambda h: lj.linear_jsd_loss(h, classifier, h[..., ::-1], classifier * 0.5, target),
    }
    for name, loss in losses.items():
        yield f"{name} {b} x {t} x {d}, V = {v}", jax.grad(loss), hidden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fused", action="store_true", help="the fused linear losses instead")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import losskit.jax as lj

    lowered = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: lowered.append(event)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None)
    rng = np.random.default_rng(0)
    cases = _fused_cases if args.fused else _catalogue_cases
    for label, grad, z in cases(jax, jnp, lj, rng):
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
        print(f"{label}: first eager grad {first:.3f} s ({programs} programs lowered), "
              f"then {statistics.median(rounds) * 1e3:.3f} ms a call ({len(lowered)} programs lowered)")


if __name__ == "__main__":
    main()
