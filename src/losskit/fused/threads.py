"""numba's thread pool, started so that its idle threads soon sleep instead of spinning.

numba's parallel kernels run on its OpenMP threading layer here (GNU libgomp), whose idle threads
spin for 300,000 rounds after each parallel region before they sleep. In a training loop the next
thing to run is a matrix product, and OpenBLAS's (or torch's) threads then share the two cores with
numba's spinning ones: a NumPy step of ``h @ W``, softmax CE's ``value_and_grad`` and ``h.T @ g`` (1024
x 512 hidden, 1000 classes, float32) took 20.6-20.9 ms against 11.7-13.2 ms with libgomp told to spin
10,000 rounds, the products alone 10.5-11.9 ms; a loss call alone as fast either way
(``python -m benchmarks.latency --blas-step``, BENCHMARKS.md). libgomp reads its settings from the
environment once, when it is loaded, which numba does when it starts its threads: :func:`start` starts
them with ``GOMP_SPINCOUNT=10000`` in the environment for that moment only, unless the user has set
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (theirs then holds). It changes nothing where libgomp was
already loaded, where numba's threads were already started, or under another threading layer; torch
loads its own copy of libgomp, which keeps its settings.
"""

from __future__ import annotations

import os
import threading

#: libgomp's spin rounds for numba's idle threads (libgomp's default is 300,000)
SPIN_COUNT = "10000"
_LOCK = threading.Lock()


def start() -> None:
    """Start numba's threads (once per process; a no-op after the first call or if they run already)."""
    import numba

    with _LOCK:
        if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
            numba.get_num_threads()  # the user's settings hold
            return
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        try:
            numba.get_num_threads()  # starts the threads: loads the layer, and libgomp reads the environment
        finally:
            del os.environ["GOMP_SPINCOUNT"]
