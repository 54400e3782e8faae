"""losskit.evaluation._arrow: numeric columns through their buffers equal pyarrow's own conversions, slices
and booleans included, and reading or writing a file that way imports no pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from losskit.evaluation import _arrow  # noqa: E402

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64", "bool"]


def _values(dtype: str, n: int = 37) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype == "bool":
        return rng.random(n) < 0.4
    info = np.iinfo(dtype) if dtype[0] in "iu" else np.finfo(dtype)
    values = (rng.uniform(-100, 100, n) if dtype[0] == "f" else rng.integers(-100, 100, n)).astype(dtype)
    values[:2] = [info.min, info.max]
    return values


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_arrow_equals_pyarrow_own_conversion(dtype):
    values = _values(dtype)
    ours = _arrow.to_arrow(values)
    assert ours.equals(pa.array(values)) and ours.type == pa.from_numpy_dtype(values.dtype)
    strided = _arrow.to_arrow(values[::3])  # a column of a [N, K] array is a strided view
    assert strided.equals(pa.array(np.ascontiguousarray(values[::3])))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start, stop", [(0, 37), (5, 37), (3, 11), (9, 9)])
def test_to_numpy_of_a_slice_equals_pyarrow_own_conversion(dtype, start, stop):
    """A batch is a slice of its file's column: an offset into the buffer (for booleans, a bit offset)."""
    column = pa.array(_values(dtype)).slice(start, stop - start)
    ours = _arrow.to_numpy(column)
    theirs = column.to_numpy(zero_copy_only=False)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_to_numpy_of_a_fixed_size_list_column_flattened():
    column = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(30.0)), 3).slice(2, 5)
    assert np.array_equal(_arrow.to_numpy(column.flatten()), np.arange(6.0, 21.0))


def test_a_numeric_view_is_read_only_and_a_missing_buffer_goes_through_pyarrow(tmp_path):
    """A reader's buffers are mutable: the view is read-only, as pyarrow's zero-copy conversion is, so that
    no write through it changes the batch's Arrow data. An empty array may carry no data buffer at all."""
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"x": pa.array(np.arange(5.0))}), path)
    column = next(pq.ParquetFile(path).iter_batches()).column("x")
    view = _arrow.to_numpy(column)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1.0
    assert column[0].as_py() == 0.0
    empty = pa.Array.from_buffers(pa.float64(), 0, [None, None])
    assert _arrow.to_numpy(empty).shape == (0,)


def test_to_arrow_leaves_checked_casts_and_other_shapes_to_pyarrow():
    """An integer cast that overflows raises as ``pa.array`` does; a 2-D array and a masked array are
    pyarrow's to refuse or to read (its nulls)."""
    with pytest.raises(pa.ArrowInvalid):
        _arrow.to_arrow(np.array([300, 1]), pa.int8())
    with pytest.raises(pa.ArrowInvalid):
        _arrow.to_arrow(np.zeros((2, 2)))
    masked = _arrow.to_arrow(np.ma.masked_array([1.0, 2.0], mask=[False, True]))
    assert masked.null_count == 1 and masked[0].as_py() == 1.0


def test_cast_to_a_given_type_and_other_types_through_pyarrow():
    assert _arrow.to_arrow(np.array([0.1, 2.5]), pa.float32()).equals(pa.array(np.float32([0.1, 2.5])))
    strings = pa.array(["a", "b"])
    assert list(_arrow.to_numpy(strings)) == ["a", "b"]
    assert _arrow.to_numpy(pa.array([1.0, None, 3.0])).tolist()[0] == 1.0  # a null: pyarrow's conversion


def test_scoring_a_file_and_writing_the_demo_predictions_import_no_pandas(tmp_path):
    """pyarrow's conversions import pandas when it is installed (0.5-0.8 s); these two never need it."""
    pytest.importorskip("pandas")
    path = tmp_path / "p.parquet"
    code = (
        "import sys, numpy as np, losskit as lk\n"
        "from types import SimpleNamespace\n"
        "from losskit.cli.demo import write_predictions\n"
        "z = np.random.default_rng(0).normal(size=(50, 3)); y = np.arange(50) % 3\n"
        "cols = {f'logit_{k}': z[:, k] for k in range(3)}; cols['target'] = y\n"
        "result = SimpleNamespace(task='multiclass', loss='SoftmaxCrossEntropy', dataset='x', predictions=cols)\n"
        f"write_predictions({str(path)!r}, result)\n"
        f"report = lk.evaluate({str(path)!r})\n"
        "print(report.task, 'pandas' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["multiclass", "False"]
    table = pq.read_table(path)
    assert table.schema.metadata[b"losskit.task"] == b"multiclass"
    assert table.column("target").type == pa.int64() and table.column("logit_0").type == pa.float64()
