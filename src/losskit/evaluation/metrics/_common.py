"""What the metric accumulators share: argument checks, weighted sums, scratch buffers, the
reliability bins, and the switch between the NumPy steps and the compiled ones."""

from __future__ import annotations

import os

import numpy as np

_PRED_KINDS = ("logits", "probs")
_EPS = np.finfo(np.float64).eps
# log is monotone, so clip(log p, log eps, log(1 - eps)) == log(clip(p, eps, 1 - eps)), sklearn's rule
_LOG_EPS = float(np.log(_EPS))
_LOG_1M_EPS = float(np.log(1.0 - _EPS))


def _log_clip(dtype) -> tuple[float, float]:
    """``(log eps, log(1 - eps))`` of sklearn's ``log_loss`` clipping for probabilities of ``dtype``: its
    eps is the input dtype's (float32's 1.2e-7 for a float32 file, where a saturated sigmoid is exactly 0
    or 1), float64's for every other dtype."""
    if np.dtype(dtype) == np.float32:
        eps = float(np.finfo(np.float32).eps)
        return float(np.log(eps)), float(np.log1p(-eps))
    return _LOG_EPS, _LOG_1M_EPS


# -- helpers -------------------------------------------------------------------------------------

def _kind(pred_kind) -> str:
    if pred_kind not in _PRED_KINDS:
        raise ValueError(f"pred_kind: expected 'logits' or 'probs', got {pred_kind!r}")
    return pred_kind


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _shape(name: str, array: np.ndarray, shape: tuple) -> None:
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")


_NO_WEIGHT = np.zeros(0)


#: batches of fewer values than this take the NumPy steps unless ``LOSSKIT_EVAL_KERNELS=1``: the
#: first use of a compiled step in a fresh install compiles it (seconds), which a small file's
#: whole scoring would wait for, while the NumPy steps take milliseconds at that size
COMPILED_FROM = 1 << 16


def _compiled(size: int | None = None):
    """:mod:`losskit.fused.metrics` (the compiled update steps), or None for the NumPy steps: where
    numba is missing, ``LOSSKIT_EVAL_KERNELS=0`` asks for them (the tests compare the two), or the
    batch holds fewer than :data:`COMPILED_FROM` values (``size``) and ``LOSSKIT_EVAL_KERNELS`` is
    not ``1``. The two steps agree to rounding (tests/test_fused_metrics.py)."""
    flag = os.environ.get("LOSSKIT_EVAL_KERNELS", "auto")
    if flag == "0" or (flag != "1" and size is not None and size < COMPILED_FROM):
        return None
    from ... import fused

    if not fused.available():  # only a missing numba means "no compiled steps": nothing else is caught
        return None
    from ...fused import metrics

    return metrics


def _floats(pred) -> np.ndarray:
    """``pred`` as a NumPy float32 or float64 array (float32 kept: the compiled steps widen each value)."""
    pred = np.asarray(pred)
    return pred if pred.dtype in (np.float32, np.float64) else pred.astype(np.float64)


def _weights(w, n: int, compiled: bool = False) -> np.ndarray | None:
    """``w`` as float64 ``[n]`` (float32 kept for the compiled steps, which widen each value)."""
    if w is None:
        return None
    w = np.asarray(w)
    if not (compiled and w.dtype == np.float32):
        w = w.astype(np.float64, copy=False)
    _shape("w", w, (n,))
    return w


def _total_weight(w: np.ndarray | None, n: int) -> float:
    """``sum_i w_i`` of a batch of ``n`` rows (``n`` when unweighted), as a Python float."""
    return float(n) if w is None else float(np.sum(w))


def _wsum(values: np.ndarray, w: np.ndarray | None) -> float:
    """``sum_i w_i v_i`` (``sum_i v_i`` when ``w`` is None) as a Python float."""
    if w is None:
        return float(np.count_nonzero(values)) if values.dtype == bool else float(np.sum(values))
    return float(np.einsum("i,i->", w, values))


