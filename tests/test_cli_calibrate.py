"""``losskit calibrate`` (fit over files, streaming, Dask), ``losskit calibrate apply`` and
``losskit eval --calibration``: the same numbers as lk.calibrate in memory, one-line errors with
exit code 2, no partial output file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("typer")

import losskit as lk  # noqa: E402
from losskit.cli import main  # noqa: E402


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _console_messages(page, screenshot):
    """Console lines Chromium logs while loading ``page`` headless (as tests/test_cli_eval.py reads them)."""
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--window-size=1100,2400", f"--screenshot={screenshot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert screenshot.exists(), out.stderr
    return [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def _multiclass(tmp_path, n=3000, k=4, seed=0, name="m.parquet", dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)) * 3
    z[np.arange(n), y] += 3
    w = rng.uniform(0.2, 2.0, n)
    path = tmp_path / name
    pq.write_table(pa.table({**{f"logit_{j}": z[:, j].astype(dtype) for j in range(k)}, "target": y, "w": w,
                             "id": np.arange(n)}), path, row_group_size=500)
    return path, z.astype(dtype), y, w


def _binary(tmp_path, n=3000, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * 3
    y = (rng.random(n) < 1 / (1 + np.exp(-z / 2.5))).astype(np.int64)
    return z, y


def _run(capsys, *args):
    code = main([*map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_equals_in_memory_fit(tmp_path, capsys):
    path, z, y, w = _multiclass(tmp_path)
    out = tmp_path / "cal.json"
    code, text, err = _run(capsys, "calibrate", path, "--weight", "w", "--out", out, "--batch-rows", "700")
    assert code == 0, err
    saved = json.loads(out.read_text())
    ref = lk.calibrate(z, y, weight=w)
    assert saved["method"] == "temperature" and saved["task"] == "multiclass" and saved["rows"] == 3000
    assert saved["params"]["temperature"] == pytest.approx(ref.params["temperature"], rel=1e-12)
    assert saved["nll_before"] == pytest.approx(ref.nll_before, rel=1e-12)
    assert saved["nll_after"] == pytest.approx(ref.nll_after, rel=1e-12)
    assert saved["ece_after"] == pytest.approx(ref.ece_after, rel=1e-9)
    for word in ("temperature", "NLL", "ECE", "passes", f"{saved['passes']} (one per Newton step"):
        assert word in text


@pytest.mark.parametrize("kind", ["csv", "npz"])
def test_binary_csv_and_npz(tmp_path, capsys, kind):
    z, y = _binary(tmp_path)
    path = tmp_path / f"b.{kind}"
    if kind == "csv":
        path.write_text("logit,target\n" + "".join(f"{float(a)!r},{int(b)}\n" for a, b in zip(z, y, strict=True)))
    else:
        np.savez(path, logit=z, target=y)
    out = tmp_path / "cal.json"
    code, text, err = _run(capsys, "calibrate", path, "--out", out, "--json", "--batch-rows", "1000")
    assert code == 0, err
    info = json.loads(text)
    assert info["task"] == "binary" and info["passes"] >= 2
    ref = lk.calibrate(z, y)
    assert info["params"]["temperature"] == pytest.approx(ref.params["temperature"], rel=1e-12)
    assert info["ece_before"] == pytest.approx(ref.ece_before, rel=1e-9)


def test_platt_and_per_label_methods(tmp_path, capsys):
    z, y = _binary(tmp_path)
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"logit": z + 1.0, "target": y}), path)
    code, text, err = _run(capsys, "calibrate", path, "--method", "platt", "--out", tmp_path / "p.json", "--json")
    assert code == 0, err
    ref = lk.calibrate(z + 1.0, y, method="platt")
    assert json.loads(text)["params"]["a"] == pytest.approx(ref.params["a"], rel=1e-9)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (2000, 3))
    logits = (2 * labels - 1) * 2.0 + rng.normal(size=(2000, 3)) * 3
    path = tmp_path / "ml.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": logits[:, j] for j in range(3)},
                             **{f"target_{j}": labels[:, j] for j in range(3)}}), path)
    code, text, err = _run(capsys, "calibrate", path, "--method", "temperature_per_label", "--out",
                           tmp_path / "ml.json", "--json")
    assert code == 0, err
    ref = lk.calibrate(logits, labels, method="temperature_per_label")
    np.testing.assert_allclose(json.loads(text)["params"]["temperature"], ref.params["temperature"], rtol=1e-12)


def test_eval_with_calibration_scores_both(tmp_path, capsys):
    path, z, y, w = _multiclass(tmp_path, dtype=np.float64)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--weight", "w", "--out", cal)[0] == 0
    code, text, err = _run(capsys, "eval", path, "--weight", "w", "--calibration", cal, "--json")
    assert code == 0, err
    report = json.loads(text)
    code, plain, _ = _run(capsys, "eval", path, "--weight", "w", "--json")
    plain = json.loads(plain)
    assert report["before"] == plain["metrics"]
    assert set(report["before"]) == set(report["metrics"])
    t = json.loads(cal.read_text())["params"]["temperature"]
    scaled = tmp_path / "scaled.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": z[:, j] / t for j in range(4)}, "target": y, "w": w}), scaled)
    code, direct, _ = _run(capsys, "eval", scaled, "--weight", "w", "--json")
    direct = json.loads(direct)["metrics"]
    for key, value in direct.items():
        assert report["metrics"][key] == pytest.approx(value, rel=1e-12), key
    assert report["metrics"]["ece"] < report["before"]["ece"]
    assert report["calibration"]["params"]["temperature"] == t


def test_apply_keeps_other_columns_and_is_atomic(tmp_path, capsys):
    path, z, y, w = _multiclass(tmp_path)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    t = json.loads(cal.read_text())["params"]["temperature"]
    out = tmp_path / "calibrated.parquet"
    code, text, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out,
                           "--batch-rows", "400")
    assert code == 0, err
    table = pq.read_table(out)
    assert table.column_names == ["logit_0", "logit_1", "logit_2", "logit_3", "target", "w", "id"]
    assert table.schema.field("logit_0").type == pa.float32()
    np.testing.assert_allclose(table.column("logit_2").to_numpy(), z[:, 2] / np.float32(t), rtol=1e-6)
    np.testing.assert_array_equal(table.column("id").to_numpy(), np.arange(3000))
    np.testing.assert_array_equal(table.column("w").to_numpy(), w)
    assert json.loads(table.schema.metadata[b"losskit.calibration"])["params"]["temperature"] == t
    # a NaN in the last row group: an error, and no partial file
    bad = tmp_path / "bad.parquet"
    values = z[:, 2].copy()
    values[2900] = np.nan
    pq.write_table(pa.table({**{f"logit_{j}": z[:, j] for j in (0, 1)}, "logit_2": values, "logit_3": z[:, 3]}), bad,
                   row_group_size=500)
    target = tmp_path / "never.parquet"
    code, _, err = _run(capsys, "calibrate", "apply", bad, "--calibration", cal, "--out", target)
    assert code == 2 and err.startswith("losskit: error: ") and err.count("\n") == 1, err
    assert "bad.parquet: column 'logit_2', row 2900: expected finite logits" in err, err  # (the column: eval's)
    assert not target.exists() and not list(tmp_path.glob(".never*"))


def test_apply_to_a_csv_name_writes_csv(tmp_path, capsys):
    # was: Parquet bytes written into the .csv name
    import pyarrow.csv as pv

    path, z, y, w = _multiclass(tmp_path, dtype=np.float64)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    t = json.loads(cal.read_text())["params"]["temperature"]
    out = tmp_path / "calibrated.csv"
    code, text, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out, "--json")
    assert code == 0, err
    assert json.loads(text)["format"] == "csv"
    assert out.read_bytes()[:4] != b"PAR1"
    table = pv.read_csv(out)
    assert table.column_names == ["logit_0", "logit_1", "logit_2", "logit_3", "target", "w", "id"]
    np.testing.assert_allclose(table.column("logit_1").to_numpy(), z[:, 1] / t, rtol=1e-15)
    np.testing.assert_array_equal(table.column("target").to_numpy(), y)
    # the CSV it wrote is a prediction file: eval of it equals eval of the logits divided by T
    code, a, _ = _run(capsys, "eval", out, "--weight", "w", "--json")
    code_ref, b, _ = _run(capsys, "eval", path, "--weight", "w", "--calibration", cal, "--json")
    assert code == code_ref == 0
    for key, value in json.loads(b)["metrics"].items():
        assert json.loads(a)["metrics"][key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.zst", ".pq", ".CSV.GZ"])
def test_apply_writes_the_format_its_name_says_and_refuses_another_name(tmp_path, capsys, suffix):
    """A compressed CSV name writes compressed CSV (it was Parquet bytes under a .csv.gz name, which eval then
    failed to inflate), a .pq name Parquet, an upper-case .CSV.GZ gzip that eval inflates too (pyarrow detects a
    lower-case suffix alone); a name of no format eval reads is refused naming --out, no file left."""
    path, z, y, w = _multiclass(tmp_path, dtype=np.float64)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    out = tmp_path / f"calibrated{suffix}"
    code, text, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out, "--json")
    assert code == 0, err
    assert json.loads(text)["format"] == ("parquet" if suffix == ".pq" else "csv")
    assert (out.read_bytes()[:4] == b"PAR1") == (suffix == ".pq")
    code, a, _ = _run(capsys, "eval", out, "--weight", "w", "--json")
    code_ref, b, _ = _run(capsys, "eval", path, "--weight", "w", "--calibration", cal, "--json")
    assert code == code_ref == 0
    for key, value in json.loads(b)["metrics"].items():
        assert json.loads(a)["metrics"][key] == pytest.approx(value, rel=1e-9), key
    for name in ("calibrated.txt", "calibrated.npz", "calibrated"):
        code, _, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", tmp_path / name)
        assert code == 2 and err.startswith("losskit: error: --out: expected a file name ending in .parquet"), err
        assert not (tmp_path / name).exists()


def test_apply_from_csv_to_csv_keeps_the_other_columns_text(tmp_path, capsys):
    """pyarrow's type inference rewrote "007" as 7, and failed with a raw ArrowInvalid where a column's
    text stopped looking like numbers far down the file (row 250,000; found in review). CSV to CSV
    now passes every other column through as its text; CSV to Parquet keeps the inferred types (so
    eval reads numbers) and names the file when inference fails."""
    import csv

    rng = np.random.default_rng(4)
    n = 120_000  # more than pyarrow's first block, where it infers the types
    z, y = _binary(tmp_path, n=n, seed=4)
    ids = [f"{i:06d}" if i < n - 10 else f"x{i}" for i in range(n)]
    zips = [f"{j:05d}" for j in rng.integers(0, 3000, n)]
    src = tmp_path / "ids.csv"
    with open(src, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "zip", "logit", "target"])
        writer.writerows(zip(ids, zips, map(repr, z.tolist()), y.tolist(), strict=True))
    cal = lk.calibrate(z, y)
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(cal.to_json())
    out = tmp_path / "out.csv"
    code, _, err = _run(capsys, "calibrate", "apply", src, "--calibration", cal_path, "--out", out)
    assert code == 0, err
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "zip", "logit", "target"]
    assert [r[0] for r in rows[1:]] == ids and [r[1] for r in rows[1:]] == zips
    assert [r[3] for r in rows[1:]] == [str(v) for v in y]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], z / cal.params["temperature"], rtol=1e-15)
    parquet = tmp_path / "never.parquet"
    code, _, err = _run(capsys, "calibrate", "apply", src, "--calibration", cal_path, "--out", parquet)
    assert code == 2 and err.count("\n") == 1 and "ids.csv" in err and "x119990" in err and ".csv" in err, err
    assert not parquet.exists() and not list(tmp_path.glob(".never*"))


def test_apply_over_parquet_files_whose_columns_differ_in_order_or_type(tmp_path, capsys):
    """Files that eval reads together (columns in another order, a target stored as double) failed after
    the earlier files were processed, with pyarrow's schema dump (found in review): written as the first
    file's schema; files with other columns are refused by name."""
    z, y = _binary(tmp_path, n=30, seed=5)
    a, b, c, d = (tmp_path / f"{k}.parquet" for k in "abcd")
    pq.write_table(pa.table({"logit": z[:10], "target": y[:10]}), a)
    pq.write_table(pa.table({"logit": z[10:20], "target": y[10:20].astype(np.float64)}), b)
    pq.write_table(pa.table({"target": y[20:], "logit": z[20:]}), c)
    pq.write_table(pa.table({"logit": z[:5], "label": y[:5]}), d)
    cal = lk.calibrate(z, y)
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(cal.to_json())
    out = tmp_path / "out.parquet"
    code, _, err = _run(capsys, "calibrate", "apply", a, b, c, "--calibration", cal_path, "--out", out)
    assert code == 0, err
    table = pq.read_table(out)
    assert table.column_names == ["logit", "target"] and table.schema.field("target").type == pa.int64()
    np.testing.assert_allclose(table.column("logit").to_numpy(), z / cal.params["temperature"], rtol=1e-15)
    np.testing.assert_array_equal(table.column("target").to_numpy(), y)
    never = tmp_path / "never.parquet"
    code, _, err = _run(capsys, "calibrate", "apply", a, d, "--calibration", cal_path, "--out", never)
    assert code == 2 and err.count("\n") == 1 and "d.parquet" in err and "label" in err, err
    assert not never.exists()


