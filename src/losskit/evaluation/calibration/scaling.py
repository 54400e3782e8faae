"""The calibration maps with more than a temperature: Platt and vector scaling (affine maps of the
logits) and variance scaling of Gaussian heads; their NLL sums, gradients and Hessians per batch
(the formulas are in :mod:`.objectives`' docstring and docs/calibration.md)."""

from __future__ import annotations

import math

import numpy as np

from ...activations import sigmoid_xp
from ...losses import BinaryCrossEntropyWithLogits, GaussianNLL, SoftmaxCrossEntropy
from .objectives import Sums, _bins, _mass, _w

__all__ = ["Platt", "Vector", "Variance"]


class Platt:
    """``v = a z + b`` under the binary cross-entropy: plain maximum likelihood, no target smoothing."""

    separable = False
    method = "platt"
    task = "binary"
    n_params = 2

    def __init__(self, task: str = "binary", n_outputs: int = 1):
        self.n_outputs = n_outputs

    def start(self) -> np.ndarray:
        return np.array([1.0, 0.0])

    def neutral(self) -> np.ndarray:
        """Every prediction 1/2: where a fit restarts when the scores saturate the identity map."""
        return np.zeros(2)

    def params(self, theta) -> dict:
        return {"a": float(theta[0]), "b": float(theta[1])}

    def theta(self, params: dict) -> np.ndarray:
        return np.array([params["a"], params["b"]], dtype=np.float64)

    def apply(self, theta, logits, xp):
        return logits * float(theta[0]) + float(theta[1])

    def sums(self, theta, logits, target, weight, mass: bool) -> Sums:
        z = np.asarray(logits, dtype=np.float64)[:, 0]
        y = np.asarray(target, dtype=np.float64)[:, 0]
        v = theta[0] * z + theta[1]
        bce = BinaryCrossEntropyWithLogits(reduction="none")
        loss, r = bce.value_and_grad(v, y)  # dl/dv = p - y
        h = bce.hessian_diag(v, y)  # p (1 - p)
        w = _w(weight, len(z))
        wr, wh = w * r, w * h
        grad = np.array([wr @ z, wr.sum()])
        hess = np.array([[wh @ (z * z), wh @ z], [wh @ z, wh.sum()]])
        scale = np.array([w @ np.abs(r * z), w @ np.abs(r)])
        bins = _bins(sigmoid_xp(np, v), y > 0.5, weight)  # no overflow warning at v << 0
        return Sums(float(w @ loss), float(w.sum()), grad, hess, scale, bins,
                    _mass("binary", target, weight, 1) if mass else np.zeros(0), len(z))


