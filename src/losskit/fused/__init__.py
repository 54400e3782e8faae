"""Compiled CPU kernels: plain arrays in, plain arrays out (see :mod:`losskit.fused.kernels`).

A leaf: it knows no loss object, option or reduction. The losses marshal their call plan into
these kernels (:mod:`losskit.losses._compiled`); ``import losskit`` never loads numba.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util

__all__ = ["available", "threads"]


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can be used here (numba installed); asked once per process."""
    return importlib.util.find_spec("numba") is not None


@contextlib.contextmanager
def threads(serial: bool):
    """Run the kernels called inside on the calling thread alone when ``serial`` (numba's thread
    count is per calling thread, so other threads are not affected)."""
    if not serial:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
