"""``losskit.evaluate`` end to end: files in, every number against scikit-learn, streaming and
Dask equal to one pass, bad input refused by file, column and row."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
sk = pytest.importorskip("sklearn.metrics")

import losskit as lk  # noqa: E402
from losskit import LossInputError  # noqa: E402

RTOL = 1e-9


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write_parquet(path, columns: dict, row_group_size=50, metadata=None):
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture
def binary_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < _sigmoid(z)).astype(np.int64)
    w = rng.uniform(0.1, 3.0, n)
    return write_parquet(tmp_path / "binary.parquet", {"logit": z, "target": y, "w": w}), z, y, w


def test_binary_equals_sklearn(binary_file):
    path, z, y, w = binary_file
    report = lk.evaluate(path, weight="w", batch_rows=77)
    p = _sigmoid(z)
    m = report.metrics
    assert report.task == "binary" and report.rows == len(z)
    assert "0/1" in report.reason or "binary" in report.reason
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p, sample_weight=w), rel=RTOL)
    assert m["loss"] == pytest.approx(sk.log_loss(y, p, sample_weight=w), rel=RTOL)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p > 0.5, sample_weight=w), rel=RTOL)
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p, sample_weight=w), rel=RTOL)
    assert m["brier"] == pytest.approx(sk.brier_score_loss(y, p, sample_weight=w), rel=RTOL)
    assert report.auc["method"] == "exact"
    assert 0 <= m["ece"] < 0.2


def test_binary_probabilities_and_float32(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.99, 500).astype(np.float32)
    y = (rng.random(500) < p).astype(np.int8)
    path = write_parquet(tmp_path / "p.parquet", {"prob": p, "target": y})
    report = lk.evaluate(path, batch_rows=64)
    assert report.pred_kind == "probs" and report.loss_name == "BinaryCrossEntropy"
    p64 = p.astype(np.float64)
    assert report.metrics["log_loss"] == pytest.approx(sk.log_loss(y, p64), rel=1e-6)
    assert report.metrics["brier"] == pytest.approx(sk.brier_score_loss(y, p64), rel=1e-6)
    assert report.metrics["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p64), rel=1e-6)


def test_multiclass_equals_sklearn(tmp_path):
    rng = np.random.default_rng(2)
    n, k = 900, 8
    z = rng.normal(0, 1.5, (n, k))
    y = rng.integers(0, k, n)
    w = rng.uniform(0.5, 2.0, n)
    path = write_parquet(tmp_path / "mc.parquet", {**{f"logit_{j}": z[:, j] for j in range(k)}, "target": y, "w": w})
    report = lk.evaluate(path, weight="w", batch_rows=100)
    p = _softmax(z)
    m = report.metrics
    assert report.task == "multiclass"
    assert m["loss"] == pytest.approx(sk.log_loss(y, p, sample_weight=w, labels=range(k)), rel=RTOL)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p, sample_weight=w, labels=range(k)), rel=RTOL)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p.argmax(1), sample_weight=w), rel=RTOL)
    assert m["top5_accuracy"] == pytest.approx(sk.top_k_accuracy_score(y, p, k=5, sample_weight=w,
                                                                       labels=range(k)), rel=RTOL)
    per_class = report.tables["per_class"]
    assert len(per_class) == k
    recall = sk.recall_score(y, p.argmax(1), average=None, sample_weight=w, labels=range(k))
    np.testing.assert_allclose([r["recall"] for r in per_class], recall, rtol=RTOL)
    np.testing.assert_allclose([r["support"] for r in per_class], np.bincount(y, w, k), rtol=RTOL)
    confusion = sk.confusion_matrix(y, p.argmax(1), sample_weight=w, labels=range(k))
    np.testing.assert_allclose(report.figures["confusion"], confusion, rtol=RTOL)


def test_multilabel_equals_sklearn(tmp_path):
    rng = np.random.default_rng(3)
    n, k = 700, 4
    z = rng.normal(0, 2, (n, k))
    y = (rng.random((n, k)) < _sigmoid(z)).astype(np.int64)
    cols = {**{f"logit_{j}": z[:, j] for j in range(k)}, **{f"target_{j}": y[:, j] for j in range(k)}}
    report = lk.evaluate(write_parquet(tmp_path / "ml.parquet", cols), batch_rows=90)
    p = _sigmoid(z)
    m = report.metrics
    assert report.task == "multilabel"
    assert m["hamming_loss"] == pytest.approx(sk.hamming_loss(y, p > 0.5), rel=RTOL)
    assert m["exact_match"] == pytest.approx(sk.accuracy_score(y, p > 0.5), rel=RTOL)
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p, average="macro"), rel=RTOL)
    expected_loss = sum(sk.log_loss(y[:, j], p[:, j]) for j in range(k))  # BCE summed over the labels
    assert m["loss"] == pytest.approx(expected_loss, rel=RTOL)
    per_label = report.tables["per_label"]
    np.testing.assert_allclose([r["roc_auc"] for r in per_label], sk.roc_auc_score(y, p, average=None), rtol=RTOL)


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_equals_sklearn(tmp_path, outputs):
    rng = np.random.default_rng(4)
    n = 800
    y = rng.normal(1e3, 5.0, (n, outputs))
    pred = y + rng.normal(0, 1.0, (n, outputs))
    w = rng.uniform(0.2, 1.0, n)
    names = ["pred"] if outputs == 1 else [f"pred_{j}" for j in range(outputs)]
    targets = ["target"] if outputs == 1 else [f"target_{j}" for j in range(outputs)]
    cols = {**{c: pred[:, j] for j, c in enumerate(names)}, **{c: y[:, j] for j, c in enumerate(targets)}, "w": w}
    report = lk.evaluate(write_parquet(tmp_path / "r.parquet", cols), task="regression", weight="w", batch_rows=123)
    m = report.metrics
    assert m["mse"] == pytest.approx(sk.mean_squared_error(y, pred, sample_weight=w), rel=RTOL)
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, pred, sample_weight=w), rel=RTOL)
    assert m["r2"] == pytest.approx(sk.r2_score(y, pred, sample_weight=w), rel=RTOL)
    assert m["loss"] == pytest.approx(sk.mean_squared_error(y, pred, sample_weight=w), rel=RTOL)
    assert report.figures["residuals"]["weights"]


def test_catalogue_loss_through_loss_option(binary_file):
    path, z, y, w = binary_file
    report = lk.evaluate(path, weight="w", loss="focal")
    expected = lk.SigmoidFocalLoss(reduction="none")(z, y.astype(float))
    assert report.loss_name == "SigmoidFocalLoss"
    assert report.metrics["loss"] == pytest.approx(np.sum(w * expected) / np.sum(w), rel=RTOL)


def test_batches_and_formats_give_the_same_numbers(tmp_path, binary_file):
    path, z, y, w = binary_file
    reference = lk.evaluate(path, weight="w").metrics
    np.savez(tmp_path / "b.npz", logit=z, target=y, w=w)
    csv = tmp_path / "b.csv"
    np.savetxt(csv, np.column_stack([z, y, w]), delimiter=",", header="logit,target,w", comments="", fmt="%.17g")
    for source, rows in ((path, 1), (tmp_path / "b.npz", 333), (csv, 1000)):
        got = lk.evaluate(source, weight="w", batch_rows=rows).metrics
        for key, value in reference.items():
            assert got[key] == pytest.approx(value, rel=1e-12), (source, key)


def test_binned_auc_within_its_bound(binary_file):
    path, z, y, w = binary_file
    report = lk.evaluate(path, weight="w", auc_exact_limit=100)
    exact = sk.roc_auc_score(y, z, sample_weight=w)
    assert report.auc["method"] == "binned"
    assert 0 < report.auc["bound"] < 1e-2
    assert abs(report.metrics["roc_auc"] - exact) <= report.auc["bound"]


@pytest.fixture(scope="module")
def two_workers():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_dask_equals_single_process(tmp_path, two_workers, monkeypatch):
    """And with paths relative to a directory the workers do not run in: they met FileNotFoundError, naming a file
    the client has (found in review); the paths are made absolute for them."""
    rng = np.random.default_rng(5)
    n, k = 4000, 6
    z = rng.normal(0, 1.5, (n, k))
    y = rng.integers(0, k, n)
    w = rng.uniform(0.5, 2.0, n)
    cols = {**{f"logit_{j}": z[:, j] for j in range(k)}, "target": y, "w": w}
    for part in range(3):  # several files, several row groups each
        rows = slice(part * n // 3, (part + 1) * n // 3)
        write_parquet(tmp_path / f"part-{part}.parquet", {c: v[rows] for c, v in cols.items()}, row_group_size=200)
    single = lk.evaluate(tmp_path, weight="w", batch_rows=500)
    clustered = lk.evaluate(tmp_path, weight="w", batch_rows=500, scheduler=two_workers)
    assert clustered.rows == single.rows == n
    assert "2 worker" in clustered.engine
    for key, value in single.metrics.items():
        assert clustered.metrics[key] == pytest.approx(value, rel=1e-9), key
    for a, b in zip(single.tables["per_class"], clustered.tables["per_class"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-9)
    monkeypatch.chdir(tmp_path)  # (the workers started elsewhere)
    relative = lk.evaluate(["part-0.parquet", "part-1.parquet", "part-2.parquet"], weight="w", batch_rows=500,
                           scheduler=two_workers)
    assert relative.metrics["loss"] == pytest.approx(single.metrics["loss"], rel=1e-9)


def test_dask_worker_errors_name_file_and_row(tmp_path, two_workers):
    z = np.zeros(300)
    z[250] = np.nan
    write_parquet(tmp_path / "bad.parquet", {"logit": z, "target": np.zeros(300, dtype=np.int64)})
    with pytest.raises(LossInputError, match=r"bad\.parquet.*logit.*row 250"):
        lk.evaluate(tmp_path / "bad.parquet", scheduler=two_workers, task="binary")


@pytest.mark.parametrize(("columns", "options", "pattern"), [
    ({"logit": [0.1, 0.2, 0.3], "target": [0, 1, 2]}, {"task": "binary"}, r"target.*row 2.*0 or 1"),
    ({"logit_0": [0.1, 0.2], "logit_1": [0.3, 0.1], "target": [0, 5]}, {}, r"target.*row 1.*0\.\.1"),
    ({"prob": [0.1, 1.2, 0.3], "target": [0, 1, 1]}, {}, r"prob.*row 1.*\[0, 1\]"),
    ({"prob_0": [0.5, 0.9], "prob_1": [0.5, 0.3], "target": [0, 1]}, {}, r"row 1.*sum"),
])
def test_bad_values_are_named(tmp_path, columns, options, pattern):
    path = write_parquet(tmp_path / "bad.parquet", {k: np.asarray(v) for k, v in columns.items()})
    with pytest.raises(LossInputError, match=pattern) as info:
        lk.evaluate(path, **options)
    assert "bad.parquet" in str(info.value)


@pytest.mark.parametrize(("options", "pattern"), [
    ({"weight": "w"}, r"^weight: expected weights whose sum fits float64"),
    ({"auc_exact_limit": -1}, r"^auc_exact_limit: expected an integer >= 0"),
    ({"auc_exact_limit": 2.5}, r"^auc_exact_limit: expected an integer >= 0"),
    ({"weight": 3}, r"^weight: expected a column name or glob, or a list of them, got 3"),
])
def test_arguments_that_reached_raw_errors_or_were_taken_silently_are_named(tmp_path, options, pattern):
    """Finite weights summing past float64 gave a raw ValueError from np.bincount; auc_exact_limit -1 or 2.5
    silently switched ROC AUC to binned; weight=3 a raw TypeError (found in review)."""
    path = write_parquet(tmp_path / "w.parquet", {"logit": [0.1, 2.0, -1.0], "target": [1, 0, 1],
                                                   "w": [1e308, 1e308, 1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy warning on the way
        with pytest.raises(LossInputError, match=pattern):
            lk.evaluate(path, **options)


def test_float32_weights_near_their_max_and_integer_or_array_arguments_are_taken(tmp_path):
    """The diff review: float32 weights of 1e37 (valid, their float64 sum too) were refused because the check
    summed them in float32; auc_exact_limit=np.int64(1000) and pred given as a NumPy array or a pandas
    Index of names were refused by the new argument checks. Each equals the plain call."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=100), (rng.random(100) < 0.5).astype(np.int64)
    path = write_parquet(tmp_path / "w.parquet", {"logit": z, "target": y, "w": np.full(100, 1e37, np.float32)})
    plain = lk.evaluate(path).metrics
    assert lk.evaluate(path, weight="w").metrics["log_loss"] == pytest.approx(plain["log_loss"], rel=1e-12)
    assert lk.evaluate(path, auc_exact_limit=np.int64(1000)).metrics == plain
    assert lk.evaluate(path, pred=np.array(["logit"])).metrics == plain
    assert lk.evaluate(path, pred=pd.Index(["logit"])).metrics == plain


