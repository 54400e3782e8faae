"""The streaming metric accumulators of ``losskit eval`` against scikit-learn and closed forms.

References are independent of the code under test: scikit-learn's own functions on the whole
data, ``scipy.special`` for sigmoid / softmax, and hand-worked values. Inputs are read-only
arrays, so an accumulator that wrote into its caller's buffers would fail.
"""

from __future__ import annotations

import pickle
import warnings
import zlib

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from losskit.evaluation.auc import RankAUC, order_key
from losskit.evaluation.metrics import (
    BinaryMetrics,
    MulticlassMetrics,
    MultilabelMetrics,
    RegressionMetrics,
    _auc_bins_log2,
)

RTOL = 1e-9
MERGE_RTOL = 1e-12


def frozen(*arrays):
    out = []
    for array in arrays:
        if array is not None:
            array = np.array(array)
            array.setflags(write=False)
        out.append(array)
    return out if len(out) > 1 else out[0]


def binary_data(n=3000, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * scale
    y = (rng.random(n) < expit(z)).astype(np.int64)
    w = rng.random(n) * 2
    return frozen(z, y, w)


def multiclass_data(n=3000, k=10, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)) * 1.5
    z[np.arange(n), y] += 1.0  # better than chance, so every metric is away from its trivial value
    w = rng.random(n) * 2
    loss = rng.random(n)
    return frozen(z, y, w, loss)


def multilabel_data(n=3000, k=5, seed=2):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2
    y = (rng.random((n, k)) < expit(z)).astype(np.int64)
    w = rng.random(n) * 2
    loss = rng.random((n, k))
    return frozen(z, y, w, loss)


def regression_data(n=3000, m=3, seed=3, offset=0.0):
    rng = np.random.default_rng(seed)
    y = offset + rng.normal(size=(n, m)) * np.arange(1, m + 1)
    pred = y + rng.normal(size=(n, m)) * 0.7 + 0.1
    w = rng.random(n) * 2
    return frozen(pred, y, w)


def assert_same(a, b, rtol=MERGE_RTOL, atol=1e-15, path="result"):
    """Recursive equality of two result dicts: exact for ints, strings and None, rtol for floats."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {a.keys()} vs {b.keys()}"
        for key in a:
            assert_same(a[key], b[key], rtol, atol, f"{path}[{key!r}]")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, rtol, atol, f"{path}[{i}]")
    elif isinstance(a, float):
        assert isinstance(b, float), f"{path}: {a!r} vs {b!r}"
        assert np.isclose(a, b, rtol=rtol, atol=atol), f"{path}: {a!r} vs {b!r}"
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} vs {b!r}"


def assert_json_plain(value, path="result"):
    """Only plain Python values: what ``json.dumps`` takes without a custom encoder."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r}"
            assert_json_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_json_plain(item, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), f"{path}: {type(value)}"


# -- binary ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_binary_matches_sklearn(kind, weighted):
    z, y, w = binary_data()
    w = w if weighted else None
    p = frozen(expit(z))
    metrics = BinaryMetrics(kind)
    metrics.update(z if kind == "logits" else p, y, w)
    result = metrics.result()
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5, sample_weight=w), rel=RTOL)
    assert result["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w, labels=[0, 1]), rel=RTOL)
    assert result["brier"] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), rel=RTOL)
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w), rel=1e-12)
    assert result["auc"] == {"roc_auc": result["roc_auc"], "method": "exact", "bound": 0.0, "ap_bound": 0.0}
    assert metrics.rows == len(z)
    assert metrics.weight_sum == pytest.approx(len(z) if w is None else float(np.sum(w)), rel=1e-14)
    assert_json_plain(result)


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_binary_float32_predictions_cast_to_float64(kind):
    z, y, w = binary_data(scale=1.5)
    z32 = z.astype(np.float32)
    p32 = expit(z32)  # float32, as a float32 model would give them
    assert p32.dtype == np.float32
    metrics = BinaryMetrics(kind)
    metrics.update((z32 if kind == "logits" else p32).astype(np.float64), y, w)
    result = metrics.result()
    assert result["log_loss"] == pytest.approx(skm.log_loss(y, p32, sample_weight=w, labels=[0, 1]), rel=1e-6)
    assert result["brier"] == pytest.approx(skm.brier_score_loss(y, p32, sample_weight=w), rel=1e-6)
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p32, sample_weight=w), rel=1e-6)
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, p32 > 0.5, sample_weight=w), rel=1e-6)


