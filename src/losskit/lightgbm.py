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
    ``(preds, train_data)``, the scikit-learn estimators as ``(y_true, y_pred, weight)``. It pickles
    (a fitted estimator holding it can be saved).
    """
    return _Objective(_gbdt.resolve(loss_or_head), _gbdt.units_of(loss_or_head))


def metric(loss_or_head, *, builtin: bool = False):
    """A LightGBM metric (``feval`` / ``eval_metric``): ``(name, weighted mean loss, False)``.

    Under a custom objective LightGBM passes margins. Under a built-in objective (what :func:`params`
    chose when its ``"objective"`` is a string) it passes the built-in's transformed predictions
    (probabilities, means): say ``builtin=True``, and the metric takes them back to margins through
    the loss's link."""
    loss = _gbdt.resolve(loss_or_head)
    return _Metric(loss, _gbdt.units_of(loss_or_head), _gbdt.builtin_metric(loss, builtin))


class _Objective(_gbdt.Callback):
    """:func:`objective`'s callable."""

    def __call__(self, preds, data, weight=None):
        if isinstance(data, lightgbm.Dataset):
            return _gbdt.grad_hess(self.loss, preds, data.get_label(), data.get_weight(), self.units)
        return _gbdt.grad_hess(self.loss, data, preds, weight, self.units)


class _Metric(_gbdt.Callback):
    """:func:`metric`'s callable."""

    def __call__(self, preds, data, weight=None):
        if isinstance(data, lightgbm.Dataset):
            preds, data, weight = data.get_label(), preds, data.get_weight()
        margin = _gbdt.margins_of(self.loss, data) if self.builtin else data
        return self.__name__, _gbdt.metric_value(self.loss, margin, preds, weight, self.units), False


def init_score(loss_or_head, label, weight=None) -> float:
    """The best constant margin for ``loss_or_head`` over ``label`` (LightGBM's ``init_score`` per row)."""
    return _gbdt.base_margin(loss_or_head, label, weight)


def params(loss_or_head, *, num_class: int | None = None) -> dict:
    """Parameters that train ``loss_or_head`` with lightgbm: its built-in objective (and the built-in's
    parameters: ``alpha`` (quantile), ``tweedie_variance_power``) where lightgbm
    has this very loss, else losskit's custom :func:`objective` (a callable: give it to the
    scikit-learn estimators or ``lgb.train``).

    A built-in is preferred because it can do what a custom objective cannot: refit each leaf to
    the exact weighted median or quantile (absolute error, quantile) and start from its own best
    constant. A multi-class loss needs ``num_class`` (a multi-class head gives its ``n_classes``);
    another loss refuses it. docs/gbdt.md lists the built-ins and the measured gap between the two.
    Pair a built-in with ``metric(loss, builtin=True)``.

    >>> import losskit as lk, losskit.lightgbm as lx  # doctest: +SKIP
    >>> lx.params(lk.QuantileLoss(quantiles=0.9))  # doctest: +SKIP
    """
    builtin, extra = _gbdt.builtin_params(loss_or_head, "lightgbm", num_class)
    if builtin is not None:
        return builtin
    return {"objective": objective(loss_or_head), **extra, "metric": "None"}