def test_errors_name_the_keyword_arguments_and_the_cli_the_flags(tmp_path, capsys):
    """lk.evaluate's errors name its keywords (``pred_kind``), ``losskit eval``'s the flags (``--pred-kind``): a
    Python caller was told to pass --pred-kind (found in review). Flags of other commands are left as they are."""
    from losskit.cli import main

    path = write_parquet(tmp_path / "p.parquet", {"pred": [0.2, 0.7, 0.4], "target": [0, 1, 1]})
    with pytest.raises(LossInputError) as caught:
        lk.evaluate(path)
    message = str(caught.value)
    assert message.startswith("pred_kind: expected logits or probs") and "p.parquet" in message
    assert message.endswith("pass pred_kind='probs' if they are probabilities, pred_kind='logits' if they are logits")
    assert "--" not in message
    with pytest.raises(LossInputError, match=r"^dask: expected either dask=True \(a local cluster\) or "
                                             r"scheduler='ADDRESS', got both$"):
        lk.evaluate(path, dask=True, scheduler="tcp://localhost:1")
    assert lk.evaluate(path, pred_kind="probs", task="binary").reason == "task='binary' given"
    with pytest.raises(LossInputError, match="^batch_rows: expected an integer from 1"):
        lk.evaluate(path, batch_rows=0)
    with pytest.raises(LossInputError, match=r"^calibration: expected a calibration JSON file \(losskit calibrate "
                                             r"--out\), got '.*missing\.json'"):
        lk.evaluate(path, pred_kind="probs", calibration=tmp_path / "missing.json")
    assert main(["eval", str(path)]) == 2
    assert capsys.readouterr().err.startswith("losskit: error: --pred-kind: expected logits or probs")


