"""Compiled CPU kernels: plain arrays in, plain arrays out (see :mod:`losskit.fused.kernels`).

A leaf: it knows no loss object, option or reduction. The losses marshal their call plan into
these kernels (:mod:`losskit.losses._compiled`); ``import losskit`` never loads numba.
"""

from __future__ import annotations

import functools
import importlib.util

__all__ = ["available"]


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can be used here (numba installed); asked once per process."""
    return importlib.util.find_spec("numba") is not None
