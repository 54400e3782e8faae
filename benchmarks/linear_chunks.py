"""The linear cross-entropy's chunk size against the three-gemm floor (issue 15's "linear + CE within
1.05x of the 3-gemm floor"): each chunk is one read-modify-write of the [V, D] classifier gradient, so
fewer, larger chunks approach the floor and hold more logits.

    python -m benchmarks.linear_chunks [--repeats 3]

4096 x 1024 hidden states, V = 128256, float32, every row kept, forward + backward on NumPy;
``chunk_size`` 261 (the default, 2^25 logits), 523 and 1046 rows, alternating rounds, then the floor
(``benchmarks.posttraining_parts``: the three gemms in 512-row chunks). Medians and ranges in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from losskit.losses.linear import linear_cross_entropy_value_and_grad

from .posttraining_parts import _gemm_floor

ROWS, FEATURES, VOCAB = 4096, 1024, 128256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((ROWS, FEATURES), dtype=np.float32)
    classifier = rng.standard_normal((VOCAB, FEATURES), dtype=np.float32)
    classifier *= np.float32(0.03)
    target = rng.integers(0, VOCAB, size=ROWS)
    linear_cross_entropy_value_and_grad(hidden[:4], classifier[:64], target[:4] % 64)  # kernels loaded
    seconds = {rows: [] for rows in (261, 523, 1046)}
    for _ in range(args.repeats):
        for rows, values in seconds.items():
            start = time.perf_counter()
            linear_cross_entropy_value_and_grad(hidden, classifier, target, chunk_size=rows)
            values.append(time.perf_counter() - start)
    floor = _gemm_floor("numpy", {"hidden": hidden[None], "classifier": classifier}, rounds=args.repeats)
    for rows, values in seconds.items():
        med = statistics.median(values)
        print(f"chunk_size {rows} ({rows * VOCAB * 4 / 2**20:.0f} MiB of logits): median {med:.2f} s "
              f"({min(values):.2f}-{max(values):.2f}), {med / floor:.2f}x the floor")
    print(f"three gemms (NumPy, 512-row chunks): {floor:.2f} s")


if __name__ == "__main__":
    main()