def test_apply_refuses_csv_for_a_list_column_before_any_work(tmp_path, capsys):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), 3),
                             "target": rng.integers(0, 3, 50)}), path)
    cal = tmp_path / "cal.json"
    cal.write_text(lk.calibrate(z.astype(np.float64), (z + rng.normal(size=z.shape)).argmax(axis=1)).to_json())
    out = tmp_path / "never.csv"
    code, _, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out)
    assert code == 2 and err.startswith("losskit: error: --out: expected a Parquet file"), err
    assert "'logits'" in err and "fixed_size_list" in err
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    # the same file to a Parquet name works
    assert _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", tmp_path / "ok.parquet")[0] == 0


@pytest.mark.parametrize(("args", "words"), [
    (["--pred", "prob_*"], ["--pred", "probability", "logits"]),
    (["--pred", "prob_*", "--pred-kind", "probs"], ["--pred-kind", "probability", "logits"]),
    (["--pred", "logit_*", "--target", "one", "--task", "multiclass"], ["target", "at least two classes"]),
    (["--pred", "nope"], ["--pred", "nope"]),
    (["--method", "platt"], ["--method: expected a method for the multiclass task"]),
    (["--method", "vector", "--l2", "inf"], ["l2", "a finite number >= 0", "inf"]),  # was LinAlgError + warnings
    (["--out", "nodir/c.json"], ["--out", "an existing directory", "'nodir' does not exist"]),  # was after the fit
    (["--method", "vector", "--l2", "1e308"], ["--method", "overflows float64", "--l2"]),  # was LinAlgError
    (["--batch-rows", "99999999999999999999999"], ["--batch-rows", "from 1 to 2147483647"]),  # was OverflowError
])
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, args, words, monkeypatch):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(300, 3))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": z[:, j] for j in range(3)}, **{f"prob_{j}": p[:, j] for j in range(3)},
                             "target": rng.integers(0, 3, 300), "one": np.zeros(300, dtype=np.int64)}), path)
    out = tmp_path / "cal.json"
    monkeypatch.chdir(tmp_path)  # a relative --out of the cases is in tmp_path
    code, _, err = _run(capsys, "calibrate", path, "--out", out, *args)
    assert code == 2, err
    assert err.startswith("losskit: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not out.exists() and not list(tmp_path.glob(".cal*"))


def test_pred_kind_logits_fits_logits_whose_columns_are_named_as_probabilities(tmp_path, capsys):
    """docs/calibration.md: `--pred-kind logits` takes columns named `prob*` as the logits they hold (the
    refusal of such columns says to pass it): the same calibration as from `logit*` columns."""
    path, z, y, w = _multiclass(tmp_path)
    table = pq.read_table(path)
    renamed = tmp_path / "named_prob.parquet"
    pq.write_table(table.rename_columns([c.replace("logit", "prob") for c in table.column_names]), renamed)
    assert _run(capsys, "calibrate", path, "--out", tmp_path / "a.json")[0] == 0
    code, _, err = _run(capsys, "calibrate", renamed, "--out", tmp_path / "b.json")
    assert code == 2 and "--pred-kind logits" in err
    assert _run(capsys, "calibrate", renamed, "--pred-kind", "logits", "--out", tmp_path / "b.json")[0] == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["params"] == b["params"] and a["params"]["temperature"] != 1.0


def test_calibrated_files_keep_their_metadata_and_are_not_calibrated_twice(tmp_path, capsys):
    """``calibrate apply`` keeps the input's ``losskit.*`` metadata (the task, the loss) and adds its own;
    its output, given to ``eval --calibration`` or ``calibrate apply`` again, is refused: the temperature
    would divide the logits a second time and eval would call the calibrated logits "uncalibrated"."""
    path, z, y, w = _multiclass(tmp_path)
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({b"losskit.task": b"multiclass", b"losskit.loss": b"Softmax"}), path)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    out = tmp_path / "calibrated.parquet"
    assert _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out)[0] == 0
    meta = pq.read_schema(out).metadata
    assert (meta[b"losskit.task"], meta[b"losskit.loss"], meta[b"losskit.pred_kind"]) == \
        (b"multiclass", b"Softmax", b"logits")
    for args in (("eval", out, "--calibration", cal), ("calibrate", "apply", out, "--calibration", cal,
                                                       "--out", tmp_path / "twice.parquet")):
        code, _, err = _run(capsys, *args)
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith("losskit: error: --calibration: expected uncalibrated logits") and "calibrated.parquet" in err
    # nor fitted on them: that calibration could never be applied to them
    code, _, err = _run(capsys, "calibrate", out, "--out", tmp_path / "again.json")
    assert code == 2 and err.startswith("losskit: error: PATH: expected uncalibrated logits"), err
    assert not (tmp_path / "twice.parquet").exists()
    assert _run(capsys, "eval", out, "--json")[0] == 0  # scored as it is, it is fine


