r"""Multi-label cross-entropy: a sigmoid on each of K units, BCE summed over the labels.

.. math:: l_i = \sum_{k=1}^{K} -\left(w_{+,k}\, y'_{ik} \log\sigma(z_{ik})
          + (1 - y'_{ik}) \log\sigma(-z_{ik})\right), \quad y' = (1 - a) y + a/2

One example is one row of K labels, so ``weight`` is per row and ``"mean"`` averages over rows
(not over the N*K elements, as ``binary_cross_entropy_with_logits`` does on the same arrays):
this is the seed's "binary cross-entropy summed over the K labels".
"""

from __future__ import annotations

from .. import _checks
from . import _compiled
from .base import Terms
from .binary import _BinaryBase, bce_logits_terms
from .declaration import LOGIT, Task
from .registry import function_of


class MultilabelCrossEntropy(_BinaryBase):
    r"""Sum over K labels of sigmoid BCE from logits, one example per row.

    Shapes: ``logits [..., K]``, ``target [..., K]`` (0/1 or probabilities), ``weight [...]``,
    ``pos_weight`` a number or ``[K]``. Result ``[...]`` for ``"none"``, else 0-d.
    Gradient :math:`\sigma(z)(w_+ y' + 1 - y') - w_+ y'` per unit; edges as BCE-with-logits.
    """

    name = "multilabel_cross_entropy"
    task = Task.MULTILABEL
    aliases = ("bce",)
    link = LOGIT
    reduces_last_axis = True

    _kernel = staticmethod(_compiled.bce_logits)

    def per_label(self):
        from .binary import BinaryCrossEntropyWithLogits

        return BinaryCrossEntropyWithLogits(**self.options.as_dict())

    def _prepare(self, xp, input, target):
        if input.ndim == 0:
            raise _checks.fail("logits", "an array with a label axis [..., K]", "a 0-d array")
        return super()._prepare(xp, input, target)

    def _terms(self, plan, order):
        y, neg = self._smoothed(plan)
        loss, grad, hess = bce_logits_terms(plan.xp, plan.input, y, plan.target.pos_weight, order, neg=neg)
        return Terms(plan.xp.sum(loss, axis=-1), grad, hess)

    def gbdt_builtin(self, library):
        # XGBoost's binary:logistic on [N, K] labels is this loss: each label's BCE, whose gradient and Hessian
        # are those of a row's sum (found in review); LightGBM takes no [N, K] label
        if library != "xgboost" or self.pos_weight is not None or self.label_smoothing:
            return None
        return "binary:logistic", {}


@function_of(MultilabelCrossEntropy)
def multilabel_cross_entropy(logits, target, *, weight=None, pos_weight=None,
                             label_smoothing=0.0, reduction="mean", normalizer=None, impl="auto"):
    r"""Multi-label loss: sigmoid on each unit, binary cross-entropy summed over the K labels.

    .. math:: l_i = \sum_k \mathrm{BCE}(\sigma(z_{ik}), y_{ik})

    Shapes: ``logits [..., K]`` float, ``target [..., K]`` in [0, 1], ``weight [...]`` per
    example (row), ``pos_weight`` number or ``[K]``; returns ``[...]`` for ``"none"``, else
    0-d (``"mean"`` averages over rows). Edges as :func:`binary_cross_entropy_with_logits`.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.multilabel_cross_entropy(np.zeros((1, 3)), np.array([[1, 0, 1]]))), 6)
    2.079442
    """
    return MultilabelCrossEntropy(pos_weight=pos_weight, label_smoothing=label_smoothing,
                                  reduction=reduction, impl=impl)(logits, target, weight=weight,
                                                       normalizer=normalizer)
