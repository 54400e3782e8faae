"""NPY and NPZ files for :mod:`.sources`: their columns, and row batches read without loading an array.

The column model: a structured ``.npy`` array's fields are its columns (a field of shape (K,) holds
K values per row); a plain 1-D array is the column "0", a plain 2-D [N, C] array the columns "0" to
"C-1"; an ``.npz`` member is a column named by its key, 1-D or 2-D [N, K] (K values per row).

An ``.npy`` file and an ``.npz`` member are the same thing, a header then the raw array bytes, so
one reader serves both: the header by :mod:`numpy.lib.format`, then ``rows * rowbytes`` bytes at a
time from a file object (a plain file, or a :class:`zipfile.ZipExtFile` for a stored or deflated
member). Plain reads rather than ``np.load(mmap_mode="r")``: the pages of a memory map count in the
process's resident size, which a Dask worker's memory monitor watches, so a long file would look
like a leak; and ``.npz`` members cannot be mapped at all once compressed.
"""

from __future__ import annotations

import ast
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from .._errors import LossInputError

__all__ = ["Header", "columns", "rows", "read_header", "npy_header", "npz_headers", "open_member", "iter_rows"]


@dataclass(frozen=True)
class Header:
    """What an array's header says: ``shape``, ``dtype``, ``fortran`` order, and where its data start."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


def read_header(fp: BinaryIO, where: str) -> Header:
    """The header of the array whose bytes start at ``fp``'s position; ``where`` names it in errors."""
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
        else:  # 3.0 is 2.0 with a UTF-8 header (field names beyond latin-1); numpy has no public reader for it
            (length,) = struct.unpack("<I", fp.read(4))
            header = ast.literal_eval(fp.read(length).decode("utf-8"))
            shape, fortran = tuple(header["shape"]), bool(header["fortran_order"])
            dtype = npformat.descr_to_dtype(header["descr"])
    except (ValueError, KeyError, SyntaxError, struct.error) as error:
        raise LossInputError(f"{where}: not a readable .npy array ({error})") from None
    return Header(tuple(shape), dtype, fortran, fp.tell())


def npy_header(path) -> Header:
    with open(path, "rb") as fp:
        return read_header(fp, str(path))


def npz_headers(path) -> dict[str, Header]:
    """Each member's header by its key (the member name without ``.npy``), reading no array data."""
    try:
        with zipfile.ZipFile(path) as archive:
            out = {}
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as fp:
                        out[info.filename[:-4]] = read_header(fp, f"{path}: member {info.filename!r}")
            return out
    except zipfile.BadZipFile as error:
        raise LossInputError(f"{path}: not a readable .npz archive ({error})") from None


def open_member(path, key: str | None) -> Callable[[], BinaryIO]:
    """A function opening a new stream of the ``.npy`` file (``key`` None) or of the ``.npz`` member ``key``,
    positioned at its start. A Fortran-ordered array needs one stream per column, hence a factory."""
    if key is None:
        return lambda: open(path, "rb")

    def opener() -> BinaryIO:
        archive = zipfile.ZipFile(path)
        stream = archive.open(key + ".npy")
        archive.close()  # the member stream keeps the file open until it is closed itself
        return stream

    return opener


