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
* under a custom objective XGBoost reads ``base_score`` as a *margin* (default 0.5), but a binary
  ``XGBClassifier`` as a probability (``base_score(..., classifier=True)``):
  :func:`base_score` gives the loss's best constant margin (the weighted median or quantile for
  the absolute error and a one-quantile loss); predictions are margins
  (``predict(..., output_margin=True)``; apply the head's activation yourself);
* the metric is the loss's weighted mean at the margins, named after the loss, lower is better;
  under a built-in objective XGBoost passes it predictions, not margins (``metric(..., builtin=True)``).

Scale: losskit's squared error and deviances are twice XGBoost's per-row losses (``e^2`` against
``e^2 / 2``): the Newton step is the same, but ``lambda``, ``min_child_weight`` and ``gamma`` act
on a gradient and Hessian twice as large; double them to reproduce a built-in objective exactly.
"""

from __future__ import annotations

import numpy as np
import xgboost

from . import _checks, _gbdt

__all__ = ["params", "objective", "metric", "base_score"]


def objective(loss_or_head):
    """An XGBoost objective for ``loss_or_head`` (a Loss, a head, or a registry name).

    One callable serves both APIs: ``xgb.train(obj=...)`` calls it as ``(predt, dtrain)``, the
    scikit-learn estimators (``objective=``) as ``(y_true, y_pred, sample_weight=...)``. Returns
    ``(grad, hess)`` of ``predt``'s shape. It pickles (a fitted estimator holding it can be saved).
    """
    return _Objective(_gbdt.resolve(loss_or_head), _gbdt.units_of(loss_or_head))


def metric(loss_or_head, *, builtin: bool = False):
    """An XGBoost evaluation metric: the loss's weighted mean at the margins (lower is better).

    ``xgb.train(custom_metric=...)`` calls it as ``(predt, dmatrix)`` and gets ``(name, value)``;
    the scikit-learn estimators (``eval_metric=``) as ``(y_true, y_pred, sample_weight=...)`` and
    get the value. Under a custom objective XGBoost passes margins. Under a built-in objective (what
    :func:`params` chose when its ``"objective"`` is a string) it passes the built-in's transformed
    predictions (probabilities, means): say ``builtin=True``, and the metric takes them back to
    margins through the loss's link.
    """
    loss = _gbdt.resolve(loss_or_head)
    return _Metric(loss, _gbdt.units_of(loss_or_head), _gbdt.builtin_metric(loss, builtin))


class _Objective(_gbdt.Callback):
    """:func:`objective`'s callable."""

    def __call__(self, predt, data, sample_weight=None):
        if isinstance(data, xgboost.DMatrix):  # xgb.train: (margins, DMatrix)
            return _gbdt.grad_hess(self.loss, predt, _label(data), data.get_weight(), self.units)
        return _gbdt.grad_hess(self.loss, data, predt, sample_weight, self.units)  # scikit-learn: (y_true, y_pred)


class _Metric(_gbdt.Callback):
    """:func:`metric`'s callable."""

    def __call__(self, predt, data, sample_weight=None):
        if isinstance(data, xgboost.DMatrix):
            return self.__name__, self._value(predt, _label(data), data.get_weight())
        return self._value(data, predt, sample_weight)

    def _value(self, predt, label, weight):
        margin = _gbdt.margins_of(self.loss, predt) if self.builtin else predt
        return _gbdt.metric_value(self.loss, margin, label, weight, self.units)


def base_score(loss_or_head, label, weight=None, *, classifier: bool = False) -> float:
    """The best constant margin for ``loss_or_head`` over ``label``: XGBoost's ``base_score`` under
    a custom objective (a margin, not a probability or a mean) with ``xgb.train`` and the
    regressors. See :func:`losskit._gbdt.base_margin`.

    ``classifier=True`` gives what a binary ``XGBClassifier`` needs instead: it trains a custom
    objective under ``binary:logistic`` and reads ``base_score`` as a probability (its logit is the
    start), so this returns the sigmoid of the margin, kept inside (0, 1) in float32 (XGBoost keeps
    ``base_score`` in float32: a probability that rounds to 1 there is clamped by XGBoost itself, a
    start of 13.7 where 26.9 was asked for). A multi-label classifier reads a probability too (0.5:
    multi-output losses start at 0); a multi-class one reads a margin: unchanged."""
    margin = _gbdt.base_margin(loss_or_head, label, weight)
    if not _checks.flag(classifier, "classifier") or _gbdt.is_multiclass(_gbdt.resolve(loss_or_head)):
        return margin
    low, high = np.finfo(np.float32).tiny, float(np.nextafter(np.float32(1), np.float32(0)))
    return float(np.clip(1.0 / (1.0 + np.exp(-margin)), low, high))


def _label(data) -> np.ndarray:
    label = data.get_label()
    n = data.num_row()
    if label.size == 0 and n:  # (as [n, 0] the margins' count was blamed)
        raise _checks.fail("label", "one label per row of the DMatrix", "none (the DMatrix has no label)")
    return label.reshape(n, -1) if label.size != n else label


def params(loss_or_head, *, num_class: int | None = None) -> dict:
    """Parameters that train ``loss_or_head`` with xgboost: its built-in objective (and the built-in's
    parameters: ``quantile_alpha``, ``tweedie_variance_power``) where xgboost
    has this very loss, else losskit's custom :func:`objective` (a callable: give it to the
    scikit-learn estimators or ``xgb.train(obj=...)``).

    A built-in is preferred because it can do what a custom objective cannot: refit each leaf to
    the exact weighted median or quantile (absolute error, quantile) and start from its own best
    constant. A multi-class loss needs ``num_class`` (a multi-class head gives its ``n_classes``);
    another loss refuses it. docs/gbdt.md lists the built-ins and the measured gap between the two.
    Pair a built-in with ``metric(loss, builtin=True)``.

    >>> import losskit as lk, losskit.xgboost as lx  # doctest: +SKIP
    >>> lx.params(lk.QuantileLoss(quantiles=0.9))  # doctest: +SKIP
    """
    builtin, extra = _gbdt.builtin_params(loss_or_head, "xgboost", num_class)
    if builtin is not None:
        return builtin
    return {"objective": objective(loss_or_head), **extra, "disable_default_eval_metric": 1}
