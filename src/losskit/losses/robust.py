r"""Robust regression losses: absolute error, Huber, smooth L1, pseudo-Huber, log-cosh.

Each is a function :math:`\rho(e)` of the error :math:`e = \hat y - y`, averaged over the values
of an example as :class:`MeanSquaredError` does (a 1-D input is one value per example; for 2 or
more dimensions the last axis holds the D values of an example), so that ``"mean"`` equals the
peers' mean over all elements (``F.l1_loss``, ``F.huber_loss``, ``F.smooth_l1_loss``, Keras
``LogCosh``).

Design note: pseudo-Huber is written ``|e| * |e| / (1 + h)`` with ``h = hypot(1, e / delta)``
rather than ``delta^2 (sqrt(1 + (e/delta)^2) - 1)``: the latter cancels for small e and
overflows for large e. Log-cosh is ``log1p(2 sinh(e/2)^2)`` below |e| = 1 (no cancellation near
0) and ``|e| + log1p(exp(-2|e|)) - log 2`` above (no overflow).
"""

from __future__ import annotations

import math

from .. import _checks
from ..plan import Target
from ._shared import functional, real_target
from .base import Loss, Terms
from .more_options import BetaOptions, DeltaOptions
from .options import Options


class ValueLoss(Loss):
    """Base of the losses of one value per unit: ``rho(e)`` per element, averaged over the D values
    of an example. A subclass supplies ``_elementwise(xp, input, target, order) -> (l, d)``, with
    ``d`` the first or second derivative in the input for ``order`` 1 or 2 (None for 0)."""

    input_name = "predictions"
    diagonal_hessian = True

    def _spans_last_axis(self, ndim: int) -> bool:
        return ndim >= 2  # a 1-D input is N examples of one value each

    def _prepare(self, xp, input, target) -> Target:
        if input.ndim >= 2 and input.shape[-1] == 0:
            raise _checks.fail(self.input_name, "at least one value per example along the last axis",
                               f"shape {tuple(input.shape)}")
        target = real_target(xp, input, target, self.input_name)
        self._check_target(xp, target)
        return Target(dense=target)

    def _check_target(self, xp, target) -> None:  # noqa: B027 - optional hook
        """Check the target's domain (deviances)."""

    def _terms(self, plan, order):
        xp, input = plan.xp, plan.input
        loss, d = self._elementwise(xp, input, plan.target.dense, order)
        size = input.shape[-1] if input.ndim >= 2 else 1
        if input.ndim >= 2:
            loss = xp.mean(loss, axis=-1)
        d = None if d is None else d / size
        return Terms(loss, d if order == 1 else None, d if order == 2 else None)


def _sign(xp, e):
    return xp.sign(e)


class AbsoluteError(ValueLoss):
    r"""Absolute error: :math:`l = \mathrm{mean}_j |\hat y_j - y_j|` (``F.l1_loss``).

    Shapes as :class:`MeanSquaredError`. Gradient :math:`\mathrm{sign}(e)/D` (0 at e = 0);
    Hessian 0 (a second-order method needs a substitute: docs/gbdt.md).

    >>> import numpy as np, losskit as lk
    >>> float(lk.absolute_error(np.array([1.0, -3.0]), np.array([0.0, 0.0])))
    2.0
    """

    Options = Options

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        super().__init__(reduction=reduction, impl=impl)

    def _elementwise(self, xp, input, target, order):
        e = input - target
        d = _sign(xp, e) if order == 1 else xp.zeros_like(e) if order == 2 else None
        return xp.abs(e), d


class HuberLoss(ValueLoss):
    r"""Huber loss (``F.huber_loss``): quadratic within ``delta`` of the target, linear beyond.

    .. math:: \rho(e) = \tfrac12 e^2 \text{ if } |e| < \delta, \text{ else } \delta (|e| - \tfrac12 \delta)

    Gradient :math:`\mathrm{clip}(e, -\delta, \delta)`, Hessian :math:`[|e| < \delta]`, each over D.
    Option ``delta`` > 0. Shapes as :class:`MeanSquaredError`.

    >>> import numpy as np, losskit as lk
    >>> lk.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """

    Options = DeltaOptions

    def __init__(self, *, delta: float = 1.0, reduction: str = "mean", impl: str = "auto"):
        super().__init__(delta=delta, reduction=reduction, impl=impl)

    def _elementwise(self, xp, input, target, order):
        e, delta = input - target, self.delta
        a = xp.abs(e)
        inside = a < delta
        loss = xp.where(inside, 0.5 * e * e, delta * (a - 0.5 * delta))
        d = None
        if order == 1:
            d = xp.clip(e, -delta, delta)
        elif order == 2:
            d = xp.astype(inside, e.dtype)
        return loss, d