def test_width_mismatch_names_the_option(tmp_path):
    path = write_parquet(tmp_path / "w.parquet", {"logit_0": [0.1, 0.2], "logit_1": [0.1, 0.3],
                                                   "target_0": [0, 1], "target_1": [1, 1], "target_2": [0, 0]})
    with pytest.raises(LossInputError, match=r"^target: expected one 0/1 column per label \(2, as pred has\)"):
        lk.evaluate(path, task="multilabel")


def test_the_detected_tasks_advice_is_given_only_where_the_columns_disagree_with_it(binary_file, tmp_path):
    """An unknown --loss is the loss's error alone (the advice to check the target and pass --task was appended
    to it); two prediction columns beside one regression target say which losses take them."""
    with pytest.raises(LossInputError, match="^loss: expected one of") as error:
        lk.evaluate(binary_file[0], loss="nonsense")
    assert "detected" not in str(error.value)
    rng = np.random.default_rng(0)
    path = write_parquet(tmp_path / "g.parquet", {"pred_0": rng.normal(size=20), "pred_1": rng.normal(size=20),
                                                   "target": rng.normal(size=20)})
    with pytest.raises(LossInputError, match="^pred: .*got 2; a mean and a log-variance per value: "
                                             "loss='gaussian_nll'; quantiles: loss='quantile'; the task was detected"):
        lk.evaluate(path)
    assert lk.evaluate(path, loss="gaussian_nll").task == "regression"


