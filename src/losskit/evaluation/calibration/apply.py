"""Write calibrated logits: every row of the input files, the prediction columns replaced by
:meth:`~losskit.Calibration.apply` of them, every other column kept, to one Parquet file, or one
CSV file when ``out`` ends in ``.csv``.

Streaming: Parquet and CSV inputs are read a batch at a time (pyarrow) and written a batch at a
time (``ParquetWriter`` / ``CSVWriter``), so memory is a batch whatever the files' size. The output is written to
a temporary name beside ``out`` and renamed over it only when complete: an error (a NaN logit in
row 40 million) leaves no partial file behind. The prediction columns keep their type (float32
stays float32; a ``fixed_size_list`` column stays one); a Parquet file's metadata gains
``losskit.calibration`` (the calibration's JSON) and ``losskit.pred_kind = logits``. A CSV file has
no metadata and one value per cell, so a list column (``fixed_size_list``) is refused for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..._errors import LossInputError, fail
from .. import _arrow, _csv

__all__ = ["apply_files"]


def _pred_columns(schema, pred, pred_kind: str | None = None) -> list[str]:
    """The columns to calibrate: ``pred``, else the ``logit*`` columns (``prob*`` ones with ``pred_kind``
    "logits": the caller says they hold logits, as for a fit)."""
    from .. import sources

    if pred_kind == "probs":
        raise fail("--pred-kind", "logits", "probs", "a calibration maps logits: give the model's raw outputs")
    if pred is not None:
        return sources._pick("--pred", pred, schema)
    names = [c for c in schema.columns if c.startswith("logit")]
    if not names:
        probs = [c for c in schema.columns if c.startswith("prob")]
        if probs and pred_kind == "logits":
            return probs
        if probs:
            raise fail("--pred", "logit columns", f"probability columns ({', '.join(probs)})",
                       "a calibration maps logits; give the model's raw outputs, or --pred-kind logits if "
                       "these columns hold logits")
        raise LossInputError(f"--pred: no column named 'logit*' in {schema.path}; pass --pred "
                             f"(columns: {', '.join(schema.columns)})")
    return names


def _record_batches(path: Path, kind: str, batch_rows: int, names: list[str], as_text: bool):
    """The batches of one input file. A CSV written to CSV (``as_text``) passes its other columns through
    as the text they are: pyarrow's type inference turned "007" into 7. Written to Parquet they keep the
    types pyarrow infers from the file's first block, so ``losskit eval`` reads numbers there."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    if kind == "parquet":
        with pq.ParquetFile(path, pre_buffer=False) as handle:
            yield from handle.iter_batches(batch_size=batch_rows)
        return
    header: list[str] = []
    try:
        with pv.open_csv(_csv.source(path)) as reader:
            header = reader.schema.names
        types = {name: (pa.float64() if name in names else pa.string()) for name in header}
        options = (pv.ConvertOptions(column_types=types, strings_can_be_null=False) if as_text
                   else pv.ConvertOptions(column_types={name: pa.float64() for name in names if name in header}))
        with pv.open_csv(_csv.source(path), convert_options=options) as reader:
            for batch in reader:
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
    except pa.ArrowInvalid as error:  # a prediction cell that is not a number, a ragged row, a column's type
        cell = _csv.invalid_cell(error)
        if cell and cell[0] < len(header) and header[cell[0]] in names:
            # a logit that is not a number: eval's words for it, column, row and value (the .csv advice below
            # cannot help, prediction columns being numbers either way: found in review)
            raise _csv._error(path, error, []) from None
        hint = "" if as_text else " (a column whose values change type far down the file: write --out as .csv)"
        raise LossInputError(f"{path}: {error}{hint}") from None