@pytest.mark.parametrize("kernels", ["0", "1"])
def test_float32_probabilities_that_saturate_clip_at_float32_eps_as_sklearn(kernels, monkeypatch):
    """sklearn's log_loss clips at the input dtype's eps; a float32 file's sigmoid outputs of exactly 0 or 1
    were clipped at float64's, 2.4 % above sklearn's on an over-confident model (found in review)."""
    monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", kernels)
    rng = np.random.default_rng(32)
    z = (rng.normal(size=4000) * 8).astype(np.float32)
    p = expit(z).astype(np.float32)
    y = (rng.random(4000) < expit(z.astype(np.float64))).astype(np.int64)
    y[rng.random(4000) < 0.02] ^= 1
    assert np.sum((p == 0) | (p == 1)) > 20
    metrics = BinaryMetrics("probs")
    metrics.update(p, y, None)
    assert metrics.result()["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-6)
    p3 = np.stack([p, 1 - p, np.zeros_like(p)], axis=1)  # float32 rows, class 2 never predicted
    multi = MulticlassMetrics(3, "probs")
    multi.update(p3, 1 - y, None)
    assert multi.result()["log_loss"] == pytest.approx(skm.log_loss(1 - y, p3, labels=[0, 1, 2]), rel=1e-6)


@pytest.mark.parametrize("kernels", ["0", "1"])
@pytest.mark.parametrize("value", [0.01, 0.1, 0.3])
def test_neighbouring_float32_probabilities_rank_apart_on_both_steps(kernels, value, monkeypatch):
    """The compiled step kept the logits of float32 probabilities in float32 for the exact AUC: a probability
    and the next float32 above it tied (or swapped), AUC and AP 0.5 where scikit-learn's are 1 (found in
    review). Both steps rank them as the probabilities are ranked."""
    monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", kernels)
    a = np.float32(value)
    b = np.nextafter(a, np.float32(1))
    p = np.where(np.arange(4000) % 2 == 0, a, b).astype(np.float32)
    y = (p == b).astype(np.int64)
    metrics = BinaryMetrics("probs")
    metrics.update(p, y, None)
    result = metrics.result()
    assert result["roc_auc"] == skm.roc_auc_score(y, p) == 1.0
    assert result["average_precision"] == pytest.approx(skm.average_precision_score(y, p), rel=1e-12)


def test_binary_probs_at_zero_and_one_clip_as_sklearn():
    p = frozen(np.array([0.0, 1.0, 0.0, 1.0, 1e-20, 1 - 1e-17, 0.3, 0.7]))
    y = frozen(np.array([0, 1, 1, 0, 1, 0, 1, 0]))
    metrics = BinaryMetrics("probs")
    metrics.update(p, y, None)
    result = metrics.result()
    assert result["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=RTOL)
    # 0 and 1 become logits -inf and +inf: they still rank, as the probabilities do
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)


def test_binary_log_loss_from_extreme_logits_is_finite_and_exact():
    z = frozen(np.array([1e308, -1e308, 800.0, -800.0, 40.0, -40.0, 1e-300, 0.0]))
    y = frozen(np.array([0, 1, 1, 0, 0, 1, 1, 0]))
    expected = np.logaddexp(0.0, np.where(y == 1, -z, z))  # -log sigmoid(+-z), closed form
    for i in range(len(z)):
        metrics = BinaryMetrics("logits")
        metrics.update(z[i:i + 1], y[i:i + 1], None)
        assert metrics.result()["log_loss"] == pytest.approx(expected[i], rel=1e-15, abs=1e-300), i
    metrics = BinaryMetrics("logits")
    metrics.update(z[2:], y[2:], None)
    assert metrics.result()["log_loss"] == pytest.approx(expected[2:].mean(), rel=1e-15)


def test_binary_accuracy_counts_logit_zero_as_negative():
    metrics = BinaryMetrics("logits")
    metrics.update(frozen(np.array([0.0, 0.0, -0.0, 1e-300])), frozen(np.array([0, 1, 0, 1])), None)
    assert metrics.result()["accuracy"] == 0.75  # p = 0.5 is not > 0.5


# -- calibration ------------------------------------------------------------------------------------

def test_ece_hand_worked_example():
    # n_bins = 4: [0, .25) [.25, .5) [.5, .75) [.75, 1]
    #   p=0.10 y=0 w=1 -> bin 0: W=1, sum conf 0.10, sum y 0          |0.10 - 0| = 0.10
    #   p=0.30 y=1 w=1 -> bin 1 ┐
    #   p=0.35 y=0 w=2 -> bin 1 ┘ W=3, sum conf 0.30 + 0.70 = 1.0, sum y 1 |1.0 - 1| = 0
    #   p=0.50 y=0 w=1 -> bin 2 (an exact edge goes up): W=1, conf 0.5, y 0  |0.5 - 0| = 0.5
    #   p=0.80 y=1 w=1 -> bin 3 ┐
    #   p=1.00 y=0 w=1 -> bin 3 ┘ (1.0 is in the last bin): W=2, conf 1.8, y 1  |1.8 - 1| = 0.8
    # ECE = (0.10 + 0 + 0.5 + 0.8) / 7 = 0.2  (1.0 in a bin of its own would give (0.1+0.5+0.2+1)/7)
    p = frozen(np.array([0.10, 0.30, 0.35, 0.50, 0.80, 1.00]))
    y = frozen(np.array([0, 1, 0, 0, 1, 0]))
    w = frozen(np.array([1.0, 1.0, 2.0, 1.0, 1.0, 1.0]))
    metrics = BinaryMetrics("probs", n_bins=4)
    metrics.update(p, y, w)
    result = metrics.result()
    assert result["ece"] == pytest.approx(0.2, rel=1e-15)
    bins = result["reliability"]
    assert [b["weight"] for b in bins] == [1.0, 3.0, 1.0, 2.0]
    assert [(b["lower"], b["upper"]) for b in bins] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert bins[1]["confidence"] == pytest.approx(1.0 / 3) and bins[1]["frequency"] == pytest.approx(1.0 / 3)
    assert bins[3]["confidence"] == pytest.approx(0.9) and bins[3]["frequency"] == 0.5


def test_ece_empty_bins_have_zero_weight_and_none_means():
    metrics = BinaryMetrics("probs", n_bins=10)
    metrics.update(frozen(np.array([0.05, 0.95])), frozen(np.array([0, 1])), None)
    bins = metrics.result()["reliability"]
    assert bins[5] == {"lower": 0.5, "upper": 0.6, "weight": 0.0, "confidence": None, "frequency": None}


@pytest.mark.parametrize("n_bins", [3, 7, 10, 15])
def test_confidence_on_or_next_to_an_edge_lands_in_the_bin_whose_edges_hold_it(n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    near = np.clip(np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 2)]), 0, 1)
    for value in near:
        metrics = BinaryMetrics("probs", n_bins=n_bins)
        metrics.update(frozen(np.array([value])), frozen(np.array([1])), None)
        bins = metrics.result()["reliability"]
        (landed,) = [b for b in bins if b["weight"]]
        assert landed["lower"] <= value < landed["upper"] or value == landed["upper"] == 1.0, (value, landed)
    reported = np.array([b["lower"] for b in bins] + [bins[-1]["upper"]])
    assert np.allclose(reported, edges, rtol=0, atol=2.3e-16)  # the linspace edges, to an ulp


