"""losskit.evaluation.sources: files found, columns resolved, rows read back exactly in every format,
pieces covering every row once, and every bad input named by file, column and row."""

from __future__ import annotations

import gzip
import pickle
from itertools import pairwise

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pcsv = pytest.importorskip("pyarrow.csv")

from losskit._errors import LossInputError  # noqa: E402
from losskit.evaluation import _npz, sources  # noqa: E402

ROWS = 53  # not a multiple of the batch (7) nor of the row group (10)
COLUMNS = ("id", "logit_0", "logit_1", "target", "weight")


def _columns(rows: int = ROWS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"id": np.arange(rows, dtype=np.int64), "logit_0": rng.normal(size=rows) * 1e3,
            "logit_1": rng.normal(size=rows) / 7, "target": rng.integers(0, 2, size=rows),
            "weight": rng.random(rows)}


def _write(path, data: dict[str, np.ndarray], *, row_group_size: int = 10, metadata: dict | None = None):
    """``data`` (1-D columns; a 2-D value is a multi-value column) written in the format of ``path``'s suffix."""
    name = path.name
    if name.endswith((".parquet", ".pq")):
        arrays = {k: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) if v.ndim == 2
                  else pa.array(v) for k, v in data.items()}
        table = pa.table(arrays)
        if metadata:
            table = table.replace_schema_metadata(metadata)
        pq.write_table(table, path, row_group_size=row_group_size)
    elif name.endswith(".csv"):
        pcsv.write_csv(pa.table({k: pa.array(v) for k, v in data.items()}), path)
    elif name.endswith(".npy"):
        record = np.empty(len(next(iter(data.values()))), dtype=[(k, v.dtype, v.shape[1:]) for k, v in data.items()])
        for k, v in data.items():
            record[k] = v
        np.save(path, record)
    elif name.endswith(".npz"):
        (np.savez_compressed if "compressed" in name else np.savez)(path, **data)
    else:
        raise AssertionError(name)
    return path


FILES = ("data.parquet", "data.csv", "data.npy", "data.npz", "data-compressed.npz")


def _read(layout, piece=None, batch_rows: int = 7):
    parts = list(sources.batches(layout, piece, batch_rows=batch_rows))
    pred = np.concatenate([b.pred for b in parts])
    target = np.concatenate([b.target for b in parts])
    weight = np.concatenate([b.weight for b in parts]) if layout.weight else None
    return parts, pred, target, weight


def _expected(data, *, pred=("logit_0", "logit_1"), target=("target",)):
    return (np.column_stack([data[c] for c in pred]).astype(np.float64),
            np.column_stack([data[c] for c in target]).astype(np.float64))


# ------------------------------------------------------------------------------------------ reading back


@pytest.mark.parametrize("name", FILES)
def test_round_trip_every_format(tmp_path, name):
    data = _columns()
    path = _write(tmp_path / name, data)
    layout = sources.resolve(sources.discover([path]), weight="weight")
    assert layout.pred == ("logit_0", "logit_1") and layout.target == ("target",) and layout.pred_kind == "logits"
    assert layout.rows == (None if name.endswith(".csv") else ROWS)
    assert layout.kinds == {"logit_0": "float", "logit_1": "float", "target": "int", "weight": "float"}
    parts, pred, target, weight = _read(layout)
    want_pred, want_target = _expected(data)
    np.testing.assert_array_equal(pred, want_pred)
    np.testing.assert_array_equal(target, want_target)
    np.testing.assert_array_equal(weight, data["weight"])
    assert [b.start for b in parts] == list(range(0, ROWS, 7))
    assert all(b.pred.dtype == np.float64 and b.path == path for b in parts)


def test_several_files_of_mixed_formats_read_in_order(tmp_path):
    chunks = [_columns(rows, seed) for seed, rows in enumerate((23, 31, 5, 17))]
    paths = [_write(tmp_path / f"part-{i}{suffix}", chunk)
             for i, (suffix, chunk) in enumerate(zip((".parquet", ".csv", ".npz", ".npy"), chunks, strict=True))]
    layout = sources.resolve(sources.discover([tmp_path]), weight="weight")
    assert layout.files == tuple(paths) and layout.rows is None  # the CSV's row count is unknown
    parts, pred, target, weight = _read(layout)
    whole = {k: np.concatenate([c[k] for c in chunks]) for k in COLUMNS}
    np.testing.assert_array_equal(pred, _expected(whole)[0])
    np.testing.assert_array_equal(weight, whole["weight"])
    # batches stay within a file, and their start is the row in that file
    assert [(b.path.name, b.start, len(b.pred)) for b in parts][:6] == [
        ("part-0.parquet", 0, 7), ("part-0.parquet", 7, 7), ("part-0.parquet", 14, 7), ("part-0.parquet", 21, 2),
        ("part-1.csv", 0, 7), ("part-1.csv", 7, 7)]