def test_probabilities_refuse_a_logit_loss(binary_file, tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"prob": [0.2, 0.7], "target": [0, 1]})
    with pytest.raises(LossInputError, match="^loss: expected no loss with probabilities"):
        lk.evaluate(path, loss="focal")


def test_multilabel_labels_share_the_exact_auc_limit(tmp_path):
    rng = np.random.default_rng(6)
    n, k = 300, 3
    z = rng.normal(0, 2, (n, k))
    y = (rng.random((n, k)) < _sigmoid(z)).astype(np.int64)
    cols = {**{f"logit_{j}": z[:, j] for j in range(k)}, **{f"target_{j}": y[:, j] for j in range(k)}}
    path = write_parquet(tmp_path / "ml.parquet", cols)
    assert lk.evaluate(path, auc_exact_limit=n * k).auc["method"] == "exact"
    binned = lk.evaluate(path, auc_exact_limit=n * k - 1)
    assert binned.auc["method"] == "binned"
    for row, exact in zip(binned.tables["per_label"], sk.roc_auc_score(y, z, average=None), strict=True):
        assert abs(row["roc_auc"] - exact) <= row["auc_bound"] * (1 + 1e-9)  # can be reached: slack for rounding


def test_multilabel_labels_left_out_of_the_macro_auc_are_reported(tmp_path):
    """A label of one class only has no ROC AUC: the macro mean is over the others (scikit-learn's per-label
    values), and the report says which (the metrics' list was dropped before reaching the report and JSON)."""
    from losskit.evaluation.report import summary_rows

    rng = np.random.default_rng(8)
    n = 200
    z = rng.normal(0, 2, (n, 3))
    y = (rng.random((n, 3)) < _sigmoid(z)).astype(np.int64)
    y[:, 1] = 0
    path = write_parquet(tmp_path / "ml.parquet", {"logit_0": z[:, 0], "logit_1": z[:, 1], "logit_2": z[:, 2],
                                                   "target_0": y[:, 0], "target_1": y[:, 1], "target_2": y[:, 2]})
    report = lk.evaluate(path)
    assert report.auc["undefined"] == [1] and report.to_dict()["auc"]["undefined"] == [1]
    expected = np.mean([sk.roc_auc_score(y[:, j], z[:, j]) for j in (0, 2)])
    assert report.metrics["roc_auc"] == pytest.approx(expected, rel=1e-12)
    left = dict(summary_rows(report))["ROC AUC left out"]
    assert left.startswith("1 label(s) of one class only") and left.endswith(str(report.tables["per_label"][1]["label"]))


