"""The equal-mass ECE's histogram update (``losskit.evaluation.adaptive``): a batch's scatter into the bins
it falls in (``np.add.at``) against a ``np.bincount`` per column added to the whole histogram, by batch size.

    python -m benchmarks.adaptive_update                 # 2**20 bins (the default), batches of 200 to 1M rows
    python -m benchmarks.adaptive_update --repeats 9

Each round updates a new :class:`~losskit.evaluation.adaptive.AdaptiveCalibration` (as every metrics
object of ``losskit eval`` and the demo's ECE starts one: its histogram not yet touched) once with each
way, alternating; then the same object again ("warm"). Milliseconds are medians of ``--repeats`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from losskit.evaluation import adaptive

SIZES = (200, 2_000, 20_000, 65_536, 200_000, 1_000_000)
#: SCATTER_BELOW values that force each way at every size of SIZES
WAYS = {"scatter (np.add.at)": 0, "bincount": 1 << 30}


def _update_ms(n: int, scatter_below: int, warm: bool, rng) -> float:
    confidence, outcome, w = rng.random(n), rng.random(n) < 0.5, rng.uniform(0.1, 2.0, n)
    metric = adaptive.AdaptiveCalibration(exact_limit=0)
    old, adaptive.SCATTER_BELOW = adaptive.SCATTER_BELOW, scatter_below
    try:
        if warm:
            metric.update(confidence, outcome, w)
        start = time.perf_counter()
        metric.update(confidence, outcome, w)
        return (time.perf_counter() - start) * 1e3
    finally:
        adaptive.SCATTER_BELOW = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"2**20 bins, medians of {args.repeats} alternating rounds, ms per update; "
          f"the default picks the scatter below {(1 << 20) // adaptive.SCATTER_BELOW} rows")
    print("| rows | scatter, new | bincount, new | scatter, warm | bincount, warm |")
    print("|---|---|---|---|---|")
    for n in SIZES:
        times = {(way, warm): [] for way in WAYS for warm in (False, True)}
        for _ in range(args.repeats):
            for warm in (False, True):
                for way, below in WAYS.items():
                    times[way, warm].append(_update_ms(n, below, warm, rng))
        cells = [f"{statistics.median(times[way, warm]):.2f}" for warm in (False, True) for way in WAYS]
        print(f"| {n:,} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")


if __name__ == "__main__":
    main()
