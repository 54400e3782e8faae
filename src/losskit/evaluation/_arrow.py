"""Numeric columns between NumPy and Arrow through their data buffers, without pyarrow's pandas check.

pyarrow's own conversions (``pa.array`` of a NumPy array, ``Array.to_numpy``, ``pa.table`` of a dict)
import pandas when it is installed, to look for pandas types (apache/arrow#34994): 0.5-0.8 s of a
``losskit eval`` or ``losskit demo`` that never uses pandas. A null-free integer, floating or boolean
column is its data buffer (booleans one bit each), so it is read and written as that buffer here;
any other column goes through pyarrow's conversion.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_arrow", "to_numpy"]


def _numpy_dtype(kind) -> np.dtype | None:
    """The NumPy dtype of an Arrow integer or floating type (None for any other type)."""
    import pyarrow as pa

    if pa.types.is_integer(kind):
        return np.dtype(f"{'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
    if pa.types.is_floating(kind):
        return np.dtype(f"f{kind.bit_width // 8}")
    return None


def to_numpy(values) -> np.ndarray:
    """``values`` (a pyarrow Array) as a 1-D NumPy array: a read-only view of its data buffer for a
    null-free integer or floating column (as pyarrow's zero-copy conversion gives: a reader's buffers are
    mutable, and a write through the view would change the Arrow data), a new bool array for a null-free
    boolean one, else pyarrow's ``to_numpy(zero_copy_only=False)``."""
    import pyarrow as pa

    buffers = values.buffers()
    data = buffers[1] if values.null_count == 0 and len(buffers) > 1 else None
    if data is not None:
        dtype = _numpy_dtype(values.type)
        if dtype is not None:
            view = np.frombuffer(data, dtype, count=len(values), offset=values.offset * dtype.itemsize)
            view.flags.writeable = False
            return view
        if pa.types.is_boolean(values.type):
            bits = np.unpackbits(np.frombuffer(data, np.uint8), count=values.offset + len(values), bitorder="little")
            return bits[values.offset:].view(bool)
    return values.to_numpy(zero_copy_only=False)


def to_arrow(array: np.ndarray, kind=None):
    """A 1-D NumPy integer, floating or bool array (a strided view too) as a pyarrow Array of ``kind`` (by
    default the array's own type), through a contiguous buffer: floats cast to a floating ``kind`` as
    NumPy rounds them. Anything else (another shape, a masked array, a cast to another integer type,
    which pyarrow checks for overflow) goes through ``pa.array``."""
    import pyarrow as pa

    kind = pa.from_numpy_dtype(array.dtype) if kind is None else kind
    dtype = _numpy_dtype(kind)
    plain = type(array) is np.ndarray and array.ndim == 1
    if plain and pa.types.is_boolean(kind) and array.dtype == bool:
        data = np.packbits(array, bitorder="little")
    elif plain and dtype is not None and (array.dtype == dtype or (dtype.kind == "f" and array.dtype.kind == "f")):
        data = np.ascontiguousarray(array, dtype=dtype)
    else:
        return pa.array(array, type=kind)
    return pa.Array.from_buffers(kind, len(array), [None, pa.py_buffer(data)])
