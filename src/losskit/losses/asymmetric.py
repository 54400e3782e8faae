r"""Asymmetric loss (ASL, Ridnik et al. 2021) for multi-label classification.

Per label, with :math:`p = \sigma(z)`, the shifted probability :math:`p_m = \max(p - m, 0)` (the
probability margin ``clip`` m) and focusing powers :math:`\gamma_+`, :math:`\gamma_-`:

.. math:: l = -y (1 - p)^{\gamma_+} \log p - (1 - y)\, p_m^{\gamma_-} \log(1 - p_m)

summed over the K labels of a row. Easy negatives (small p) are down-weighted by
:math:`p_m^{\gamma_-}` and, below the margin, discarded.

Design note: the reference implementation (``AsymmetricLoss`` in Alibaba-MIIL/ASL) treats the
focusing weight as a constant in backward (``disable_torch_grad_focal_loss``) and clamps each log
at 1e-8. Here the gradient is the true derivative of the value, and no log is clamped:
:math:`\log p` is ``log_sigmoid(z)``, :math:`1 - p_m = \sigma(-z) + m` (>= m), and for m = 0
:math:`\log(1 - p) = ` ``log_sigmoid(-z)``. With :math:`u = p(1 - p)`, :math:`v = 1 - p_m`,
:math:`\rho = -\log(v) / p_m` (-> 1 as :math:`p_m \to 0`):

.. math:: \frac{dl_+}{dz} = (1 - p)^{\gamma_+}\left(\gamma_+ p \log p - (1 - p)\right), \qquad
          \frac{dl_-}{dz} = p_m^{\gamma_-}\left(\gamma_- \rho u + u / v\right)

and the second derivatives follow (written out in :meth:`AsymmetricLoss.second_derivative`).
"""

from __future__ import annotations

from ._shared import times
from .declaration import Hessian, Task, option
from .elementwise import ElementwiseLoss
from .formula import formula_function
from .registry import functional


@formula_function
def _negative_parts(xp, z, clip):
    """``(p, 1 - p, p_m, log(1 - p_m), u / v)`` of the negative term (see the module note)."""
    s_pos, s_neg = xp.sigmoid(z), xp.sigmoid(-z)
    if clip > 0:
        q = xp.maximum(s_pos - clip, 0.0)
        # 1 - p_m = min(1 - p + m, 1) >= m: no log(0); below the margin (p <= m) it is 1, its log and
        # derivative 0 (unclamped, gamma_neg = 0 gave a negative loss there: -log(1 + m - p))
        below = s_pos <= clip
        log_v = xp.where(below, xp.zeros_like(z), xp.log(s_neg + clip))
        u_over_v = xp.where(below, xp.zeros_like(z), s_pos * (s_neg / (s_neg + clip)))
    else:
        q = s_pos
        log_v = xp.log_sigmoid(-z)  # log(1 - p), exact for large z
        u_over_v = s_pos
    return s_pos, s_neg, q, log_v, u_over_v


@formula_function
def _rho(xp, q, log_v):
    """``-log(1 - p_m) / p_m``, 1 in the limit ``p_m -> 0``."""
    return xp.where(q > 0, -log_v / xp.where(q > 0, q, xp.ones_like(q)), xp.ones_like(q))