def _conform(batch, schema, path: Path, first: Path):
    """``batch`` with the columns, order and types of the output's ``schema`` (the first input's): files
    that hold the same columns in another order, or a column stored as another type that converts
    without loss (a target of int64 in one file, double in another), are written as one table."""
    import pyarrow as pa

    if batch.schema.equals(schema):
        return batch
    if sorted(batch.schema.names) != sorted(schema.names):
        raise LossInputError(f"{path}: expected the columns of {first} ({', '.join(schema.names)}), got "
                             f"{', '.join(batch.schema.names)}")
    arrays = []
    for field in schema:
        column = batch.column(field.name)
        try:
            arrays.append(column if column.type == field.type else column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise LossInputError(f"{path}: column {field.name!r}: expected values of type {field.type} (as in "
                                 f"{first}), got {column.type} that do not convert") from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _calibrated(batch, names: list[str], calibration, path: Path, first_row: int):
    """``batch`` with its prediction columns ``names`` replaced by their calibrated values."""
    import pyarrow as pa

    parts, widths, types = [], [], []
    for name in names:
        column = batch.column(name)
        width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else 1
        values = column.flatten() if width > 1 else column
        if values.null_count:
            raise LossInputError(f"{path}: column {name!r}: expected a logit, got a null near row {first_row}")
        array = _arrow.to_numpy(values).reshape(len(batch), width)
        parts.append(array)
        widths.append(width)
        types.append(column.type)
    dtype = np.float32 if all(p.dtype == np.float32 for p in parts) else np.float64
    logits = np.concatenate([p.astype(dtype, copy=False) for p in parts], axis=1)
    bad = ~np.isfinite(logits)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        owner = int(np.searchsorted(np.cumsum(widths), col, side="right"))  # the column holding logit number col
        where = f"column {names[owner]!r}" + (f" [{col - sum(widths[:owner])}]" if widths[owner] > 1 else "")
        raise LossInputError(f"{path}: {where}, row {first_row + row}: expected finite logits, "
                             f"got {float(logits[row, col])!r}")
    if calibration.task == "binary" and logits.shape[1] == 1:
        out = np.asarray(calibration.apply(logits[:, 0])).reshape(-1, 1)
    else:
        out = np.asarray(calibration.apply(logits))
    offset = 0
    columns = {}
    for name, width, kind in zip(names, widths, types, strict=True):
        values = out[:, offset:offset + width]
        offset += width
        inner = kind.value_type if pa.types.is_fixed_size_list(kind) else kind
        if not pa.types.is_floating(inner):
            inner = pa.float64()
        flat = _arrow.to_arrow(np.ascontiguousarray(values).reshape(-1), inner)
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, width) if width > 1 else flat
    arrays = [columns.get(field.name, batch.column(i)) for i, field in enumerate(batch.schema)]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _require_csv_columns(files, schemas, out) -> None:
    """Refuse a CSV ``out`` before any work when an input column has no CSV form (a list, a struct)."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    for path, schema in zip(files, schemas, strict=True):
        if schema.format != "parquet":
            continue  # a CSV input's columns are scalars
        for field in pq.read_schema(path):
            try:
                pv.CSVWriter(pa.BufferOutputStream(), pa.schema([field])).close()
            except pa.ArrowException:
                raise fail("--out", "a Parquet file (.parquet): a CSV cell holds one value",
                           f"{os.fspath(out)}, but {path} has column {field.name!r} of type {field.type}") from None


def _atomic(path: Path, write) -> None:
    """``write(temp)`` to a temporary file beside ``path``, renamed over it when complete, removed on error."""
    import contextlib
    import tempfile

    fd, temp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent or ".")
    os.close(fd)
    try:
        write(temp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temp, 0o666 & ~mask)  # mkstemp makes 0600: give the usual mode of a new file
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def apply_files(paths, calibration, out, *, pred=None, batch_rows: int = 1_000_000,
                pred_kind: str | None = None) -> dict:
    """Write ``calibration.apply`` of the prediction columns of ``paths`` (Parquet or CSV) to the file
    ``out``, atomically, in the format its name says as ``losskit eval`` reads it (Parquet: ``.parquet``,
    ``.pq``; CSV: ``.csv``, compressed ``.csv.gz``, ``.csv.bz2``, ``.csv.zst``); returns
    ``{"rows", "files", "pred", "out", "format"}``. ``pred_kind`` "logits": ``prob*`` columns hold logits."""
    import pyarrow as pa
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    from .. import sources
    from .paired import check_uncalibrated

    out_format = sources._format(Path(out))
    if out_format not in ("parquet", "csv"):  # (any other name was written as Parquet, a .csv.gz too)
        raise fail("--out", "a file name ending in .parquet or .pq (Parquet), or .csv, .csv.gz, .csv.bz2 or .csv.zst "
                   "(CSV): the format is read from it", os.fspath(out))
    codec = _csv.CODECS.get(Path(out).suffix.lower()) if out_format == "csv" else None
    sources.check_batch_rows(batch_rows)
    files = sources.discover(paths)
    schemas = [sources._schema(f) for f in files]
    for schema in schemas:
        if schema.format not in ("parquet", "csv"):
            raise fail("PATH", "Parquet or CSV files to write calibrated logits from",
                       f"{schema.path} ({schema.format})")
    check_uncalibrated((s.path, s.metadata.get("losskit.calibration")) for s in schemas)
    names = _pred_columns(schemas[0], pred, pred_kind)
    width = sum(schemas[0].columns[name][0] for name in names)
    if width != calibration.n_outputs:
        raise fail("--calibration", f"a calibration of {width} logits per row (columns {', '.join(names)})",
                   f"one fitted on {calibration.n_outputs} ({calibration.method}, {calibration.task})")
    as_csv = out_format == "csv"
    if as_csv:
        _require_csv_columns(files, schemas, out)
    rows = 0

    def write(temp: str) -> None:
        nonlocal rows
        writer = written = stream = None
        try:
            for path, schema in zip(files, schemas, strict=True):
                start = 0
                for batch in _record_batches(path, schema.format, batch_rows, names, as_csv):
                    missing = [n for n in names if n not in batch.schema.names]
                    if missing:
                        raise LossInputError(f"{path}: column {missing[0]!r} (--pred) is missing")
                    result = _calibrated(batch, names, calibration, path, start)
                    if writer is not None:
                        result = _conform(result, written, path, files[0])
                    written = result.schema
                    if writer is None and as_csv:
                        stream = pa.CompressedOutputStream(temp, codec) if codec else None
                        writer = pv.CSVWriter(stream or temp, result.schema)
                    elif writer is None:
                        # the first Parquet input's metadata (losskit.task, .loss...), which the batches lose
                        meta = next((dict(pq.read_schema(f).metadata or {}) for f, s in zip(files, schemas, strict=True)
                                     if s.format == "parquet"), {})
                        meta[b"losskit.pred_kind"] = b"logits"
                        meta[b"losskit.calibration"] = calibration.to_json().encode()
                        writer = pq.ParquetWriter(temp, result.schema.with_metadata(meta))
                    writer.write_batch(result)
                    start += batch.num_rows
                    rows += batch.num_rows
            if writer is None:
                raise LossInputError(f"PATH: the files hold no rows ({', '.join(map(str, files))})")
        finally:
            if writer is not None:
                writer.close()
            if stream is not None:
                stream.close()

    _atomic(Path(out), write)
    return {"rows": rows, "files": [os.fspath(f) for f in files], "pred": names, "out": os.fspath(out),
            "format": "csv" if as_csv else "parquet"}
