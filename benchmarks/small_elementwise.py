"""BCE-with-logits below ``SERIAL_BELOW`` (2^18) elements, where a call runs its kernel's serial twin:
``lk.BinaryCrossEntropyWithLogits(impl="fused").value_and_grad`` against torch eager's
``F.binary_cross_entropy_with_logits`` and ``torch.autograd.grad``, float32 and float64.

    python -m benchmarks.small_elementwise [--repeats 7] [--calls 20]

Prints microseconds per call (median of ``--repeats`` rounds of ``--calls`` calls, alternating) and
torch / losskit (above 1: losskit faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import losskit as lk

SIZES = (10_000, 80_000, 200_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| dtype | elements | losskit (us) | torch eager (us) | torch / losskit |\n|---|---|---|---|---|")
    for dtype in (np.float32, np.float64):
        for size in SIZES:
            z = rng.normal(size=size).astype(dtype)
            y = (rng.uniform(size=size) > 0.5).astype(dtype)
            loss = lk.BinaryCrossEntropyWithLogits(impl="fused")
            tz, ty = torch.from_numpy(z.copy()).requires_grad_(), torch.from_numpy(y)

            def torch_call(tz=tz, ty=ty):
                torch.autograd.grad(torch.nn.functional.binary_cross_entropy_with_logits(tz, ty), tz)

            runs = {"losskit": lambda loss=loss, z=z, y=y: loss.value_and_grad(z, y), "torch": torch_call}
            for run in runs.values():
                run()  # the kernel compiled (or loaded from numba's cache) before timing
            times = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        run()
                    times[name].append((time.perf_counter() - start) / args.calls * 1e6)
            mine, peer = statistics.median(times["losskit"]), statistics.median(times["torch"])
            print(f"| {np.dtype(dtype).name} | {size:,} | {mine:.0f} | {peer:.0f} | {peer / mine:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