def test_compressed_csv(tmp_path):
    data = _columns()
    plain = _write(tmp_path / "data.csv", data)
    packed = tmp_path / "data.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    layout = sources.resolve(sources.discover([packed]))
    np.testing.assert_array_equal(_read(layout)[1], _expected(data)[0])


@pytest.mark.parametrize("damage", ["not gzip", "truncated"])
def test_a_corrupt_compressed_csv_is_refused_naming_the_file(tmp_path, damage):
    """pyarrow's own error for a bad gzip stream is a plain OSError naming no file ("zlib inflate failed",
    "Truncated compressed stream"): refused as a LossInputError naming it, as a bad Parquet file is."""
    packed = tmp_path / "data.csv.gz"
    rows = b"target,logit_0\n" + b"".join(b"%d,%.3f\n" % (i % 2, i * 1e-3) for i in range(20_000))
    packed.write_bytes(b"not gzip at all\n1,2\n" if damage == "not gzip" else gzip.compress(rows)[:20_000])
    with pytest.raises(LossInputError, match=r"data\.csv\.gz: not a readable CSV file"):
        _read(sources.resolve(sources.discover([packed])))


@pytest.mark.parametrize("name", ["data.parquet", "data.npz", "data-compressed.npz"])
def test_a_file_damaged_past_its_header_is_refused_naming_the_file(tmp_path, name):
    """A Parquet page overwritten after a sound footer, a deflated member with flipped bytes and a stored
    member with a bad CRC passed the schema's read, then raised pyarrow's OSError ("Couldn't deserialize
    thrift"), zlib's error and zipfile's BadZipFile naming no file (found in review): LossInputErrors naming
    the file, as a damaged CSV is."""
    rng = np.random.default_rng(3)
    n = 100_000
    data = {"logit_0": rng.normal(size=n), "target": rng.integers(0, 2, n)}
    path = _write(tmp_path / name, data, row_group_size=20_000)
    damaged = bytearray(path.read_bytes())
    if name.endswith(".parquet"):
        page = pq.ParquetFile(path).metadata.row_group(3).column(0).data_page_offset
        damaged[page + 10:page + 4000] = b"\xab" * 3990
    else:  # the middle of the logits' member
        middle = len(damaged) // 4
        damaged[middle:middle + (400 if "compressed" in name else 1)] = b"\xab" * (400 if "compressed" in name else 1)
    path.write_bytes(bytes(damaged))
    layout = sources.resolve(sources.discover([path]), pred=["logit_0"], target=["target"])
    # (a member in one read: a deflate stream can decode damaged bytes into numbers, a NaN refused before its CRC)
    with pytest.raises(LossInputError, match=rf"{name.replace('.', '[.]')}.*(not a readable Parquet file|damaged)"):
        _read(layout, batch_rows=10_000 if name.endswith(".parquet") else n)


def test_multi_value_columns(tmp_path):
    rng = np.random.default_rng(1)
    logits, label = rng.normal(size=(ROWS, 3)), rng.integers(0, 3, ROWS)
    for name in ("fsl.parquet", "wide.npz", "wide-compressed.npz", "sub.npy"):
        path = _write(tmp_path / name, {"logits": logits, "target": label})
        layout = sources.resolve([path])
        assert layout.pred == ("logits",) and layout.widths == {"logits": 3, "target": 1}, name
        _, pred, target, _ = _read(layout)
        np.testing.assert_array_equal(pred, logits)
        np.testing.assert_array_equal(target[:, 0], label)


