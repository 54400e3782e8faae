"""The block size of ``accumulate_at_b`` on NumPy (``losskit.losses.linear.ACCUMULATE_BLOCK``): one
post-training chunk's ``grad_classifier += z.T @ h`` (384 kept tokens, V = 128256, D = 1024, float32)
block by block, against SciPy's sgemm with beta = 1 when SciPy is installed (the in-place gemm NumPy
lacks) and against ``z.T @ h`` into a fresh array (no accumulation: its pages are faulted in).

    python -m benchmarks.accumulate_block [--repeats 6]

Prints the median and the minimum seconds of each, rounds alternating.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from losskit.losses.linear import accumulate_in_blocks

TOKENS, FEATURES, VOCAB = 384, 1024, 128256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((TOKENS, VOCAB), dtype=np.float32)
    h = rng.standard_normal((TOKENS, FEATURES), dtype=np.float32)
    acc = np.zeros((VOCAB, FEATURES), np.float32)
    runs = {f"blocks of 2^{bits} numbers": lambda bits=bits: accumulate_in_blocks(acc, z.T, h, (1 << bits) // FEATURES)
            for bits in (19, 20, 21, 22, 23)}
    runs["z.T @ h into a fresh array"] = lambda: z.T @ h
    try:
        from scipy.linalg import blas

        runs["SciPy sgemm, beta = 1"] = lambda: blas.sgemm(1.0, h.T, z.T, beta=1.0, c=acc.T, trans_b=True,
                                                           overwrite_c=True)
    except ImportError:
        pass
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.3f} s, min {min(values):.3f} s")


if __name__ == "__main__":
    main()