@pytest.mark.parametrize(("bad_row", "message"), [([0.5, 0.7, 0.0], "rows along the class axis that sum to 1"),
                                                ([1.5, -0.5, 0.0], "values in \\[0, 1\\]")])
def test_a_bad_soft_target_row_is_named_by_its_row(tmp_path, bad_row, message):
    """The core's check of a batch named the batch's rows (0-499); the first row refused is named now."""
    rng = np.random.default_rng(9)
    z, soft = rng.normal(size=(500, 3)), rng.dirichlet(np.ones(3), size=500)
    soft[137] = bad_row
    path = write_parquet(tmp_path / "s.parquet", {**{f"logit_{k}": z[:, k] for k in range(3)},
                                                  **{f"target_{k}": soft[:, k] for k in range(3)}})
    with pytest.raises(LossInputError, match=rf"s\.parquet: row 137: target: expected {message}"):
        lk.evaluate(path, task="multiclass")


def test_multiclass_equal_mass_ece_is_exact_up_to_the_auc_limit_too(tmp_path):
    """docs/eval.md: exact up to 1,000,000 rows or --auc-exact-limit, whichever is fewer."""
    rng = np.random.default_rng(10)
    z, y = rng.normal(size=(300, 3)), rng.integers(0, 3, size=300)
    path = write_parquet(tmp_path / "m.parquet", {**{f"logit_{k}": z[:, k] for k in range(3)}, "target": y})
    assert lk.evaluate(path, auc_exact_limit=300).adaptive["method"] == "exact"
    binned = lk.evaluate(path, auc_exact_limit=299).adaptive
    assert binned["method"] == "binned"