def test_fortran_ordered_members_and_plain_npy_columns(tmp_path):
    rng = np.random.default_rng(2)
    logits = np.asfortranarray(rng.normal(size=(ROWS, 4)))
    np.savez_compressed(tmp_path / "f.npz", logits=logits, target=np.arange(ROWS) % 4)
    assert _npz.npz_headers(tmp_path / "f.npz")["logits"].fortran  # read as 4 column streams side by side
    _, pred, _, _ = _read(sources.resolve([tmp_path / "f.npz"]))
    np.testing.assert_array_equal(pred, logits)
    # a plain 2-D .npy: its columns are "0", "1", ...; Fortran order or not, by row ranges
    for order in ("C", "F"):
        np.save(tmp_path / f"{order}.npy", np.asarray(logits, order=order))
        layout = sources.resolve([tmp_path / f"{order}.npy"], pred=["0,2"], target=["3"])
        assert layout.pred == ("0", "2") and layout.rows == ROWS
        _, pred, target, _ = _read(layout)
        np.testing.assert_array_equal(pred, logits[:, [0, 2]])
        np.testing.assert_array_equal(target[:, 0], logits[:, 3])
        _, pred, _, _ = _read(layout, sources.Piece(tmp_path / f"{order}.npy", 10, 20))
        np.testing.assert_array_equal(pred, logits[10:20, [0, 2]])


def test_integer_targets_stay_integers_and_weights_become_floats(tmp_path):
    data = {"prob": np.linspace(0, 1, ROWS), "target": np.arange(ROWS) % 2 == 0, "weight": np.arange(ROWS) % 3}
    for name in ("b.parquet", "b.csv", "b.npz"):
        layout = sources.resolve([_write(tmp_path / name, data)], weight="weight")
        assert layout.kinds == {"prob": "float", "target": "bool", "weight": "int"}, name
        parts, _, target, weight = _read(layout)
        assert all(b.target.dtype.kind in "bu" and b.weight.dtype == np.float64 for b in parts), name
        np.testing.assert_array_equal(target[:, 0], data["target"].astype(float))
        np.testing.assert_array_equal(weight, data["weight"].astype(float))


def test_float32_predictions_stay_float32_in_column_order(tmp_path):
    data = {"logit_0": np.linspace(-1, 1, ROWS, dtype=np.float32), "logit_1": np.zeros(ROWS, np.float32),
            "target": np.arange(ROWS) % 2, "weight": np.ones(ROWS, np.float32)}
    layout = sources.resolve([_write(tmp_path / "f.parquet", data)], weight="weight")
    batch = next(sources.batches(layout))
    assert batch.pred.dtype == np.float32 and batch.pred.flags.f_contiguous
    assert batch.weight.dtype == np.float32 and batch.target.dtype == np.int64
    np.testing.assert_array_equal(batch.pred[:, 0], data["logit_0"])


def test_batches_never_exceed_batch_rows(tmp_path):
    data = _columns(rows=4321)
    for name in FILES:
        layout = sources.resolve([_write(tmp_path / name, data, row_group_size=1500)])
        sizes = [len(b.pred) for b in sources.batches(layout, batch_rows=1000)]
        assert max(sizes) <= 1000 and sum(sizes) == 4321, name


# ------------------------------------------------------------------------------------------ discovery


def test_discover_files_directories_and_globs(tmp_path):
    data = _columns(rows=4)
    (tmp_path / "day=1").mkdir()
    (tmp_path / "day=2").mkdir()
    (tmp_path / ".hidden").mkdir()
    a = _write(tmp_path / "day=1" / "part-0.parquet", data)
    b = _write(tmp_path / "day=2" / "part-0.parquet", data)
    c = _write(tmp_path / "day=2" / "part-1.csv", data)
    _write(tmp_path / ".hidden" / "x.parquet", data)
    (tmp_path / "day=2" / "_temporary").mkdir()
    _write(tmp_path / "day=2" / "_temporary" / "part-9.parquet", data)
    (tmp_path / "day=1" / "_SUCCESS").write_text("")
    (tmp_path / "day=1" / ".part-0.parquet.crc").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert sources.discover([tmp_path]) == [a, b, c]
    assert sources.discover([str(tmp_path / "*" / "*.parquet")]) == [a, b]
    assert sources.discover([str(tmp_path / "**" / "part-*")]) == [a, b, c]
    assert sources.discover([str(tmp_path / "day=2" / "_temporary" / "*")]) == [tmp_path / "day=2" / "_temporary" /
                                                                               "part-9.parquet"]
    assert sources.discover([c, a, str(tmp_path / "day=1")]) == [c, a]  # duplicates once, first place kept
    assert sources.discover(str(a)) == [a]


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: str(d / "missing.parquet"), "PATH: no such file or directory: '{d}/missing.parquet'"),
    (lambda d: str(d / "*.parquet"), "PATH: the glob '{d}/*.parquet' matched no file"),
    (lambda d: str(d / "*.txt"), "PATH: the glob '{d}/*.txt' matched no Parquet, CSV, NPY or NPZ"),
    (lambda d: str(d / "a.txt"), "PATH: '{d}/a.txt' is not a Parquet, CSV, NPY or NPZ"),
    (lambda d: str(d / "empty"), "PATH: the directory '{d}/empty' holds no Parquet"),
])
def test_discover_errors(tmp_path, make, message):
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LossInputError) as caught:
        sources.discover([make(tmp_path)])
    assert str(caught.value).startswith(message.format(d=tmp_path))