class AsymmetricLoss(ElementwiseLoss):
    r"""Asymmetric loss for multi-label classification (ASL, Ridnik et al. 2021), from logits.

    .. math:: l = \sum_k -y_k (1 - p_k)^{\gamma_+} \log p_k - (1 - y_k)\, p_{m,k}^{\gamma_-} \log(1 - p_{m,k})

    with :math:`p = \sigma(z)` and :math:`p_m = \max(p - m, 0)`. Options: ``gamma_pos`` (1),
    ``gamma_neg`` (4), ``clip`` m in [0, 1) (0.05), the reference implementation's defaults. The
    gradient is the exact derivative of the value (the reference code holds the focusing weight
    constant in backward); no log is clamped.

    Shapes: ``logits [..., K]``, ``target [..., K]`` (0/1 or probabilities, mixed per label),
    ``weight [...]`` per row; ``"mean"`` averages the rows' sums. Edges: finite for finite logits;
    ``gamma_neg < 1`` makes the Hessian unbounded where p crosses the margin.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.asymmetric_loss(np.zeros((1, 2)), np.array([[1, 0]]), gamma_pos=0.0, gamma_neg=0.0,
    ...                                clip=0.0)), 6)  # BCE: 2 log 2
    1.386294
    """

    name = "asymmetric_loss"
    aliases = ("asl",)
    target = "binary"
    over_last_axis = "sum"
    task = Task.MULTILABEL
    hessian = Hessian.INDEFINITE

    @property
    def gbdt_curvature(self) -> str:
        """Not convex far on the wrong side once it focuses or clips (see Loss.gbdt_curvature); BCE's without."""
        return "bounded" if self.gamma_pos > 0 or self.gamma_neg > 0 or self.clip > 0 else "weight"
    gamma_pos = option(1.0, low=0.0, doc="focusing power of the positive labels")
    gamma_neg = option(4.0, low=0.0, doc="focusing power of the negative labels")
    clip = option(0.05, low=0.0, high=1.0, high_open=True, doc="probability margin m of the negatives")

    def value(self, xp, z, y):
        s_pos, s_neg, q, log_v, u_over_v = _negative_parts(xp, z, self.clip)
        positive = -xp.pow(s_neg, self.gamma_pos) * xp.log_sigmoid(z)
        negative = -xp.pow(q, self.gamma_neg) * log_v
        # times: a label's term is 0 where its weight is, even infinite (z = -inf, y = 0: log p = -inf)
        return times(xp, y, positive) + times(xp, 1 - y, negative)

    def derivative(self, xp, z, y):
        g_pos, g_neg = self.gamma_pos, self.gamma_neg
        s_pos, s_neg, q, log_v, u_over_v = _negative_parts(xp, z, self.clip)
        positive = xp.pow(s_neg, g_pos) * (g_pos * times(xp, s_pos, xp.log_sigmoid(z)) - s_neg)
        # rho u first: rho = -log(1 - p_m) / p_m reaches |z| (2e38 in float32) where u = p (1 - p) is 0, and
        # g rho overflowed to inf first (inf * 0: a NaN gradient); at z = +inf with no margin rho is inf
        negative = xp.pow(q, g_neg) * (g_neg * times(xp, s_pos * s_neg, _rho(xp, q, log_v)) + u_over_v)
        return times(xp, y, positive) + times(xp, 1 - y, negative)

    def second_derivative(self, xp, z, y):
        g_pos, g_neg = self.gamma_pos, self.gamma_neg
        s_pos, s_neg, q, log_v, u_over_v = _negative_parts(xp, z, self.clip)
        u = s_pos * s_neg
        log_p = xp.log_sigmoid(z)
        # l+'' = (1-p)^g [-g p (g p log p - (1-p)) + u (g log p + g + 1)]
        positive = xp.pow(s_neg, g_pos) * (-g_pos * s_pos * (g_pos * times(xp, s_pos, log_p) - s_neg)
                                     + times(xp, u, g_pos * log_p + g_pos + 1))
        rho_u = times(xp, u, _rho(xp, q, log_v))  # rho u first, as in derivative
        first = xp.pow(q, g_neg) * (g_neg * rho_u + u_over_v)
        # l-'' = (1 - 2p) l-' + q^(g-1) (g (g-1) rho u^2 + 2 g u (u/v)) + q^g (u/v)^2, 0 below the margin
        curvature = g_neg * (g_neg - 1) * rho_u * u + 2 * g_neg * u * u_over_v
        bent = xp.where(q > 0, xp.pow(xp.where(q > 0, q, xp.ones_like(q)), g_neg - 1) * curvature, xp.zeros_like(q))
        if self.clip > 0:
            negative = (s_neg - s_pos) * first + bent + xp.pow(q, g_neg) * u_over_v * u_over_v
        else:  # u/v = p: (1 - 2p) p + p^2 = p (1 - p) = u, which the sum cancelled to 0 at z = 40
            negative = xp.pow(q, g_neg) * ((s_neg - s_pos) * (g_neg * rho_u) + u) + bent
        negative = xp.where(q > 0, negative, xp.zeros_like(q))
        return times(xp, y, positive) + times(xp, 1 - y, negative)


asymmetric_loss = functional(AsymmetricLoss, "asymmetric_loss", r"""Asymmetric loss (ASL) for multi-label
    logits, summed over the K labels of a row (see :class:`AsymmetricLoss`).

    Shapes: ``logits [..., K]``, ``target [..., K]``, ``weight [...]``; options ``gamma_pos``,
    ``gamma_neg``, ``clip``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.asymmetric_loss(np.array([[0.0]]), np.array([[0]]), clip=0.0, gamma_neg=1.0)), 6)
    0.346574
""")