def test_the_first_refused_row_is_named_with_its_own_value(tmp_path):
    """The row is the first refused one and the value its own (the whole batch's minimum, another row's, was
    named beside it)."""
    target = np.full(1000, 2.0)
    target[300], target[900] = -1.0, -50.0
    path = write_parquet(tmp_path / "p.parquet", {"pred": np.zeros(1000), "target": target}, row_group_size=1000)
    with pytest.raises(LossInputError, match=r"p\.parquet: row 300: target: .*got a minimum of -1$"):
        lk.evaluate(path, task="regression", loss="poisson_deviance")


def test_a_loss_of_one_task_says_the_task(tmp_path):
    """A Poisson target of whole floats was ambiguous (classes or counts?) although --loss poisson says which;
    a name several tasks take ("focal": binary and multi-class) leaves it to the target."""
    rng = np.random.default_rng(11)
    y = rng.poisson(2.0, size=200).astype(np.float64)
    path = write_parquet(tmp_path / "p.parquet", {"pred": rng.normal(size=200), "target": y})
    with pytest.raises(LossInputError, match="ambiguous"):
        lk.evaluate(path)
    report = lk.evaluate(path, loss="poisson")
    assert report.task == "regression" and report.reason == "loss='poisson' is a regression loss"
    binary = write_parquet(tmp_path / "b.parquet", {"logit": rng.normal(size=200), "target": rng.integers(0, 2, 200)})
    assert lk.evaluate(binary, loss="focal").reason.startswith("integer labels")


def test_one_hot_target_columns(tmp_path):
    rng = np.random.default_rng(7)
    n, k = 500, 4
    z = rng.normal(0, 1.5, (n, k))
    y = rng.integers(0, k, n)
    one_hot = np.eye(k, dtype=np.int64)[y]
    cols = {**{f"logit_{j}": z[:, j] for j in range(k)}, **{f"target_{j}": one_hot[:, j] for j in range(k)}}
    report = lk.evaluate(write_parquet(tmp_path / "oh.parquet", cols), task="multiclass", batch_rows=64)
    p = _softmax(z)
    assert report.metrics["loss"] == pytest.approx(sk.log_loss(y, p), rel=RTOL)
    assert report.metrics["accuracy"] == pytest.approx(sk.accuracy_score(y, p.argmax(1)), rel=RTOL)


def test_weights_of_sum_zero_are_refused(tmp_path, capsys):
    """Found in review: a file whose every weight is 0 gave a report of blank metrics and exit code 0 (a weighted
    mean of no weight is undefined; scikit-learn raises). Now an error naming the weight."""
    path = tmp_path / "w0.csv"
    path.write_text("logit,target,w\n0.5,1,0\n-0.5,0,0\n")
    with pytest.raises(lk.LossInputError, match="^weight: expected weights whose sum is > 0.*got all 2 rows of weight 0"):
        lk.evaluate(path, weight="w")
    # and losskit eval names its flag (it said `weight:`, the Python keyword; review)
    from losskit.cli import main

    assert main(["eval", str(path), "--weight", "w"]) == 2
    assert capsys.readouterr().err.startswith("losskit: error: --weight: expected weights whose sum is > 0")