def test_eval_refuses_a_calibration_of_another_task(tmp_path, capsys):
    path, z, y, w = _multiclass(tmp_path)
    cal = tmp_path / "cal.json"
    cal.write_text(lk.calibrate(np.array([2.0, -1.0, 0.5, -3.0]), np.array([1, 0, 0, 0])).to_json())
    code, _, err = _run(capsys, "eval", path, "--calibration", cal, "--json")
    assert code == 2 and "--calibration" in err and "binary" in err
    cal.write_text("{")
    code, _, err = _run(capsys, "eval", path, "--calibration", cal)
    assert code == 2 and "--calibration" in err


def test_html_report_with_calibration(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, *_ = _multiclass(tmp_path, n=600)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    html = tmp_path / "report.html"
    code, _, err = _run(capsys, "eval", path, "--calibration", cal, "--html", html)
    assert code == 0, err
    text = html.read_text()
    assert "Reliability diagrams: uncalibrated and calibrated" in text
    assert "uncalibrated:" in text and "<script" not in text
    if _chromium() is None:
        pytest.skip("needs chromium for the console check (CI installs it)")
    assert _console_messages(html, tmp_path / "report.png") == []


def test_dask_gives_the_same_temperature(tmp_path, capsys):
    """And with an empty file among the files: its piece has no sums, and merging them raised AttributeError on
    None (found in review)."""
    pytest.importorskip("distributed")
    path, z, y, w = _multiclass(tmp_path, n=4000)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), empty)
    single, clustered = tmp_path / "a.json", tmp_path / "b.json"
    assert _run(capsys, "calibrate", path, "--weight", "w", "--out", single, "--batch-rows", "600")[0] == 0
    code, text, err = _run(capsys, "calibrate", empty, path, "--weight", "w", "--out", clustered, "--batch-rows",
                           "600", "--dask", "--json")
    assert code == 0, err
    assert "local Dask cluster" in json.loads(text)["engine"]
    a, b = json.loads(single.read_text()), json.loads(clustered.read_text())
    assert b["params"]["temperature"] == pytest.approx(a["params"]["temperature"], rel=1e-12)
    assert b["nll_after"] == pytest.approx(a["nll_after"], rel=1e-12)