# ------------------------------------------------------------------------------------------ columns


def test_column_selection_names_commas_globs(tmp_path):
    data = {"logit_a": np.zeros(4), "logit_b": np.ones(4), "score": np.ones(4), "y0": np.zeros(4),
            "y1": np.ones(4), "w": np.ones(4)}
    path = _write(tmp_path / "s.parquet", data)
    layout = sources.resolve([path], pred=["logit_*"], target=["y0,y1"], weight="w")
    assert (layout.pred, layout.target, layout.weight, layout.pred_kind) == (("logit_a", "logit_b"),
                                                                             ("y0", "y1"), "w", "logits")
    # names keep the order given (a glob's matches the file's order), each once
    layout = sources.resolve([path], pred=["logit_b", "logit_*", " logit_a "], target="y?")
    assert layout.pred == ("logit_b", "logit_a") and layout.target == ("y0", "y1")
    assert sources.resolve([path], pred="score", target=["y0"]).pred_kind is None


def test_default_columns_and_pred_kind(tmp_path):
    def layout_of(name, columns, **kwargs):
        return sources.resolve([_write(tmp_path / name, {c: np.zeros(3) for c in columns}, **kwargs)])

    layout = layout_of("a.parquet", ["id", "logits", "target"])
    assert (layout.pred, layout.target, layout.pred_kind) == (("logits",), ("target",), "logits")
    layout = layout_of("b.parquet", ["prob_0", "prob_1", "target_0", "target_1"])
    assert (layout.pred, layout.target, layout.pred_kind) == (("prob_0", "prob_1"), ("target_0", "target_1"),
                                                              "probs")
    layout = layout_of("c.csv", ["prediction", "target"])
    assert (layout.pred, layout.pred_kind) == (("prediction",), None)
    # the first Parquet file's losskit.* metadata: kept, and its pred_kind is the kind
    layout = layout_of("d.parquet", ["prediction", "target"],
                       metadata={"losskit.pred_kind": "probs", "losskit.task": "binary", "other": "x"})
    assert layout.pred_kind == "probs" and layout.metadata == {"losskit.pred_kind": "probs", "losskit.task": "binary"}
    with pytest.raises(LossInputError, match=r"--pred: no column named 'logit\*', 'prob\*' or 'pred\*' in .*e\.parquet; "
                                              r"pass --pred and --target \(columns: score, target\)"):
        layout_of("e.parquet", ["score", "target"])
    with pytest.raises(LossInputError, match=r"--target: no column named 'target' or 'target_\*'"):
        layout_of("f.parquet", ["logit", "label"])


# ------------------------------------------------------------------------------------------ pieces


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_pieces_cover_every_row_once_in_order(tmp_path, n):
    chunks = [_columns(rows, seed) for seed, rows in enumerate((45, 30, 12, 23))]
    for i, (suffix, chunk) in enumerate(zip((".parquet", ".npz", ".csv", ".npy"), chunks, strict=True)):
        _write(tmp_path / f"p{i}{suffix}", chunk, row_group_size=10)
    layout = sources.resolve(sources.discover([tmp_path]), weight="weight")
    parts = sources.pieces(layout, n)
    assert pickle.loads(pickle.dumps(parts)) == parts
    assert pickle.loads(pickle.dumps(layout)) == layout and hash(layout) == hash(pickle.loads(pickle.dumps(layout)))
    ids = []
    for piece in parts:
        assert piece.path in layout.files
        ids.append(np.concatenate([b.pred[:, 0] for b in sources.batches(layout, piece, batch_rows=7)]))
    np.testing.assert_array_equal(np.concatenate(ids), np.concatenate([c["logit_0"] for c in chunks]))
    if n == 1:
        assert parts == [sources.Piece(path) for path in layout.files]
    if n == 5:  # 110 rows of known count, about 20 a piece: Parquet at row groups, NPY/NPZ anywhere, CSV whole
        assert [(p.path.name, p.start, p.stop, p.row_groups) for p in parts] == [
            ("p0.parquet", 0, 20, (0, 1)), ("p0.parquet", 20, 45, (2, 3, 4)), ("p1.npz", 0, 15, None),
            ("p1.npz", 15, 30, None), ("p2.csv", 0, None, None), ("p3.npy", 0, None, None)]


