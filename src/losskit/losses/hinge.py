r"""Margin losses: hinge, squared hinge and exponential (binary, elementwise) and Crammer-Singer
(multi-class).

With the label as a sign :math:`s \in \{-1, +1\}` (0/1 labels are mapped to -1/+1) and the
margin :math:`m = s z`:

.. math:: \mathrm{hinge} = \max(0, 1 - m), \qquad \mathrm{squared\ hinge} = \max(0, 1 - m)^2

Crammer-Singer over K classes with label y: :math:`l = \max_k (z_k + 1 - [k = y]) - z_y`.

Design note: the hinge and Crammer-Singer losses are piecewise linear: their gradient is a
subgradient (at the kink ``m = 1`` the hinge takes 0, the right derivative, as ``torch.relu`` does; optax
and Keras on JAX split a tie of ``maximum`` and give ``-s / 2``; a tie of maxima in Crammer-Singer takes
the first, where optax splits it evenly) and their Hessian is 0 almost everywhere, so ``hessian_diag``
returns 0. A second-order method (a GBDT, Newton) needs a positive substitute; the GBDT objectives
choose one and say which (docs/gbdt.md).
"""

from __future__ import annotations

from .. import _array, _checks
from ..plan import Target
from . import _compiled
from ._shared import functional, times
from .base import Loss, Terms
from .categorical import _CategoricalBase
from .declaration import HALF_LOGIT, IDENTITY, Hessian, Task
from .elementwise import ElementwiseLoss, multilabel_form
from .options import LabelOptions


class HingeLoss(ElementwiseLoss):
    r"""Hinge loss on a margin, elementwise: :math:`l = \max(0, 1 - s z)` (Keras ``Hinge``).

    Shapes: ``logits [...]`` (scores), ``target [...]`` of 0/1 or -1/+1 labels, ``weight [...]``.
    Gradient :math:`-s [s z < 1]`; Hessian 0. Edges: linear in z, so the loss of z = -inf with
    s = 1 is +inf and its gradient -1.

    >>> import numpy as np, losskit as lk
    >>> lk.hinge_loss(np.array([0.5, -2.0]), np.array([1, 0]), reduction="none").tolist()
    [0.5, 0.0]
    """

    name = "hinge_loss"
    aliases = ("hinge",)
    target = "sign"
    link = IDENTITY  # a score, not a logit: no probability is read from it
    hessian = Hessian.ZERO

    def value(self, xp, z, y):
        return xp.maximum(1 - y * z, 0.0)

    def derivative(self, xp, z, y):
        return xp.where(1 - y * z > 0, -y, 0.0)

    def second_derivative(self, xp, z, y):
        return xp.zeros_like(z)

    def _best_constant(self, label, weight) -> float:
        import numpy as np  # the sign of the weighted majority: a margin of +-1 costs the minority 2

        return float(np.sign(np.average(np.where(label > 0, 1.0, -1.0), weights=weight)))


class SquaredHingeLoss(HingeLoss):
    r"""Squared hinge loss, elementwise: :math:`l = \max(0, 1 - s z)^2` (Keras ``SquaredHinge``).

    Shapes and labels as :class:`HingeLoss`. Gradient :math:`-2 s \max(0, 1 - s z)`; Hessian
    :math:`2 [s z < 1]`. Edges: quadratic in z (+inf at z = -inf with s = 1).

    >>> import numpy as np, losskit as lk
    >>> lk.squared_hinge_loss(np.array([0.5, -2.0]), np.array([1, -1]), reduction="none").tolist()
    [0.25, 0.0]
    """

    name = "squared_hinge_loss"
    aliases = ("squared_hinge",)
    hessian = Hessian.DIAGONAL

    def value(self, xp, z, y):
        gap = xp.maximum(1 - y * z, 0.0)
        return gap * gap

    def derivative(self, xp, z, y):
        return -2 * y * xp.maximum(1 - y * z, 0.0)

    def second_derivative(self, xp, z, y):
        return xp.where(1 - y * z > 0, 2.0, 0.0)


