r"""What the XGBoost and LightGBM objectives share: a loss's per-row gradient and Hessian in a
gradient-boosting library's layout, its metric, and its best constant margin.

Design note: a GBDT library does its own reduction (sums over a leaf's rows) and regularisation
(``lambda``, ``min_child_weight``), so an objective returns, per row, ``w_i dl_i/dz`` and
``w_i d^2 l_i/dz^2`` with no 1/N: the core loss with ``reduction="sum"`` and the library's sample
weights as ``weight``. Two things a Newton step needs that a loss may not give:

* a positive Hessian. Where it is 0 (absolute error, quantile, hinge, Crammer-Singer: piecewise
  linear) the objective uses the row's weight (a unit Hessian per row): the leaf value becomes the
  weighted mean of the negative gradients, a damped sign step, which is what XGBoost's own
  ``reg:absoluteerror`` / ``reg:quantileerror`` compute before their line search. Where it can be
  negative (focal losses are not convex far on the wrong side) or underflow, it is floored at
  ``HESS_FLOOR`` times the weight, so that a leaf never divides by a sum of opposite signs;
* a starting margin. Under a custom objective both libraries start from a constant margin that
  they do not fit (XGBoost's ``base_score`` is then read as a margin, default 0.5; LightGBM starts
  at 0): :func:`base_margin` gives the loss's best constant.
"""

from __future__ import annotations

import numpy as np

from . import heads as _heads
from .losses import REGISTRY, Loss
from .losses.categorical import _CategoricalBase
from .losses.distribution import DistillationLoss, GaussianNLL, QuantileLoss
from .losses.hinge import HingeLoss, MulticlassHingeLoss, MultilabelHingeLoss
from .losses.robust import AbsoluteError

#: the floor of every Hessian handed to a library, per unit of weight
HESS_FLOOR = 1e-6
#: losses whose Hessian is 0 almost everywhere: the row's weight stands in for it
ZERO_HESSIAN = (AbsoluteError, QuantileLoss, HingeLoss, MultilabelHingeLoss, MulticlassHingeLoss)


def resolve(loss_or_head) -> Loss:
    """A Loss from a Loss, a head, or a registry name (``"huber_loss"``)."""
    if isinstance(loss_or_head, _heads.Head):
        return loss_or_head.loss_object
    if isinstance(loss_or_head, Loss):
        return loss_or_head
    if isinstance(loss_or_head, str) and loss_or_head in REGISTRY:
        return REGISTRY[loss_or_head][0]()
    raise TypeError(f"expected a losskit Loss, head or registry name, got {loss_or_head!r}")


def name_of(loss: Loss) -> str:
    return next((name for name, (cls, _) in REGISTRY.items() if type(loss) is cls), type(loss).__name__)


def _with(loss: Loss, reduction: str) -> Loss:
    return type(loss)(**{**loss.options.as_dict(), "reduction": reduction})


def layout(loss: Loss, margin, label):
    """``(input, target)`` for ``loss`` from a library's margins and labels (NumPy float64)."""
    margin = np.asarray(margin, dtype=np.float64)
    label = np.asarray(label)
    n = label.shape[0]
    if isinstance(loss, DistillationLoss):
        raise TypeError("DistillationLoss needs the teacher's logits as its target: not a GBDT label")
    if isinstance(loss, _CategoricalBase):  # [N, K] margins; class indices as labels
        z = margin.reshape(n, -1)
        if label.ndim == 1:
            return z, np.rint(label).astype(np.int64)
        return z, label.astype(np.float64)
    if isinstance(loss, (QuantileLoss, GaussianNLL)):  # the units of one value
        z = margin.reshape(n, -1)
        return z, (label if label.ndim == 1 else label[:, 0]).astype(np.float64)
    if loss.reduces_last_axis:  # multi-label: [N, K] labels and margins
        return margin.reshape(label.shape), label.astype(np.float64)
    return margin.reshape(label.shape) if label.ndim > 1 else margin.reshape(n), label.astype(np.float64)


def grad_hess(loss: Loss, margin, label, weight=None):
    """Per-row (per-unit) gradient and positive Hessian of ``loss``, in ``margin``'s shape."""
    z, y = layout(loss, margin, label)
    w = None if weight is None or np.size(weight) == 0 else np.asarray(weight, dtype=np.float64)
    summed = _with(loss, "sum")
    grad = np.asarray(summed.grad(z, y, weight=w))
    unit = np.ones_like(z) if w is None else np.broadcast_to(w.reshape(w.shape + (1,) * (z.ndim - w.ndim)), z.shape)
    if isinstance(loss, ZERO_HESSIAN):
        hess = np.array(unit, dtype=np.float64)  # the documented substitute: one unit of weight per row
    else:
        hess = np.maximum(np.asarray(summed.hessian_diag(z, y, weight=w)), HESS_FLOOR * unit)
    shape = np.shape(margin)
    return grad.reshape(shape), hess.reshape(shape)


def metric_value(loss: Loss, margin, label, weight=None) -> float:
    """The loss's weighted mean over the rows (``sum w_i l_i / sum w_i``) at the margins."""
    z, y = layout(loss, margin, label)
    w = None if weight is None or np.size(weight) == 0 else np.asarray(weight, dtype=np.float64)
    return float(_with(loss, "mean")(z, y, weight=w))


def base_margin(loss_or_head, label, weight=None) -> float:
    """The constant margin that minimises the weighted loss of one-output ``loss`` over ``label``
    (for example ``logit(mean y)`` for BCE, ``log(mean y)`` for the deviances, the weighted median
    for the absolute error): a starting point for a custom objective (XGBoost's ``base_score``,
    LightGBM's ``init_score``). Multi-output losses start at 0."""
    from scipy.optimize import minimize_scalar

    loss = resolve(loss_or_head)
    label = np.asarray(label, dtype=np.float64)
    if isinstance(loss, (_CategoricalBase, QuantileLoss, GaussianNLL)) or loss.reduces_last_axis:
        return 0.0
    w = None if weight is None or np.size(weight) == 0 else np.asarray(weight, dtype=np.float64)
    total = _with(loss, "mean")

    def objective(c):
        return float(total(np.full(label.shape, c), label, weight=w))

    positive = label[label > 0]
    centre = float(np.log(positive.mean())) if positive.size and name_of(loss).endswith("deviance") else \
        float(np.mean(label)) if not np.all(np.isin(label, (0.0, 1.0))) else 0.0
    spread = 10.0 * (float(np.std(label)) + 1.0)
    result = minimize_scalar(objective, bounds=(centre - spread, centre + spread), method="bounded",
                             options={"xatol": 1e-10})
    return float(result.x)
