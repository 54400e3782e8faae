"""Softmax CE on rows of few classes: the blocked kernel (``softmax_ce_short_rows``) against the
row-by-row kernel (``softmax_ce_rows``), both serial (the twin a call below ``SERIAL_BELOW`` elements
runs), value and gradient, label smoothing 0.1, float64 and float32; and torch eager's
``F.cross_entropy`` forward + ``autograd.grad`` on the same logits as the peer. With ``--dense``, the
same for probability targets (Dirichlet draws): ``kl_dense_short_rows`` against ``kl_dense_rows`` (the
softmax CE form, no entropy), both parallel, on 4M logits a call, and torch eager's ``F.cross_entropy``
of the probabilities; with ``--poly``, Poly-1 of labels (epsilon 1): ``poly_short_rows`` against
``softmax_ce_rows`` with its ``epsilon``, and torch eager's formula; with ``--focal``, softmax focal of labels
(gamma 2, no smoothing): ``focal_short_rows`` against ``softmax_ce_rows`` with its ``alpha``, and torch eager's
formula. (Before
2026-12-05 the row-by-row Poly-1 and focal kernels were ``rows.poly_rows`` and ``rows.focal_rows``.)

    python -m benchmarks.short_rows [--repeats 7] [--calls 300] [--dense | --poly | --focal]

Prints microseconds per call (median of ``--repeats`` rounds of ``--calls`` calls, the kernels
alternating within a round) and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from losskit import fused
from losskit.fused import kernels

SHAPES = [(1348, 10), (4000, 2), (800, 16), (400, 32), (200, 64), (100, 128), (50, 256)]


def _per_call(run, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e6


def _call(kernel, arrays):
    twin = fused.serial_twin(kernel)
    return lambda: twin(*arrays)


DENSE_CLASSES = (4, 10, 21, 32, 48, 64, 100, 255, 1000)
POLY_CLASSES = (10, 21, 32, 64, 100, 256)
LOGITS = 4_000_000


def _runs(kind, z, target, scale, out):
    """The row-by-row and the blocked kernel of ``kind`` ("dense": softmax CE of probabilities; "poly":
    Poly-1 of labels, epsilon 1), and torch eager's loss of the same logits."""
    import torch

    from losskit.fused import kernels, rows

    tz, tt = torch.from_numpy(z.copy()).requires_grad_(True), torch.from_numpy(target.copy())
    if kind == "dense":
        arrays = (z, target, scale, 0.0, False, 1e-3, *out)
        ours = {"rows": lambda: rows.kl_dense_rows(*arrays), "blocked": lambda: rows.kl_dense_short_rows(*arrays)}

        def torch_call():
            torch.autograd.grad(torch.nn.functional.cross_entropy(tz, tt), tz)
    elif kind == "poly":
        ours = {"rows": lambda: kernels.softmax_ce_rows(z, target, scale, 0.0, out[0], out[1], True, out[2], 1.0),
                "blocked": lambda: kernels.poly_short_rows(z, target, scale, 0.0, 1.0, out[0], out[1], True, out[2])}

        def torch_call():  # Poly-1 as its paper writes it: CE + epsilon (1 - p_y)
            log_p = torch.nn.functional.log_softmax(tz, -1).gather(-1, tt[:, None])
            torch.autograd.grad((-log_p + (1 - log_p.exp())).mean(), tz)
    else:
        alpha = np.ones(z.shape[1], z.dtype)
        alpha.flags.writeable = False
        ours = {"rows": lambda: kernels.softmax_ce_rows(z, target, scale, 0.0, *out[:2], True, out[2], 0.0, alpha, 2.0),
                "blocked": lambda: kernels.focal_short_rows(z, target, alpha, scale, 2.0, *out[:2], True, out[2])}

        def torch_call():  # softmax focal as its paper writes it: -(1 - p_y)^gamma log p_y, gamma 2
            log_p = torch.nn.functional.log_softmax(tz, -1).gather(-1, tt[:, None])
            torch.autograd.grad((-(1 - log_p.exp()) ** 2 * log_p).mean(), tz)
    return {**ours, "torch": torch_call}


