r"""What each calibration method minimises: the weighted NLL of the recalibrated predictions, its
gradient and Hessian in the method's parameters, summed over one batch (:class:`Sums`).

Every method is a map of the logits with parameters ``theta`` and the NLL of the task's loss on
its output; a batch's :class:`Sums` add up over batches, files and Dask workers exactly as float64
sums do, so one pass over the data gives one Newton step (:mod:`.newton`).

* :class:`Temperature`: ``u = z / T``, ``theta = s = log T`` (so ``T > 0`` always), one ``s`` for
  every class and label, or one per label (``per_label``). Softmax: ``dl/ds = <u, y - p>`` and
  ``d^2l/ds^2 = Var_p(u) - dl/ds``; sigmoid, per value: ``dl/ds = u (y - p)`` and
  ``d^2l/ds^2 = u^2 p (1 - p) - dl/ds``. In ``beta = 1 / T`` the NLL is convex; in ``s`` it has one
  minimum (the sign of ``dl/ds`` changes once), which the bracketing Newton of :mod:`.newton` uses.
* :class:`~.scaling.Platt` (in :mod:`.scaling`, as the next two): ``v = a z + b`` under the binary
  cross-entropy (convex in ``(a, b)``).
* :class:`~.scaling.Vector`: ``v_k = a_k z_k + b_k`` under softmax cross-entropy, ``+ l2 / 2 |b|^2`` per unit
  weight (convex; the offsets have a flat direction without ``l2``, which the solver handles).
* :class:`~.scaling.Variance`: Gaussian heads ``(mean, log-variance)``: the variance times ``c = e^t``;
  ``dl/dt = (1 - r^2 e^{-t}) / 2``, ``d^2l/dt^2 = r^2 e^{-t} / 2`` with ``r`` the standardised error.

The losses are losskit's own: ``value_and_grad`` / ``hessian_diag`` of
:class:`~losskit.SoftmaxCrossEntropy`, :class:`~losskit.BinaryCrossEntropyWithLogits` and
:class:`~losskit.GaussianNLL` give the loss, ``dl/du`` and ``d^2l/du^2``, and the chain rule
above turns them into derivatives in the parameters. For temperature scaling of NumPy batches a
compiled sweep (:mod:`losskit.fused.calibration`) computes the same sums in one read of the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...activations import sigmoid_xp
from ...losses import BinaryCrossEntropyWithLogits, SoftmaxCrossEntropy
from ..metrics._common import _Calibration, _compiled, _Scratch

__all__ = ["Sums", "Temperature", "N_BINS"]

#: reliability bins, as ``losskit eval`` bins its ECE
N_BINS = 15


@dataclass
class Sums:
    """One batch's (or many merged batches') ``sum w l``, ``sum w``, gradient ``[P]``, Hessian (``[P]``
    for a separable objective, else ``[P, P]``), ``scale [P]`` (``sum_i w_i |dl_i/dtheta_j|``, what
    the gradient is relative to), reliability ``bins`` (None where the task has no ECE), target
    ``mass`` per class or label (``[2, K]`` negatives and positives for sigmoid tasks), ``rows``, and the
    ``penalty`` that ``loss`` includes (vector scaling's l2 term): what the fit minimises, but no part of
    the NLL it reports (which ``losskit eval`` of the calibrated predictions gives)."""

    loss: float
    weight: float
    grad: np.ndarray
    hess: np.ndarray
    scale: np.ndarray
    bins: _Calibration | None
    mass: np.ndarray
    rows: int
    penalty: float = 0.0

    def merge(self, other: Sums) -> Sums:
        self.loss += other.loss
        self.penalty += other.penalty
        self.weight += other.weight
        self.grad = self.grad + other.grad
        self.hess = self.hess + other.hess
        self.scale = self.scale + other.scale
        self.mass = self.mass + other.mass
        self.rows += other.rows
        if self.bins is not None:
            self.bins.merge(other.bins)
        return self

    @property
    def nll(self) -> float | None:
        return (self.loss - self.penalty) / self.weight if self.weight > 0 else None

    @property
    def ece(self) -> float | None:
        return None if self.bins is None else self.bins.result()[0]


def _w(weight, n):
    return np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)


def _column_sums(values: np.ndarray, weight) -> np.ndarray:
    """``sum_i w_i v_ij`` per column of ``values [n, K]``."""
    return values.sum(axis=0) if weight is None else np.einsum("i,ij->j", np.asarray(weight, np.float64), values)


def _bins(confidence: np.ndarray, outcome: np.ndarray, weight) -> _Calibration:
    bins = _Calibration(N_BINS)
    bins.update(confidence, outcome, None if weight is None else np.asarray(weight, np.float64), _Scratch())
    return bins


def _empty(task: str) -> _Calibration | None:
    return _Calibration(N_BINS) if task in ("binary", "multiclass") else None


class Temperature:
    """``u = z / T`` per class (softmax) or per value (sigmoid); ``theta = log T``, one or one per label."""

    separable = True

    def __init__(self, task: str, n_outputs: int, per_label: bool = False):
        self.task, self.n_outputs, self.per_label = task, n_outputs, per_label
        self.method = "temperature_per_label" if per_label else "temperature"
        self.n_params = n_outputs if per_label else 1

    def start(self) -> np.ndarray:
        return np.zeros(self.n_params)

    def params(self, theta) -> dict:
        t = [math.exp(s) for s in theta]
        return {"temperature": t if self.per_label else t[0]}

    def theta(self, params: dict) -> np.ndarray:
        return np.log(np.atleast_1d(np.asarray(params["temperature"], dtype=np.float64)))

    def apply(self, theta, logits, xp):
        if not self.per_label:
            return logits / float(math.exp(theta[0]))
        t = xp.asarray(np.exp(theta), dtype=logits.dtype, device=getattr(logits, "device", None))
        return logits / t

    def sums(self, theta, logits, target, weight, mass: bool) -> Sums:
        """``logits [n, K]``; ``target``: integer labels ``[n]`` or class probabilities ``[n, K]``
        (multi-class), 0/1 or probabilities ``[n, K]`` (binary K = 1, multi-label)."""
        kernels = _compiled(getattr(logits, "size", None))
        if kernels is not None and isinstance(logits, np.ndarray):
            out = self._compiled(theta, logits, target, weight)
        else:
            out = self._reference(theta, logits, target, weight)
        out.mass = _mass(self.task, target, weight, logits.shape[1]) if mass else np.zeros(0)
        return out

    def _compiled(self, theta, logits, target, weight) -> Sums:
        from ...fused import calibration as kernels

        w = np.zeros(0) if weight is None else weight
        bins = _empty(self.task)
        cells = bins.weight.reshape(-1) if bins is not None else np.zeros(0)
        confidence = bins.confidence if bins is not None else np.zeros(0)
        if self.task == "multiclass":
            sums = np.zeros(5)
            rows = np.ascontiguousarray(logits)
            labels, soft = (target, np.zeros((0, 0))) if target.ndim == 1 else (np.zeros(0, np.intp), target)
            kernels.softmax_temperature(rows, labels, _numeric(soft), w, math.exp(-theta[0]), cells, confidence, sums)
            sums = sums[None, :]
        else:
            betas = np.exp(-theta) if self.per_label else np.full(logits.shape[1], math.exp(-theta[0]))
            sums = np.zeros((logits.shape[1], 5))
            kernels.sigmoid_temperature(logits, _numeric(target), w, betas, cells, confidence, sums)
            weight = sums[0, 1]  # each label's column has the rows' weight
            if not self.per_label:
                sums = sums.sum(axis=0, keepdims=True)
            sums[:, 1] = weight
        return Sums(float(sums[:, 0].sum()), float(sums[0, 1]), sums[:, 2].copy(), sums[:, 3].copy(),
                    sums[:, 4].copy(), bins, np.zeros(0), len(logits))

    def _reference(self, theta, logits, target, weight) -> Sums:
        """The same sums from losskit's losses: ``dl/du`` and ``d^2l/du^2`` and the chain rule."""
        z = np.asarray(logits, dtype=np.float64)
        t = np.exp(theta) if self.per_label else np.full(1, math.exp(theta[0]))
        u = z / t
        w = _w(weight, len(z))
        if self.task == "multiclass":
            y = target if target.ndim == 1 else np.asarray(target, dtype=np.float64)
            loss, dl_du = SoftmaxCrossEntropy(reduction="none").value_and_grad(u, y)  # dl/du = |y| p - y
            mass = 1.0 if y.ndim == 1 else y.sum(axis=1)
            p = (dl_du + (np.eye(z.shape[1])[y] if y.ndim == 1 else y)) / np.reshape(mass, (-1, 1))
            g = -np.einsum("ij,ij->i", u, dl_du)  # dl/ds = -<u, dl/du>
            v = u - u.max(axis=1, keepdims=True)  # Var_p(u) from the shifted u: no cancellation
            mean = np.einsum("ij,ij->i", p, v)
            h = mass * np.maximum(np.einsum("ij,ij,ij->i", p, v, v) - mean * mean, 0.0) - g
            g, h, loss = g[:, None], h[:, None], loss[:, None]
            outcome = p.argmax(axis=1) == (y if y.ndim == 1 else y.argmax(axis=1))
            bins = _bins(p.max(axis=1), outcome, weight)
        else:
            y = np.asarray(target, dtype=np.float64)
            bce = BinaryCrossEntropyWithLogits(reduction="none")
            loss, dl_du = bce.value_and_grad(u, y)  # dl/du = p - y
            g = -u * dl_du
            h = u * u * bce.hessian_diag(u, y) - g  # d^2l/du^2 = p (1 - p)
            bins = _bins(sigmoid_xp(np, u[:, 0]), y[:, 0] > 0.5, weight) if self.task == "binary" else None
        cols = [_column_sums(a, weight) for a in (loss, g, h, np.abs(g))]
        if not self.per_label:
            cols = [np.atleast_1d(c.sum()) for c in cols]
        return Sums(float(cols[0].sum()), float(w.sum()), cols[1], cols[2], cols[3], bins, np.zeros(0), len(z))


def _numeric(target: np.ndarray) -> np.ndarray:
    return target.view(np.uint8) if target.dtype == bool else target


def _mass(task: str, target, weight, k: int) -> np.ndarray:
    """Target weight per class (multi-class ``[K]``), or per label of negatives and positives ``[2, K]``."""
    if task == "multiclass":
        if target.ndim == 1:
            return np.bincount(target, weights=weight, minlength=k).astype(np.float64)
        return _column_sums(np.asarray(target, np.float64), weight)
    y = np.asarray(target, dtype=np.float64)
    return np.stack([_column_sums(1.0 - y, weight), _column_sums(y, weight)])