@pytest.mark.parametrize("weighted", [False, True])
def test_ece_equals_a_plain_reference(weighted):
    z, y, w = binary_data(seed=5)
    w = w if weighted else np.ones(len(z))
    p = expit(z)
    index = np.minimum(np.searchsorted(np.linspace(0, 1, 16), p, side="right") - 1, 14)
    expected = sum(abs(np.sum((w * p)[index == b]) - np.sum((w * y)[index == b])) for b in range(15)) / np.sum(w)
    metrics = BinaryMetrics("logits")
    metrics.update(z, y, w if weighted else None)
    assert metrics.result()["ece"] == pytest.approx(expected, rel=1e-12)


# -- ROC AUC ---------------------------------------------------------------------------------------

def test_auc_binned_is_within_its_bound_of_sklearn():
    z, y, w = binary_data(n=20000, seed=6)
    exact = skm.roc_auc_score(y, z, sample_weight=w)
    auc = RankAUC(exact_limit=1000, bins_log2=16)
    for part in np.array_split(np.arange(len(z)), 7):
        auc.update(z[part], y[part], w[part])
    result = auc.result()
    assert result["method"] == "binned"
    assert 0 < result["bound"] < 1e-3
    assert abs(result["roc_auc"] - exact) <= result["bound"]
    assert result["roc_auc"] != exact


def test_auc_ties_match_sklearn_exactly_on_both_paths():
    rng = np.random.default_rng(7)
    score = frozen(rng.integers(-3, 4, 5000).astype(np.float64) / 2)  # 13 distinct values, many ties
    y = frozen((rng.random(5000) < expit(score)).astype(np.int64))
    w = frozen(rng.random(5000))
    for weight in (None, w):
        expected = skm.roc_auc_score(y, score, sample_weight=weight)
        exact, binned = RankAUC(), RankAUC(exact_limit=10, bins_log2=12)
        exact.update(score, y, weight)
        binned.update(score, y, weight)
        assert exact.result()["roc_auc"] == pytest.approx(expected, rel=1e-12)
        # distinct values never share a bin here, so the binned value is exact too, bound or not
        assert binned.result()["method"] == "binned"
        assert binned.result()["roc_auc"] == pytest.approx(expected, rel=1e-12)


