r"""Focal losses and Poly-1: cross-entropy reweighted by how badly the truth is predicted.

Sigmoid focal (Lin et al. 2017; torchvision/optax's ``sigmoid_focal_loss``), per element, with
:math:`p = \sigma(z)`, :math:`p_t = p y + (1 - p)(1 - y)`, :math:`a_t = a y + (1 - a)(1 - y)`:

.. math:: l = -a_t (1 - p_t)^\gamma \log p_t \;\; (= a_t (1 - p_t)^\gamma \,\mathrm{BCE}(z, y))

Softmax focal (Keras ``CategoricalFocalCrossentropy``): :math:`l = -\sum_k a_k y'_k (1 - p_k)^\gamma
\log p_k`. Poly-1 (Leng et al. 2022): :math:`l = \mathrm{CE} + \epsilon (1 - \sum_k y'_k p_k)`.

Design note: every factor is built from pieces that keep full relative precision: ``1 - p_t``
is ``y sigmoid(-z) + (1 - y) sigmoid(z)`` (a sum of positives), ``1 - p_k`` is
``-expm1(log_softmax(z)_k)``, and the logs come from ``log_sigmoid`` / ``log_softmax``. The
derivative of ``(1 - p_t)^gamma`` has a factor ``(1 - p_t)^(gamma - 1)``, unbounded for gamma < 1;
it is never formed: the code carries ``p (1 - p) / (1 - p_t)`` (bounded, in [0, 1]) and
``log p / (1 - p)`` (in [-inf, -1]) instead, whose limits are known where the denominators vanish.
"""

from __future__ import annotations

from .. import _array, _checks
from ..activations import log_softmax_xp
from . import _compiled
from ._shared import functional, times
from .base import Loss, Terms
from .categorical import SoftmaxCrossEntropy, _CategoricalBase
from .declaration import SOFTMAX, Hessian, Task
from .elementwise import ElementwiseLoss, multilabel_form
from .formula import formula_function
from .options import PolyOptions, SigmoidFocalOptions, SoftmaxFocalOptions


class SigmoidFocalLoss(ElementwiseLoss):
    r"""Binary focal loss from logits, elementwise like :class:`BinaryCrossEntropyWithLogits`.

    .. math:: l = a_t (1 - p_t)^\gamma \left(-y' \log\sigma(z) - (1 - y')\log\sigma(-z)\right)

    with :math:`q = 1 - p_t = y'\sigma(-z) + (1 - y')\sigma(z)`, :math:`a_t = a y' + (1 - a)(1 - y')`
    (1 when ``alpha`` is None) and :math:`y' = (1 - s) y + s/2` (``label_smoothing`` s).
    Gradient :math:`a_t q^\gamma (\gamma (1 - 2y') r\,\mathrm{BCE} + \sigma(z) - y')` with
    :math:`r = \sigma(z)\sigma(-z)/q`; Hessian diagonal in closed form (see docs/losses.md).

    Options: ``gamma`` >= 0 (0 gives ``a_t`` times BCE), ``alpha`` in [0, 1] or None,
    ``label_smoothing``, ``reduction``. Shapes: ``logits [...]``, ``target [...]`` (0/1 or
    probabilities), ``weight [...]``; result ``[...]`` for "none", else 0-d.
    Edges: finite for finite logits, any gamma >= 0 (no ``q^(gamma-1)`` is formed); z = +-inf gives
    the exact limits (0, or +inf where the target is on the excluded side).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.sigmoid_focal_loss(np.array([0.0]), np.array([1.0]), gamma=2.0)), 6)  # 0.25 log 2
    0.173287
    """

    name = "sigmoid_focal_loss"
    aliases = ("focal",)
    target = "binary"
    hessian = Hessian.INDEFINITE

    @property
    def gbdt_curvature(self) -> str:
        """Not convex far on the wrong side for ``gamma > 0`` (see Loss.gbdt_curvature); BCE's at 0."""
        return "bounded" if self.gamma > 0 else "weight"
    Options = SigmoidFocalOptions

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = None, label_smoothing: float = 0.0,
                 reduction: str = "mean", impl: str = "auto"):
        super().__init__(gamma=gamma, alpha=alpha, label_smoothing=label_smoothing, reduction=reduction,
                         impl=impl)

    def value(self, xp, z, y):
        y, n, a_t, s_pos, s_neg, q, ce = _focal_parts(xp, z, y, self.label_smoothing, self.alpha)
        return a_t * times(xp, xp.pow(q, self.gamma), ce)  # 0 ** 0 = 1: gamma = 0 is (alpha-weighted) BCE

    def derivative(self, xp, z, y):
        y, n, a_t, s_pos, s_neg, q, ce = _focal_parts(xp, z, y, self.label_smoothing, self.alpha)
        r, dq, dce = _focal_slopes(xp, y, n, s_pos, s_neg, q)
        return a_t * xp.pow(q, self.gamma) * (self.gamma * dq * times(xp, r, ce) + dce)

    def second_derivative(self, xp, z, y):
        y, n, a_t, s_pos, s_neg, q, ce = _focal_parts(xp, z, y, self.label_smoothing, self.alpha)
        r, dq, dce = _focal_slopes(xp, y, n, s_pos, s_neg, q)
        gamma = self.gamma
        inner = gamma * dq * times(xp, r, ce) + dce  # (d/dz of q^gamma ce) / q^gamma
        dr = r * ((s_neg - s_pos) - dq * r)  # d r / dz
        d_inner = gamma * dq * (times(xp, dr, ce) + r * dce) + s_pos * s_neg
        return a_t * xp.pow(q, gamma) * (gamma * dq * r * inner + d_inner)