@pytest.mark.parametrize("name", FILES)
def test_a_piece_of_any_row_range(tmp_path, name):
    data = _columns()
    layout = sources.resolve([_write(tmp_path / name, data)])
    parts = list(sources.batches(layout, sources.Piece(tmp_path / name, 13, 41), batch_rows=5))
    spans = [(b.start, b.start + len(b.pred)) for b in parts]  # Parquet's batches start at a row group
    assert spans[0][0] == 13 and spans[-1][1] == 41 and all(a[1] == b[0] for a, b in pairwise(spans))
    assert max(b - a for a, b in spans) <= 5
    np.testing.assert_array_equal(np.concatenate([b.pred[:, 0] for b in parts]), data["logit_0"][13:41])
    if name.endswith(".parquet"):  # row groups that are not contiguous: each run numbered from its own first row
        parts = list(sources.batches(layout, sources.Piece(tmp_path / name, row_groups=(0, 2, 5)), batch_rows=7))
        assert [b.start for b in parts] == [0, 7, 20, 27, 50]
        np.testing.assert_array_equal(np.concatenate([b.pred[:, 0] for b in parts]),
                                      data["logit_0"][np.r_[0:10, 20:30, 50:53]])


def test_pieces_rejects_n_below_one(tmp_path):
    layout = sources.resolve([_write(tmp_path / "a.npz", _columns())])
    with pytest.raises(LossInputError, match="n: expected an integer >= 1, got 0"):
        sources.pieces(layout, 0)


# ------------------------------------------------------------------------------------------ errors


def _error(tmp_path, name, data, batch_rows=7, **kwargs) -> str:
    path = _write(tmp_path / name, data, row_group_size=10)
    with pytest.raises(LossInputError) as caught:
        list(sources.batches(sources.resolve([path], **kwargs), batch_rows=batch_rows))
    return str(caught.value)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize(("column", "value", "got"), [("logit_1", np.nan, "nan"), ("logit_0", -np.inf, "-inf"),
                                                       ("weight", -0.5, "-0.5"), ("weight", np.inf, "inf")])
def test_bad_value_names_file_column_and_file_row(tmp_path, name, column, value, got):
    data = _columns()
    data[column][38] = value  # in the sixth batch of 7 rows: the row in the file, not in the batch
    message = _error(tmp_path, name, data, weight="weight")
    line = " (line 40)" if name.endswith(".csv") else ""
    what = "a finite number >= 0" if column == "weight" else "a finite number"
    assert message == f"{tmp_path / name}: column '{column}', row 38{line}: expected {what}, got {got}"


def test_bad_value_in_a_multi_value_column(tmp_path):
    logits = np.zeros((ROWS, 3))
    logits[20, 2] = np.nan
    for name in ("fsl.parquet", "wide.npz"):
        message = _error(tmp_path, name, {"logits": logits, "target": np.zeros(ROWS)})
        assert message == f"{tmp_path / name}: column 'logits' [2], row 20: expected a finite number, got nan"


def test_null_values(tmp_path):
    path = tmp_path / "null.parquet"
    pq.write_table(pa.table({"logit": pa.array([0.5, 1.0, None, 2.0]), "target": [0, 1, 1, 0]}), path)
    with pytest.raises(LossInputError, match=r"null\.parquet: column 'logit', row 2: expected a number, "
                                             r"got a null/missing value"):
        list(sources.batches(sources.resolve([path])))
    path = tmp_path / "null.csv"
    path.write_text("logit,target\n0.5,0\n1.5,\n2.5,1\n")
    with pytest.raises(LossInputError, match=r"null\.csv: column 'target', row 1 \(line 3\): expected a number, "
                                             r"got a null/missing value"):
        list(sources.batches(sources.resolve([path])))


def test_nulls_in_a_fixed_size_list(tmp_path):
    for name, array in [("child.parquet", pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2, None, 4, 5, 6]), 2)),
                        ("row.parquet", pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2, 3, 4, 5, 6]), 2,
                                                                          mask=pa.array([False, False, True])))]:
        pq.write_table(pa.table({"logits": array, "target": [0, 1, 0]}), tmp_path / name)
        with pytest.raises(LossInputError) as caught:
            list(sources.batches(sources.resolve([tmp_path / name])))
        where = "'logits' [0], row 1" if name == "child.parquet" else "'logits', row 2"
        assert str(caught.value) == f"{tmp_path / name}: column {where}: expected a number, got a null/missing value"


