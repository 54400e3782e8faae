r"""Any losskit loss as a LightGBM objective and metric, in LightGBM's conventions.

Import it explicitly (``import losskit.lightgbm``); it needs ``lightgbm`` (the ``[gbdt]`` extra).

>>> import lightgbm as lgb, losskit as lk, losskit.lightgbm as ll  # doctest: +SKIP
>>> booster = lgb.train({"objective": ll.objective(lk.HuberLoss()), "metric": "None"},  # doctest: +SKIP
...                     lgb.Dataset(X, y, init_score=np.full(len(y), ll.init_score(lk.HuberLoss(), y))),
...                     num_boost_round=50, feval=ll.metric(lk.HuberLoss()))
>>> model = lgb.LGBMRegressor(objective=ll.objective("huber_loss"))  # doctest: +SKIP

Conventions (see docs/gbdt.md): per-row ``w_i dl_i/dz`` and a positive Hessian (no 1/N), ``w``
the Dataset's weights, which LightGBM does not apply to a custom objective's gradients itself;
``[N, K]`` margins for a multi-class loss (``num_class=K``); the zero-Hessian substitutes (the
majorise-minimise curvature ``w k / (2 max(|r|, eps))`` for the absolute error and quantile
losses, in 1/target units, so ``lambda_l2`` and ``min_sum_hessian_in_leaf`` act on the target's
scale; the weight for hinge losses) and the floor of :mod:`losskit._gbdt`; LightGBM starts a
custom objective at a margin of 0 (no ``boost_from_average``): give ``init_score``
(:func:`init_score`) to start at the best constant, and note that ``predict`` leaves the init
score out. The metric returns ``(name, value, False)``.
"""

from __future__ import annotations

import lightgbm

from . import _gbdt

__all__ = ["params", "objective", "metric", "init_score"]


def objective(loss_or_head):
    """A LightGBM objective for ``loss_or_head`` (a Loss, a head, or a registry name).

    One callable serves both APIs: ``lgb.train`` (``params["objective"]``) calls it as
    ``(preds, train_data)``, the scikit-learn estimators as ``(y_true, y_pred, weight)``.
    """
    loss = _gbdt.resolve(loss_or_head)

    def losskit_objective(preds, data, weight=None):
        if isinstance(data, lightgbm.Dataset):
            return _gbdt.grad_hess(loss, preds, data.get_label(), data.get_weight())
        return _gbdt.grad_hess(loss, data, preds, weight)

    losskit_objective.__name__ = _gbdt.name_of(loss)
    return losskit_objective


def metric(loss_or_head):
    """A LightGBM metric (``feval`` / ``eval_metric``): ``(name, weighted mean loss, False)``."""
    loss = _gbdt.resolve(loss_or_head)
    name = _gbdt.name_of(loss)

    def losskit_metric(preds, data, weight=None):
        if isinstance(data, lightgbm.Dataset):
            return name, _gbdt.metric_value(loss, preds, data.get_label(), data.get_weight()), False
        return name, _gbdt.metric_value(loss, data, preds, weight), False

    losskit_metric.__name__ = name
    return losskit_metric


def init_score(loss_or_head, label, weight=None) -> float:
    """The best constant margin for ``loss_or_head`` over ``label`` (LightGBM's ``init_score`` per row)."""
    return _gbdt.base_margin(loss_or_head, label, weight)


def params(loss_or_head, *, num_class: int | None = None) -> dict:
    """Parameters that train ``loss_or_head`` with lightgbm: its built-in objective (and the built-in's
    parameters: ``huber_slope``, ``quantile_alpha``, ``tweedie_variance_power``...) where lightgbm
    has this very loss, else losskit's custom :func:`objective` (a callable: give it to the
    scikit-learn estimators or ``lgb.train``).

    A built-in is preferred because it can do what a custom objective cannot: refit each leaf to
    the exact weighted median or quantile (absolute error, quantile) and start from its own best
    constant. ``num_class`` is required for a multi-class loss. docs/gbdt.md lists the built-ins and
    the measured gap between the two.

    >>> import losskit as lk, losskit.lightgbm as lx  # doctest: +SKIP
    >>> lx.params(lk.QuantileLoss(quantiles=0.9))  # doctest: +SKIP
    """
    builtin, extra = _gbdt.builtin_params(loss_or_head, "lightgbm", num_class or 1)
    if builtin is not None:
        return builtin
    return {"objective": objective(loss_or_head), **extra, "metric": "None"}
