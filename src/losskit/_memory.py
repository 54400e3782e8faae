"""Reusable memory for large arrays that a hot loop makes again and again."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

__all__ = ["Recycler"]


class Recycler:
    """Memory for large arrays made again and again (fresh gradients, batches), reused once nothing
    views it any more.

    On this kind of VM a fresh 0.5 GB array costs 60 ms to over 1 s in page faults, more than the
    kernel itself, and a large ``np.empty`` is a fresh mapping each time. An array is returned in
    memory taken from here; when the last array or tensor viewing it is freed (a finalizer on the
    flat array every view's ``base`` leads to), the memory comes back and the next request of the
    same size reuses it, with its pages already mapped. At most ``keep`` blocks wait here; arrays
    under 1 MiB are plain ``np.empty``.
    """

    SMALL = 1 << 20

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._free = OrderedDict()
        self._lock = threading.Lock()

    def empty(self, size: int, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = size * dtype.itemsize
        if nbytes < self.SMALL:
            return np.empty(size, dtype)
        with self._lock:
            blocks = self._free.get(nbytes)
            memory = blocks.pop() if blocks else None
            if blocks is not None and not blocks:
                del self._free[nbytes]
        if memory is None:
            # a memoryview, not an ndarray, owns the bytes: so every view of the result has the flat
            # array below as its base, and that array dies only with the last view
            memory = memoryview(np.empty(nbytes, np.uint8))
        flat = np.frombuffer(memory, dtype=dtype, count=size)
        weakref.finalize(flat, self._give_back, nbytes, memory)
        return flat

    def _give_back(self, nbytes: int, memory) -> None:
        with self._lock:
            self._free.setdefault(nbytes, []).append(memory)
            self._free.move_to_end(nbytes)
            while sum(len(v) for v in self._free.values()) > self.keep:
                oldest = next(iter(self._free))
                self._free[oldest].pop(0)
                if not self._free[oldest]:
                    del self._free[oldest]
