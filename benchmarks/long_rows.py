"""Softmax CE of labels on rows of many classes (an ImageNet head, a language model's vocabulary): losskit
on NumPy (``value_and_grad``, and the value alone) and as a torch module (forward + ``autograd.grad``),
against torch eager's ``F.cross_entropy`` (forward + ``autograd.grad``, and the forward alone under
``no_grad``) and JAX's ``jit(value_and_grad)`` of optax's ``softmax_cross_entropy_with_integer_labels``
(``jnp`` when optax is missing), all on the same float32 logits, mean reduction.

    python -m benchmarks.long_rows [--repeats 7]

Prints milliseconds per call (``_alternate.median_ms``: back-to-back calls, as in a training loop,
the median of ``--repeats`` rounds, the implementations alternating), the faster peer's time over
losskit's (forward + gradient) and torch eager's forward over losskit's value alone. losskit's loss
and gradient are checked against torch's first (float32 tolerances).
"""

from __future__ import annotations

import numpy as np

import losskit as lk

from ._alternate import arguments, check_against_torch, jax_run, median_ms

SHAPES = [(256, 1000), (1024, 1000), (1024, 4096), (4096, 32000), (512, 128256)]
SMOKE_SHAPES = [(3, 300)]
NAMES = ["losskit", "losskit value", "losskit.torch", "torch eager", "torch eager forward", "JAX jit"]


def _runs(z, y):
    import torch

    import losskit.torch as lt

    loss = lk.SoftmaxCrossEntropy()
    tz, ty = torch.from_numpy(z).requires_grad_(True), torch.from_numpy(y)
    module = lt.module(loss)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.cross_entropy(tz, ty)

    runs = {"losskit": lambda: loss.value_and_grad(z, y), "losskit value": lambda: loss(z, y),
            "losskit.torch": lambda: torch.autograd.grad(module(tz, ty), tz),
            "torch eager": lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(tz, ty), tz),
            "torch eager forward": torch_forward}
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return runs
    try:
        from optax import softmax_cross_entropy_with_integer_labels as per_row
    except ImportError:
        def per_row(logits, labels):
            return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]

    runs["JAX jit"] = jax_run(lambda logits, labels: per_row(logits, labels).mean(), z, y)
    return runs


def main() -> None:
    args = arguments(__doc__)
    rng = np.random.default_rng(0)
    print("| logits | " + " | ".join(f"{name} (ms)" for name in NAMES)
          + " | peer / losskit | forward: torch / losskit |")
    print("|---|" + "---|" * (len(NAMES) + 2))
    for shape in SMOKE_SHAPES if args.smoke else SHAPES:
        z = (rng.normal(size=shape) * 3).astype(np.float32)
        y = rng.integers(0, shape[1], size=shape[0])
        check_against_torch(z, y)
        med = median_ms(_runs(z, y), 1 if args.smoke else args.repeats)
        cells = [f"{med[name]:.3f}" if name in med else "-" for name in NAMES]
        peer = min(med[name] for name in ("torch eager", "JAX jit") if name in med)
        ratios = [f"{peer / med['losskit']:.2f}x", f"{med['torch eager forward'] / med['losskit value']:.2f}x"]
        print(f"| {shape[0]} x {shape[1]} | " + " | ".join(cells + ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
