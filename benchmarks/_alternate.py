"""Softmax CE benchmarks side by side: losskit checked against torch, then back-to-back calls, the
implementations alternating in each round."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import losskit as lk

from .catalogue import PAUSE


def arguments(doc: str) -> argparse.Namespace:
    """The command line these benchmarks share: ``--repeats`` rounds, or ``--smoke`` (one small shape, one round)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one small shape, one round (the test suite's run)")
    return parser.parse_args()


def jax_run(mean_loss, z, y):
    """A no-argument call of ``jit(value_and_grad(mean_loss))`` on ``z`` and the int32 labels ``y``, waiting
    for its result."""
    import jax
    import jax.numpy as jnp

    step = jax.jit(jax.value_and_grad(mean_loss))
    jz, jy = jnp.asarray(z), jnp.asarray(y.astype(np.int32))
    return lambda: jax.block_until_ready(step(jz, jy))


def median_ms(runs: dict, repeats: int, seconds: float = 0.1) -> dict[str, float]:
    """Milliseconds per call of each of ``runs`` (name -> no-argument callable): each run twice first
    (compiled by numba or XLA, warm), then ``repeats`` rounds in which the runs alternate, each run about
    ``seconds`` of back-to-back calls, as in a training loop, after the catalogue benchmark's pause (the
    thread pools of the run before, OpenMP's and XLA's, stop spinning) and one call that wakes this run's;
    the median of the rounds."""
    for run in runs.values():
        run()
        run()
    calls = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        calls[name] = max(3, int(seconds / max(time.perf_counter() - start, 1e-6)))
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(PAUSE)
            run()
            start = time.perf_counter()
            for _ in range(calls[name]):
                run()
            times[name].append((time.perf_counter() - start) / calls[name] * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def check_against_torch(z, y, axis: int = -1) -> None:
    """losskit's softmax CE (mean) of ``z`` at labels ``y`` over ``axis``, value and gradient, against torch's
    ``F.cross_entropy`` (its class axis 1) to float32 tolerances; raises when they disagree."""
    import torch

    tz = torch.from_numpy(z).requires_grad_(True)
    value = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y))
    (grad,) = torch.autograd.grad(value, tz)
    # impl="fused": the kernel, never the reference that answers a small first call while the kernel compiles
    ours, our_grad = lk.SoftmaxCrossEntropy(axis=axis, impl="fused").value_and_grad(z, y)
    np.testing.assert_allclose(ours, value.item(), rtol=1e-5)
    np.testing.assert_allclose(our_grad, grad.numpy(), rtol=1e-4, atol=1e-6 * float(grad.abs().max()))