def test_csv_row_with_a_missing_field(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("logit,target\n" + "0.5,1\n" * 3000 + "\n0.25\n" + "0.5,1\n" * 10)
    with pytest.raises(LossInputError) as caught:
        list(sources.batches(sources.resolve([path]), batch_rows=100))
    # the blank line is skipped as pyarrow skips it: row 3000, on line 3003
    assert str(caught.value) == f"{path}: row 3000 (line 3003): expected 2 fields, got 1: '0.25'"


def test_csv_non_numeric_cell(tmp_path):
    path = tmp_path / "text.csv"
    # beyond the first block (1 MiB), which is what the column types are inferred from
    path.write_text("logit,target,note\n" + "0.5,1,a\n" * 150_000 + "0.5,yes,b\n")
    with pytest.raises(LossInputError) as caught:
        list(sources.batches(sources.resolve([path]), batch_rows=100_000))
    assert str(caught.value) == f"{path}: column 'target', row 150000 (line 150002): expected a number, got 'yes'"
    # within the first block pyarrow infers a text column: the column's type and its first text
    path.write_text("logit,target\n0.5,1\n0.5,NA\n")
    with pytest.raises(LossInputError) as caught:
        sources.resolve([path])
    assert str(caught.value) == (f"{path}: column 'target' (--target): expected a numeric column (int, uint, float "
                                 f"or bool), got string (its first non-numeric value is 'NA', row 1 (line 3))")


def test_missing_column(tmp_path):
    path = _write(tmp_path / "a.parquet", _columns())
    with pytest.raises(LossInputError) as caught:
        sources.resolve([path], pred=["logit_*", "margin_*"])
    assert str(caught.value) == (f"--pred: no column matches 'margin_*' in {path} "
                                 f"(columns: id, logit_0, logit_1, target, weight)")
    with pytest.raises(LossInputError, match="--weight: no column matches 'w' in"):
        sources.resolve([path], weight="w")


def test_column_list_is_shortened(tmp_path):
    path = _write(tmp_path / "wide.parquet", {f"c{i:02d}": np.zeros(2) for i in range(20)})
    with pytest.raises(LossInputError, match=r"\(columns: c00, c01, .*, c11, \.\.\. \(8 more\)\)$"):
        sources.resolve([path], pred="x", target="c00")


def test_ragged_files(tmp_path):
    first = _write(tmp_path / "a.parquet", _columns())
    second = _write(tmp_path / "b.csv", {k: v for k, v in _columns().items() if k != "logit_1"})
    with pytest.raises(LossInputError) as caught:
        sources.resolve([first, second], weight="weight")
    assert str(caught.value) == (f"{second}: column 'logit_1' (--pred) is missing; {first} has it "
                                 f"(columns here: id, logit_0, target, weight)")
    wide = _write(tmp_path / "c.npz", {"logits": np.zeros((4, 3)), "target": np.zeros(4)})
    narrow = _write(tmp_path / "d.npz", {"logits": np.zeros((4, 2)), "target": np.zeros(4)})
    with pytest.raises(LossInputError, match=r"d\.npz: column 'logits' holds 2 values per row, but 3 in .*c\.npz"):
        sources.resolve([wide, narrow])


def test_non_numeric_column(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"logit": [0.5], "target": ["cat"]}), path)
    with pytest.raises(LossInputError) as caught:
        sources.resolve([path])
    assert str(caught.value) == (f"{path}: column 'target' (--target): expected a numeric column "
                                 f"(int, uint, float or bool), got string")
    np.savez(tmp_path / "o.npz", logit=np.zeros(2), target=np.array(["a", "b"]))
    with pytest.raises(LossInputError, match=r"o\.npz: column 'target' \(--target\): .* got <U1"):
        sources.resolve([tmp_path / "o.npz"])


def test_npz_members_of_mismatched_lengths(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, logit=np.zeros(10), target=np.zeros(9), unused=np.zeros(3))
    with pytest.raises(LossInputError) as caught:
        sources.resolve([path])
    assert str(caught.value) == (f"{path}: mismatched lengths: member 'logit' has 10 rows, member 'target' has 9; "
                                 f"every member used must have one row per example")