@formula_function
def _focal_parts(xp, z, y, smoothing, alpha):
    # y' and 1 - y' each formed from y (as losses/binary.py's smoothed_targets: 1 - y' would round)
    n = (1 - smoothing) * (1 - y) + smoothing / 2
    y = (1 - smoothing) * y + smoothing / 2
    s_pos, s_neg = xp.sigmoid(z), xp.sigmoid(-z)  # p and 1 - p, each to full precision
    q = y * s_neg + n * s_pos  # 1 - p_t: a sum of positives, no cancellation
    ce = -(times(xp, y, xp.log_sigmoid(z)) + times(xp, n, xp.log_sigmoid(-z)))
    a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * n
    return y, n, a_t, s_pos, s_neg, q, ce


@formula_function
def _focal_slopes(xp, y, n, s_pos, s_neg, q):
    # r = p (1 - p) / q in [0, 1]; where q = 0 (a hard label predicted exactly) its limit
    r = xp.where(q > 0, s_pos * s_neg / xp.where(q > 0, q, xp.ones_like(q)), y * s_pos + n * s_neg)
    dq = 1 - 2 * y  # dq/dz = (1 - 2y) p (1 - p) = (1 - 2y) r q
    dce = n * s_pos - y * s_neg  # sigmoid(z) - y, each term to full precision
    return r, dq, dce


MultilabelSigmoidFocalLoss = multilabel_form(SigmoidFocalLoss, "MultilabelSigmoidFocalLoss",
                                             "multilabel_sigmoid_focal_loss", ("focal",))


def _alpha(xp, alpha, input):
    """``alpha`` as 1, a number, or a checked ``[K]`` array."""
    return 1.0 if alpha is None else _checks.number_or_per_class(xp, alpha, "alpha", input)


