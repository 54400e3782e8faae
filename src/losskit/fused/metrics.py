"""Compiled (numba) update steps of ``losskit eval``'s binary and multi-class metric accumulators.

Each kernel reads one batch once and adds to the accumulator's own arrays in place: the
log-loss, Brier, accuracy and weight sums, the reliability bins, the ROC AUC histogram and the F1
counts (binary) or the confusion counts, top-k hits, each class's reliability bins (classwise ECE)
and the equal-mass ECE's histogram (multi-class). The formulas are those of the NumPy
steps in :mod:`losskit.evaluation.metrics`, which stay the reference (the tests hold the two
equal to rounding); these exist because the NumPy steps take about ten passes over a batch and
``losskit eval`` must keep up with pyarrow reading the file.

Design note: one serial sweep per batch (``nogil``, so the next batch is read by another
thread meanwhile) rather than ``parallel``: the histogram and bin updates are scatters into
shared arrays, which threads would have to keep private copies of and merge per batch. Sums are
float64 whatever the input dtype.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _diskcache  # noqa: F401 - numba's disk cache keyed on the whole package (see there)
from .vmath import vexp, vlog1p_unit

OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"reassoc", "contract"}}

_SIGN = np.uint32(0x80000000)
_ALL = np.uint32(0xFFFFFFFF)


@numba.njit(inline="always")
def _order_key(value, shift):
    """The order-preserving float32 key of ``value``, top ``32 - shift`` bits (auc.order_key)."""
    bits = np.float32(np.float32(value) + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0: one key for both zeros
    bits ^= _ALL if bits >> np.uint32(31) else _SIGN
    return bits >> np.uint32(shift)


@numba.njit(inline="always", fastmath={"reassoc", "contract"}, error_model="numpy")
def _from_logit(logit, t):
    """``(log-loss, p, wrong, score)`` of a logit with label ``t``: branch-free, SIMD-friendly. ``exp``
    and ``log1p`` run in the logit's own dtype (twice the SIMD lanes for float32, whose logit holds no
    more digits than that), the rest in float64."""
    small = vexp(-abs(logit))  # exp(-|z|) in (0, 1]
    e = np.float64(small)
    x = np.float64(logit)
    a = abs(x)
    wrong = (x > 0.0) != (t == 1)
    loss = np.float64(vlog1p_unit(small)) + (a if wrong else 0.0)
    q = e / (1.0 + e)  # sigmoid(-|x|), the smaller of p and 1 - p
    return loss, 0.5 + math.copysign(0.5 - q, x), wrong, x


@numba.njit(inline="always", error_model="numpy")
def _from_probability(p, t, log_eps, log_1m_eps):
    """``(log-loss, p, wrong, score)`` of probability ``p``: sklearn's clipped log-loss, the logit as score."""
    log_p = math.log(p) if p > 0.0 else -math.inf
    log_q = math.log1p(-p) if p < 1.0 else -math.inf
    wrong = (p > 0.5) != (t == 1)
    loss = -min(max(log_p if t == 1 else log_q, log_eps), log_1m_eps)
    return loss, p, wrong, log_p - log_q


@numba.njit(inline="always", fastmath={"reassoc", "contract"}, error_model="numpy")
def _binary_block(pred, y, w, start, m, from_logits, log_eps, log_1m_eps, shift, n_bins, prob, weights, slot,
                  cell):
    """The arithmetic of rows ``start .. start + m``: its sums (those of ``binary_update``'s ``sums``), and
    per row the scatter targets."""
    log_loss = 0.0
    brier = 0.0
    correct = 0.0
    weight = 0.0
    true_positive = 0.0
    predicted = 0.0
    positive = 0.0
    weighted = w.shape[0] > 0
    for j in range(m):
        i = start + j
        t = 1 if y[i] != 0 else 0
        if from_logits:
            loss, p, wrong, score = _from_logit(pred[i], t)
        else:
            loss, p, wrong, score = _from_probability(np.float64(pred[i]), t, log_eps, log_1m_eps)
        wi = np.float64(w[i]) if weighted else 1.0
        log_loss += wi * loss
        correct += 0.0 if wrong else wi
        r = p - t
        brier += wi * (r * r)
        weight += wi
        # predicted positive: logit > 0 or p > 0.5, exactly when the prediction is right for a 1
        said = wrong != (t == 1)
        true_positive += wi if said & (t == 1) else 0.0
        predicted += wi if said else 0.0
        positive += wi if t == 1 else 0.0
        prob[j] = p
        weights[j] = wi
        slot[j] = 2 * np.intp(_order_key(score, shift)) + t
        cell[j] = 2 * min(np.intp(p * n_bins), n_bins - 1) + t
    return log_loss, brier, correct, weight, true_positive, predicted, positive