def test_overlapping_columns(tmp_path):
    path = _write(tmp_path / "o.parquet", _columns())
    with pytest.raises(LossInputError) as caught:
        sources.resolve([path], pred=["logit_*"], target=["logit_1"])
    assert str(caught.value) == (f"--pred and --target both select column 'logit_1' in {path}; "
                                 f"each column can play one part")
    with pytest.raises(LossInputError, match="--pred and --weight both select column 'logit_0'"):
        sources.resolve([path], weight="logit_0", pred=["logit_0"])


def test_bad_metadata_pred_kind(tmp_path):
    path = _write(tmp_path / "k.parquet", {"logit": np.zeros(2), "target": np.zeros(2)},
                  metadata={"losskit.pred_kind": "scores"})
    with pytest.raises(LossInputError, match="schema metadata 'losskit.pred_kind': expected 'logits' or 'probs'"):
        sources.resolve([path])


def test_batch_error_names_the_column_of_a_flat_index(tmp_path):
    data = {"logits": np.zeros((ROWS, 3)), "bias": np.zeros(ROWS), "target": np.zeros(ROWS)}
    layout = sources.resolve([_write(tmp_path / "e.npz", data)], pred=["logits", "bias"])
    batch = list(sources.batches(layout, batch_rows=7))[2]
    assert str(batch.error("pred", 4 * 2 + 3, "a probability", "1.5")) == (
        f"{tmp_path / 'e.npz'}: column 'bias', row 16: expected a probability, got 1.5")
    assert str(batch.error("pred", 4 * 3 + 1, "a probability", 2.0)).endswith(
        "column 'logits' [1], row 17: expected a probability, got 2")


def test_prefetched_yields_in_order_and_raises_where_the_reader_failed():
    def reader():
        yield 1
        yield 2
        raise LossInputError("bad row")

    got = []
    with pytest.raises(LossInputError, match="bad row"):
        for item in sources.prefetched(reader(), depth=2):
            got.append(item)
    assert got == [1, 2]


def test_closing_prefetched_stops_the_reader():
    import threading

    produced = []

    def reader():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = sources.prefetched(reader(), depth=1)
    assert next(stream) == 0
    stream.close()
    assert not any(t.name == "losskit-eval-reader" for t in threading.enumerate())
    assert len(produced) <= 4  # read ahead by at most the depth (and the item in hand)


def test_scoring_and_calibrating_arrays_import_no_pyarrow():
    """pyarrow is imported where a file is read: the demo's ECE and ``lk.calibrate`` of arrays in memory
    import losskit.evaluation without it (its import took 0.13-0.24 s of the demo's first task)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, losskit as lk; from losskit.evaluation.metrics import MulticlassMetrics; "
            "y = np.arange(300) % 5; z = np.random.default_rng(0).normal(size=(300, 5)) + 3 * np.eye(5)[y]; "
            "lk.calibrate(z, y); "
            "m = MulticlassMetrics(5, 'logits'); m.update(z, y); m.result(); print('pyarrow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_two_columns_of_one_name_are_refused(tmp_path, kind):
    """A CSV reader took the first of two ``logit`` columns without a word (eval exit 0); Parquet raised
    pyarrow's KeyError."""
    path = tmp_path / f"d.{kind}"
    if kind == "csv":
        path.write_text("logit,target,logit\n1.0,1,2.0\n-1.0,0,0.5\n")
    else:
        pq.write_table(pa.Table.from_arrays([pa.array([1.0, -1.0]), pa.array([1, 0]), pa.array([2.0, 0.5])],
                                            names=["logit", "target", "logit"]), path)
    with pytest.raises(LossInputError, match=r"d\.(csv|parquet): expected columns of distinct names, got 'logit' 2 "
                                             r"times"):
        sources.resolve(sources.discover([path]), pred=None, target=None, weight=None)