def test_auc_infinite_scores_rank_at_the_ends():
    score = frozen(np.array([-np.inf, -np.inf, -5.0, 0.0, -0.0, 3.0, np.inf, np.inf]))
    y = frozen(np.array([0, 1, 0, 1, 0, 1, 1, 0]))
    for limit in (100, 0):
        auc = RankAUC(exact_limit=limit, bins_log2=10)
        auc.update(score, y, None)
        assert auc.result()["roc_auc"] == pytest.approx(skm.roc_auc_score(y, np.clip(score, -1e300, 1e300)))


def test_auc_exact_iff_total_rows_within_the_limit_whatever_the_split():
    z, y, w = binary_data(n=100, seed=8)
    for limit, method in ((100, "exact"), (99, "binned")):
        for sizes in ((100,), (50, 50), (1, 98, 1), (30, 30, 40)):
            parts = np.split(np.arange(100), np.cumsum(sizes)[:-1])
            pieces = []
            for part in parts:
                auc = RankAUC(exact_limit=limit, bins_log2=12)
                auc.update(z[part], y[part], w[part])
                pieces.append(auc)
            while len(pieces) > 1:
                pieces[0].merge(pieces.pop())
            assert pieces[0].result()["method"] == method, (limit, sizes)


def test_auc_undefined_with_one_class():
    auc = RankAUC(bins_log2=8)
    auc.update(frozen(np.array([0.1, 0.2])), frozen(np.array([1, 1])), None)
    result = auc.result()
    assert result["roc_auc"] is None and "only positives" in result["reason"]
    weighted = RankAUC(bins_log2=8)  # a class present with zero weight counts as absent (sklearn: NaN)
    weighted.update(frozen(np.array([0.1, 0.2])), frozen(np.array([0, 1])), frozen(np.array([0.0, 1.0])))
    assert weighted.result()["roc_auc"] is None


def test_order_key_is_monotone_and_merges_signed_zeros():
    values = np.array([-np.inf, -3e38, -1.0, -1e-40, -0.0, 0.0, 1e-45, 1e-40, 0.5, 1.0, 3e38, np.inf])
    for bits in (8, 16, 20, 32):
        key = order_key(values, bits)
        assert np.all(np.diff(key.astype(np.int64)) >= 0), bits
        assert key[4] == key[5]
    assert len(np.unique(order_key(values, 32))) == len(values) - 1


# -- multi-class -----------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_multiclass_matches_sklearn(kind, weighted):
    z, y, w, loss = multiclass_data()
    k = z.shape[1]
    w = w if weighted else None
    p = frozen(softmax(z, axis=1))
    metrics = MulticlassMetrics(k, kind)
    metrics.update(z if kind == "logits" else p, y, w, loss)
    result = metrics.result()
    labels = list(range(k))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1), sample_weight=w), rel=RTOL)
    assert result["top5_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, p, k=5, sample_weight=w, labels=labels), rel=RTOL)
    assert result["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w, labels=labels), rel=RTOL)
    confusion = skm.confusion_matrix(y, p.argmax(1), labels=labels, sample_weight=w)
    np.testing.assert_allclose(result["confusion"], confusion, rtol=1e-12)
    recall = skm.recall_score(y, p.argmax(1), labels=labels, average=None, sample_weight=w)
    precision = skm.precision_score(y, p.argmax(1), labels=labels, average=None, sample_weight=w)
    weight = np.ones(len(y)) if w is None else w
    for c, row in enumerate(result["per_class"]):
        assert row["class"] == c and row["count"] == int(np.sum(y == c))
        assert row["support"] == pytest.approx(np.sum(weight[y == c]), rel=1e-12)
        assert row["loss"] == pytest.approx(np.average(loss[y == c], weights=weight[y == c]), rel=1e-12)
        assert row["recall"] == pytest.approx(recall[c], rel=1e-12)
        assert row["precision"] == pytest.approx(precision[c], rel=1e-12)
    assert_json_plain(result)


def test_macro_f1_leaves_out_a_class_seen_only_in_rows_of_weight_zero():
    """docs/eval.md: support and predictions are counted by weight, so a class seen only in rows of weight 0 is
    left out of the macro mean (a row of weight 0 is not there); scikit-learn counts it, with an F1 of 0.
    Ours equals scikit-learn's on the rows of positive weight."""
    z = frozen(np.array([[2.0, 0, 0], [0, 2, 0], [2, 0, 0], [0, 0, 2], [0, 2, 0]]))
    y, w = frozen(np.array([0, 1, 1, 2, 1])), np.array([1.0, 1, 1, 0, 1])
    metrics = MulticlassMetrics(3, "logits")
    metrics.update(z, y, w, None)
    kept = w > 0
    result = metrics.result()["macro_f1"]
    assert result == pytest.approx(skm.f1_score(y[kept], z[kept].argmax(1), average="macro"), rel=1e-12)
    assert result != pytest.approx(skm.f1_score(y, z.argmax(1), average="macro", sample_weight=w))


def test_softmax_is_shift_invariant_on_both_paths():
    z, y, w, loss = multiclass_data(n=1000)
    labels = list(range(z.shape[1]))
    expected = skm.log_loss(y, softmax(z, axis=1), sample_weight=w, labels=labels)
    reference = MulticlassMetrics(z.shape[1], "probs")
    reference.update(frozen(softmax(z, axis=1)), y, w, loss)
    for shift in (0.0, 1000.0, -1e5):  # |max logit| > 64 takes the max-shifted softmax
        metrics = MulticlassMetrics(z.shape[1], "logits")
        metrics.update(z[:500] + shift, y[:500], w[:500], loss[:500])
        metrics.update(z[500:], y[500:], w[500:], loss[500:])  # and this batch the unshifted one
        result = metrics.result()
        assert result["log_loss"] == pytest.approx(expected, rel=1e-12), shift
        assert_same(result, reference.result(), rtol=1e-12, atol=1e-15)


def test_multiclass_float32_predictions_cast_to_float64():
    z, y, w, loss = multiclass_data()
    z32 = z.astype(np.float32)
    p32 = softmax(z32, axis=1).astype(np.float32)
    labels = list(range(z.shape[1]))
    for kind, pred in (("logits", z32), ("probs", p32)):
        metrics = MulticlassMetrics(z.shape[1], kind)
        metrics.update(pred.astype(np.float64), y, w, loss)
        result = metrics.result()
        assert result["log_loss"] == pytest.approx(skm.log_loss(y, p32, sample_weight=w, labels=labels), rel=1e-6)
        assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, p32.argmax(1), sample_weight=w), rel=1e-6)
        assert result["top5_accuracy"] == pytest.approx(
            skm.top_k_accuracy_score(y, p32, k=5, sample_weight=w, labels=labels), rel=1e-6)


