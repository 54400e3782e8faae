"""Compiled CPU kernels: plain arrays in, plain arrays out (see :mod:`losskit.fused.kernels`).

A leaf: it knows no loss object, option or reduction. The losses marshal their call plan into
these kernels (:mod:`losskit.losses._compiled`); ``import losskit`` never loads numba.
"""

from __future__ import annotations

import functools
import importlib.util
import threading

__all__ = ["available", "pick", "running_serial", "serial", "serial_twin"]


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can be used here (numba installed); asked once per process."""
    return importlib.util.find_spec("numba") is not None


_CALL = threading.local()


class serial:  # noqa: N801 - used as a function: ``with serial(on):``
    """Inside, :func:`pick` gives each kernel's serial twin when ``on`` (per calling thread). A class,
    not a generator context manager: it wraps every small call, where contextlib's machinery costs
    more than the kernel."""

    __slots__ = ("on", "previous")

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.previous = getattr(_CALL, "serial", False)
        _CALL.serial = self.on

    def __exit__(self, *exc):
        _CALL.serial = self.previous


def running_serial() -> bool:
    """Whether the calling thread's kernels run serially now (inside ``serial(True)``)."""
    return getattr(_CALL, "serial", False)


def pick(kernel):
    """``kernel`` (a ``parallel`` numba function), or its serial twin inside ``serial(True)``."""
    return serial_twin(kernel) if getattr(_CALL, "serial", False) else kernel


@functools.cache
def serial_twin(kernel):
    """``kernel`` compiled without a parallel region (``prange`` runs as ``range``), cached on disk apart.

    Why a twin and not ``numba.set_num_threads(1)`` around the parallel kernel: that still goes through
    the threading layer on every call (the count set twice, a launch and a join), where the twin is a
    plain loop on the calling thread; and the twin compiles in 60-75% of the parallel kernel's time
    (no parfor lowering), which is what a small first call and the test suite wait for. Its own
    qualified name gives it its own entry in numba's disk cache, which is keyed by name and bytecode,
    not by the ``parallel`` flag."""
    import types

    import numba
    from numba.core.caching import NullCache

    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = f"{fn.__qualname__}.serial"
    twin.__module__, twin.__doc__ = fn.__module__, fn.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}  # njit sets it itself
    options["parallel"] = False
    return numba.njit(cache=not isinstance(kernel._cache, NullCache), **options)(twin)