def test_columns_paired_by_position_are_refused_where_their_names_disagree(tmp_path):
    """Found in review: the k-th prediction column is class (label) k, whatever its name. Numbered columns that a
    writer sorted as text (logit_0, logit_1, logit_10, logit_11, logit_2...) were scored as classes 0, 1, 2...
    (accuracy 0.15 where it was 0.89), and label columns in another order than the predictions' (logit_a,
    logit_b against target_b, target_a) were paired wrongly; a weight column that took the default prediction
    column was reported as no prediction column. Each is now refused naming the option, with the order."""
    rng = np.random.default_rng(0)
    logits = {f"logit_{k}": rng.normal(size=20) for k in sorted(range(12), key=str)}
    _write(tmp_path / "text_order.parquet", {**logits, "target": rng.integers(0, 12, size=20)})
    ordered = ",".join(f"logit_{k}" for k in range(12))
    with pytest.raises(LossInputError, match=f"^--pred: expected numbered columns in class order.*--pred {ordered}$"):
        sources.resolve([tmp_path / "text_order.parquet"])
    assert sources.resolve([tmp_path / "text_order.parquet"], pred=ordered).pred == tuple(ordered.split(","))
    _write(tmp_path / "labels.parquet", {"logit_a": rng.normal(size=9), "logit_b": rng.normal(size=9),
                                         "target_b": rng.integers(0, 2, size=9), "target_a": rng.integers(0, 2, size=9)})
    with pytest.raises(LossInputError, match="^--target: expected label columns in the prediction columns' order.*"
                                             "--target target_a,target_b$"):
        sources.resolve([tmp_path / "labels.parquet"])
    assert sources.resolve([tmp_path / "labels.parquet"], target="target_a,target_b").target == ("target_a", "target_b")
    _write(tmp_path / "weight.parquet", {"logit": rng.normal(size=9), "target": rng.integers(0, 2, size=9)})
    with pytest.raises(LossInputError, match="^--weight: expected a column other than the predictions, got 'logit'"):
        sources.resolve([tmp_path / "weight.parquet"], weight="logit")


def test_numbered_columns_without_an_underscore_and_label_columns_alone_are_checked_for_order(tmp_path):
    """Found in review: the order check read a number after '_' only, so pandas' add_prefix names (logit0, logit1,
    logit10, logit2...) sorted as text were scored as classes 0, 1, 2... (accuracy 0.17 where it is 0.90); and
    numbered target columns were checked only beside as many prediction columns, so one-hot targets in text
    order beside one K-wide prediction column (a fixed-size list) were paired wrongly."""
    rng = np.random.default_rng(1)
    _write(tmp_path / "prefix.parquet", {**{f"logit{k}": rng.normal(size=20) for k in sorted(range(12), key=str)},
                                         "target": rng.integers(0, 12, size=20)})
    ordered = ",".join(f"logit{k}" for k in range(12))
    with pytest.raises(LossInputError, match=f"^--pred: expected numbered columns in class order.*--pred {ordered}$"):
        sources.resolve([tmp_path / "prefix.parquet"])
    logits = rng.normal(size=(20, 12))
    one_hot = np.eye(12, dtype=np.int64)[rng.integers(0, 12, size=20)]
    table = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 12),
                      **{f"target_{k}": one_hot[:, k] for k in sorted(range(12), key=str)}})
    pq.write_table(table, tmp_path / "list.parquet")
    targets = ",".join(f"target_{k}" for k in range(12))
    with pytest.raises(LossInputError, match=f"^--target: expected numbered columns in class order.*--target "
                                             f"{targets}$"):
        sources.resolve([tmp_path / "list.parquet"], pred="logits")
    assert sources.resolve([tmp_path / "list.parquet"], pred="logits", target=targets).target == tuple(
        targets.split(","))


def test_a_glob_or_a_default_chooses_the_same_columns_in_every_file(tmp_path):
    """Found in review: the columns were chosen in the first file and only looked up in the others, so a later
    file's third logit column was dropped (a 2-class softmax scored, exit 0). The same set in another order is
    read by name, as in the first file."""
    z, y = np.zeros(5), np.zeros(5, dtype=np.int64)
    _write(tmp_path / "a.parquet", {"logit_0": z, "logit_1": z, "target": y})
    _write(tmp_path / "b.parquet", {"logit_0": z, "logit_1": z, "logit_2": z, "target": y})
    _write(tmp_path / "c.parquet", {"logit_1": z, "target": y, "logit_0": z})
    for pred in (None, "logit_*"):
        with pytest.raises(LossInputError, match=r"^--pred: expected the same columns in every file \(logit_0, "
                                                 r"logit_1 in .*a\.parquet\), got logit_0, logit_1, logit_2 in "
                                                 r".*b\.parquet; name the columns: --pred logit_0,logit_1$"):
            sources.resolve([tmp_path / "a.parquet", tmp_path / "b.parquet"], pred=pred)
    assert sources.resolve([tmp_path / "a.parquet", tmp_path / "b.parquet"], pred="logit_0,logit_1").rows == 10
    assert sources.resolve([tmp_path / "a.parquet", tmp_path / "c.parquet"]).pred == ("logit_0", "logit_1")