_LN2_HIGH = 0.6931471803691238  # 33 significant bits: e * _LN2_HIGH is exact for the exponents here
_LN2_LOW = 1.9082149292705877e-10
_MANTISSA = np.int64((1 << 52) - 1)
_ONE_BITS = np.int64(1023 << 52)


@numba.njit(inline="always", fastmath={"contract"}, error_model="numpy")
def _log_at_least_one(x):
    """``log(x)`` for a float64 ``1 <= x < inf``: exponent times ln 2 plus ``log1p`` of the mantissa
    minus 1 (:func:`~losskit.fused.vmath.vlog1p_unit`), branch-free, so it runs in SIMD lanes."""
    bits = np.float64(x).view(np.int64)
    e = np.float64((bits >> np.int64(52)) - np.int64(1023))
    mantissa = np.int64((bits & _MANTISSA) | _ONE_BITS).view(np.float64)  # in [1, 2)
    return e * _LN2_HIGH + (vlog1p_unit(mantissa - 1.0) + e * _LN2_LOW)


#: rows per block of the binary sweep: the arithmetic runs in SIMD lanes over a block, then its scatters
BLOCK = 512


@numba.njit(**OPTIONS)
def binary_update(pred, y, w, from_logits, log_eps, log_1m_eps, hist, shift, calibration, confidence, sums):
    """Add one batch of ``pred [n]`` (logits or probabilities of the positive class), ``y [n]`` 0/1,
    ``w [n]`` (empty: unweighted) to ``hist`` (flat ``[2**bits * 2]``: key * 2 + label),
    ``calibration`` (flat ``[n_bins * 2]``: bin * 2 + label), ``confidence [n_bins]`` and
    ``sums`` = [log-loss, Brier, correct, weight, true positives, predicted positives, positives]
    (weighted sums; predicted positive: logit > 0 or p > 0.5)."""
    n = pred.shape[0]
    n_bins = confidence.shape[0]
    prob = np.empty(BLOCK)
    weights = np.empty(BLOCK)
    slot = np.empty(BLOCK, dtype=np.intp)
    cell = np.empty(BLOCK, dtype=np.intp)
    totals = np.zeros(7)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        # one call per flag value, so that each compiled loop is free of the other's branch (and of
        # its scalar log calls, which would keep the logit loop out of SIMD lanes)
        if from_logits:
            part = _binary_block(pred, y, w, start, m, True, log_eps, log_1m_eps, shift, n_bins, prob, weights,
                                 slot, cell)
        else:
            part = _binary_block(pred, y, w, start, m, False, log_eps, log_1m_eps, shift, n_bins, prob, weights,
                                 slot, cell)
        for k in range(7):
            totals[k] += part[k]
        for j in range(m):
            hist[slot[j]] += weights[j]
            calibration[cell[j]] += weights[j]
            confidence[cell[j] >> 1] += weights[j] * prob[j]
    for k in range(7):
        sums[k] += totals[k]