def test_soft_multiclass_targets_give_the_soft_loss_and_argmax_label_metrics(tmp_path):
    """docs/eval.md: with multi-class target columns of probabilities, `loss` is the soft cross-entropy and the
    label metrics read each row's argmax as its class (ties to the lowest)."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 3))
    t = rng.dirichlet(np.ones(3), size=40)
    t[0] = [0.5, 0.5, 0.0]  # a tie: class 0
    path = write_parquet(tmp_path / "soft.parquet", {"logit_0": z[:, 0], "logit_1": z[:, 1], "logit_2": z[:, 2],
                                                     "target_0": t[:, 0], "target_1": t[:, 1], "target_2": t[:, 2]})
    report = lk.evaluate(path)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert report.metrics["loss"] == pytest.approx(-(t * log_p).sum(1).mean(), rel=1e-12)
    labels = np.argmax(t, axis=1)
    assert labels[0] == 0
    assert report.metrics["accuracy"] == pytest.approx(sk.accuracy_score(labels, z.argmax(1)), rel=1e-12)
    assert report.metrics["log_loss"] == pytest.approx(sk.log_loss(labels, np.exp(log_p), labels=[0, 1, 2]),
                                                       rel=1e-9)


def test_ece_adaptive_of_a_constant_calibrated_model_is_0(tmp_path):
    """docs/eval.md: a run of equal confidence is spread evenly over its stretch of the equal-mass bins,
    never split by outcome: a constant, calibrated probability (0.3, with 30 % positives), whose one run
    covers every bin, has an `ece_adaptive` of 0, as its `ece` (it was 0.402 with the run's 0s put first)."""
    y = np.array([0] * 70 + [1] * 30)
    path = write_parquet(tmp_path / "constant.parquet", {"prob": np.full(100, 0.3), "target": y})
    report = lk.evaluate(path)
    assert report.metrics["ece"] == pytest.approx(0.0, abs=1e-12)
    assert report.metrics["ece_adaptive"] == pytest.approx(0.0, abs=1e-12) and report.adaptive["bound"] == 0.0


def test_logit_or_probability_columns_are_not_scored_as_a_regression_read_off_loss_or_target(tmp_path):
    """Found in review: a binary logit file with --loss huber, or with one stray label 1.5 (detected as regression),
    was scored as values (R^2 -12), exit 0. Refused now, naming the option; --task regression given is taken, and
    the file's metadata counts as the names do."""
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=100), rng.integers(0, 2, 100)
    path = write_parquet(tmp_path / "b.parquet", {"logit": z, "target": y})
    with pytest.raises(LossInputError, match=r"^loss: expected a classifier's task for predictions that are logits "
                                             r"\(the name 'logit'\), got regression \(loss='huber' is a regression"):
        lk.evaluate(path, loss="huber")
    stray = y.astype(float)
    stray[5] = 1.5
    with pytest.raises(LossInputError, match=r"^task: expected a classifier's task .*got regression \(float values.*"
                                             r"the task was detected from the target as regression: check the target's values"):
        lk.evaluate(write_parquet(tmp_path / "c.parquet", {"logit": z, "target": stray}))
    given = lk.evaluate(path, task="regression")  # the user's word
    assert given.task == "regression" and given.metrics["mse"] == pytest.approx(np.mean((z - y) ** 2), rel=1e-12)
    marked = tmp_path / "m.parquet"
    pq.write_table(pa.table({"pred": z, "target": stray}).replace_schema_metadata({"losskit.pred_kind": "probs"}),
                   marked)
    with pytest.raises(LossInputError, match=r"^task: expected a classifier's task for predictions that are probs "
                                             r"\(the file's metadata 'losskit.pred_kind'\)"):
        lk.evaluate(marked)
    plain = write_parquet(tmp_path / "r.parquet", {"pred": z, "target": z + 0.5})  # values: regression as before
    assert lk.evaluate(plain).task == "regression"


def test_the_task_is_detected_from_the_first_rows_whatever_files_hold_them(tmp_path):
    """Detection read the first batch, which never spans files: a first file of 20 rows whose target is all 1
    was refused as one label, while the same rows in one file, or the files in the other order, scored as a
    binary task (found in review). The first rows are read across the files, as from one."""
    rng = np.random.default_rng(7)
    z = rng.normal(0, 2, 5020)
    y = (rng.random(5020) < _sigmoid(z)).astype(np.int64)
    y[:20] = 1
    first = write_parquet(tmp_path / "part-0.parquet", {"logit": z[:20], "target": y[:20]})
    rest = write_parquet(tmp_path / "part-1.parquet", {"logit": z[20:], "target": y[20:]})
    whole = write_parquet(tmp_path / "whole.parquet", {"logit": z, "target": y})
    parts, one = lk.evaluate([first, rest]), lk.evaluate(whole)
    assert parts.task == one.task == "binary"
    assert parts.metrics["roc_auc"] == pytest.approx(sk.roc_auc_score(y, z), rel=1e-12)
    assert parts.metrics["log_loss"] == pytest.approx(one.metrics["log_loss"], rel=1e-12)
    # and a sample that cannot decide names the files it was read from
    write_parquet(tmp_path / "part-1.parquet", {"logit": z[20:40], "target": np.ones(20, np.int64)})
    with pytest.raises(LossInputError, match=r"read from the first 40 rows of the 2 files from .*part-0\.parquet"):
        lk.evaluate([first, rest])