class SmoothL1Loss(ValueLoss):
    r"""Smooth L1 loss (``F.smooth_l1_loss``): Huber divided by ``beta``.

    .. math:: \rho(e) = \tfrac12 e^2 / \beta \text{ if } |e| < \beta, \text{ else } |e| - \tfrac12 \beta

    Gradient :math:`\mathrm{clip}(e/\beta, -1, 1)`, Hessian :math:`[|e| < \beta] / \beta`; ``beta``
    >= 0, and ``beta = 0`` is the absolute error (as in PyTorch). Shapes as :class:`MeanSquaredError`.

    >>> import numpy as np, losskit as lk
    >>> lk.smooth_l1_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """

    Options = BetaOptions

    def __init__(self, *, beta: float = 1.0, reduction: str = "mean", impl: str = "auto"):
        super().__init__(beta=beta, reduction=reduction, impl=impl)

    def _elementwise(self, xp, input, target, order):
        e, beta = input - target, self.beta
        a = xp.abs(e)
        if beta == 0:
            return a, _sign(xp, e) if order == 1 else xp.zeros_like(e) if order == 2 else None
        inside = a < beta
        loss = xp.where(inside, 0.5 * e * e / beta, a - 0.5 * beta)
        d = None
        if order == 1:
            d = xp.clip(e / beta, -1.0, 1.0)
        elif order == 2:
            d = xp.astype(inside, e.dtype) / beta
        return loss, d


class PseudoHuberLoss(ValueLoss):
    r"""Pseudo-Huber loss (XGBoost ``reg:pseudohubererror`` with ``huber_slope = delta``).

    .. math:: \rho(e) = \delta^2\left(\sqrt{1 + (e/\delta)^2} - 1\right)

    Gradient :math:`e / h`, Hessian :math:`1 / h^3` with :math:`h = \sqrt{1 + (e/\delta)^2}`
    (over D). Smooth everywhere; ``delta`` > 0. Edges: finite for finite e (about
    :math:`\delta |e|` for large e, no overflow of :math:`e^2`).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.pseudo_huber_loss(np.array([1.0]), np.array([0.0]))), 6)  # sqrt(2) - 1
    0.414214
    """

    Options = DeltaOptions

    def __init__(self, *, delta: float = 1.0, reduction: str = "mean", impl: str = "auto"):
        super().__init__(delta=delta, reduction=reduction, impl=impl)

    def _elementwise(self, xp, input, target, order):
        e, delta = input - target, self.delta
        a = xp.abs(e)
        h = xp.hypot(xp.ones_like(e), e / delta)  # sqrt(1 + (e/delta)^2) without overflow
        loss = a * (a / (1 + h))  # = delta^2 (h - 1), without cancellation for small e
        d = None
        if order == 1:
            d = e / h
        elif order == 2:
            d = 1 / (h * h * h)
        return loss, d


_LOG2 = math.log(2.0)


class LogCoshLoss(ValueLoss):
    r"""Log-cosh loss (Keras ``LogCosh``): :math:`\rho(e) = \log\cosh(e)`.

    Gradient :math:`\tanh(e)`, Hessian :math:`1 - \tanh^2(e)` (over D): quadratic near 0,
    linear (:math:`|e| - \log 2`) far away. Edges: finite for finite e; exact to a few eps
    for tiny e (no cancellation).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.log_cosh_loss(np.array([1.0]), np.array([0.0]))), 6)
    0.433781
    """

    Options = Options

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        super().__init__(reduction=reduction, impl=impl)

    def _elementwise(self, xp, input, target, order):
        e = input - target
        a = xp.abs(e)
        small = a < 1
        a_small = xp.where(small, a, xp.zeros_like(a))  # each branch sees only its own inputs
        a_large = xp.where(small, xp.ones_like(a), a)
        half = xp.sinh(a_small / 2)
        loss = xp.where(small, xp.log1p(2 * half * half),  # cosh e - 1 = 2 sinh(e/2)^2
                        a_large + xp.log1p(xp.exp(-2 * a_large)) - _LOG2)
        d = None
        if order == 1:
            d = xp.tanh(e)
        elif order == 2:
            t = xp.exp(-2 * a)  # 1 - tanh^2 = 4 t / (1 + t)^2: no cancellation for large |e|
            d = 4 * t / ((1 + t) * (1 + t))
        return loss, d


_VALUES = """
    Shapes: ``predictions [N]`` (one value per example) or ``[..., D]`` (D values per example,
    averaged); ``target`` the same shape; ``weight`` per example. Returns ``[...]`` for ``"none"``,
    else 0-d.
"""

absolute_error = functional(AbsoluteError, "absolute_error", r"""Mean absolute error
    :math:`\mathrm{mean}_j |\hat y_j - y_j|` per example (see :class:`AbsoluteError`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.absolute_error(np.array([[1.0, -3.0]]), np.array([[0.0, 0.0]])))
    2.0
""")
huber_loss = functional(HuberLoss, "huber_loss", r"""Huber loss with threshold ``delta`` (see
    :class:`HuberLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.huber_loss(np.array([3.0]), np.array([0.0]), delta=2.0))
    4.0
""")
smooth_l1_loss = functional(SmoothL1Loss, "smooth_l1_loss", r"""Smooth L1 loss with threshold ``beta``
    (see :class:`SmoothL1Loss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.smooth_l1_loss(np.array([3.0]), np.array([0.0]), beta=2.0))
    2.0
""")
pseudo_huber_loss = functional(PseudoHuberLoss, "pseudo_huber_loss", r"""Pseudo-Huber loss with slope
    ``delta`` (see :class:`PseudoHuberLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.pseudo_huber_loss(np.array([3.0]), np.array([0.0]), delta=4.0)), 6)  # 16 (1.25 - 1)
    4.0
""")
log_cosh_loss = functional(LogCoshLoss, "log_cosh_loss", r"""Log-cosh loss :math:`\log\cosh(\hat y - y)`
    (see :class:`LogCoshLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.log_cosh_loss(np.array([0.0]), np.array([0.0])))
    0.0
""")