def test_multiclass_probs_are_not_renormalised_as_sklearn():
    z, y, w, loss = multiclass_data(n=500)
    p = frozen(softmax(z, axis=1) * 0.9)  # rows sum to 0.9
    metrics = MulticlassMetrics(z.shape[1], "probs")
    metrics.update(p, y, w, loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn warns that the rows do not sum to 1
        expected = skm.log_loss(y, p, sample_weight=w, labels=list(range(z.shape[1])))
    assert metrics.result()["log_loss"] == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("top_k", [1, 2, 3, 5, 7])
def test_top_k_ties_broken_as_sklearn(top_k):
    rng = np.random.default_rng(9)
    n, k = 4000, 8
    scores = frozen(rng.integers(0, 4, (n, k)).astype(np.float64))  # ties everywhere
    y = frozen(rng.integers(0, k, n))
    w = frozen(rng.random(n))
    for weight in (None, w):
        metrics = MulticlassMetrics(k, "logits", top_k=top_k)
        metrics.update(scores, y, weight)
        result = metrics.result()
        expected = skm.top_k_accuracy_score(y, scores, k=top_k, sample_weight=weight, labels=list(range(k)))
        assert result[f"top{top_k}_accuracy"] == pytest.approx(expected, rel=1e-12)
        # argmax ties go to the lowest index, as np.argmax
        assert result["accuracy"] == pytest.approx(skm.accuracy_score(y, scores.argmax(1), sample_weight=weight))


def test_top_k_reported_only_when_k_is_below_the_class_count():
    metrics = MulticlassMetrics(5, "logits")
    metrics.update(frozen(np.eye(5)), frozen(np.arange(5)), None)
    assert "top5_accuracy" not in metrics.result()


def test_many_classes_keep_per_class_without_the_confusion_matrix():
    rng = np.random.default_rng(10)
    n, k = 3000, 1001
    y = frozen(rng.integers(0, 20, n))  # most classes never occur
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 3.0
    z = frozen(z)
    w = frozen(rng.random(n))
    metrics = MulticlassMetrics(k, "logits")
    metrics.update(z, y, w, frozen(rng.random(n)))
    result = metrics.result()
    assert "confusion" not in result and "1000" in result["confusion_omitted"]
    predicted = z.argmax(1)
    recall = skm.recall_score(y, predicted, labels=list(range(k)), average=None, sample_weight=w, zero_division=0)
    for c in range(k):
        row = result["per_class"][c]
        if row["support"] == 0:
            assert row["recall"] is None and row["loss"] is None and row["count"] == 0
        else:
            assert row["recall"] == pytest.approx(recall[c], rel=1e-12)
    never = min(set(range(k)) - set(predicted.tolist()))
    assert result["per_class"][never]["precision"] is None  # nothing predicted as that class
    assert result["per_class"][int(predicted[0])]["precision"] is not None


# -- multi-label -----------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_multilabel_matches_sklearn(kind, weighted):
    z, y, w, loss = multilabel_data()
    w = w if weighted else None
    p = frozen(expit(z))
    metrics = MultilabelMetrics(z.shape[1], kind)
    metrics.update(z if kind == "logits" else p, y, w, loss)
    result = metrics.result()
    predicted = (p > 0.5).astype(np.int64)
    subset = skm.accuracy_score(y, predicted, sample_weight=w)
    assert result["exact_match"] == pytest.approx(subset, rel=RTOL)
    assert result["accuracy"] == result["exact_match"]
    assert result["hamming_loss"] == pytest.approx(skm.hamming_loss(y, predicted, sample_weight=w), rel=RTOL)
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro", sample_weight=w), rel=1e-12)
    weight = np.ones(len(y)) if w is None else w
    for label, row in enumerate(result["per_label"]):
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, label], p[:, label], sample_weight=w), rel=1e-12)
        assert row["auc_method"] == "exact" and row["auc_bound"] == 0.0
        assert row["positives"] == pytest.approx(np.sum(weight * y[:, label]), rel=1e-12)
        assert row["loss"] == pytest.approx(np.average(loss[:, label], weights=weight), rel=1e-12)
        assert row["accuracy"] == pytest.approx(
            skm.accuracy_score(y[:, label], predicted[:, label], sample_weight=w), rel=1e-12)
    assert_json_plain(result)


