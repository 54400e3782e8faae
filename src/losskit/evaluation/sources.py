"""Prediction files: find them, settle their columns, split them into pieces, read row batches.

:func:`discover` turns paths, directories and globs into files; :func:`resolve` picks the pred,
target and weight columns once, checking every file's schema before any data are read;
:func:`pieces` splits the files into row ranges for Dask workers; :func:`batches` streams
``[n, P]`` arrays (types as :class:`Batch` says) with the checks that need no knowledge of the task
(finite numbers, no nulls, weights >= 0), every error naming the file, the column and the row;
:func:`prefetched` reads them ahead in a thread.

Design note: Parquet and CSV go through pyarrow, whose readers stream (a row group or a block at a
time), read only the columns asked for and hand over buffers NumPy can view without a copy;
pandas would have meant a second copy and whole-file reads (:mod:`._csv` turns pyarrow's CSV
errors into ones that name the row and line). NPY/NPZ are read by :mod:`._npz` straight from
the bytes. One column model covers the four formats: a column is a name holding
one or K values per row (a Parquet ``fixed_size_list``, a 2-D NPZ member, a sub-array field of a
structured NPY), so ``--pred logits`` and ``--pred 'logit_*'`` describe the same ``[n, K]`` block.
"""

from __future__ import annotations

import glob
import math
import os
import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from itertools import accumulate, pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._errors import LossInputError, fail
from .._memory import Recycler
from . import _arrow, _csv, _npz

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FORMATS", "Layout", "Piece", "Batch", "discover", "resolve", "pieces", "batches"]

FORMATS = ("parquet", "csv", "npy", "npz")
# pyarrow decompresses a CSV by its file name's extension
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv",
             ".csv.zst": "csv", ".npy": "npy", ".npz": "npz"}
_KINDS = "Parquet, CSV, NPY or NPZ (" + ", ".join(_SUFFIXES) + ")"
_NUMERIC = "a numeric column (int, uint, float or bool)"
_CHECKS = {"pred": "a finite number", "target": "a finite number", "weight": "a finite number >= 0"}
_PRED_PREFIXES = (("logit", "logits"), ("prob", "probs"), ("pred", None))


def _format(path: Path) -> str | None:
    name = path.name.lower()
    return next((kind for suffix, kind in _SUFFIXES.items() if name.endswith(suffix)), None)


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))  # _SUCCESS, _metadata, .crc files of Spark and Hadoop


def _walk(root: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if _visible(d)]
        found += [Path(folder, n) for n in names if _visible(n) and _format(Path(n))]
    return sorted(found)