def test_variance_scaling_over_files_and_eval(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n = 2000
    mean, log_var = rng.normal(size=n), rng.normal(size=n) * 0.3
    target = mean + rng.normal(size=n) * np.exp(0.5 * log_var) * 1.5
    path = tmp_path / "g.parquet"
    pq.write_table(pa.table({"pred_mean": mean, "pred_log_var": log_var, "target": target}), path)
    out = tmp_path / "v.json"
    code, text, err = _run(capsys, "calibrate", path, "--method", "variance", "--pred", "pred_mean,pred_log_var",
                           "--out", out, "--json")
    assert code == 0, err
    info = json.loads(text)
    expect = np.mean((target - mean) ** 2 * np.exp(-log_var))
    assert info["task"] == "regression" and info["params"]["variance_factor"] == pytest.approx(expect, rel=1e-10)
    code, text, err = _run(capsys, "eval", path, "--pred", "pred_mean,pred_log_var", "--loss", "gaussian_nll",
                           "--calibration", out, "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["metrics"]["loss"] == pytest.approx(info["nll_after"], rel=1e-12)
    assert report["before"]["loss"] == pytest.approx(info["nll_before"], rel=1e-12)


def test_eval_with_calibration_on_dask_equals_one_process(tmp_path, capsys):
    pytest.importorskip("distributed")
    path, *_ = _multiclass(tmp_path, n=3000)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    code, single, err = _run(capsys, "eval", path, "--calibration", cal, "--json", "--batch-rows", "500")
    assert code == 0, err
    code, clustered, err = _run(capsys, "eval", path, "--calibration", cal, "--json", "--batch-rows", "500", "--dask")
    assert code == 0, err
    single, clustered = json.loads(single), json.loads(clustered)
    for part in ("metrics", "before"):
        for key, value in single[part].items():
            assert clustered[part][key] == pytest.approx(value, rel=1e-9), (part, key)


def test_separable_data_is_one_line_without_numpys_warnings(tmp_path, capsys):
    """The fit's overflow in exp printed NumPy's RuntimeWarning and its source line before the error."""
    path = tmp_path / "sep.csv"
    path.write_text("logit,target\n2,1\n-1,0\n3,1\n-2.5,0\n")
    code, _, err = _run(capsys, "calibrate", path, "--out", tmp_path / "c.json")
    assert code == 2 and err.count("\n") == 1 and "no minimiser" in err and "Warning" not in err, err


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """A directory not writable, or a name too long for the file system: named by its option at once; they
    surfaced as PermissionError / OSError (no option named) after the whole fit or scoring."""
    path, z, y, w = _multiclass(tmp_path, n=600)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    long_name = "a" * 250
    cases = [("calibrate", path, "--out", tmp_path / f"{long_name}.json"),
             ("eval", path, "--html", tmp_path / f"{long_name}.html"),
             ("calibrate", "apply", path, "--calibration", cal, "--out", tmp_path / f"{long_name}.parquet")]
    for args in cases:
        code, _, err = _run(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "expected a file name of at most" in err, err
        assert ("--html" if "--html" in args else "--out") in err
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    for option, args in (("--out", ("calibrate", path, "--out", tmp_path / "ro" / "c.json")),
                         ("--html", ("eval", path, "--html", tmp_path / "ro" / "r.html"))):
        code, _, err = _run(capsys, *args)
        assert code == 2 and err == f"losskit: error: {option}: the directory '{tmp_path / 'ro'}' is not writable\n"
    assert list((tmp_path / "ro").iterdir()) == []


def test_messages_name_the_option_that_is_wrong(tmp_path, capsys, monkeypatch):
    """Each named another option, or none: --pred given the target column (said "--target: no column named
    'target'"), a label 1.5 among classes (blamed --pred without saying the task came out regression),
    weights all 0 (said "only 1s"), an unreadable file ("paths:")."""
    path = tmp_path / "p.csv"
    path.write_text("logit_0,logit_1,logit_2,target,w\n1,0,0,0,0\n0,1,0,1.5,0\n0,0,1,2,0\n0,1,0,1,0\n")
    code, _, err = _run(capsys, "eval", path, "--pred", "target")
    assert code == 2 and err.startswith("losskit: error: --pred: expected columns other than the target, got 'target'")
    code, _, err = _run(capsys, "eval", path)
    assert code == 2 and "the task was detected from the target as regression" in err and "--task" in err, err
    binary = tmp_path / "b.csv"
    binary.write_text("logit,target,w\n1,1,0\n-1,0,0\n2,1,0\n")
    code, _, err = _run(capsys, "calibrate", binary, "--weight", "w", "--out", tmp_path / "c.json")
    assert code == 2 and err == "losskit: error: --weight: expected some weight > 0, got only weights of 0; " \
                                "a calibration fits the weighted rows\n", err
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("b.csv") else real_access(p, mode))
    code, _, err = _run(capsys, "eval", binary)
    assert code == 2 and err.startswith("losskit: error: PATH: "), err


def test_apply_refuses_the_options_of_a_fit_and_takes_pred_kind(tmp_path, capsys):
    """`calibrate apply` ignored the fit's options: --weight no_such_col, --target, --task, --method, --l2,
    --scheduler were accepted and a file written; --pred-kind logits (how a fit takes prob* columns holding
    logits) was ignored, and apply refused the columns the fit had used (found in review). The fit's options
    are refused by name, nothing written; --pred-kind logits applies the calibration to the prob* columns."""
    path, z, y, w = _multiclass(tmp_path)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    out = tmp_path / "calibrated.parquet"
    for option in (["--weight", "no_such_col"], ["--target", "target"], ["--task", "multiclass"],
                   ["--method", "vector"], ["--l2", "5"], ["--scheduler", "tcp://10.255.255.1:1"], ["--dask"]):
        code, _, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out, *option)
        assert code == 2 and err.count("\n") == 1, (option, err)
        assert f"error: {option[0]}: expected no {option[0]} with `losskit calibrate apply`" in err, err
        assert not out.exists()
    # prob* columns that hold logits: the fit takes them with --pred-kind logits, and so does apply
    named = tmp_path / "named.parquet"
    pq.write_table(pa.table({f"prob_{j}": z[:, j] for j in range(z.shape[1])} | {"target": y}), named)
    code, _, err = _run(capsys, "calibrate", "apply", named, "--calibration", cal, "--out", out)
    assert code == 2 and "--pred-kind logits if these columns hold logits" in err, err
    code, _, err = _run(capsys, "calibrate", "apply", named, "--calibration", cal, "--out", out, "--pred-kind", "logits")
    assert code == 0, err
    t = json.loads(cal.read_text())["params"]["temperature"]
    np.testing.assert_allclose(pq.read_table(out).column("prob_1").to_numpy(), z[:, 1] / np.float32(t), rtol=1e-6)
    code, _, err = _run(capsys, "calibrate", "apply", named, "--calibration", cal, "--out", out, "--pred-kind", "probs")
    assert code == 2 and "--pred-kind: expected logits, got probs" in err, err


def test_apply_with_a_directory_named_apply_in_the_working_directory(tmp_path, capsys, monkeypatch):
    """A file or directory named `apply` in the working directory made `calibrate apply ... --calibration` a fit on
    it, which then refused --calibration (found in review). With --calibration it is the subcommand; without, the
    directory is fitted on, as before."""
    path, z, y, w = _multiclass(tmp_path)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    t = json.loads(cal.read_text())["params"]["temperature"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "apply").mkdir()  # a directory of prediction files
    shutil.copy(path, tmp_path / "apply" / "m.parquet")
    out = tmp_path / "calibrated.parquet"
    code, _, err = _run(capsys, "calibrate", "apply", path, "--calibration", cal, "--out", out)
    assert code == 0, err
    np.testing.assert_allclose(pq.read_table(out).column("logit_1").to_numpy(), z[:, 1] / np.float32(t), rtol=1e-6)
    # no --calibration: the directory named apply holds prediction files, fitted on with the other one
    code, _, err = _run(capsys, "calibrate", "apply", path, "--out", tmp_path / "fit.json")
    assert code == 0, err
    assert json.loads((tmp_path / "fit.json").read_text())["params"]["temperature"] == pytest.approx(t, rel=1e-6)


def test_a_class_missing_from_the_files_is_named_in_the_command_lines_words(tmp_path, capsys):
    """Vector scaling on files without a class said "target: ... without l2 ... give l2 > 0", the library's
    words, where the rest of the command says --target and --l2 (found in review)."""
    path, z, y, w = _multiclass(tmp_path)
    keep = y != 3
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": z[keep, j] for j in range(4)}, "target": y[keep]}), missing)
    code, _, err = _run(capsys, "calibrate", missing, "--method", "vector", "--out", tmp_path / "v.json")
    assert code == 2 and err.count("\n") == 1, err
    assert "error: --target: expected every class for vector scaling without --l2" in err and "give --l2 > 0" in err


def test_two_prediction_columns_for_one_target_value_advise_the_variance_method(tmp_path, capsys):
    """The advice was eval's: "a mean and a log-variance per value: --loss gaussian_nll", an option calibrate
    has not (found in review); calibrate names its own --method variance."""
    rng = np.random.default_rng(3)
    path = tmp_path / "reg.parquet"
    pq.write_table(pa.table({"mean": rng.normal(size=50), "log_var": rng.normal(size=50),
                             "target": rng.normal(size=50)}), path)
    code, _, err = _run(capsys, "calibrate", path, "--pred", "mean", "--pred", "log_var", "--out", tmp_path / "c.json")
    assert code == 2 and err.count("\n") == 1, err
    assert "a mean and a log-variance per value: --method variance" in err and "--loss" not in err, err


def test_a_logit_cell_that_is_not_a_number_is_named_without_the_csv_advice(tmp_path, capsys):
    """A non-numeric logit in a CSV being calibrated to Parquet was answered "write --out as .csv", which cannot
    help (prediction columns are numbers on both paths; found in review): eval's words for it (column, row,
    value), nothing written, and an earlier file at --out kept."""
    path, z, y, w = _multiclass(tmp_path, k=2)
    cal = tmp_path / "cal.json"
    assert _run(capsys, "calibrate", path, "--out", cal)[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("logit_0,logit_1,target\n" + "".join(f"{a},{b},{t}\n" for a, b, t in zip(z[:50, 0], z[:50, 1], y[:50], strict=True))
                   + "abc,0.5,1\n")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"earlier")
    code, _, err = _run(capsys, "calibrate", "apply", bad, "--calibration", cal, "--out", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "bad.csv: column 'logit_0', row 50 (line 52): expected a number, got 'abc'" in err, err
    assert "write --out as .csv" not in err and out.read_bytes() == b"earlier"
