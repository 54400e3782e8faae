"""Poly-1 and softmax focal on probability targets against the peers, forward + gradient, float32.

    python -m benchmarks.dense_targets                 # 4096 x 32000 (issue 15's class-axis size)
    python -m benchmarks.dense_targets --smoke         # tiny sizes, one repeat: checks the harness

``benchmarks.catalogue`` times these losses on integer labels; here the target is a probability row
(a teacher's, or label smoothing written out), which their kernels read and check in their own pass.
Peers: torch eager (the formula on ``log_softmax`` as users write it; ``F.cross_entropy`` takes
probabilities) and JAX ``jit(value_and_grad)`` (``optax.losses.poly_loss_cross_entropy``, which takes
probability labels; focal in ``jnp``). Before any timing each implementation's value and gradient are
checked against losskit's float64 reference on the first rows. Implementations run alternately,
``--repeats`` rounds after a warm-up; medians, and each one's time over losskit's. losskit runs with
``impl="fused"`` (what ``"auto"`` runs at the full size; a smoke run's 4800 elements would otherwise be
answered by the reference while the kernel compiles).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import losskit as lk

ROWS, SMOKE_ROWS, AGREE_ROWS = (4096, 32000), (16, 300), 64
EPSILON, GAMMA = 1.0, 2.0
LOSSES = {"poly_cross_entropy": lk.PolyCrossEntropy(epsilon=EPSILON, impl="fused"),
          "softmax_focal_loss": lk.SoftmaxFocalLoss(gamma=GAMMA, impl="fused")}


def inputs(rows, rng):
    n, k = rows
    z = (rng.standard_normal((n, k), dtype=np.float32) * 2).astype(np.float32)
    t = rng.standard_normal((n, k), dtype=np.float32) * 2
    t -= t.max(axis=-1, keepdims=True)
    np.exp(t, out=t)
    t /= t.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    return z, t


def peers(name):
    """name -> callable(z, t) -> (value, grad) on the peer's arrays, with its array converter."""
    impls = {}
    try:
        import torch

        F = torch.nn.functional

        def torch_loss(z, t):
            log_p = F.log_softmax(z, dim=-1)
            if name == "poly_cross_entropy":  # the Poly-1 paper's ce + epsilon (1 - P), P = sum t p
                return (F.cross_entropy(z, t, reduction="none") + EPSILON * (1 - (t * log_p.exp()).sum(-1))).mean()
            return (-(t * (1 - log_p.exp()) ** GAMMA * log_p).sum(-1)).mean()

        def torch_step(z, t):
            z = z.detach().requires_grad_(True)
            value = torch_loss(z, t)
            value.backward()
            return value.detach(), z.grad

        impls["torch eager"] = (torch_step, torch.from_numpy)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        import optax

        def jax_loss(z, t):
            if name == "poly_cross_entropy":
                return optax.losses.poly_loss_cross_entropy(z, t, epsilon=EPSILON).mean()
            log_p = jax.nn.log_softmax(z)
            return (-(t * (1 - jnp.exp(log_p)) ** GAMMA * log_p).sum(-1)).mean()

        impls["JAX jit"] = (jax.jit(jax.value_and_grad(jax_loss)), jnp.asarray)
    except ImportError:
        pass
    return impls


def check(name, impls, z, t):
    """Each implementation's value and gradient against losskit's float64 reference on the first rows."""
    z64, t64 = z[:AGREE_ROWS].astype(np.float64), t[:AGREE_ROWS].astype(np.float64)
    options = {**LOSSES[name].options.as_dict(), "impl": "xp"}
    ref_value, ref_grad = type(LOSSES[name])(**options).value_and_grad(z64, t64)
    for label, (step, convert) in impls.items():
        value, grad = step(convert(z[:AGREE_ROWS]), convert(t[:AGREE_ROWS]))
        np.testing.assert_allclose(float(value), ref_value, rtol=1e-4, err_msg=f"{name} {label}")
        np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-3, atol=1e-8, err_msg=f"{name} {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, repeats = (SMOKE_ROWS, 1) if args.smoke else (ROWS, args.repeats)
    rng = np.random.default_rng(0)
    z, t = inputs(rows, rng)
    print(f"{rows[0]} x {rows[1]} float32, probability targets, forward + gradient; median ms of {repeats}")
    print("| loss | implementation | median ms | peer / losskit |\n|---|---|---|---|")
    for name, loss in LOSSES.items():
        impls = {"losskit": (loss.value_and_grad, lambda a: a), **peers(name)}
        check(name, impls, z, t)
        arrays = {label: (convert(z), convert(t)) for label, (_, convert) in impls.items()}
        times = {label: [] for label in impls}
        for label, (step, _) in impls.items():  # warm-up: compiles
            step(*arrays[label])
        for _ in range(repeats):
            for label, (step, _) in impls.items():
                start = time.perf_counter()
                value, grad = step(*arrays[label])
                getattr(grad, "block_until_ready", lambda: None)()
                times[label].append(time.perf_counter() - start)
        ours = statistics.median(times["losskit"])
        for label, ts in times.items():
            print(f"| {name} | {label} | {1e3 * statistics.median(ts):.1f} | {statistics.median(ts) / ours:.2f} |")


if __name__ == "__main__":
    main()
