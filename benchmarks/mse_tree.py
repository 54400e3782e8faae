"""MSE value and gradient on 50000 x 1000 float32 (the parallel squared-error kernel), one tree at a time.

    PYTHONPATH=<tree>/src python -m benchmarks.mse_tree LABEL

Median and minimum of 7 calls, each after a 0.2 s pause, after a warm-up that compiles. Run it for
two source trees in turn (``git worktree add``) to compare a kernel change in the same minutes.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import losskit as lk
from losskit.losses import _compiled


def main() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50000, 1000)).astype(np.float32)
    y = rng.normal(size=(50000, 1000)).astype(np.float32)
    loss = lk.MeanSquaredError()
    loss.value_and_grad(z, y)
    _compiled.wait_for_compiles()
    loss.value_and_grad(z, y)
    times = []
    for _ in range(7):
        time.sleep(0.2)
        start = time.perf_counter()
        loss.value_and_grad(z, y)
        times.append(time.perf_counter() - start)
    label = sys.argv[1] if len(sys.argv) > 1 else "losskit"
    print(f"{label} {1e3 * statistics.median(times):.1f} ms (min {1e3 * min(times):.1f})")


if __name__ == "__main__":
    main()