@numba.njit(**OPTIONS)
def multiclass_update(columns, y, w, example_loss, log_loss_is_loss, from_logits, log_eps, log_1m_eps, top_k,
                      calibration, confidence, count, class_loss, confusion, support, hits, predicted, sums,
                      class_cells, class_confidence, hist, shift, top_conf, top_hit):
    """Add one batch of ``columns [K, n]`` (logits or probabilities, one row per class: a column-order
    ``[n, K]`` batch transposed, no copy), labels ``y [n]``, ``w [n]`` (empty:
    unweighted) and ``example_loss [n]`` (empty: none, or the log-loss itself when ``log_loss_is_loss``)
    to the reliability bins, the per-class ``count``/``class_loss``, ``confusion [K, K]`` (or, when it
    is empty, ``support``/``hits``/``predicted [K]``) and ``sums`` = [log-loss, correct, top-k hits,
    weight]. Top-k ranks ties as sklearn's ``top_k_accuracy_score``: among equal scores the higher
    class index ranks first.

    In the same sweep, the calibration metrics: each class's reliability bins of ``p_c`` against
    ``[y == c]`` (classwise ECE): ``class_cells [K, n_bins, 2]`` (weight by outcome) and
    ``class_confidence [K, n_bins]`` (weighted ``p_c``), binned as the top-label bins; the equal-mass
    ECE's histogram ``hist [2**bits, 3]`` (``shift = 32 - bits``; weight, hit weight, weighted
    confidence) keyed on the top confidence's logit
    (:class:`~losskit.evaluation.adaptive.AdaptiveCalibration`), from logits
    ``-log(sum_{j != top} e^{z_j - max})``, with no cancellation near a confidence of 1; and, when
    ``top_conf [n]`` / ``top_hit [n]`` (uint8) are not empty, each row's top confidence and hit (the
    equal-mass ECE's exact rows).

    The sweep goes a block of rows at a time, class by class: each class's inner loop reads contiguous
    memory and runs in SIMD lanes. Each row's ``exp(z - max)`` is computed once (kept for the block
    when ``K <= 256``) and serves the log-loss, the top confidence and every class's probability."""
    k, n = columns.shape
    best = np.empty(BLOCK)
    s_true = np.empty(BLOCK)
    total = np.empty(BLOCK)
    others = np.empty(BLOCK)
    top = np.empty(BLOCK, dtype=np.intp)
    above = np.empty(BLOCK, dtype=np.intp)
    row_loss = np.empty(BLOCK)
    p = np.empty(BLOCK)
    keep = k <= 256  # each block's exp(z - max) kept for the per-class bins (k x 512 floats) rather than redone
    kept = np.empty((k if keep else 1, BLOCK))
    n_bins = class_confidence.shape[1]
    # [copy, class, bin]: weight of outcome 0, of outcome 1, weighted p_c; four copies, each bin's sums in one
    # cache line: most p_c fall in a few bins, and adds to one copy would chain (measured 1.7x faster)
    lanes = np.zeros((4, k, n_bins, 4))
    totals = np.zeros(4)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        if from_logits:
            _class_sweep(columns, y, start, m, k, True, best, s_true, total, others, top, above, row_loss, kept,
                         keep)
        else:
            _class_sweep(columns, y, start, m, k, False, best, s_true, total, others, top, above, row_loss, kept,
                         keep)
        part = _multiclass_rows(y, w, example_loss, log_loss_is_loss, from_logits, log_eps, log_1m_eps, top_k,
                                calibration, confidence, count, class_loss, confusion, support, hits, predicted,
                                start, m, best, s_true, total, top, above, row_loss, others, hist, shift, top_conf,
                                top_hit)
        for j in range(4):
            totals[j] += part[j]
        if from_logits:
            _class_bins(columns, y, w, start, m, k, True, keep, kept, best, total, p, lanes)
        else:
            _class_bins(columns, y, w, start, m, k, False, keep, kept, best, total, p, lanes)
    for j in range(4):
        sums[j] += totals[j]
    for lane in range(4):
        for j in range(k):
            for b in range(n_bins):
                class_cells[j, b, 0] += lanes[lane, j, b, 0]
                class_cells[j, b, 1] += lanes[lane, j, b, 1]
                class_confidence[j, b] += lanes[lane, j, b, 2]


@numba.njit(inline="always", fastmath={"reassoc", "contract"}, error_model="numpy")
def _class_sweep(columns, y, start, m, k, from_logits, best, s_true, total, others, top, above, loss, kept, keep):
    """Per row of the block: the first maximum and its class, the true class's score, how many classes
    rank above it, and (logits) each ``exp(z - max)`` (into ``kept`` when ``keep``), their sum, the sum
    over the classes other than the top one, and the cross-entropy. ``columns [K, n]``: each class's
    scores are one contiguous slice, so every inner loop runs in SIMD lanes."""
    labels = y[start:start + m]
    first = columns[0, start:start + m]
    for r in range(m):
        best[r] = first[r]
        top[r] = 0
        s_true[r] = columns[labels[r], start + r]
        above[r] = 0
        total[r] = 0.0
        others[r] = 0.0
    for j in range(1, k):
        scores = columns[j, start:start + m]
        for r in range(m):
            v = np.float64(scores[r])
            better = v > best[r]  # strictly: the first maximum wins, as argmax
            best[r] = v if better else best[r]
            top[r] = j if better else top[r]
    for j in range(k):
        scores = columns[j, start:start + m]
        row = kept[j if keep else 0]
        for r in range(m):
            v = np.float64(scores[r])
            ahead = (v > s_true[r]) | ((v == s_true[r]) & (j > labels[r]))  # bitwise: no branch in the lanes
            above[r] += 1 if ahead else 0
            if from_logits:
                e = vexp(v - best[r])  # <= 0: no overflow
                row[r] = e
                total[r] += e
                others[r] += 0.0 if j == top[r] else e
    if from_logits:
        for r in range(m):  # total[r] in [1, K]: the negated log-softmax of the true class, in SIMD lanes too
            loss[r] = _log_at_least_one(total[r]) + (best[r] - s_true[r])