class ExponentialLoss(ElementwiseLoss):
    r"""AdaBoost's exponential loss on a margin: :math:`l = y e^{-z} + (1 - y) e^{z}`.

    For 0/1 labels this is :math:`e^{-s z}` with the sign :math:`s = 2y - 1`; a probability target
    gives the expected loss. Its minimiser is half the log-odds, :math:`z^* = \tfrac12 \log(y / (1 - y))`,
    so the probability read from a margin is :math:`\sigma(2z)` (the link ``half_logit``).
    Gradient :math:`-y e^{-z} + (1 - y) e^{z}`; Hessian :math:`y e^{-z} + (1 - y) e^{z}` (> 0).

    Shapes: ``logits [...]``, ``target [...]`` (0/1 or probabilities), ``weight [...]``; result
    ``[...]`` for "none", else 0-d. Edges: grows as :math:`e^{|z|}` on the wrong side, so it is +inf
    once :math:`e^{|z|}` overflows (|z| > 709 in float64, 88 in float32).

    >>> import numpy as np, losskit as lk
    >>> lk.exponential_loss(np.array([0.0, np.log(2.0)]), np.array([1, 0]), reduction="none").tolist()
    [1.0, 2.0]
    """

    name = "exponential_loss"
    aliases = ("exponential",)
    target = "binary"
    link = HALF_LOGIT
    mean_matching = True  # the gradient in a constant c, e^-c (1 + e^2c) (sigmoid(2c) - mean), vanishes there

    def value(self, xp, z, y):
        return times(xp, y, xp.exp(-z)) + times(xp, 1 - y, xp.exp(z))

    def derivative(self, xp, z, y):
        return times(xp, 1 - y, xp.exp(z)) - times(xp, y, xp.exp(-z))

    def second_derivative(self, xp, z, y):
        return times(xp, y, xp.exp(-z)) + times(xp, 1 - y, xp.exp(z))


MultilabelHingeLoss = multilabel_form(HingeLoss, "MultilabelHingeLoss", "multilabel_hinge_loss", ("hinge",))
MultilabelSquaredHingeLoss = multilabel_form(SquaredHingeLoss, "MultilabelSquaredHingeLoss",
                                             "multilabel_squared_hinge_loss", ("squared_hinge",))


class MulticlassHingeLoss(_CategoricalBase):
    r"""Crammer-Singer multi-class hinge loss (optax ``multiclass_hinge_loss``).

    .. math:: l = \max_k \left(z_k + 1 - [k = y]\right) - z_y

    Shapes: ``logits [..., K]`` (scores; class axis ``axis``), ``target`` integer labels
    ``[...]``, ``weight [...]``; ``class_weight [K]`` and ``ignore_index`` as for
    :class:`SoftmaxCrossEntropy` (no label smoothing, no probability targets: a margin has no
    target distribution). Gradient :math:`e_{k^*} - e_y` with :math:`k^*` the first maximiser;
    Hessian 0. Edges: 0 when the label's score leads every other by at least 1.

    >>> import numpy as np, losskit as lk
    >>> float(lk.multiclass_hinge_loss(np.array([[2.0, 1.5, 0.0]]), np.array([0])))
    0.5
    """

    name = "multiclass_hinge_loss"
    task = Task.MULTICLASS
    aliases = ("hinge",)
    hessian = Hessian.ZERO
    Options = LabelOptions

    def _kernel(self, plan, host, with_grad):  # compiled rows (losskit.fused.rows)
        return _compiled.crammer_singer(self, plan, host, with_grad)

    _kernel.__name__ = "crammer_singer"

    def __init__(self, *, axis: int = -1, class_weight=None, ignore_index=None, reduction: str = "mean",
                 impl: str = "auto"):
        Loss.__init__(self, axis=axis, class_weight=class_weight, ignore_index=ignore_index,
                      reduction=reduction, impl=impl)

    def _prepare(self, xp, input, target) -> Target:
        if not _array.isdtype(xp, target.dtype, "integral"):
            raise _checks.fail("target", "integer class indices (the multi-class hinge takes no "
                               "probabilities)", f"dtype {target.dtype}")
        return super()._prepare(xp, input, target)

    def _terms(self, plan, order):
        xp, z, labels = plan.xp, plan.input, plan.target.labels
        mask = _array.one_hot(xp, labels, z.shape[-1], xp.bool)
        shifted = xp.where(mask, z, z + 1)
        z_y = _array.take_class(xp, z, labels)
        # a label score of +inf leads every other by 1: loss 0, where max(shifted) - z_y is inf - inf
        loss = xp.where(z_y == xp.inf, xp.zeros_like(z_y), xp.max(shifted, axis=-1) - z_y)
        grad = hess = None
        if order == 1:
            top = _array.one_hot(xp, xp.argmax(shifted, axis=-1), z.shape[-1], z.dtype)
            grad = top - xp.astype(mask, z.dtype)
        elif order == 2:
            hess = xp.zeros_like(z)
        return Terms(loss, grad, hess)


