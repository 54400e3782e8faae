"""CSV through pyarrow's streaming reader, and errors that name the row and the line.

pyarrow's CSV errors name neither the row nor the line of the problem; the reader here records the
first malformed row (``invalid_row_handler``) and, on the error path only, finds its place with a
scan by Python's csv module, exact about quoted newlines and blank lines.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

from .._errors import LossInputError

# pyarrow is imported where a file is read (scoring arrays in memory, `losskit.calibrate` of arrays and the
# demo's ECE import this package without reading one: pyarrow's import took 0.13-0.24 s of the demo)

__all__ = ["CODECS", "blocks", "first_text", "guard", "open_csv", "records", "source"]


#: the compression of a CSV file by its last suffix, in any case (pyarrow's codec names)
CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def source(path: Path):
    """``path``, which pyarrow decompresses by its suffix, or where that suffix is not lower case (``.CSV.GZ``,
    which pyarrow reads as plain text) a stream decompressing it."""
    codec = CODECS.get(Path(path).suffix.lower())
    if codec is None or Path(path).suffix in CODECS:
        return path
    import pyarrow as pa

    return pa.input_stream(str(path), compression=codec)


def open_csv(path: Path, block_size: int, columns, types, on_invalid):
    import pyarrow.csv as pcsv

    return pcsv.open_csv(
        source(path),  # a path, not a stream, so pyarrow decompresses by extension (see source)
        read_options=pcsv.ReadOptions(block_size=block_size, use_threads=True),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
        # only "" is missing: "nan" stays a float NaN (reported as such), "NA" is text (reported as such)
        convert_options=pcsv.ConvertOptions(include_columns=columns or [], column_types=types, null_values=[""],
                                            strings_can_be_null=False))


class guard:
    """Turns pyarrow's CSV errors, which name neither row nor line, into ours, which name both (and the file:
    a corrupt or truncated ``.csv.gz`` is a plain OSError of pyarrow's, "zlib inflate failed", naming none)."""

    def __init__(self, path: Path):
        self.path, self.invalid = path, []

    def __enter__(self):
        return self

    def handler(self, row) -> str:
        self.invalid.append(row)
        return "error"

    def __exit__(self, kind, error, trace):
        import pyarrow as pa

        if kind is None or not issubclass(kind, (pa.ArrowException, OSError)):
            return False
        raise _error(self.path, error, self.invalid) from None


def invalid_cell(error: Exception) -> tuple[int, str] | None:
    """``(column index, text)`` of the cell pyarrow could not convert, read from its error; None for another."""
    found = re.search(r"column #(\d+): CSV conversion error to \w+: invalid value '(.*)'$", str(error), re.S)
    return (int(found.group(1)), found.group(2)) if found else None


def _error(path: Path, error: Exception, invalid: list) -> LossInputError:
    message, rows = str(error), records(path)
    header = next(rows, (-1, 1, []))[2]
    if invalid:  # a row with too few or too many fields; the handler saw it, the scan finds its place
        bad = invalid[0]
        found = next(((r, line) for r, line, fields in rows if len(fields) != len(header)), None)
        where = f"row {found[0]} (line {found[1]})" if found else "a row"
        return LossInputError(f"{path}: {where}: expected {bad.expected_columns} fields, got "
                              f"{bad.actual_columns}: {bad.text!r}")
    value = invalid_cell(error)
    if value:
        index, text = value
        name = header[index] if index < len(header) else f"#{index}"
        found = next(((r, line) for r, line, fields in rows if index < len(fields) and fields[index] == text),
                     None)
        where = f", row {found[0]} (line {found[1]})" if found else ""
        return LossInputError(f"{path}: column {name!r}{where}: expected a number, got {text!r}")
    return LossInputError(f"{path}: not a readable CSV file ({message})")


def records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """``(data row, first line, fields)`` of each record, the header being row -1; blank lines are skipped
    as pyarrow skips them. Python's csv module, slow but exact about quoted newlines: errors only."""
    import pyarrow as pa

    try:
        found = source(path)
        raw = pa.input_stream(str(found)) if isinstance(found, (str, Path)) else found
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader, line, row = csv.reader(text), 0, -1
            for fields in reader:
                start, line = line + 1, reader.line_num
                if fields:
                    yield row, start, fields
                    row += 1
    except (csv.Error, UnicodeDecodeError, pa.ArrowException, OSError):
        return


def first_text(path: Path, name: str) -> str:
    """`` (its first non-numeric value is ..., row R (line L))`` for a column pyarrow read as text, or ""."""
    rows = records(path)
    header = next(rows, (-1, 1, []))[2]
    if name not in header:
        return ""
    index = header.index(name)
    for row, line, fields in rows:
        value = fields[index] if index < len(fields) else ""
        try:
            float(value or 0)
        except ValueError:
            if value.lower() not in ("true", "false"):
                return f" (its first non-numeric value is {value!r}, row {row} (line {line}))"
    return ""


def blocks(path: Path, bools, columns: list[str], batch_rows: int):
    """``(first row, record batch)`` of the CSV file's blocks, the chosen columns as numbers (``bools``: those
    read as booleans); pyarrow's errors turned into ours, naming the row and the line."""
    import pyarrow as pa

    # a block of 64 bytes a row, within 1-16 MiB: the batch's text and its parsed columns stay bounded
    block = min(max(batch_rows * 64, 1 << 20), 1 << 24)
    types = {name: pa.bool_() if name in bools else pa.float64() for name in columns}
    first = 0
    with guard(path) as checked, open_csv(path, block, columns, types, checked.handler) as reader:
        for batch in reader:
            yield first, batch
            first += batch.num_rows
