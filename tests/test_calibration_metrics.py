"""The metrics added to losskit eval for calibration work: average precision, F1 (binary, macro,
micro), MCE, equal-mass ECE and classwise ECE, each against scikit-learn or a hand-written
reference, on the compiled and the NumPy steps, merged across batches; and the binned average
precision within its printed bound."""

import numpy as np
import pytest
from scipy import special

sk = pytest.importorskip("sklearn.metrics")

from losskit.evaluation.adaptive import AdaptiveCalibration  # noqa: E402
from losskit.evaluation.metrics import BinaryMetrics, MulticlassMetrics, MultilabelMetrics  # noqa: E402

N_BINS = 15


@pytest.fixture(params=["compiled", "numpy"])
def steps(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", "0")
    return request.param


def _bins(confidence, outcome, w):
    b = np.minimum((confidence * N_BINS).astype(int), N_BINS - 1)
    weight = np.bincount(b, weights=w, minlength=N_BINS)
    conf = np.bincount(b, weights=w * confidence, minlength=N_BINS)
    obs = np.bincount(b, weights=w * outcome, minlength=N_BINS)
    return weight, conf, obs


def ece_ref(confidence, outcome, w):
    weight, conf, obs = _bins(confidence, outcome, w)
    return np.abs(conf - obs).sum() / weight.sum()


def mce_ref(confidence, outcome, w):
    weight, conf, obs = _bins(confidence, outcome, w)
    full = weight > 0
    return np.max(np.abs(conf[full] / weight[full] - obs[full] / weight[full]))


def adaptive_ref(confidence, outcome, w, n_bins=N_BINS):
    """Bins of equal weight: the rows laid end to end in confidence order, bin b the stretch
    [b W / n_bins, (b + 1) W / n_bins); a run of equal confidence spread evenly over its stretch
    (each bin takes the share of the run's sums that its stretch overlaps). Loops, written apart
    from adaptive.py's cumulative interpolation."""
    runs = {}
    for c, o, ww in zip(confidence.tolist(), np.asarray(outcome, dtype=float).tolist(), w.tolist(), strict=True):
        run = runs.setdefault(c, [0.0, 0.0, 0.0])
        run[0] += ww
        run[1] += ww * o
        run[2] += ww * c
    total = sum(run[0] for run in runs.values())
    s, obs, start = np.zeros(n_bins), np.zeros(n_bins), 0.0
    for c in sorted(runs):
        ww, o, cc = runs[c]
        if ww == 0:
            continue
        for b in range(n_bins):
            share = max(0.0, min(total * (b + 1) / n_bins, start + ww) - max(total * b / n_bins, start)) / ww
            s[b] += share * cc
            obs[b] += share * o
        start += ww
    return np.abs(s - obs).sum() / total


def test_adaptive_ece_worked_by_hand():
    """Two bins over W = 4: the run at 0.2 (weights 2 and 1, outcomes 0 and 1) covers [0, 3), so bin 0
    takes 2/3 of it (S = 0.4, O = 2/3) and bin 1 the rest (S = 0.2, O = 1/3) with the row at 0.9
    (S = 0.9, O = 1): (|0.4 - 2/3| + |1.1 - 4/3|) / 4 = 0.125. (Its 0s put first, as before, gave
    (0.4 + |1.1 - 2|) / 4 = 0.325.)"""
    rows = ([0.9, 0.2, 0.2], [True, True, False], [1.0, 1.0, 2.0])
    m = AdaptiveCalibration(n_bins=2)
    m.update(*rows)
    assert m.result()["ece_adaptive"] == pytest.approx(0.125, rel=1e-14)
    binned = AdaptiveCalibration(n_bins=2, exact_limit=0)  # the same runs as histogram bins
    binned.update(*rows)
    r = binned.result()
    assert r["method"] == "binned" and r["ece_adaptive"] == pytest.approx(0.125, rel=1e-14)
    assert r["bound"] == pytest.approx(2 * 3 / 4)  # the run at 0.2 straddles the edge at 2


def test_adaptive_ece_of_distinct_confidences_in_equal_counts_is_the_textbook_one():
    """Nixon et al.'s equal-mass ECE: n rows of weight 1 with distinct confidences, n a multiple of
    15, sorted and cut into 15 bins of n / 15 rows each."""
    rng = np.random.default_rng(5)
    p = rng.random(3000)
    y = rng.random(3000) < p ** 1.3
    order = np.argsort(p)
    textbook = sum(abs(b_p.sum() - b_y.sum()) for b_p, b_y in
                   zip(np.split(p[order], N_BINS), np.split(y[order].astype(float), N_BINS), strict=True)) / 3000
    m = AdaptiveCalibration()
    m.update(p, y)
    assert m.result()["ece_adaptive"] == pytest.approx(textbook, rel=1e-12)


def test_adaptive_ece_of_a_quantised_calibrated_model_is_0_in_any_row_order():
    """Runs of equal confidence are spread over their stretch, never ordered by outcome: a model of
    three calibrated levels (0.2, 0.5, 0.8 with those shares of positives), whose runs straddle the
    bin edges, scores 0 however its rows are ordered."""
    p = np.repeat([0.2, 0.5, 0.8], [50, 40, 30])
    y = np.concatenate([np.arange(50) < 10, np.arange(40) < 20, np.arange(30) < 24])
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(p))
        m = AdaptiveCalibration()
        m.update(p[order], y[order])
        assert m.result()["ece_adaptive"] == pytest.approx(0.0, abs=1e-15)