def discover(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The data files named by ``paths``: files, directories (searched recursively, hidden and ``_``
    names skipped) or globs (``**`` allowed), in the order given, each directory or glob sorted."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for item in paths:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            hits = _walk(path)
            if not hits:
                raise LossInputError(f"PATH: the directory {text!r} holds no {_KINDS} file")
        elif path.is_file():
            if _format(path) is None:
                raise LossInputError(f"PATH: {text!r} is not a {_KINDS} file")
            hits = [path]
        elif any(c in text for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
            if not matches:
                raise LossInputError(f"PATH: the glob {text!r} matched no file")
            # the parts a wildcard matched skip hidden names too (Spark's _temporary/ under out/**/*.parquet)
            fixed = next(i for i, part in enumerate(path.parts + ("*",)) if any(c in part for c in "*?["))
            hits = []
            for match in matches:
                if not all(_visible(part) for part in match.parts[fixed:]):
                    continue
                if match.is_dir():
                    hits += _walk(match)
                elif _format(match):
                    hits.append(match)
            if not hits:
                raise LossInputError(f"PATH: the glob {text!r} matched no {_KINDS} file (it matched: "
                                     f"{_listing([str(m) for m in matches])})")
        else:
            raise LossInputError(f"PATH: no such file or directory: {text!r}")
        found += hits
    if not found:
        raise LossInputError("PATH: expected at least one file, directory or glob, got none")
    return list(dict.fromkeys(found))


def _listing(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ---------------------------------------------------------------------------------------------- schemas


@dataclass
class _Schema:
    path: Path
    format: str
    columns: dict  # name -> (values per row, its type as errors show it, "bool" / "int" / "float" or None)
    rows: int | None = None
    metadata: dict = field(default_factory=dict)
    lengths: dict = field(default_factory=dict)  # NPZ: rows of each member, which may differ
    bools: frozenset = frozenset()  # CSV: columns pyarrow infers as bool ("true"/"false")


def _arrow_column(kind: pa.DataType) -> tuple[int, str, str | None]:
    import pyarrow as pa  # imported where a file is read (see _csv.py)

    inner, width = kind, 1
    if pa.types.is_fixed_size_list(inner):
        inner, width = inner.value_type, inner.list_size
    if pa.types.is_dictionary(inner):
        inner = inner.value_type
    tests = {"bool": pa.types.is_boolean, "int": pa.types.is_integer, "float": pa.types.is_floating}
    return width, str(kind), next((name for name, test in tests.items() if test(inner)), None)


def _schema(path: Path) -> _Schema:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = _format(path)
    if kind == "parquet":
        try:
            with pq.ParquetFile(path) as handle:
                arrow, rows = handle.schema_arrow, handle.metadata.num_rows
        except (pa.ArrowException, OSError) as error:
            raise LossInputError(f"{path}: not a readable Parquet file ({error})") from None
        _unique_names(path, arrow.names)
        meta = {k.decode(): v.decode() for k, v in (arrow.metadata or {}).items() if k.startswith(b"losskit.")}
        return _Schema(path, kind, {f.name: _arrow_column(f.type) for f in arrow}, rows, meta)
    if kind == "csv":
        with _csv.guard(path) as guard, _csv.open_csv(path, 1 << 20, None, {}, guard.handler) as reader:
            arrow = reader.schema
        _unique_names(path, arrow.names)
        # a column with no value in the first block is null-typed: whether it is numeric shows later
        columns = {f.name: (1, str(f.type), "float" if pa.types.is_null(f.type) else _arrow_column(f.type)[2])
                   for f in arrow}
        return _Schema(path, kind, columns, bools=frozenset(f.name for f in arrow if pa.types.is_boolean(f.type)))
    columns, rows, lengths = _npz.columns(path, kind == "npz")
    return _Schema(path, kind, columns, rows, lengths=lengths)


def _unique_names(path: Path, names: Sequence[str]) -> None:
    """Refuse a file with two columns of one name: a CSV reader took the first of them without a word
    (and pyarrow's Parquet reader raised its own KeyError)."""
    seen = set()
    for name in names:
        if name in seen:
            raise LossInputError(f"{path}: expected columns of distinct names, got {name!r} "
                                 f"{list(names).count(name)} times; rename one of them")
        seen.add(name)


# ---------------------------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class _FileInfo:
    format: str
    rows: int | None
    bools: frozenset
    #: the ``losskit.calibration`` metadata of a file ``calibrate apply`` wrote (its JSON), else None
    calibration: str | None = None


@dataclass(frozen=True)
class Layout:
    """The files and the columns every one of them holds; made by :func:`resolve`, sent to Dask workers.

    ``pred`` / ``target``: column names; ``pred_kind``: "logits", "probs" or None (unknown); ``rows``: the
    total when the files' headers tell it (not CSV); ``metadata``: the first Parquet file's ``losskit.*``
    schema metadata; ``widths``: values per row of each chosen column; ``kinds``: "bool", "int" or "float",
    each chosen column's type in the first file (the batches are float64 whatever it is).
    """

    files: tuple[Path, ...]
    pred: tuple[str, ...]
    target: tuple[str, ...]
    weight: str | None
    pred_kind: str | None
    rows: int | None
    metadata: dict = field(hash=False)
    widths: dict = field(hash=False)
    kinds: dict = field(default_factory=dict, hash=False)
    _info: tuple[_FileInfo, ...] = field(default=(), repr=False, compare=False)


def with_absolute_paths(layout: Layout) -> Layout:
    """``layout`` with each file's absolute path (for workers that may run in another directory)."""
    return replace(layout, files=tuple(path.absolute() for path in layout.files))


def _names(arg: str, items: str | Sequence[str]) -> list[str]:
    given = items
    try:  # a name, or any iterable of names (a list, a NumPy array or a pandas Index of strings)
        items = [items] if isinstance(items, str) else list(items)
    except TypeError:
        items = None
    if items is None or not all(isinstance(i, str) for i in items):
        raise fail(arg, "a column name or glob, or a list of them", repr(given))
    names = [name.strip() for item in items for name in str(item).split(",") if name.strip()]
    if not names:
        raise fail(arg, "at least one column name or glob", repr(items))
    return names


def _pick(arg: str, items: str | Sequence[str], schema: _Schema) -> list[str]:
    """The columns ``items`` name, in the order named (a glob's matches in the file's order), once each."""
    columns, chosen = list(schema.columns), []
    for name in _names(arg, items):
        hits = [name] if name in schema.columns else [c for c in columns if fnmatchcase(c, name)]
        if not hits:
            raise LossInputError(f"{arg}: no column matches {name!r} in {schema.path} "
                                 f"(columns: {_listing(columns)})")
        chosen += [hit for hit in hits if hit not in chosen]
    return chosen


def _defaults(schema: _Schema, pred: list[str] | None, target: list[str] | None, taken: set[str]):
    columns = [c for c in schema.columns if c not in taken]
    hint = f"in {schema.path}; pass --pred and --target (columns: {_listing(list(schema.columns))})"
    if target is None:
        free = [c for c in columns if c not in (pred or ())]
        target = ["target"] if "target" in free else [c for c in free if c.startswith("target_")]
        if not target:
            used = [(arg, c) for arg, names in (("--pred", pred or ()), ("--weight", taken)) for c in names
                    if c == "target" or c.startswith("target_")]
            if used:  # the target column exists, but another option took it
                arg, name = used[0]
                raise fail(arg, "columns other than the target", f"{name!r}, the default target column",
                           f"pass --target for the column the predictions are scored against ({schema.path})")
            raise LossInputError(f"--target: no column named 'target' or 'target_*' {hint}")
    if pred is None:
        free = [c for c in columns if c not in target]
        found = [([c for c in free if c.startswith(prefix)], k) for prefix, k in _PRED_PREFIXES]
        pred, kind = next(((names, k) for names, k in found if names), ([], None))
        if not pred:
            used = [c for c in taken if c.startswith(tuple(prefix for prefix, _ in _PRED_PREFIXES))]
            if used:  # the prediction column exists, but --weight took it
                raise fail("--weight", "a column other than the predictions", f"{used[0]!r}, the default "
                           f"prediction column", f"pass --pred for the predictions' column ({schema.path})")
            raise LossInputError(f"--pred: no column named 'logit*', 'prob*' or 'pred*' {hint}")
    else:
        kind = next((k for prefix, k in _PRED_PREFIXES if all(c.startswith(prefix) for c in pred)), None)
    return pred, target, kind


def _suffix(name: str) -> str | None:
    return name.rsplit("_", 1)[1] if "_" in name else None


def _number(name: str) -> int | None:
    """The number a column's name ends in (``logit_10``, ``logit10``, ``logit-10``), or None."""
    digits = re.search(r"\d+$", name)
    return None if digits is None else int(digits.group())


def _check_order(preds: list[str], targets: list[str], schema: _Schema) -> None:
    """Columns are paired by position (the k-th prediction column is class or label k): refused where their
    names say otherwise. Prediction or label columns numbered ``logit_0``, ``logit_1``... (or ``logit0``,
    pandas' ``add_prefix``) out of numeric order (a writer that sorts names as text puts ``logit_10`` before
    ``logit_2``: accuracy 0.15 where it was 0.89; the label columns beside one K-wide prediction column alike),
    and label columns whose suffixes are the predictions' in another order (``logit_a, logit_b`` against
    ``target_b, target_a``), were scored silently."""
    for arg, names in (("--pred", preds), ("--target", targets)):
        numbers = [_number(c) for c in names]
        if len(names) > 1 and None not in numbers and numbers != sorted(numbers):
            ordered = sorted(names, key=_number)
            raise fail(arg, "numbered columns in class order (the k-th column is class k)",
                       f"{_listing(names)} in {schema.path}", f"name them in order: {arg} {','.join(ordered)}")
    suffixes = [_suffix(c) for c in preds]
    labels = [_suffix(c) for c in targets]
    if len(targets) > 1 and len(preds) == len(targets) and None not in suffixes and None not in labels \
            and sorted(suffixes) == sorted(labels) and suffixes != labels:
        ordered = [next(t for t in targets if _suffix(t) == x) for x in suffixes]
        raise fail("--target", "label columns in the prediction columns' order (paired by position)",
                   f"{_listing(targets)} against {_listing(preds)} in {schema.path}",
                   f"name them in that order: --target {','.join(ordered)}")


def resolve(files: Sequence[str | os.PathLike], *, pred: str | Sequence[str] | None = None,
            target: str | Sequence[str] | None = None, weight: str | None = None) -> Layout:
    """The :class:`Layout` of ``files``: the columns chosen in the first file, checked in every file.

    ``pred`` / ``target``: names or fnmatch globs, commas also separating names; defaults: ``target``,
    else ``target_*``; ``logit*`` (pred_kind "logits"), else ``prob*`` ("probs"), else ``pred*``.
    Metadata ``losskit.pred_kind`` of the first Parquet file overrides the kind the names suggest.
    """
    paths = tuple(Path(f) for f in files)
    if not paths:
        raise LossInputError("PATH: expected at least one file, got none")
    schemas = [_schema(path) for path in paths]
    first = schemas[0]
    weights = _pick("--weight", weight, first) if weight is not None else []
    if len(weights) > 1:
        raise fail("--weight", "one column", f"{len(weights)} ({', '.join(weights)})")
    preds = _pick("--pred", pred, first) if pred is not None else None
    targets = _pick("--target", target, first) if target is not None else None
    preds, targets, kind = _defaults(first, preds, targets, set(weights))
    _check_order(preds, targets, first)
    roles = {"--pred": preds, "--target": targets, "--weight": weights}
    owner: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if name in owner:
                raise LossInputError(f"{owner[name]} and {role} both select column {name!r} in {first.path}; "
                                     f"each column can play one part")
            owner[name] = role
    if weights and first.columns[weights[0]][0] != 1:
        raise fail("--weight", "a column of one value per row", f"column {weights[0]!r} holding "
                   f"{first.columns[weights[0]][0]} ({first.path})")
    for schema in schemas:
        _check_columns(schema, first, owner)
    for schema in schemas[1:]:  # a glob or a default picks the same columns in every file
        _same_choice(schema, first, pred, target, weights, preds, targets)
    metadata = next((s.metadata for s in schemas if s.format == "parquet"), {})
    if "losskit.pred_kind" in metadata:
        kind = metadata["losskit.pred_kind"]
        if kind not in ("logits", "probs"):
            raise LossInputError(f"{first.path}: schema metadata 'losskit.pred_kind': expected 'logits' or "
                                 f"'probs', got {kind!r}")
    rows = [s.rows for s in schemas]
    return Layout(paths, tuple(preds), tuple(targets), weights[0] if weights else None, kind,
                  None if None in rows else sum(rows), dict(metadata), {c: first.columns[c][0] for c in owner},
                  {c: first.columns[c][2] for c in owner},
                  tuple(_FileInfo(s.format, s.rows, s.bools & set(owner), s.metadata.get("losskit.calibration"))
                        for s in schemas))


def _same_choice(schema: _Schema, first: _Schema, pred, target, weights, preds, targets) -> None:
    """Refuse a file where ``--pred`` / ``--target`` (a glob, or the defaults) choose other columns than in the
    first: a later file's ``logit_2`` beside the first's ``logit_0, logit_1`` was dropped without a word."""
    here_pred = _pick("--pred", pred, schema) if pred is not None else None
    here_target = _pick("--target", target, schema) if target is not None else None
    here_pred, here_target, _ = _defaults(schema, here_pred, here_target, set(weights))
    for arg, here, there in (("--pred", here_pred, preds), ("--target", here_target, targets)):
        if set(here) != set(there):  # (in another order they are read by name, as in the first file)
            raise fail(arg, f"the same columns in every file ({_listing(list(there))} in {first.path})",
                       f"{_listing(list(here))} in {schema.path}", f"name the columns: {arg} {','.join(there)}")


def _check_columns(schema: _Schema, first: _Schema, owner: dict[str, str]) -> None:
    for name, role in owner.items():
        if name not in schema.columns:
            raise LossInputError(f"{schema.path}: column {name!r} ({role}) is missing; {first.path} has it "
                                 f"(columns here: {_listing(list(schema.columns))})")
        width, shown, kind = schema.columns[name]
        if kind is None:
            raise LossInputError(f"{schema.path}: column {name!r} ({role}): expected {_NUMERIC}, got {shown}"
                                 + (_csv.first_text(schema.path, name) if schema.format == "csv" else ""))
        if width != first.columns[name][0]:
            raise LossInputError(f"{schema.path}: column {name!r} holds {width} values per row, but "
                                 f"{first.columns[name][0]} in {first.path}")
    if schema.format == "npz":
        lengths = {name: schema.lengths[name] for name in owner}
        if len(set(lengths.values())) > 1:
            (a, n), (b, m) = next(((a, n), (b, m)) for a, n in lengths.items() for b, m in lengths.items() if n != m)
            raise LossInputError(f"{schema.path}: mismatched lengths: member {a!r} has {n} rows, member {b!r} "
                                 f"has {m}; every member used must have one row per example")
        schema.rows = next(iter(lengths.values()))


# ---------------------------------------------------------------------------------------------- pieces


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of one file (``stop`` None: to its end); Parquet pieces name their row groups."""

    path: Path
    start: int = 0
    stop: int | None = None
    row_groups: tuple[int, ...] | None = None


def pieces(layout: Layout, n: int) -> list[Piece]:
    """About ``n`` pieces of contiguous rows, balanced by row count: Parquet at row-group boundaries,
    NPY/NPZ at any row, a CSV file whole (its row count is unknown until read). In file order."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise fail("n", "an integer >= 1", repr(n))
    goal = max(1.0, sum(i.rows or 0 for i in layout._info) / n)
    out: list[Piece] = []
    for path, info in zip(layout.files, layout._info, strict=True):
        count = 1 if info.rows is None else max(1, round(info.rows / goal))
        if info.format == "parquet" and count > 1:
            import pyarrow.parquet as pq

            with pq.ParquetFile(path) as handle:
                sizes = [handle.metadata.row_group(g).num_rows for g in range(handle.metadata.num_row_groups)]
            ends = [0, *accumulate(sizes)]
            count, cuts = min(count, len(sizes)), [0]
            for j in range(1, count):
                aim = j * ends[-1] / count
                g = bisect_left(ends, aim)
                g = g - 1 if aim - ends[g - 1] < ends[g] - aim else g  # the nearer boundary
                cuts.append(min(max(g, cuts[-1] + 1), len(sizes) - (count - j)))  # one group at least per piece
            cuts.append(len(sizes))
            out += [Piece(path, ends[a], ends[b], tuple(range(a, b))) for a, b in pairwise(cuts)]
        elif count > 1:
            bounds = [info.rows * j // count for j in range(count + 1)]
            out += [Piece(path, a, b) for a, b in pairwise(bounds)]
        else:
            out.append(Piece(path))
    return out


# ---------------------------------------------------------------------------------------------- batches


@dataclass(eq=False)
class Batch:
    """Rows ``start ...`` of ``path``: ``pred`` ``[n, P]``, ``target`` ``[n, T]``, ``weight`` ``[n]`` or None.

    Copies only where a type must change: ``pred`` is float32 when every prediction column is
    (a model's usual output; the metrics widen each value and sum in float64), else float64;
    ``target`` keeps the columns' integer or boolean type when they all have one (class labels),
    else float64; ``weight`` is float32 or float64 as stored, float64 from any other type. The
    2-D arrays are in column order (``order="F"``). They may be read-only views of the reader's
    buffers."""

    pred: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None
    path: Path
    start: int
    layout: Layout

    def error(self, part: str, index: int, what: str, got) -> LossInputError:
        """The error about the value at flat ``index`` of ``part`` ("pred", "target", "weight"), naming
        its file, column and file row: ``... : expected {what}, got {got}``."""
        names = (self.layout.weight,) if part == "weight" else getattr(self.layout, part)
        row, offset = divmod(index, sum(self.layout.widths[name] for name in names))
        for name in names:
            width = self.layout.widths[name]
            if offset < width:
                break
            offset -= width
        return _cell_error(self.path, name, offset if width > 1 else None, self.start + row, what, got)


def _cell_error(path: Path, column: str, sub: int | None, row: int, what: str, got) -> LossInputError:
    where = f"{path}: column {column!r}" + (f" [{sub}]" if sub is not None else "") + f", row {row}"
    if _format(path) == "csv":
        line = next((line for r, line, _ in _csv.records(path) if r == row), None)
        where += f" (line {line})" if line is not None else ""
    if not isinstance(got, str):
        got = str(int(got)) if float(got).is_integer() else repr(float(got))
    return LossInputError(f"{where}: expected {what}, got {got}")


#: the most rows a batch may hold (pyarrow's and NumPy's sizes are 64-bit; a batch this large is tens of GB)
MAX_BATCH_ROWS = 2**31 - 1


def check_batch_rows(batch_rows) -> int:
    """``batch_rows`` if it is an integer from 1 to :data:`MAX_BATCH_ROWS`, else a
    :class:`~losskit.LossInputError` naming ``--batch-rows``."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise fail("--batch-rows", f"an integer from 1 to {MAX_BATCH_ROWS}", repr(batch_rows))
    return batch_rows


def first_batch(layout, files, rows: int):
    """The first ``rows`` rows of the files in order, across as many files as it takes (what task detection
    reads: the first file alone made it depend on how the rows were split into files, found in review), as one
    :class:`Batch` of the first file's path; or a LossInputError naming PATH when the files hold no rows."""
    parts: list[Batch] = []
    read = 0
    sample = batches(layout, batch_rows=rows)
    try:
        for batch in sample:
            parts.append(batch)
            read += len(batch.pred)
            if read >= rows:
                break
    finally:
        sample.close()
    if not parts:
        raise LossInputError(f"PATH: the files hold no rows ({', '.join(map(str, files))})")
    if len(parts) == 1:
        return parts[0]

    def joined(arrays):
        return np.asfortranarray(np.concatenate(arrays)[:rows])

    weight = joined([part.weight for part in parts]) if layout.weight else None
    return Batch(joined([part.pred for part in parts]), joined([part.target for part in parts]), weight,
                 parts[0].path, parts[0].start, layout)


def batches(layout: Layout, piece: Piece | None = None, *, batch_rows: int = 1_000_000) -> Iterator[Batch]:
    """The rows of ``piece`` (all files, in order, when None) in :class:`Batch` es of at most ``batch_rows``
    rows, each checked: pred and target finite, weight finite and >= 0, no null anywhere."""
    check_batch_rows(batch_rows)
    infos = dict(zip(layout.files, layout._info, strict=True))
    columns = [*layout.pred, *layout.target, *([layout.weight] if layout.weight else [])]
    for part in [Piece(path) for path in layout.files] if piece is None else [piece]:
        path = Path(part.path)
        if path not in infos:
            raise fail("piece", f"a piece of one of the layout's {len(infos)} files", str(path))
        read = {"parquet": _parquet_rows, "csv": _csv_rows}.get(infos[path].format, _numpy_rows)
        for start, values in read(path, infos[path], columns, part, batch_rows):
            count = len(next(iter(values.values())))
            if count == 0:
                continue
            arrays = {name: _to_numpy(path, name, start, values[name], layout.widths[name]) for name in columns}
            batch = Batch(_stack([arrays[c] for c in layout.pred], count, keep_float32=True),
                          _stack([arrays[c] for c in layout.target], count, keep_integers=True),
                          _weight(arrays[layout.weight]) if layout.weight else None,
                          path, start, layout)
            for kind in ("pred", "target", "weight"):
                _check(batch, kind)
            yield batch


def prefetched(batches: Iterator[Batch], depth: int = 1) -> Iterator[Batch]:
    """``batches``, read ``depth`` batches ahead in a background thread: pyarrow's decoding and
    NumPy's conversions release the GIL, so reading the next batch overlaps scoring this one
    (memory: ``depth + 1`` batches). An error of the reader is raised here, at its place in the
    sequence; closing this generator stops the reader."""
    import queue
    import threading

    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item) -> bool:
        """Put ``item`` in a slot, waiting while the consumer is still there; False once it left."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
            item = done
        except BaseException as error:  # handed to the consumer, raised there
            item = error
        hand_over(item)

    reader = threading.Thread(target=read, name="losskit-eval-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()
        close = getattr(batches, "close", None)
        if close is not None:
            close()


#: the batches in flight (the one scored, those read ahead) and one being filled, per stacked array
_BATCHES = Recycler(keep=8)


def _weight(values: np.ndarray) -> np.ndarray:
    """A weight column: float32 or float64 as stored (no copy), any other type as float64."""
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float64)


def _stack(arrays: list[np.ndarray], count: int, keep_float32: bool = False, keep_integers: bool = False):
    """The columns side by side, ``[count, total width]``, float64 unless every column is float32
    (``keep_float32``) or every column holds integers or booleans (``keep_integers``: class labels
    are compared and used as indices as they are, with no float copy and nothing to check for NaN)."""
    if keep_integers and all(a.dtype.kind in "biu" for a in arrays):
        dtype = np.result_type(*arrays)
    elif keep_float32 and all(a.dtype == np.float32 for a in arrays):
        dtype = np.float32
    else:
        dtype = np.float64
    if len(arrays) == 1:  # one column: a view when it has the dtype already
        return np.asarray(arrays[0], dtype=dtype).reshape(count, -1)
    parts = [a.reshape(count, -1) for a in arrays]
    width = sum(p.shape[1] for p in parts)
    # column order: each column is one contiguous copy, and the compiled metrics sweep classes column-wise;
    # recycled memory: a fresh mapping per batch cost more in page faults than the copy itself
    out = _BATCHES.empty(count * width, dtype).reshape(width, count).T
    offset = 0
    for part in parts:
        out[:, offset:offset + part.shape[1]] = part
        offset += part.shape[1]
    return out


def _check(batch: Batch, part: str) -> None:
    values = getattr(batch, part)
    if values is None or values.dtype.kind in "biu":  # integers and booleans are finite and were not null
        return
    # the sum is finite only if every value is: one pass and no temporary in the common case (a sum of
    # finite values can overflow: judged below, without NumPy's warning)
    with np.errstate(over="ignore"):  # (summed in float64: float32 weights of 1e37 are valid, their sum too)
        fine = np.isfinite(values.sum(dtype=np.float64)) and (part != "weight" or values.min() >= 0)
    if not fine:
        good = np.isfinite(values) if part != "weight" else np.isfinite(values) & (values >= 0)
        if not good.all():  # a finite sum can overflow to inf
            index = int(np.argmin(good.reshape(-1)))
            raise batch.error(part, index, _CHECKS[part], values.reshape(-1)[index])
        if part == "weight":
            raise weights_overflow()


def weights_overflow() -> LossInputError:
    """The error of finite weights whose sum overflows float64 (every weighted mean would be 0 or NaN): in
    one batch (:func:`_check`) or across the batches (the scorer's result)."""
    return fail("--weight", "weights whose sum fits float64 (scale them down: a mean does not change)",
                "weights summing past 1.8e308")


def _to_numpy(path: Path, name: str, start: int, values, width: int) -> np.ndarray:
    """A column's values as NumPy, ``(n,)`` or ``(n, K)``; a null is an error naming its row."""
    if isinstance(values, np.ndarray):
        return values
    import pyarrow as pa

    if values.null_count:
        row = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
        raise _cell_error(path, name, None, start + row, "a number", "a null/missing value")
    if pa.types.is_fixed_size_list(values.type):
        values = values.flatten()  # the child values of this slice, n * K of them
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.null_count:
        index = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
        raise _cell_error(path, name, index % width, start + index // width, "a number", "a null/missing value")
    array = _arrow.to_numpy(values)
    return array.reshape(-1, width) if width > 1 else array


def _clip(start: int, stop: int | None, total: int | None) -> tuple[int, int]:
    end = total if stop is None else stop if total is None else min(stop, total)
    return start, end if end is not None else math.inf


def _slices(first: int, batch, low: int, high: int, batch_rows: int):
    """The rows of ``batch`` (whose first row is ``first``) inside ``[low, high)``, at most ``batch_rows`` a time."""
    begin, end = max(low, first), min(high, first + batch.num_rows)
    for row in range(begin, end, batch_rows):
        yield row, batch.slice(row - first, min(batch_rows, end - row))


def _parquet_rows(path: Path, info: _FileInfo, columns: list[str], piece: Piece, batch_rows: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # pre_buffer=False: pre-buffering (pyarrow's default, made for object stores) reads a row group's
    # column chunks ahead in one go; on a local file it doubled the peak memory and was no faster
    with pq.ParquetFile(path, pre_buffer=False) as handle:
        meta = handle.metadata
        ends = [0, *accumulate(meta.row_group(g).num_rows for g in range(meta.num_row_groups))]
        low, high = _clip(piece.start, piece.stop, meta.num_rows)
        groups = piece.row_groups
        if groups is None:
            groups = [g for g in range(meta.num_row_groups) if ends[g] < high and ends[g + 1] > low]
        runs: list[list[int]] = []
        for g in groups:  # a run of contiguous groups, as iter_batches numbers its rows consecutively
            if runs and g == runs[-1][-1] + 1:
                runs[-1].append(g)
            else:
                runs.append([g])
        for run in runs:
            first = ends[run[0]]
            batches = handle.iter_batches(batch_size=batch_rows, row_groups=run, columns=columns, use_threads=True)
            while True:
                # a page damaged past a sound footer raised pyarrow's own OSError, naming no file (found in review)
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as error:
                    raise LossInputError(f"{path}: not a readable Parquet file ({error})") from None
                if batch is None:
                    break
                for row, part in _slices(first, batch, low, high, batch_rows):
                    yield row, {name: part.column(name) for name in columns}
                first += batch.num_rows


def _numpy_rows(path: Path, info: _FileInfo, columns: list[str], piece: Piece, batch_rows: int):
    yield from _npz.rows(path, info.format == "npz", columns, *_clip(piece.start, piece.stop, info.rows), batch_rows)


def _csv_rows(path: Path, info: _FileInfo, columns: list[str], piece: Piece, batch_rows: int):
    low, high = _clip(piece.start, piece.stop, None)
    for first, batch in _csv.blocks(path, info.bools, columns, batch_rows):
        for row, part in _slices(first, batch, low, high, batch_rows):
            yield row, {name: part.column(name) for name in columns}
        if first + batch.num_rows >= high:
            return