@numba.njit(inline="always", fastmath={"reassoc", "contract"}, error_model="numpy")
def _class_bins(columns, y, w, start, m, k, from_logits, keep, kept, best, total, p, lanes):
    """Each class's reliability bins of the block's ``p_c`` against ``[y == c]``, into ``lanes``
    (row ``r`` adds to copy ``r & 3``)."""
    n_bins = lanes.shape[2]
    weighted = w.shape[0] > 0
    for j in range(k):
        scores = columns[j, start:start + m]
        if from_logits and keep:
            row = kept[j]
            for r in range(m):
                p[r] = row[r] / total[r]
        elif from_logits:
            for r in range(m):
                p[r] = vexp(np.float64(scores[r]) - best[r]) / total[r]
        else:
            for r in range(m):
                p[r] = np.float64(scores[r])
        for r in range(m):
            wi = np.float64(w[start + r]) if weighted else 1.0
            b = min(int(p[r] * n_bins), n_bins - 1)
            lane = r & 3
            lanes[lane, j, b, 1 if y[start + r] == j else 0] += wi
            lanes[lane, j, b, 2] += wi * p[r]


@numba.njit(inline="always", error_model="numpy")
def _multiclass_rows(y, w, example_loss, log_loss_is_loss, from_logits, log_eps, log_1m_eps, top_k, calibration,
                     confidence, count, class_loss, confusion, support, hits, predicted, start, m, best, s_true,
                     total, top, above, row_loss, others, hist, shift, top_conf, top_hit):
    """The per-row part of a block: losses, sums and the scatters into bins, the equal-mass histogram and
    the per-class counts."""
    n_bins = confidence.shape[0]
    weighted = w.shape[0] > 0
    with_loss = example_loss.shape[0] > 0
    with_confusion = confusion.shape[0] > 0
    with_rows = top_conf.shape[0] > 0
    log_loss = 0.0
    correct = 0.0
    top_hits = 0.0
    weight = 0.0
    for r in range(m):
        i = start + r
        label = y[i]
        wi = np.float64(w[i]) if weighted else 1.0
        if from_logits:
            loss = row_loss[r]
            conf = 1.0 / total[r]
            score = -math.log(others[r]) if others[r] > 0.0 else math.inf  # the top confidence's logit
        else:
            log_p = math.log(s_true[r]) if s_true[r] > 0.0 else -math.inf
            loss = -min(max(log_p, log_eps), log_1m_eps)
            conf = best[r]
            score = (math.log(conf) if conf > 0.0 else -math.inf) - (math.log1p(-conf) if conf < 1.0 else -math.inf)
        hit = top[r] == label
        log_loss += wi * loss
        correct += wi if hit else 0.0
        top_hits += wi if above[r] < top_k else 0.0
        weight += wi
        b = min(int(conf * n_bins), n_bins - 1)
        calibration[2 * b + (1 if hit else 0)] += wi
        confidence[b] += wi * conf
        key = np.intp(_order_key(score, shift))
        hist[key, 0] += wi
        hist[key, 1] += wi if hit else 0.0
        hist[key, 2] += wi * conf
        if with_rows:
            top_conf[i] = conf
            top_hit[i] = 1 if hit else 0
        count[label] += 1
        if with_loss:
            class_loss[label] += wi * example_loss[i]
        elif log_loss_is_loss:
            class_loss[label] += wi * loss
        if with_confusion:
            confusion[label, top[r]] += wi
        else:
            support[label] += wi
            predicted[top[r]] += wi
            if hit:
                hits[label] += wi
    return log_loss, correct, top_hits, weight
