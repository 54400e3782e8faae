"""Timing implementations side by side: back-to-back calls, the implementations alternating in each round."""

from __future__ import annotations

import statistics
import time

from .catalogue import PAUSE


def median_ms(runs: dict, repeats: int, seconds: float = 0.1) -> dict[str, float]:
    """Milliseconds per call of each of ``runs`` (name -> no-argument callable): each run twice first
    (compiled by numba or XLA, warm), then ``repeats`` rounds in which the runs alternate, each run about
    ``seconds`` of back-to-back calls, as in a training loop, after the catalogue benchmark's pause (the
    thread pools of the run before, OpenMP's and XLA's, stop spinning) and one call that wakes this run's;
    the median of the rounds."""
    for run in runs.values():
        run()
        run()
    calls = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        calls[name] = max(3, int(seconds / max(time.perf_counter() - start, 1e-6)))
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(PAUSE)
            run()
            start = time.perf_counter()
            for _ in range(calls[name]):
                run()
            times[name].append((time.perf_counter() - start) / calls[name] * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}