def _wcolsum(values: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``sum_i w_i v_ik`` per column ``k`` of ``values [n, K]``, float64 ``[K]``."""
    if w is None:
        return values.sum(axis=0, dtype=np.float64)
    return np.einsum("i,ij->j", w, values)


def _row_count(mask: np.ndarray) -> np.ndarray:
    """Number of True per row of a bool ``[n, K]``: for ``K < 256`` a uint8 matrix-vector product (NumPy's
    own integer loop), several times faster than ``mask.sum(axis=1)`` on narrow rows."""
    k = mask.shape[1]
    if k < 256:
        return mask.view(np.uint8) @ np.ones(k, dtype=np.uint8)
    return mask.sum(axis=1, dtype=np.int32)


def _wsum_masked(values: np.ndarray, mask: np.ndarray, w: np.ndarray | None) -> float:
    """``sum_i w_i v_i [mask_i]`` in one pass, no temporary (``values`` finite where ``mask`` holds)."""
    if w is None:
        return float(np.einsum("i,i->", values, mask))
    return float(np.einsum("i,i,i->", w, values, mask))


def _as_bool(y: np.ndarray) -> np.ndarray:
    return y if y.dtype == bool else y != 0


class _Scratch:
    """Work buffers reused from batch to batch, by name, grown to the batch size on demand.

    Fresh multi-megabyte temporaries cost page faults on every batch (measured: about a third of a
    binary update); these are reused instead. Not part of the state: a copy or pickle is empty.
    """

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=np.float64) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or len(buffer) < n:
            buffer = self._buffers[name] = np.empty(n, dtype=dtype)
        return buffer[:n]

    def row_starts(self, n: int, k: int) -> np.ndarray:
        """``[0, k, 2k, ...]``, ``n`` of them: the flat index of each row of a C-contiguous ``[n, k]``."""
        name = f"row starts {k}"
        starts = self._buffers.get(name)
        if starts is None or len(starts) < n:
            starts = self._buffers[name] = np.arange(n, dtype=np.intp) * k
        return starts[:n]

    def __reduce__(self):
        return (_Scratch, ())


def _mean(total: float, weight: float) -> float | None:
    return total / weight if weight > 0 else None


def _same(self, other, *names: str) -> None:
    if type(other) is not type(self):
        raise TypeError(f"{type(self).__name__}.merge: expected a {type(self).__name__}, got {type(other).__name__}")
    for name in names:
        if getattr(self, name) != getattr(other, name):
            raise ValueError(f"{type(self).__name__}.merge: {name} differs: {getattr(self, name)!r} vs "
                             f"{getattr(other, name)!r}")


def _logit(probs: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)``: a monotone ranking score for ROC AUC, ``-inf`` at 0 and ``+inf`` at 1. In
    float64 whatever ``probs``' dtype: float32 logits of neighbouring float32 probabilities tie or swap (the
    compiled step's exact AUC of p and its next float32 was 0.5, not 1; found in review)."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        score = np.log(probs)
        score -= np.log1p(-probs)  # log1p(-p): no cancellation for small p
    return score


# -- calibration -----------------------------------------------------------------------------------

class _Calibration:
    r"""Reliability bins: ``n_bins`` equal-width bins of [0, 1] on a confidence, with the observed outcome.

    Bin ``b`` is ``[edges[b], edges[b+1])``, ``b = min(floor(p * n_bins), n_bins - 1)``, with
    ``edges[b]`` the float64 nearest ``b / n_bins`` at which that product steps (``b / n_bins`` itself
    or an ulp from it, see ``_floor_edges``): a confidence exactly on an inner edge goes to the upper
    bin, as ``torch.bucketize(confidence, linspace(0, 1, n_bins + 1), right=True) - 1`` in
    torchmetrics' ``_binning_bucketize``; a confidence of exactly 1.0 goes to the last bin
    ``[edges[-2], 1]`` (torchmetrics counts it in a hidden extra bin, torchmetrics#3510).
    ``ECE = sum_b (W_b / W) |conf_b - freq_b| = sum_b |S_b - O_b| / W`` with ``S_b``, ``O_b``
    the weighted sums of confidence and outcome in the bin, as torchmetrics'
    ``BinaryCalibrationError(n_bins, norm="l1")`` with sample weights.
    """

    def __init__(self, n_bins: int):
        self.n_bins = _count("n_bins", n_bins, 1)
        self.edges = _floor_edges(self.n_bins)
        self.weight = np.zeros((self.n_bins, 2))  # [bin, outcome]: one scatter-add gives W_b and O_b
        self.confidence = np.zeros(self.n_bins)  # sum w * confidence per bin

    def update(self, confidence: np.ndarray, outcome: np.ndarray, w: np.ndarray | None, scratch: _Scratch) -> None:
        """Add ``confidence [n]`` in [0, 1] with ``outcome [n]`` bool."""
        n = len(confidence)
        work = np.multiply(confidence, self.n_bins, out=scratch.get("calibration", n))
        index = scratch.get("calibration index", n, np.intp)
        np.copyto(index, work, casting="unsafe")  # confidence >= 0: truncation is floor
        np.minimum(index, self.n_bins - 1, out=index)  # 1.0 goes to the last bin
        split = np.multiply(index, 2, out=scratch.get("calibration split", n, np.intp))
        split += outcome
        # np.add.at: faster than np.bincount for a few bins, and nothing to allocate
        np.add.at(self.weight.reshape(-1), split, 1.0 if w is None else w)
        np.add.at(self.confidence, index, confidence if w is None else np.multiply(confidence, w, out=work))

    def merge(self, other: _Calibration) -> None:
        if other.n_bins != self.n_bins:
            raise ValueError(f"n_bins differs: {self.n_bins} vs {other.n_bins}")
        self.weight += other.weight
        self.confidence += other.confidence

    def result(self) -> tuple[float | None, list[dict]]:
        weight, outcome, confidence = self.weight.sum(axis=1), self.weight[:, 1], self.confidence
        total = float(weight.sum())
        ece = float(np.abs(confidence - outcome).sum()) / total if total > 0 else None
        bins = []
        for b in range(self.n_bins):
            w_b = float(weight[b])
            bins.append({"lower": float(self.edges[b]), "upper": float(self.edges[b + 1]), "weight": w_b,
                         "confidence": float(confidence[b]) / w_b if w_b > 0 else None,
                         "frequency": float(outcome[b]) / w_b if w_b > 0 else None})
        return ece, bins


def _mce(bins: list[dict]) -> float | None:
    """Maximum calibration error: the largest ``|mean confidence - observed|`` over the bins holding weight."""
    gaps = [abs(b["confidence"] - b["frequency"]) for b in bins if b["weight"] > 0]
    return max(gaps) if gaps else None


def _f1(tp, predicted, positives):
    """``2 TP / (predicted positives + positives)``, 0 where both are 0 (scikit-learn's ``zero_division``)."""
    tp, denominator = np.asarray(tp, dtype=np.float64), np.asarray(predicted) + np.asarray(positives)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _floor_edges(n_bins: int) -> np.ndarray:
    """The float64 edges at which ``floor(p * n_bins)`` (rounded product) steps: ``edges[b]`` is the least
    ``p`` with ``floor(p * n_bins) >= b``. Each is ``b / n_bins`` or within an ulp of it; binning by the
    product is then exactly binning by these edges, with no search and no correction pass."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for b in range(1, n_bins):
        edge = edges[b]
        while np.floor(edge * n_bins) >= b:
            edge = np.nextafter(edge, -np.inf)
        while np.floor(edge * n_bins) < b:
            edge = np.nextafter(edge, np.inf)
        edges[b] = edge
    return edges