def _feed(metrics, arrays, parts=3):
    """Update with the rows split into ``parts`` batches, each its own accumulator, then merge."""
    n = len(arrays[0])
    cuts = np.linspace(0, n, parts + 1).astype(int)
    total = None
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        m = metrics()
        m.update(*[None if x is None else x[a:b] for x in arrays])
        total = m if total is None else total.merge(m)
    return total.result()


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_binary(steps, kind):
    rng = np.random.default_rng(0)
    n = 3000
    z = rng.normal(size=n) * 2
    z[:50] = np.round(z[:50])  # ties
    y = (rng.random(n) < special.expit(z / 1.5)).astype(np.int64)
    w = rng.uniform(0.1, 2.0, n)
    p = special.expit(z)
    pred = z if kind == "logits" else p
    r = _feed(lambda: BinaryMetrics(kind), (pred, y, w))
    assert r["average_precision"] == pytest.approx(sk.average_precision_score(y, p, sample_weight=w), rel=1e-9)
    assert r["f1"] == pytest.approx(sk.f1_score(y, p > 0.5, sample_weight=w), rel=1e-12)
    assert r["mce"] == pytest.approx(mce_ref(p, y, w), rel=1e-9)
    assert r["ece"] == pytest.approx(ece_ref(p, y, w), rel=1e-9)
    assert r["ece_adaptive"] == pytest.approx(adaptive_ref(p, y, w), rel=1e-9)
    assert r["adaptive"]["method"] == "exact"
    unweighted = _feed(lambda: BinaryMetrics(kind), (pred, y, None))
    assert unweighted["average_precision"] == pytest.approx(sk.average_precision_score(y, p), rel=1e-9)
    assert unweighted["f1"] == pytest.approx(sk.f1_score(y, p > 0.5), rel=1e-12)
    assert unweighted["ece_adaptive"] == pytest.approx(adaptive_ref(p, y, np.ones(n)), rel=1e-9)


def test_binned_average_precision_and_adaptive_ece_within_their_bounds(steps):
    rng = np.random.default_rng(1)
    n = 20000
    z = rng.normal(size=n) * 3
    y = (rng.random(n) < special.expit(z)).astype(np.int64)
    w = rng.uniform(0.1, 2.0, n)
    p = special.expit(z)
    r = _feed(lambda: BinaryMetrics("logits", auc_exact_limit=0, auc_bins_log2=10), (z, y, w))
    exact = sk.average_precision_score(y, p, sample_weight=w)
    assert r["auc"]["method"] == "binned" and r["auc"]["ap_bound"] > 0
    assert abs(r["average_precision"] - exact) <= r["auc"]["ap_bound"]
    assert r["adaptive"]["method"] == "binned"
    assert abs(r["ece_adaptive"] - adaptive_ref(p, y, w)) <= r["adaptive"]["bound"] + 1e-12
    fine = _feed(lambda: BinaryMetrics("logits", auc_exact_limit=0), (z, y, w))  # the default 2**20 bins
    assert abs(fine["ece_adaptive"] - adaptive_ref(p, y, w)) <= fine["adaptive"]["bound"] + 1e-12
    assert fine["adaptive"]["bound"] < 0.01
    mc = _feed(lambda: MulticlassMetrics(3, "logits", exact_limit=0), (np.stack([z, -z, 0 * z], 1), y, w))
    top = special.softmax(np.stack([z, -z, 0 * z], 1), axis=1)
    exact = adaptive_ref(top.max(axis=1), top.argmax(axis=1) == y, w)
    assert mc["adaptive"]["method"] == "binned"
    assert abs(mc["ece_adaptive"] - exact) <= mc["adaptive"]["bound"] + 1e-12 and mc["adaptive"]["bound"] < 0.05