def _column(dtype: np.dtype, shape: tuple[int, ...]) -> tuple[int, str, str | None]:
    """``(values per row, type as errors show it, "bool" / "int" / "float" or None: unusable)`` of a column
    of ``shape`` per row."""
    shown = str(dtype) if not shape else f"{dtype}{list(shape)}"
    kind = {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(dtype.kind) if len(shape) <= 1 else None
    return (shape[0] if shape else 1), shown, kind


def columns(path, archive: bool) -> tuple[dict, int | None, dict]:
    """The columns of an ``.npy`` file (``archive`` False) or ``.npz`` archive, its row count (None for an
    archive: its members' lengths, the third item, may differ) and each member's length."""
    if archive:
        heads = npz_headers(path)
        if not heads:
            raise LossInputError(f"{path}: the archive holds no .npy member")
        found = {key: _column(h.dtype, h.shape[1:]) if h.shape and not h.dtype.names
                 else (1, f"{h.dtype} of shape {h.shape}", None) for key, h in heads.items()}
        return found, None, {key: h.rows for key, h in heads.items()}
    head = npy_header(path)
    if head.dtype.names:
        if len(head.shape) != 1:
            raise LossInputError(f"{path}: a structured array of shape {head.shape}; expected one dimension")
        fields = {name: head.dtype.fields[name][0] for name in head.dtype.names}
        return {name: _column(d.base, d.shape) for name, d in fields.items()}, head.shape[0], {}
    if len(head.shape) not in (1, 2):
        raise LossInputError(f"{path}: an array of shape {head.shape}; expected rows, or rows x columns")
    count = 1 if len(head.shape) == 1 else head.shape[1]
    return {str(j): _column(head.dtype, ()) for j in range(count)}, head.shape[0], {}


def rows(path, archive: bool, names: list[str], start: int, stop: int, batch_rows: int):
    """``(first row, {name: array})`` for rows ``[start, stop)`` of the columns ``names``, ``batch_rows`` a time."""
    if not archive:
        head = npy_header(path)
        blocks = iter_rows(open_member(path, None), head, start, stop, batch_rows, str(path))
        for row, block in zip(range(start, stop, batch_rows), blocks, strict=True):
            if head.dtype.names:
                yield row, {name: block[name] for name in names}
            else:
                yield row, {name: block if block.ndim == 1 else block[:, int(name)] for name in names}
        return
    heads = npz_headers(path)
    streams = [iter_rows(open_member(path, name), heads[name], start, stop, batch_rows, f"{path}: member {name!r}")
               for name in names]
    try:
        for row, blocks in zip(range(start, stop, batch_rows), zip(*streams, strict=True), strict=True):
            yield row, dict(zip(names, blocks, strict=True))
    finally:
        for stream in streams:
            stream.close()


#: what reading a damaged member raises: a deflate stream's error, a stored member's bad CRC, an end of file
_DAMAGED = (zlib.error, zipfile.BadZipFile, EOFError, OSError)


def _damaged(where: str, error: Exception) -> LossInputError:
    return LossInputError(f"{where}: not a readable array: its data are damaged ({type(error).__name__}: {error})")


def _seek(fp: BinaryIO, offset: int, where: str) -> None:
    try:
        fp.seek(offset)  # (in a deflated member: decompresses up to there)
    except _DAMAGED as error:
        raise _damaged(where, error) from None


def _read_exact(fp: BinaryIO, size: int, where: str) -> bytes:
    # a member damaged past its header raised zlib's or zipfile's own error, naming no file (found in review)
    try:
        data = fp.read(size)
    except _DAMAGED as error:
        raise _damaged(where, error) from None
    if len(data) != size:
        raise LossInputError(f"{where}: the array's data end early (the file is truncated)")
    return data


def iter_rows(opener: Callable[[], BinaryIO], header: Header, start: int, stop: int, batch_rows: int,
              where: str) -> Iterator[np.ndarray]:
    """Arrays of rows ``[start, stop)`` (at most ``batch_rows`` each), of shape ``(k,) + shape[1:]``.

    Sequential reads only: a forward seek in a deflated member decompresses and discards, so no
    byte is decompressed twice and memory is one batch. The arrays may be read-only.
    """
    if header.dtype.hasobject:
        raise LossInputError(f"{where}: an array of Python objects cannot be read without pickle; "
                             f"save numbers (dtype {header.dtype})")
    inner = header.shape[1:]
    itemsize = header.dtype.itemsize
    if header.fortran and len(inner) == 1:
        yield from _iter_fortran_rows(opener, header, start, stop, batch_rows, where)
        return
    if header.fortran and len(inner) > 1:
        raise LossInputError(f"{where}: a Fortran-ordered array of {len(header.shape)} dimensions; "
                             f"save it C-ordered (np.ascontiguousarray)")
    rowbytes = itemsize * int(np.prod(inner, dtype=np.int64))
    with opener() as fp:
        _seek(fp, header.offset + start * rowbytes, where)
        for first in range(start, stop, batch_rows):
            count = min(batch_rows, stop - first)
            data = _read_exact(fp, count * rowbytes, where)
            yield np.frombuffer(data, dtype=header.dtype).reshape((count,) + inner)


def _iter_fortran_rows(opener, header: Header, start: int, stop: int, batch_rows: int,
                       where: str) -> Iterator[np.ndarray]:
    # column-major [N, K]: each column is contiguous, so K streams advance side by side, each
    # sequentially; reading row blocks from one stream would seek back and forth through the array
    rows, width = header.shape
    itemsize = header.dtype.itemsize
    streams = [opener() for _ in range(width)]
    try:
        for column, fp in enumerate(streams):
            _seek(fp, header.offset + (column * rows + start) * itemsize, where)
        for first in range(start, stop, batch_rows):
            count = min(batch_rows, stop - first)
            out = np.empty((count, width), dtype=header.dtype)
            for column, fp in enumerate(streams):
                out[:, column] = np.frombuffer(_read_exact(fp, count * itemsize, where), dtype=header.dtype)
            yield out
    finally:
        for fp in streams:
            fp.close()