class Vector:
    """``v_k = a_k z_k + b_k`` under softmax cross-entropy, with ``l2 / 2 |b|^2`` per unit weight."""

    separable = False
    method = "vector"
    task = "multiclass"

    def __init__(self, task: str = "multiclass", n_outputs: int = 2, l2: float = 0.0):
        self.n_outputs, self.l2 = n_outputs, float(l2)
        self.n_params = 2 * n_outputs

    def start(self) -> np.ndarray:
        return np.concatenate([np.ones(self.n_outputs), np.zeros(self.n_outputs)])

    def neutral(self) -> np.ndarray:
        """Every prediction uniform: where a fit restarts when the scores saturate the identity map."""
        return np.zeros(2 * self.n_outputs)

    def params(self, theta) -> dict:
        k = self.n_outputs
        return {"scale": [float(a) for a in theta[:k]], "offset": [float(b) for b in theta[k:]], "l2": self.l2}

    def theta(self, params: dict) -> np.ndarray:
        self.l2 = float(params.get("l2", 0.0))
        return np.concatenate([np.asarray(params["scale"], np.float64), np.asarray(params["offset"], np.float64)])

    def apply(self, theta, logits, xp):
        k = self.n_outputs
        device = getattr(logits, "device", None)
        a = xp.asarray(theta[:k], dtype=logits.dtype, device=device)
        b = xp.asarray(theta[k:], dtype=logits.dtype, device=device)
        return logits * a + b

    def sums(self, theta, logits, target, weight, mass: bool) -> Sums:
        k = self.n_outputs
        z = np.asarray(logits, dtype=np.float64)
        a, b = theta[:k], theta[k:]
        v = z * a + b
        y = target if target.ndim == 1 else np.asarray(target, dtype=np.float64)
        loss, r = SoftmaxCrossEntropy(reduction="none").value_and_grad(v, y)  # dl/dv = |y| p - y
        onehot = np.eye(k)[y] if y.ndim == 1 else y
        row_mass = 1.0 if y.ndim == 1 else y.sum(axis=1, keepdims=True)
        p = (r + onehot) / row_mass
        w = _w(weight, len(z))
        wm = w * (np.ones(len(z)) if y.ndim == 1 else row_mass[:, 0])  # the Hessian of |y| lse(v)
        pz = p * z
        grad = np.concatenate([w @ (r * z), w @ r])
        # d^2/dv^2 = |y| (diag(p) - p p^T); chain rule through v = a z + b
        h_aa = np.diag(wm @ (pz * z)) - (pz * wm[:, None]).T @ pz
        h_ab = np.diag(wm @ pz) - (pz * wm[:, None]).T @ p
        h_bb = np.diag(wm @ p) - (p * wm[:, None]).T @ p
        hess = np.block([[h_aa, h_ab], [h_ab.T, h_bb]])
        scale = np.concatenate([w @ np.abs(r * z), w @ np.abs(r)])
        total = float(w.sum())
        # the l2 penalty on the offsets, per unit weight: total * l2 / 2 |b|^2
        penalty = 0.5 * self.l2 * total * float(b @ b)
        loss_sum = float(w @ loss) + penalty
        grad[k:] += self.l2 * total * b
        hess[k:, k:] += self.l2 * total * np.eye(k)
        scale[k:] += self.l2 * total * np.abs(b)
        outcome = p.argmax(axis=1) == (y if y.ndim == 1 else y.argmax(axis=1))
        return Sums(loss_sum, total, grad, hess, scale, _bins(p.max(axis=1), outcome, weight),
                    _mass("multiclass", target, weight, k) if mass else np.zeros(0), len(z), penalty)


class Variance:
    """Gaussian ``(mean, log-variance)`` predictions: the variance times ``c = e^t`` (sigma scaling)."""

    separable = True
    method = "variance"
    task = "regression"
    n_params = 1

    def __init__(self, task: str = "regression", n_outputs: int = 2):
        self.n_outputs = n_outputs

    def start(self) -> np.ndarray:
        return np.zeros(1)

    def params(self, theta) -> dict:
        return {"variance_factor": math.exp(theta[0])}

    def theta(self, params: dict) -> np.ndarray:
        return np.log(np.array([float(params["variance_factor"])]))  # <= 0: -inf or NaN, refused by theta()

    def apply(self, theta, logits, xp):
        return xp.stack([logits[..., 0], logits[..., 1] + float(theta[0])], axis=-1)

    def sums(self, theta, logits, target, weight, mass: bool) -> Sums:
        pred = np.asarray(logits, dtype=np.float64).copy()
        pred[:, 1] += theta[0]
        y = np.asarray(target, dtype=np.float64).reshape(-1)
        loss, dl_dv = GaussianNLL(reduction="none").value_and_grad(pred, y)
        g = dl_dv[:, 1]  # dl/dt = dl/d(log-variance) = (1 - r^2) / 2
        h = 0.5 - g  # r^2 / 2
        w = _w(weight, len(y))
        return Sums(float(w @ loss), float(w.sum()), np.array([w @ g]), np.array([w @ h]),
                    np.array([w @ np.abs(g)]), None, np.zeros(0), len(y))