def test_multiclass(steps):
    rng = np.random.default_rng(2)
    n, k = 2000, 6
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)) * 2
    z[np.arange(n), y] += 1.5
    z = np.asfortranarray(z)  # as the reader hands batches over
    w = rng.uniform(0.1, 2.0, n)
    p = special.softmax(z, axis=1)
    r = _feed(lambda: MulticlassMetrics(k, "logits"), (z, y, w))
    top = p.argmax(axis=1)
    assert r["macro_f1"] == pytest.approx(sk.f1_score(y, top, average="macro", sample_weight=w), rel=1e-12)
    assert r["micro_f1"] == pytest.approx(sk.f1_score(y, top, average="micro", sample_weight=w), rel=1e-12)
    conf, hit = p.max(axis=1), top == y
    assert r["mce"] == pytest.approx(mce_ref(conf, hit, w), rel=1e-9)
    assert r["ece_adaptive"] == pytest.approx(adaptive_ref(conf, hit, w), rel=1e-9)
    classwise = np.mean([ece_ref(p[:, c], y == c, w) for c in range(k)])
    assert r["classwise_ece"] == pytest.approx(classwise, rel=1e-9)


def test_macro_f1_skips_absent_classes_as_sklearn_does(steps):
    y = np.array([0, 0, 1, 1, 0])
    z = np.array([[2.0, 0, 0, 0], [0, 1, 0, 0], [0, 3, 0, 0], [1, 0, 0, 0], [3, 0, 0, 0]])
    r = _feed(lambda: MulticlassMetrics(4, "logits"), (z, y, None), parts=1)
    assert r["macro_f1"] == pytest.approx(sk.f1_score(y, z.argmax(1), average="macro"), rel=1e-12)


def test_multilabel(steps):
    rng = np.random.default_rng(3)
    n, k = 1500, 4
    y = rng.integers(0, 2, (n, k))
    z = (2 * y - 1) * 0.8 + rng.normal(size=(n, k)) * 1.5
    w = rng.uniform(0.1, 2.0, n)
    p = special.expit(z)
    r = _feed(lambda: MultilabelMetrics(k, "logits"), (z, y, w))
    assert r["average_precision"] == pytest.approx(
        sk.average_precision_score(y, p, average="macro", sample_weight=w), rel=1e-9)
    for average in ("macro", "micro"):
        assert r[f"{average}_f1"] == pytest.approx(sk.f1_score(y, p > 0.5, average=average, sample_weight=w),
                                                   rel=1e-12)


def test_evaluate_reports_the_new_keys(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import losskit as lk

    rng = np.random.default_rng(4)
    z = rng.normal(size=(800, 3))
    y = rng.integers(0, 3, 800)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({**{f"logit_{j}": z[:, j] for j in range(3)}, "target": y}), path)
    report = lk.evaluate(path)
    assert {"macro_f1", "micro_f1", "mce", "ece_adaptive", "classwise_ece"} <= set(report.metrics)
    assert report.metrics["macro_f1"] == pytest.approx(sk.f1_score(y, z.argmax(1), average="macro"), rel=1e-12)


@pytest.mark.parametrize("rows", [1, 200, 3000])
def test_adaptive_histogram_of_a_small_batch_scattered_as_a_bincount_adds(rows, monkeypatch):
    """A batch small beside the 2**20-bin histogram adds into the bins it falls in (np.add.at), leaving
    the rest untouched, where a bincount per column wrote and added 48 MB: the same histogram, and no
    array of the histogram's size allocated (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    from losskit.evaluation import adaptive

    rng = np.random.default_rng(5)
    confidence = np.round(rng.random(rows), 2)  # repeated values: several rows per bin
    outcome, w = rng.random(rows) < 0.6, rng.uniform(0.1, 2.0, rows)
    scattered = adaptive.AdaptiveCalibration(exact_limit=0)
    tracemalloc.start()
    try:
        scattered.update(confidence, outcome, w)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20)  # the histogram is 24 MB; one bincount column 8 MB
    counted = adaptive.AdaptiveCalibration(exact_limit=0)
    monkeypatch.setattr(adaptive, "SCATTER_BELOW", 1 << 30)  # every batch through the bincount
    counted.update(confidence, outcome, w)
    np.testing.assert_allclose(scattered.histogram, counted.histogram, rtol=1e-13, atol=0)
    assert np.count_nonzero(scattered.histogram[:, 0]) == len(np.unique(confidence))
    assert scattered.result()["ece_adaptive"] == pytest.approx(counted.result()["ece_adaptive"], rel=1e-12)