class SoftmaxFocalLoss(_CategoricalBase):
    r"""Multi-class focal loss from logits (Keras ``CategoricalFocalCrossentropy(from_logits=True)``).

    .. math:: l = -\sum_k a_k y'_k (1 - p_k)^\gamma \log p_k, \quad p = \mathrm{softmax}(z)

    With :math:`u_k = a_k y'_k (1 - p_k)^\gamma (\gamma p_k \rho_k - 1)`, :math:`\rho = \log p / (1 - p)`,
    the gradient is :math:`u_j - p_j \sum_k u_k`; the Hessian diagonal is in docs/losses.md.

    Options: ``gamma`` >= 0 (0 gives softmax CE times ``alpha``), ``alpha`` None (1), a number
    (Keras's ``alpha``, default 0.25 there) or one per class ``[K]``; and the options of
    :class:`SoftmaxCrossEntropy` (``axis``, ``class_weight``, ``ignore_index``,
    ``label_smoothing``). Shapes: ``logits [..., K]``; target integer ``[...]`` or probabilities
    ``[..., K]``; ``weight [...]``. Edges: finite for finite logits, any gamma >= 0.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.softmax_focal_loss(np.zeros((1, 2)), np.array([0]), gamma=2.0)), 6)  # 0.25 log 2
    0.173287
    """

    name = "softmax_focal_loss"
    task = Task.MULTICLASS
    aliases = ("focal",)
    link = SOFTMAX
    hessian = Hessian.ROW

    @property
    def gbdt_curvature(self) -> str:
        """Its label unit is not convex far on the wrong side for ``gamma > 0`` (see Loss.gbdt_curvature);
        softmax CE's at 0."""
        return "bounded" if self.gamma > 0 else "weight"
    Options = SoftmaxFocalOptions

    def _kernel(self, plan, host, with_grad):  # compiled rows (losskit.fused.rows)
        return _compiled.softmax_focal(self, plan, host, with_grad)

    _kernel.__name__ = "softmax_focal"

    def __init__(self, *, gamma: float = 2.0, alpha=None, axis: int = -1, class_weight=None,
                 ignore_index=None, label_smoothing: float = 0.0, reduction: str = "mean", impl: str = "auto"):
        Loss.__init__(self, gamma=gamma, alpha=alpha, axis=axis, class_weight=class_weight,
                      ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction, impl=impl)

    def _terms(self, plan, order):
        xp, z, gamma = plan.xp, plan.input, self.gamma
        labels = plan.target.labels
        mask = None if labels is None else _array.one_hot(xp, labels, z.shape[-1], xp.bool)
        target = plan.target.dense if mask is not None else \
            self._checked_probabilities(xp, plan.target.dense, plan.target.slack)
        c = _alpha(xp, self.alpha, z) * self._dense_target(xp, z, target, mask)
        lp = log_softmax_xp(xp, z)
        p = xp.exp(lp)
        q = -xp.expm1(lp)  # 1 - p_k, exact when p_k is near 1
        mod = q ** gamma
        loss = -xp.sum(times(xp, c * mod, lp), axis=-1)
        grad = hess = None
        if order >= 1:
            # rho = log p / (1 - p) in [-inf, -1]; -1 in the limit p -> 1
            rho = xp.where(q > 0, lp / xp.where(q > 0, q, xp.ones_like(q)), -xp.ones_like(q))
            p_rho = times(xp, p, rho)  # p log p / (1 - p): 0 where p = 0, even for log p = -inf
            u = c * mod * (gamma * p_rho - 1)
            total_u = xp.sum(u, axis=-1, keepdims=True)
            # the row's top class: its sums over the other classes are summed directly (the total less
            # its own term would cancel where it dominates, p_j -> 1)
            top = _array.one_hot(xp, xp.argmax(p, axis=-1), z.shape[-1], xp.bool)
            if order == 1:
                # u_j - p_j sum_k u_k = u_j q_j - p_j sum_{k != j} u_k: u_j (1 - p_j) would cancel at the top
                grad = u * q - p * _others(xp, u, top)
            else:
                # v_k q_k^2 with v = c p h'(p), h(p) = p d/dp[-(1-p)^g log p], written without q^(g-1)
                vq2 = c * gamma * mod * q * (times(xp, p, lp + 2) - (gamma - 1) * p * p_rho)
                safe_q = xp.where(q > 0, q, xp.ones_like(q))
                v = xp.where(q > 0, c * gamma * mod * (times(xp, p, lp + 2) - (gamma - 1) * p * p_rho) / safe_q,
                             xp.zeros_like(q))
                # v_j is large where p_j -> 1 with gamma < 1
                hess = vq2 + p * p * _others(xp, v, top) - p * q * total_u
        return Terms(loss, grad, hess)


def _others(xp, v, top):
    """``sum_{k != j} v_k`` for each class j: summed directly for the row's ``top`` class, elsewhere the
    row's total less ``v_j``."""
    zero = xp.zeros_like(v)
    rest_top = xp.sum(xp.where(top, zero, v), axis=-1, keepdims=True)
    return xp.where(top, rest_top + zero, xp.sum(v, axis=-1, keepdims=True) - v)