def test_multilabel_float32_predictions_cast_to_float64():
    z, y, w, loss = multilabel_data()
    p32 = expit(z.astype(np.float32))
    metrics = MultilabelMetrics(z.shape[1], "probs")
    metrics.update(p32.astype(np.float64), y, w, loss)
    result = metrics.result()
    predicted = (p32 > 0.5).astype(np.int64)
    assert result["hamming_loss"] == pytest.approx(skm.hamming_loss(y, predicted, sample_weight=w), rel=1e-6)
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p32, sample_weight=w), rel=1e-6)


def test_multilabel_macro_auc_skips_a_label_with_one_class():
    z, y, w, loss = multilabel_data(k=4)
    y = frozen(np.column_stack([y[:, :2], np.zeros(len(y), dtype=np.int64), y[:, 3:]]))
    metrics = MultilabelMetrics(4, "logits")
    metrics.update(z, y, w, loss)
    result = metrics.result()
    assert result["roc_auc_undefined"] == [2]
    assert result["per_label"][2]["roc_auc"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        per_label = skm.roc_auc_score(y, z, average=None, sample_weight=w)
        macro = skm.roc_auc_score(y, z, average="macro", sample_weight=w)
    assert np.isnan(per_label[2]) and np.isnan(macro)  # sklearn 1.9: NaN (older versions raise)
    assert result["roc_auc"] == pytest.approx(np.nanmean(per_label), rel=1e-12)


@pytest.mark.parametrize(("labels", "bits"), [(1, 20), (4, 20), (5, 19), (100, 15), (1000, 12), (16384, 8)])
def test_multilabel_auc_histograms_stay_within_64_mb(labels, bits):
    assert _auc_bins_log2(labels) == bits
    assert labels * (1 << bits) * 16 <= 64 * 2**20
    if labels <= 5:
        assert MultilabelMetrics(labels, "logits").auc_bins_log2 == bits


# -- regression ------------------------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_matches_sklearn(outputs, weighted):
    pred, y, w = regression_data(m=outputs)
    w = w if weighted else None
    metrics = RegressionMetrics(outputs)
    metrics.update(pred, y, w)
    result = metrics.result()
    assert result["mse"] == pytest.approx(skm.mean_squared_error(y, pred, sample_weight=w), rel=RTOL)
    assert result["mae"] == pytest.approx(skm.mean_absolute_error(y, pred, sample_weight=w), rel=RTOL)
    assert result["r2"] == pytest.approx(skm.r2_score(y, pred, sample_weight=w), rel=RTOL)
    if outputs > 1:
        for name, function in (("mse", skm.mean_squared_error), ("mae", skm.mean_absolute_error),
                               ("r2", skm.r2_score)):
            raw = function(y, pred, sample_weight=w, multioutput="raw_values")
            assert [row[name] for row in result["per_output"]] == pytest.approx(raw, rel=RTOL)
    else:
        assert "per_output" not in result
    assert_json_plain(result)


def test_regression_float32_predictions_cast_to_float64():
    pred, y, w = regression_data(m=2)
    pred32 = pred.astype(np.float32)
    metrics = RegressionMetrics(2)
    metrics.update(pred32.astype(np.float64), y, w)
    result = metrics.result()
    assert result["mse"] == pytest.approx(skm.mean_squared_error(y, pred32, sample_weight=w), rel=1e-6)
    assert result["r2"] == pytest.approx(skm.r2_score(y, pred32, sample_weight=w), rel=1e-6)


def test_r2_is_stable_for_targets_near_1e6():
    pred, y, w = regression_data(n=20000, m=1, offset=1e6)
    # exact shift: y - 1e6 is exact for y near 1e6 (Sterbenz), and R^2 does not change under it
    expected = skm.r2_score(y - 1e6, pred - 1e6, sample_weight=w)
    metrics = []
    for part in np.array_split(np.arange(len(y)), 13):
        m = RegressionMetrics(1)
        m.update(pred[part], y[part], w[part])
        metrics.append(m)
    while len(metrics) > 1:
        metrics[0].merge(metrics.pop())
    assert metrics[0].result()["r2"] == pytest.approx(expected, rel=1e-12)
    # the test can tell: the one-pass formula sum(w y^2) - W mean^2 loses most digits here
    naive = np.sum(w * y[:, 0] ** 2) - np.sum(w * y[:, 0]) ** 2 / np.sum(w)
    centred = y[:, 0] - 1e6
    careful = np.sum(w * (centred - np.average(centred, weights=w)) ** 2)
    assert abs(naive - careful) / careful > 1e-9


@pytest.mark.parametrize(("offset", "expected"), [(0.0, 1.0), (0.5, 0.0)])
def test_r2_of_a_constant_target_as_sklearn(offset, expected):
    y = frozen(np.full((40, 2), 5.0))
    pred = frozen(y + offset * np.arange(40)[:, None] / 40)
    w = frozen(np.arange(40) % 3 + 1.0)
    metrics = [RegressionMetrics(2) for _ in range(3)]
    for m, part in zip(metrics, np.array_split(np.arange(40), 3), strict=True):
        m.update(pred[part], y[part], w[part])
    metrics[0].merge(metrics[1]).merge(metrics[2])
    assert metrics[0].result()["r2"] == expected == skm.r2_score(y, pred, sample_weight=w)


def test_residual_histogram_spans_the_central_99_percent():
    pred, y, w = regression_data(n=50000, m=1, seed=11)
    metrics = RegressionMetrics(1)
    metrics.update(pred, y, w)
    histogram = metrics.result()["residuals"]
    edges, weights = np.array(histogram["edges"]), np.array(histogram["weights"])
    assert len(edges) == 51 and len(weights) == 50 and np.all(np.diff(edges) > 0)
    assert weights.sum() + histogram["below"] + histogram["above"] == pytest.approx(np.sum(w), rel=1e-12)
    residual = (pred - y)[:, 0]
    order = np.argsort(residual)
    cumulative = np.cumsum(w[order]) / np.sum(w)
    low, high = residual[order][np.searchsorted(cumulative, [0.005, 0.995])]
    spread = high - low
    assert edges[0] == pytest.approx(low, abs=0.01 * spread) and edges[-1] == pytest.approx(high, abs=0.01 * spread)
    # the bins hold the weight that falls in them, to the fine histogram's resolution
    inside = np.histogram(residual, bins=edges, weights=w)[0]
    assert np.abs(weights - inside).max() <= 0.01 * np.sum(w)


# -- batching, merging, pickling -----------------------------------------------------------------

def _accumulators():
    z, y, w = binary_data(n=2000, seed=20)
    zc, yc, wc, lc = multiclass_data(n=2000, seed=21)
    zl, yl, wl, ll = multilabel_data(n=2000, k=3, seed=22)
    pr, yr, wr = regression_data(n=2000, m=2, seed=23, offset=1e6)
    return {
        "binary logits": (lambda: BinaryMetrics("logits"), (z, y, w)),
        "binary probs binned": (lambda: BinaryMetrics("probs", auc_exact_limit=100, auc_bins_log2=14),
                                (frozen(expit(z)), y, None)),
        "multiclass logits": (lambda: MulticlassMetrics(10, "logits"), (zc, yc, wc, lc)),
        "multiclass probs": (lambda: MulticlassMetrics(10, "probs", top_k=3), (frozen(softmax(zc, axis=1)), yc, None, lc)),
        "multilabel": (lambda: MultilabelMetrics(3, "logits", auc_exact_limit=500, auc_bins_log2=12), (zl, yl, wl, ll)),
        "regression": (lambda: RegressionMetrics(2), (pr, yr, wr)),
        "rank auc": (lambda: RankAUC(exact_limit=10**6, bins_log2=12), (z, y, w)),
    }


def _rows(args, part):
    return tuple(None if a is None else a[part] for a in args)


@pytest.mark.parametrize("name", list(_accumulators()))
def test_batches_and_merge_trees_give_the_same_numbers(name):
    make, args = _accumulators()[name]
    n = len(args[0])
    whole = make()
    whole.update(*args)
    expected = whole.result()
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(1, 12), replace=False))
        batches = np.split(rng.permutation(n), cuts)  # any order of rows, any batch sizes
        pieces = []
        for batch in batches:
            piece = make()
            for chunk in np.array_split(batch, rng.integers(1, 4)):  # several updates per piece
                piece.update(*_rows(args, chunk))
            pieces.append(piece)
        while len(pieces) > 1:  # a random merge tree
            i, j = rng.choice(len(pieces), size=2, replace=False)
            merged = pieces[i].merge(pieces[j])
            assert merged is pieces[i]
            pieces = [p for k, p in enumerate(pieces) if k != j]
        assert pieces[0].rows == n
        assert_same(pieces[0].result(), expected)


