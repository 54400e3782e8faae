"""The label losses that share softmax CE's row kernels (softmax CE, Poly-1, softmax focal), losskit
alone: ``value_and_grad(out=)`` into a caller's buffer (no page faults of a fresh gradient) and the
value alone, per call. For comparing two trees of losskit on the same machine (run it once with each
on ``PYTHONPATH``, alternating); the peers are in ``benchmarks.catalogue`` and ``benchmarks.long_rows``.

    python -m benchmarks.label_rows [--repeats 7] [--loss focal] [--shape 4096 32000 float32]

Each case is timed as ``benchmarks._alternate.median_ms`` times: warm-up calls, then ``--repeats`` rounds
of back-to-back calls (about half a second a form a round, the two forms alternating), the median
milliseconds per call printed.
"""

from __future__ import annotations

import argparse

import numpy as np

import losskit as lk

from ._alternate import median_ms

LOSSES = {"ce": lambda: lk.SoftmaxCrossEntropy(impl="fused"),
          "poly": lambda: lk.PolyCrossEntropy(impl="fused", epsilon=1.0),
          "focal": lambda: lk.SoftmaxFocalLoss(impl="fused", gamma=2.0)}
SHAPES = [(4096, 32000, "float32"), (2048, 300, "float64"), (1024, 1000, "float32")]


def time_case(loss, z, y, repeats: int) -> dict[str, float]:
    """Median milliseconds of one call of each form, ``"value_and_grad(out=)"`` and ``"value"``
    (:func:`benchmarks._alternate.median_ms`: warm-up calls first, the forms alternating in each round)."""
    grad = np.empty_like(z)
    return median_ms({"value_and_grad(out=)": lambda: loss.value_and_grad(z, y, out=grad),
                      "value": lambda: loss(z, y)}, repeats, seconds=0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loss", nargs="*", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--shape", nargs=3, action="append", metavar=("ROWS", "CLASSES", "DTYPE"),
                        help=f"a case (repeatable; default: {SHAPES})")
    args = parser.parse_args()
    shapes = [(int(n), int(k), dtype) for n, k, dtype in args.shape] if args.shape else SHAPES
    rng = np.random.default_rng(0)
    print(f"losskit: {lk.__file__}\n\n"
          "| logits | dtype | loss | value_and_grad(out=) ms | value ms |\n|---|---|---|---|---|")
    for n, k, dtype in shapes:
        z = (rng.standard_normal((n, k)) * 3).astype(dtype)
        y = rng.integers(0, k, n)
        for name in args.loss:
            loss = LOSSES[name]()
            ms = time_case(loss, z, y, args.repeats)
            print(f"| {n} x {k} | {dtype} | {name} | {ms['value_and_grad(out=)']:.3f} | {ms['value']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