hinge_loss = functional(HingeLoss, "hinge_loss", r"""Hinge loss :math:`\max(0, 1 - s z)` per element,
    labels 0/1 or -1/+1 (see :class:`HingeLoss`).

    Shapes: ``logits [...]``, ``target [...]``, ``weight [...]``; ``[...]`` for "none", else 0-d.

    >>> import numpy as np, losskit as lk
    >>> float(lk.hinge_loss(np.array([0.0, 3.0]), np.array([1, 1])))
    0.5
""")
squared_hinge_loss = functional(SquaredHingeLoss, "squared_hinge_loss", r"""Squared hinge loss
    :math:`\max(0, 1 - s z)^2` per element (see :class:`SquaredHingeLoss`).

    Shapes: ``logits [...]``, ``target [...]`` (0/1 or -1/+1), ``weight [...]``; ``[...]`` for "none".

    >>> import numpy as np, losskit as lk
    >>> float(lk.squared_hinge_loss(np.array([0.0, 3.0]), np.array([1, 1]), reduction="sum"))
    1.0
""")
multilabel_hinge_loss = functional(MultilabelHingeLoss, "multilabel_hinge_loss", r"""Hinge loss summed
    over the K labels of each row. Shapes: ``logits [..., K]``, ``target [..., K]``, ``weight [...]``.

    >>> import numpy as np, losskit as lk
    >>> float(lk.multilabel_hinge_loss(np.zeros((1, 2)), np.array([[1, 0]])))
    2.0
""")
multilabel_squared_hinge_loss = functional(
    MultilabelSquaredHingeLoss, "multilabel_squared_hinge_loss", r"""Squared hinge loss summed over the K
    labels of each row. Shapes: ``logits [..., K]``, ``target [..., K]``, ``weight [...]``.

    >>> import numpy as np, losskit as lk
    >>> float(lk.multilabel_squared_hinge_loss(np.zeros((1, 2)), np.array([[1, 0]])))
    2.0
""")
exponential_loss = functional(ExponentialLoss, "exponential_loss", r"""AdaBoost's exponential loss
    :math:`y e^{-z} + (1 - y) e^{z}` per element (see :class:`ExponentialLoss`).

    Shapes: ``logits [...]``, ``target [...]`` (0/1 or probabilities), ``weight [...]``.

    >>> import numpy as np, losskit as lk
    >>> float(lk.exponential_loss(np.array([0.0, 0.0]), np.array([1, 0])))
    1.0
""")
multiclass_hinge_loss = functional(MulticlassHingeLoss, "multiclass_hinge_loss", r"""Crammer-Singer hinge
    :math:`\max_k (z_k + 1 - [k = y]) - z_y` (see :class:`MulticlassHingeLoss`).

    Shapes: ``logits [..., K]``, integer ``target [...]``, ``weight [...]``; options ``axis``,
    ``class_weight``, ``ignore_index``, ``reduction``, ``normalizer``.

    >>> import numpy as np, losskit as lk
    >>> float(lk.multiclass_hinge_loss(np.array([[0.0, 0.0]]), np.array([1])))
    1.0
""")
