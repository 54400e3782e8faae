"""numba's thread pool, started so that its idle threads soon sleep instead of spinning.

numba's parallel kernels run on its OpenMP threading layer here (GNU libgomp), whose idle threads
spin for 300,000 rounds after each parallel region before they sleep. In a training loop the next
thing to run is a matrix product, and OpenBLAS's threads then share the two cores with numba's
spinning ones: a NumPy step of ``h @ W``, softmax CE's ``value_and_grad`` and ``h.T @ g`` (1024 x 512
hidden, 1000 classes, float32) took 20.9-21.8 ms, and 12.4-13.5 ms with libgomp told to spin 10,000
rounds, the products alone 10.6-11.7 ms; a loss call alone as fast either way (``python -m
benchmarks.latency --blas-step``, BENCHMARKS.md). libgomp reads its settings from the environment once,
when it is loaded, which numba does when it starts its threads: :func:`start`, called just before a
parallel kernel's first run (where numba would start them itself: :func:`losskit.losses._compiled.run`
for a loss call, :func:`losskit.losses.linear.host_sweep` and the log-probs' host kernels for the fused
linear layers), starts them with ``GOMP_SPINCOUNT=10000`` in the environment for that moment only,
unless the user has set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (theirs then holds). It changes
nothing where libgomp was already loaded (torch imported first: numba's regions then run on torch's
libgomp, with torch's settings), where numba's threads were already started, or under another threading
layer. Where losskit starts them before torch is imported, torch's operators run on that libgomp, with
the same 10,000 rounds.
"""

from __future__ import annotations

import os
import threading

#: libgomp's spin rounds for numba's idle threads (libgomp's default is 300,000)
SPIN_COUNT = "10000"
_LOCK = threading.Lock()
_STARTED = False


def start() -> None:
    """Start numba's threads, once per process (then a flag's read). Not at import: a process whose
    threads have started may not fork children that run parallel kernels (numba's OpenMP layer stops
    them), and starting them fixes multiprocessing's start method and numba's threading layer; so they
    start where numba would start them, at the first parallel kernel. A layer that fails to load is
    left for that kernel's call to report, as before."""
    global _STARTED
    if _STARTED:
        return
    import numba

    with _LOCK:
        if _STARTED:
            return
        _STARTED = True
        user = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
        if not user:
            os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        try:
            numba.get_num_threads()  # starts the threads: loads the layer, and libgomp reads the environment
        except Exception:  # noqa: BLE001 - e.g. no threading layer loads: the kernel's own call raises it
            pass
        finally:
            if not user:
                del os.environ["GOMP_SPINCOUNT"]