@pytest.mark.parametrize("name", list(_accumulators()))
def test_pickle_round_trip_then_merge(name):
    make, args = _accumulators()[name]
    n = len(args[0])
    whole = make()
    whole.update(*args)
    first, second = make(), make()
    first.update(*_rows(args, slice(0, n // 3)))
    second.update(*_rows(args, slice(n // 3, n)))
    first = pickle.loads(pickle.dumps(first))
    second = pickle.loads(pickle.dumps(second))
    assert_same(first.merge(second).result(), whole.result())


def test_work_buffers_are_not_pickled():
    z, y, w, loss = multiclass_data(n=3000)
    metrics = MulticlassMetrics(10, "logits")
    before = len(pickle.dumps(metrics)) - len(pickle.dumps(metrics._adaptive))
    metrics.update(z, y, w, loss)  # leaves ~300 kB of reusable buffers behind
    # the equal-mass ECE keeps its rows (state, not a buffer: 17 bytes a row up to its limit): left out
    assert len(pickle.dumps(metrics)) - len(pickle.dumps(metrics._adaptive)) < before + 1000


def test_empty_batches_and_accumulators_report_none():
    binary = BinaryMetrics("logits")
    binary.update(np.zeros(0), np.zeros(0, dtype=np.int64), None)
    assert binary.rows == 0 and binary.result()["accuracy"] is None and binary.result()["roc_auc"] is None
    multiclass = MulticlassMetrics(3, "probs")
    multiclass.update(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), None, np.zeros(0))
    assert multiclass.result()["log_loss"] is None and multiclass.result()["per_class"][0]["recall"] is None
    assert MultilabelMetrics(2, "logits", auc_bins_log2=8).result()["roc_auc"] is None
    regression = RegressionMetrics(1)
    regression.update(np.zeros((0, 1)), np.zeros((0, 1)), None)
    empty = regression.result()
    assert empty["mse"] is None and empty["r2"] is None and empty["residuals"]["edges"] == []
    regression.update(frozen(np.array([[1.0]])), frozen(np.array([[2.0]])), None)
    one = regression.result()
    assert one["mse"] == 1.0 and one["r2"] is None  # sklearn: NaN with a warning below 2 rows


def test_per_class_loss_is_none_without_example_losses():
    z, y, w, loss = multiclass_data(n=100)
    metrics = MulticlassMetrics(10, "logits")
    metrics.update(z, y, w)
    assert all(row["loss"] is None for row in metrics.result()["per_class"])


def test_bad_options_and_mismatched_merges_are_refused():
    with pytest.raises(ValueError, match="pred_kind"):
        BinaryMetrics("logit")
    with pytest.raises(ValueError, match="n_classes"):
        MulticlassMetrics(1, "logits")
    with pytest.raises(ValueError, match="bins_log2"):
        RankAUC(bins_log2=0)
    with pytest.raises(ValueError, match="n_classes"):
        MulticlassMetrics(3, "logits").merge(MulticlassMetrics(4, "logits"))
    with pytest.raises(ValueError, match="bins_log2"):
        RankAUC(bins_log2=8).merge(RankAUC(bins_log2=9))
    with pytest.raises(ValueError, match="shape"):
        MulticlassMetrics(3, "logits").update(np.zeros((4, 2)), np.zeros(4, dtype=np.int64))


def test_average_precision_of_positives_only_is_never_above_one():
    """The shares of the positives' weight summed to 1.0000000000000002 for some weights, and so did AP with every
    row positive (found in review): a precision above 1. It is 1 to rounding, never above."""
    from losskit.evaluation.auc import ap_from_groups

    for seed in range(20):
        weight = np.random.default_rng(seed).uniform(0.1, 3.0, 100)
        ap = ap_from_groups(weight, np.zeros(100))[0]
        assert ap <= 1.0 and ap == pytest.approx(1.0, abs=4e-16)
