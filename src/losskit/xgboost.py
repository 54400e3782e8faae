r"""Any losskit loss as an XGBoost objective and metric, in XGBoost's conventions.

Import it explicitly (``import losskit.xgboost``); it needs ``xgboost`` (the ``[gbdt]`` extra).

>>> import xgboost as xgb, losskit as lk, losskit.xgboost as lx  # doctest: +SKIP
>>> booster = xgb.train({"base_score": lx.base_score(lk.HuberLoss(), y),  # doctest: +SKIP
...                         "disable_default_eval_metric": 1},
...                     xgb.DMatrix(X, label=y), num_boost_round=50,
...                     obj=lx.objective(lk.HuberLoss()), custom_metric=lx.metric(lk.HuberLoss()))
>>> model = xgb.XGBRegressor(objective=lx.objective("huber_loss"),  # doctest: +SKIP
...                          eval_metric=lx.metric("huber_loss"), base_score=0.0)

Conventions (see docs/gbdt.md):

* the objective returns per-row ``w_i dl_i/dz`` and a positive ``w_i d^2 l_i/dz^2`` (no 1/N;
  XGBoost reduces and regularises), ``w`` the DMatrix's (or estimator's) sample weights;
* a multi-class loss takes XGBoost's ``[N, K]`` margins (``num_class=K``) and class-index labels;
* where the Hessian is 0, the absolute error and quantile losses get the majorise-minimise
  curvature ``w k / (2 max(|r|, eps))`` of their residual ``r`` (in 1/target units, so ``lambda``
  and ``min_child_weight`` act on the target's scale) and hinge losses the row's weight; a
  negative Hessian (focal, far on the wrong side) is floored: see :mod:`losskit._gbdt`;
* under a custom objective XGBoost reads ``base_score`` as a *margin* (default 0.5):
  :func:`base_score` gives the loss's best constant margin (the weighted median or quantile for
  the absolute error and a one-quantile loss, as the built-ins start); predictions are margins
  (``predict(..., output_margin=True)``; apply the head's activation yourself);
* the metric is the loss's weighted mean at the margins, named after the loss, lower is better.

Scale: losskit's squared error and deviances are twice XGBoost's per-row losses (``e^2`` against
``e^2 / 2``): the Newton step is the same, but ``lambda``, ``min_child_weight`` and ``gamma`` act
on a gradient and Hessian twice as large; double them to reproduce a built-in objective exactly.
"""

from __future__ import annotations

import numpy as np
import xgboost

from . import _gbdt

__all__ = ["params", "objective", "metric", "base_score"]


def objective(loss_or_head):
    """An XGBoost objective for ``loss_or_head`` (a Loss, a head, or a registry name).

    One callable serves both APIs: ``xgb.train(obj=...)`` calls it as ``(predt, dtrain)``, the
    scikit-learn estimators (``objective=``) as ``(y_true, y_pred, sample_weight=...)``. Returns
    ``(grad, hess)`` of ``predt``'s shape.
    """
    loss = _gbdt.resolve(loss_or_head)

    def losskit_objective(predt, data, sample_weight=None):
        if isinstance(data, xgboost.DMatrix):  # xgb.train: (margins, DMatrix)
            return _gbdt.grad_hess(loss, predt, _label(data), data.get_weight())
        return _gbdt.grad_hess(loss, data, predt, sample_weight)  # scikit-learn: (y_true, y_pred)

    losskit_objective.__name__ = _gbdt.name_of(loss)
    return losskit_objective


def metric(loss_or_head):
    """An XGBoost evaluation metric: the loss's weighted mean at the margins (lower is better).

    ``xgb.train(custom_metric=...)`` calls it as ``(predt, dmatrix)`` and gets ``(name, value)``;
    the scikit-learn estimators (``eval_metric=``) as ``(y_true, y_pred, sample_weight=...)`` and
    get the value. Give it margins: XGBoost passes margins to a custom metric under a custom
    objective (with a built-in objective, pass ``output_margin`` predictions yourself).
    """
    loss = _gbdt.resolve(loss_or_head)
    name = _gbdt.name_of(loss)

    def losskit_metric(predt, data, sample_weight=None):
        if isinstance(data, xgboost.DMatrix):
            return name, _gbdt.metric_value(loss, predt, _label(data), data.get_weight())
        return _gbdt.metric_value(loss, data, predt, sample_weight)

    losskit_metric.__name__ = name
    return losskit_metric


def base_score(loss_or_head, label, weight=None) -> float:
    """The best constant margin for ``loss_or_head`` over ``label``: XGBoost's ``base_score`` under
    a custom objective (a margin, not a probability or a mean). See :func:`losskit._gbdt.base_margin`."""
    return _gbdt.base_margin(loss_or_head, label, weight)


def _label(data) -> np.ndarray:
    label = data.get_label()
    n = data.num_row()
    return label.reshape(n, -1) if label.size != n else label


def params(loss_or_head, *, num_class: int | None = None) -> dict:
    """Parameters that train ``loss_or_head`` with xgboost: its built-in objective (and the built-in's
    parameters: ``huber_slope``, ``quantile_alpha``, ``tweedie_variance_power``...) where xgboost
    has this very loss, else losskit's custom :func:`objective` (a callable: give it to the
    scikit-learn estimators or ``xgb.train(obj=...)``).

    A built-in is preferred because it can do what a custom objective cannot: refit each leaf to
    the exact weighted median or quantile (absolute error, quantile) and start from its own best
    constant. ``num_class`` is required for a multi-class loss. docs/gbdt.md lists the built-ins and
    the measured gap between the two.

    >>> import losskit as lk, losskit.xgboost as lx  # doctest: +SKIP
    >>> lx.params(lk.QuantileLoss(quantiles=0.9))  # doctest: +SKIP
    """
    builtin, extra = _gbdt.builtin_params(loss_or_head, "xgboost", num_class or 1)
    if builtin is not None:
        return builtin
    return {"objective": objective(loss_or_head), **extra, "disable_default_eval_metric": 1}
