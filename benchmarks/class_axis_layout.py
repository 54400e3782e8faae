"""Softmax CE over PyTorch's layout, logits ``(N, C, H, W)`` with the class axis 1 (segmentation):
losskit's ``SoftmaxCrossEntropy(axis=1)`` on NumPy arrays and as a torch module, against torch eager's
``F.cross_entropy`` (forward + ``autograd.grad``) and JAX's ``jit(value_and_grad)`` of
``log_softmax(z, axis=1)`` gathered at the labels, all on the same float32 logits, mean reduction;
and losskit's array-API path (``impl="xp"``, what such a call ran before the columns kernel).

    python -m benchmarks.class_axis_layout [--repeats 7]

Prints milliseconds per call (``_alternate.median_ms``: back-to-back calls, as in a training loop,
the median of ``--repeats`` rounds, the implementations alternating) and each peer's time over
losskit's NumPy call. losskit's loss and gradient are checked against torch's first (float32 tolerances).
"""

from __future__ import annotations

import numpy as np

import losskit as lk

from ._alternate import arguments, check_against_torch, jax_run, median_ms

SHAPES = [(16, 21, 128, 128), (8, 150, 64, 64), (64, 10, 32, 32), (4, 21, 32, 32)]
SMOKE_SHAPES = [(2, 5, 8, 9)]


def _runs(z, y):
    import torch

    import losskit.torch as lt

    loss = lk.SoftmaxCrossEntropy(axis=1)
    reference = lk.SoftmaxCrossEntropy(axis=1, impl="xp")
    tz, ty = torch.from_numpy(z).requires_grad_(True), torch.from_numpy(y)
    module = lt.module(loss)

    def torch_eager():
        torch.autograd.grad(torch.nn.functional.cross_entropy(tz, ty), tz)

    def losskit_torch():
        torch.autograd.grad(module(tz, ty), tz)

    runs = {"losskit": lambda: loss.value_and_grad(z, y), "losskit.torch": losskit_torch,
            "torch eager": torch_eager, "array-API path": lambda: reference.value_and_grad(z, y)}
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return runs

    def jax_loss(logits, labels):
        log_p = jax.nn.log_softmax(logits, axis=1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))

    runs["JAX jit"] = jax_run(jax_loss, z, y)
    return runs


def main() -> None:
    args = arguments(__doc__)
    rng = np.random.default_rng(0)
    names = ["losskit", "losskit.torch", "torch eager", "JAX jit", "array-API path"]
    print("| logits (N, C, H, W) | " + " | ".join(f"{name} (ms)" for name in names) + " | torch eager / losskit | "
          "JAX jit / losskit |")
    print("|---|" + "---|" * (len(names) + 2))
    for shape in SMOKE_SHAPES if args.smoke else SHAPES:
        z = (rng.normal(size=shape) * 3).astype(np.float32)
        y = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
        runs = _runs(z, y)
        check_against_torch(z, y, axis=1)
        med = median_ms(runs, 1 if args.smoke else args.repeats)
        cells = [f"{med[name]:.2f}" if name in med else "-" for name in names]
        ratios = [f"{med[name] / med['losskit']:.2f}x" if name in med else "-" for name in ("torch eager", "JAX jit")]
        print(f"| {shape} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