def short_rows_of(kind: str, repeats: int, calls: int) -> None:
    """The blocked and the row-by-row kernel (parallel, as a call of this size runs) and torch eager,
    float32, 4M logits a call."""
    rng = np.random.default_rng(0)
    print("| classes | rows | row by row (ms) | blocked (ms) | speed-up | torch eager (ms) | torch / faster |")
    print("|---|---|---|---|---|---|---|")
    for k in DENSE_CLASSES if kind == "dense" else POLY_CLASSES:  # Poly-1's classes for focal too
        n = LOGITS // k
        z = (rng.normal(size=(n, k)) * 3).astype(np.float32)
        target = rng.dirichlet(np.ones(k), size=n).astype(np.float32) if kind == "dense" else rng.integers(0, k, n)
        scale = np.full(n, 1 / n, np.float32)
        for array in (z, target, scale):
            array.flags.writeable = False
        runs = _runs(kind, z, target, scale, (np.empty(n), np.empty_like(z), np.zeros(n, np.uint8)))
        for run in runs.values():
            run()
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                times[name].append(_per_call(run, calls) / 1e3)
        med = {name: statistics.median(values) for name, values in times.items()}
        faster = min(med["rows"], med["blocked"])
        print(f"| {k} | {n} | {med['rows']:.2f} | {med['blocked']:.2f} | {med['rows'] / med['blocked']:.2f}x | "
              f"{med['torch']:.2f} | {med['torch'] / faster:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--dense", action="store_true", help="probability targets (KL kernels), 4M logits a call")
    parser.add_argument("--poly", action="store_true", help="Poly-1 of labels, 4M logits a call")
    parser.add_argument("--focal", action="store_true", help="softmax focal of labels (gamma 2), 4M logits a call")
    args = parser.parse_args()
    kind = "dense" if args.dense else "poly" if args.poly else "focal" if args.focal else None
    if kind:
        short_rows_of(kind, args.repeats, args.calls)
        return
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print("| dtype | rows x classes | row by row (us) | blocked (us) | speed-up | torch eager (us) | torch / blocked |")
    print("|---|---|---|---|---|---|---|")
    for dtype in (np.float64, np.float32):
        for n, k in SHAPES:
            z = (rng.normal(size=(n, k)) * 3).astype(dtype)
            z.flags.writeable = False
            labels = rng.integers(0, k, n)
            labels.flags.writeable = False
            scale = np.full(n, 1 / n, dtype)
            scale.flags.writeable = False
            arrays = (z, labels, scale, 0.1, np.empty(n), np.empty_like(z), True, np.zeros(n, np.uint8))
            runs = {"rows": _call(kernels.softmax_ce_rows, arrays),
                    "blocked": _call(kernels.softmax_ce_short_rows, arrays)}
            if torch is not None:
                tz = torch.tensor(z, requires_grad=True)
                ty = torch.from_numpy(labels.copy())

                def torch_call(tz=tz, ty=ty):
                    value = torch.nn.functional.cross_entropy(tz, ty, label_smoothing=0.1)
                    torch.autograd.grad(value, tz)

                runs["torch"] = torch_call
            for run in runs.values():
                run()  # compiled (or loaded from numba's cache) before timing
            times = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    times[name].append(_per_call(run, args.calls))
            med = {name: statistics.median(values) for name, values in times.items()}
            peer = (f"{med['torch']:.1f} | {med['torch'] / med['blocked']:.2f}x" if "torch" in med else "- | -")
            print(f"| {np.dtype(dtype).name} | {n} x {k} | {med['rows']:.1f} | {med['blocked']:.1f} | "
                  f"{med['rows'] / med['blocked']:.2f}x | {peer} |")


if __name__ == "__main__":
    main()