class PolyCrossEntropy(SoftmaxCrossEntropy):
    r"""Poly-1 cross-entropy (Leng et al. 2022): softmax CE plus ``epsilon`` times the missing
    probability of the truth.

    .. math:: l = -\sum_k y'_k \log p_k + \epsilon \left(1 - \sum_k y'_k p_k\right)

    Gradient :math:`p \sum y' - y' - \epsilon\, p_j (y'_j - P)` with :math:`P = \sum_k y'_k p_k`;
    Hessian diagonal :math:`\sum y'\, p_j (1 - p_j) - \epsilon\, p_j (y'_j - P)(1 - 2 p_j)`.
    Options: ``epsilon`` (any finite number; 0 is softmax CE) and those of
    :class:`SoftmaxCrossEntropy`. Shapes and edges as :class:`SoftmaxCrossEntropy`;
    ``1 - P`` is summed as ``y'_k (1 - p_k)`` with ``1 - p_k = -expm1(log p_k)``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.poly_cross_entropy(np.zeros((1, 2)), np.array([0]), epsilon=1.0)), 6)  # log 2 + 0.5
    1.193147
    """

    name = "poly_cross_entropy"
    aliases = ("poly",)
    Options = PolyOptions

    @property
    def gbdt_curvature(self) -> str:
        """For ``epsilon > 1`` the label unit's Hessian is negative where ``p_y`` is small (-0.035 at
        ``z = (3, 0, 0)``, label 1, epsilon 2): "bounded" (see Loss.gbdt_curvature); floored alone, a leaf
        stepped by 10^5 margin units. Convex in each unit up to 1: softmax CE's curvature."""
        return "bounded" if self.epsilon > 1 else "weight"

    def _kernel(self, plan, host, with_grad):  # compiled rows (losskit.fused.rows)
        return _compiled.poly(self, plan, host, with_grad)

    _kernel.__name__ = "poly_cross_entropy"

    def __init__(self, *, epsilon: float = 1.0, axis: int = -1, class_weight=None, ignore_index=None,
                 label_smoothing: float = 0.0, reduction: str = "mean", impl: str = "auto"):
        Loss.__init__(self, epsilon=epsilon, axis=axis, class_weight=class_weight, ignore_index=ignore_index,
                      label_smoothing=label_smoothing, reduction=reduction, impl=impl)

    def _terms(self, plan, order):
        terms = super()._terms(plan, order)
        xp, z, eps = plan.xp, plan.input, self.epsilon
        labels = plan.target.labels
        mask = None if labels is None else _array.one_hot(xp, labels, z.shape[-1], xp.bool)
        y = self._dense_target(xp, z, plan.target.dense, mask)
        lp = log_softmax_xp(xp, z)
        p = xp.exp(lp)
        q = -xp.expm1(lp)  # 1 - p_k, exact where p_k is near 1
        total = xp.sum(y, axis=-1)
        missing = xp.sum(y * q, axis=-1) + (1 - total)  # 1 - P without cancellation
        loss = terms.loss + eps * missing
        grad, hess = terms.grad, terms.hess
        if order >= 1:
            # y_j - P = y_j q_j - sum_{k != j} y_k p_k: for a label on top, y_j - y_j p_j would cancel
            y_p = y * p
            others = xp.sum(y_p, axis=-1, keepdims=True) - y_p  # exactly 0 at a hard label
            gap = y * q - others
            if order == 1:
                grad = grad - eps * p * gap
            else:
                hess = hess - eps * p * gap * (q - p)  # 1 - 2p
                if mask is not None and plan.smoothing == 0:
                    # at a hard label CE's p q and the correction p q (q - p) (-eps) add to
                    # p q (p (1 + eps) + q (1 - eps)): for eps = -1, 2 p q^2, where the sum cancels
                    hess = xp.where(mask, p * q * (p * (1 + eps) + q * (1 - eps)), hess)
        return Terms(loss, grad, hess)


_CAT_OPTIONS = """
    Options as :func:`softmax_cross_entropy`: ``axis``, ``class_weight [K]``, ``weight [...]``,
    ``ignore_index``, ``label_smoothing``, ``reduction``, ``normalizer``.
"""

sigmoid_focal_loss = functional(SigmoidFocalLoss, "sigmoid_focal_loss", r"""Binary focal loss from logits:
    :math:`-a_t (1 - p_t)^\gamma \log p_t` per element (see :class:`SigmoidFocalLoss`).

    Shapes: ``logits [...]``, ``target [...]`` in [0, 1], ``weight [...]``; returns ``[...]`` for
    ``reduction="none"``, else 0-d. Options: ``gamma`` (2), ``alpha`` (None), ``label_smoothing``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.sigmoid_focal_loss(np.array([2.0]), np.array([1.0]), gamma=0.0)), 6)  # BCE
    0.126928
""")
multilabel_sigmoid_focal_loss = functional(
    MultilabelSigmoidFocalLoss, "multilabel_sigmoid_focal_loss",
    r"""Sigmoid focal loss summed over the K labels of each row (see :func:`sigmoid_focal_loss`).

    Shapes: ``logits [..., K]``, ``target [..., K]``, ``weight [...]`` per row.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.multilabel_sigmoid_focal_loss(np.zeros((1, 2)), np.array([[1, 0]]))), 6)
    0.346574
""")
softmax_focal_loss = functional(SoftmaxFocalLoss, "softmax_focal_loss", r"""Multi-class focal loss from
    logits: :math:`-\sum_k a_k y'_k (1 - p_k)^\gamma \log p_k` (see :class:`SoftmaxFocalLoss`).

    Shapes: ``logits [..., K]``; target integer ``[...]`` or probabilities ``[..., K]``.
""" + _CAT_OPTIONS + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.softmax_focal_loss(np.array([[2.0, 0.0]]), np.array([0]), gamma=0.0)), 6)  # CE
    0.126928
""")
poly_cross_entropy = functional(PolyCrossEntropy, "poly_cross_entropy", r"""Poly-1 loss: softmax CE plus
    :math:`\epsilon (1 - p_y)` (see :class:`PolyCrossEntropy`).

    Shapes as :func:`softmax_cross_entropy`.
""" + _CAT_OPTIONS + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.poly_cross_entropy(np.zeros((1, 2)), np.array([1]), epsilon=2.0)), 6)
    1.693147
""")
