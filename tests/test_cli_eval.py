"""``losskit eval``: JSON and HTML output, one-line errors with exit code 2 and no partial report,
the HTML page in headless Chromium, and the chain from ``losskit demo``."""

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
sk = pytest.importorskip("sklearn.metrics")

from losskit.cli import main  # noqa: E402

KEYS = {"task", "reason", "rows", "version", "metrics"}


def _file(tmp_path, name="p.parquet", n=400, seed=0, **extra):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    path = tmp_path / name
    pq.write_table(pa.table({"logit": z, "target": y, **extra}), path, row_group_size=100)
    return path, z, y


def _run(capsys, *args):
    return _run_command(capsys, "eval", *args)


def _run_command(capsys, command: str, *args):
    code = main([command, *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_has_the_documented_keys(tmp_path, capsys):
    path, z, y = _file(tmp_path)
    code, out, err = _run(capsys, path, "--json", "--batch-rows", "64")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= KEYS
    assert set(report["metrics"]) == {"loss", "log_loss", "accuracy", "roc_auc", "brier", "ece", "average_precision",
                                      "f1", "mce", "ece_adaptive"}
    assert report["rows"] == 400 and report["task"] == "binary"
    assert report["metrics"]["roc_auc"] == pytest.approx(sk.roc_auc_score(y, z), rel=1e-9)


def test_table_prints_the_reason_and_metrics(tmp_path, capsys):
    path, _, _ = _file(tmp_path)
    code, out, _ = _run(capsys, path)
    assert code == 0
    assert "binary" in out and "ROC AUC" in out and "log-loss" in out


def test_columns_by_glob_and_comma_list(tmp_path, capsys):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 3))
    y = rng.integers(0, 3, 200)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"score_a": z[:, 0], "score_b": z[:, 1], "score_c": z[:, 2], "label": y}), path)
    for pred in (["--pred", "score_*"], ["--pred", "score_a,score_b", "--pred", "score_c"]):
        code, out, err = _run(capsys, path, *pred, "--target", "label", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["task"] == "multiclass" and report["columns"]["pred"] == ["score_a", "score_b", "score_c"]
        assert report["metrics"]["accuracy"] == pytest.approx(sk.accuracy_score(y, z.argmax(1)), rel=1e-12)


@pytest.mark.parametrize(("make", "args", "words"), [
    (lambda d: d / "missing.parquet", [], ["missing.parquet"]),
    (lambda d: _file(d)[0], ["--pred", "nope"], ["--pred", "nope"]),
    (lambda d: _file(d, logit2=np.where(np.arange(400) == 333, np.nan, 0.0))[0], ["--pred", "logit2"],
     ["p.parquet", "logit2", "row 333"]),
    (lambda d: _file(d)[0], ["--pred-kind", "probs"], ["p.parquet", "logit", "[0, 1]"]),
    (lambda d: _file(d)[0], ["--target", "logit", "--pred", "target", "--task", "binary", "--pred-kind", "logits"],
     ["p.parquet", "logit"]),
    # probabilities in a column whose name says nothing: refused, never scored as logits
    (lambda d: _file(d, p=np.linspace(0.01, 0.99, 400))[0], ["--pred", "p"],
     ["--pred-kind", "p.parquet", "columns p,", "[0, 1]"]),
])
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, make, args, words):
    path = make(tmp_path)
    html = tmp_path / "report.html"
    code, out, err = _run(capsys, path, *args, "--html", html)
    assert code == 2
    assert err.startswith("losskit: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err
    assert not html.exists()
    assert not list(tmp_path.glob(".report*"))


def test_ragged_csv_names_the_line(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("logit,target\n0.5,1\n-0.2,0\n0.3\n1.0,1\n")
    code, _, err = _run(capsys, path)
    assert code == 2
    assert "r.csv" in err and "line 4" in err


def test_npz_of_mismatched_lengths(tmp_path, capsys):
    path = tmp_path / "m.npz"
    np.savez(path, logit=np.zeros(5), target=np.zeros(4))
    code, _, err = _run(capsys, path)
    assert code == 2
    assert "m.npz" in err and "length" in err


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _console_messages(page, screenshot):
    """Console lines Chromium logs while loading ``page`` headless (and its screenshot)."""
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--window-size=1100,2400", f"--screenshot={screenshot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert screenshot.exists(), out.stderr
    return [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def _require_chromium():
    """Skip, by name and reason, where chromium is missing; fail in CI (CI=true), which must run this
    test (.ci/run installs chromium and stops when it cannot)."""
    if _chromium() is not None:
        return
    reason = "chromium (or chromium-browser, google-chrome) is not on PATH"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must open the HTML report in a browser: {reason}")
    pytest.skip(f"{reason}: the HTML report is not opened in a browser here (CI installs it)")


def test_html_report_opens_in_chromium_without_console_errors(tmp_path, capsys):
    _require_chromium()
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, (500, 5))
    y = rng.integers(0, 5, 500)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({**{f"logit_{k}": z[:, k] for k in range(5)}, "target": y}), path)
    html = tmp_path / "report.html"
    code, _, err = _run(capsys, path, "--html", html)
    assert code == 0, err
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 2  # reliability diagram and confusion matrix, embedded
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert _console_messages(html, tmp_path / "report.png") == []
    # the check itself can fail: a page with a script error is caught
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("</body>", "<script>console.error('broken');</script></body>"))
    assert any("broken" in line for line in _console_messages(broken, tmp_path / "broken.png"))


def test_demo_predictions_chain_into_eval(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--task", "multiclass", "--epochs", "2", "--out", str(out), "--json"]) == 0
    demo = json.loads(capsys.readouterr().out)["tasks"]["multiclass"]
    code, text, err = _run(capsys, out / "predictions.parquet", "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["task"] == "multiclass" and report["rows"] == demo["n_val"]
    assert report["metrics"]["loss"] == pytest.approx(demo["val_loss"][-1], rel=1e-9)
    assert report["metrics"]["accuracy"] == pytest.approx(demo["metrics"]["accuracy"], rel=1e-12)


def test_dask_flag_starts_a_local_cluster_with_the_same_numbers(tmp_path, capsys):
    pytest.importorskip("distributed")
    path, _, _ = _file(tmp_path, n=3000)
    code, single, err = _run(capsys, path, "--json", "--batch-rows", "500")
    assert code == 0, err
    code, clustered, err = _run(capsys, path, "--json", "--batch-rows", "500", "--dask")
    assert code == 0, err
    single, clustered = json.loads(single), json.loads(clustered)
    assert "local Dask cluster" in clustered["engine"] and clustered["rows"] == 3000
    for key, value in single["metrics"].items():
        assert clustered["metrics"][key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_worker_error_under_dask_is_one_line_on_stderr(tmp_path, command):
    """distributed logged the worker's failure ("distributed.worker - ERROR - Compute Failed", its traceback: 8
    lines) beside the one-line error (review); calibrate --dask still did (its own cluster code), and both printed
    distributed's "Port 8787 is already in use" warning when another cluster held the port (found in review:
    held here). The worker processes write to the command's stderr, so the command runs in a process of its
    own here."""
    pytest.importorskip("distributed")
    import socket
    import sys

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 3000)
    labels[2650] = 9
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": rng.normal(size=3000) for j in range(5)}, "target": labels}), path,
                   row_group_size=500)
    options = ["--out", str(tmp_path / "c.json")] if command == "calibrate" else []
    with socket.socket() as held:
        try:
            held.bind(("", 8787))
            held.listen()
        except OSError:  # held already (another cluster): the case itself
            pass
        done = subprocess.run([sys.executable, "-c", "import sys; from losskit.cli import main; sys.exit(main())",
                               command, str(path), "--dask", *options], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"losskit: error: {path}: column 'target', row 2650: expected a class index "
                                        "in 0..4, got 9"]


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_scheduler_without_workers_is_refused_after_a_wait(tmp_path, monkeypatch, capsys, command):
    """A scheduler with no workers: the run waited for one forever, without a word (review); calibrate still did
    (found in review)."""
    distributed = pytest.importorskip("distributed")
    from losskit.evaluation import cluster

    path, _, _ = _file(tmp_path)
    monkeypatch.setattr(cluster, "WORKER_WAIT", 0.5)
    options = ["--out", str(tmp_path / "c.json")] if command == "calibrate" else []
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        code, out, err = _run_command(capsys, command, path, "--scheduler", empty.scheduler_address, *options)
    assert code == 2
    assert err.startswith("losskit: error: --scheduler: expected a Dask scheduler with workers, got ")
    assert err.endswith("which had none after 0.5 s\n") and err.count("\n") == 1, err


def test_json_gives_null_for_a_metric_that_overflows(tmp_path, capsys):
    """Finite predictions near 1e200 square to inf: --json failed with Python's "Out of range float values
    are not JSON compliant" and a traceback; it now writes null (JSON has no inf), and the table inf."""
    path = tmp_path / "huge.csv"
    path.write_text("pred,target\n1e200,0.5\n-1e200,1.5\n3,2.5\n")
    code, out, err = _run(capsys, path, "--json")
    assert code == 0 and err == "", err
    report = json.loads(out)
    assert report["metrics"]["mse"] is None and report["metrics"]["mae"] == pytest.approx(2e200 / 3)
    code, out, err = _run(capsys, path)
    assert code == 0 and "inf" in out and err == "", err


def test_a_regression_reading_of_soft_labels_does_not_advise_a_binary_task(tmp_path, capsys):
    """type_of_target's advice ("pass task='binary' for soft labels") suits a head, which trains on soft
    labels, not eval, whose binary metrics need 0/1 labels and refuse 0.5."""
    path = tmp_path / "soft.csv"
    path.write_text("logit,target\n1,1\n-1,0.5\n2,1\n-2,0.5\n")
    code, out, err = _run(capsys, path, "--json")
    # and logits read as a regression's values are refused (they were scored as values: review)
    assert code == 2 and out == "" and "soft labels" not in err
    assert "got regression" in err and "the task was detected from the target as regression" in err


def test_the_targets_advice_names_the_flag_on_the_command_line_and_the_keyword_from_python(tmp_path, capsys):
    """type_of_target's advice is worded for a head's keyword (task='multiclass'): losskit eval printed it as is,
    beside its own '--task' (review)."""
    import losskit as lk

    path = tmp_path / "t.csv"
    path.write_text("logit,target\n1,-1.0\n2,0.0\n3,1.0\n0.5,0.0\n")
    code, _, err = _run(capsys, path)
    assert code == 2 and "pass --task multiclass) for classes, or pass --task regression" in err
    assert "task='" not in err
    with pytest.raises(lk.LossInputError, match=r"pass task='multiclass'\) for classes, or pass task='regression'"):
        lk.evaluate(path)
