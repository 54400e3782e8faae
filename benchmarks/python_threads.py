"""numba's parallel loop against the serial kernel run on Python threads: a design that was measured
and not taken (BENCHMARKS.md, 2026-12-06 12:20 UTC).

    python -m benchmarks.python_threads            # 50M, 1M, 262,144 and 65,536 float32 elements
    python -m benchmarks.python_threads --smoke    # tiny sizes: checks the harness and the bits

Every loss kernel is compiled twice: a ``prange`` kernel for large calls and its serial twin for small
ones (:func:`losskit.fused.serial_twin`); the parallel one costs about half of a loss's numba compile
(``python -m benchmarks.compile_time``), which the test suite and a first large call wait for. The
alternative: one serial kernel over a range of rows, run on two halves of the rows by the calling
thread and a sleeping Python thread (numba releases the GIL: ``nogil``), woken by a lock. Same bits
(each row is computed by the same code), no OpenMP threads spinning beside BLAS, one compile.

Measured here: a Huber-shaped elementwise kernel (value and gradient over ``[rows, 4096]``), the
``prange`` kernel (numba's threads), the serial kernel on the two threads, and the serial kernel alone;
median of ``--repeats`` calls each.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numba
import numpy as np
from numba import prange

from losskit.fused import no_alias_compiler

SIZES = (50_000_000, 1_000_000, 262_144, 65_536)
SMOKE_SIZES = (16_384,)
WIDTH = 4096
FASTMATH = {"reassoc", "contract"}


def _kernel(parallel: bool):
    loop = prange if parallel else range

    def rows(z, y, row_loss, grad, lo, hi):
        real = z.dtype.type
        zero, one, half = real(0), real(1), real(0.5)
        for i in loop(lo, hi):
            total = zero
            for j in range(z.shape[1]):
                e = z[i, j] - y[i, j]
                a = abs(e)
                total += half * e * e if a <= one else a - half
                grad[i, j] = e if a <= one else (one if e > zero else -one)
            row_loss[i] = float(total)

    # the serial kernel as the twins are compiled (no aliasing between its arrays); a parfor body gets
    # the same flag from numba's own alias analysis
    compiler = {} if parallel else {"pipeline_class": no_alias_compiler()}
    return numba.njit(rows, parallel=parallel, nogil=True, error_model="numpy", fastmath=FASTMATH, **compiler)


class TwoHalves:
    """Runs ``kernel(*args, lo, hi)`` on the first half of the rows in the calling thread and on the
    second in a Python thread of its own, which sleeps on a lock between calls."""

    def __init__(self):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._job = None
        threading.Thread(target=self._work, daemon=True).start()

    def _work(self):
        while True:
            self._go.acquire()
            kernel, args, lo, hi = self._job
            kernel(*args, lo, hi)
            self._done.release()

    def __call__(self, kernel, args, rows):
        half = rows // 2
        self._job = (kernel, args, half, rows)
        self._go.release()
        kernel(*args, 0, half)
        self._done.acquire()


def _median_ms(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _time_size(parallel, serial, halves, size, repeats):
    rows = max(1, size // WIDTH)
    z = np.random.default_rng(0).normal(size=(rows, WIDTH)).astype(np.float32)
    y = np.zeros_like(z)
    outs = {name: (np.empty(rows), np.empty_like(z)) for name in ("prange", "threads", "serial")}
    calls = {"prange": lambda: parallel(z, y, *outs["prange"], 0, rows),
             "threads": lambda: halves(serial, (z, y, *outs["threads"]), rows),
             "serial": lambda: serial(z, y, *outs["serial"], 0, rows)}
    for call in calls.values():
        call()  # compile, and warm the pages
    for name in ("threads", "serial"):  # the same code per row: the same bits
        for ours, reference in zip(outs[name], outs["prange"], strict=True):
            if not np.array_equal(ours, reference):
                raise AssertionError(f"{name} differs from the prange kernel at {z.size} elements")
    return {name: _median_ms(call, repeats) for name, call in calls.items()}


def run(sizes, repeats):
    parallel, serial, halves = _kernel(True), _kernel(False), TwoHalves()
    results = []
    for size in sizes:
        results.append((max(1, size // WIDTH) * WIDTH, _time_size(parallel, serial, halves, size, repeats)))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    sizes, repeats = (SMOKE_SIZES, 1) if args.smoke else (SIZES, args.repeats)
    print("| elements | prange kernel (ms) | serial kernel on two Python threads (ms) | serial kernel alone (ms) |")
    print("|---|---|---|---|")
    for size, ms in run(sizes, repeats):
        print(f"| {size:,} | {ms['prange']:.3f} | {ms['threads']:.3f} | {ms['serial']:.3f} |")


if __name__ == "__main__":
    main()
