r"""What a loss declares about itself: its link, its Hessian's kind, its options.

A loss class states these facts as class attributes, next to its formula; every other module
(heads, GBDT objectives, the torch and JAX layers, ``losskit eval``) reads them from the class and
keeps no list of loss names. (scikit-learn's ``_loss`` does the same: ``HalfPoissonLoss`` holds
its link and its ``constant_hessian``.)
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from .. import _checks
from ..tasks import Task

__all__ = ["Link", "IDENTITY", "LOGIT", "LOG", "SOFTMAX", "HALF_LOGIT", "Hessian", "Option", "option", "Task"]


@dataclass(frozen=True)
class Link:
    r"""The link of a loss: its input is ``link(mean)``, so ``inverse`` maps the input to the mean
    (a probability for ``logit``/``softmax``, a positive mean for ``log``). ``name`` is what a head
    reports as its activation."""

    name: str
    activation: str

    def inverse(self, xp, input, axis: int = -1):
        """The mean of the target predicted by ``input`` (same library, dtype and shape)."""
        from ..activations import sigmoid_xp, softmax_xp

        if self is LOGIT:
            return sigmoid_xp(xp, input)
        if self is SOFTMAX:
            return softmax_xp(xp, input, axis)
        if self is LOG:
            return xp.exp(input)
        if self is HALF_LOGIT:
            return sigmoid_xp(xp, 2 * input)
        return input

    def of_means(self, mean):
        """``link(mean)`` of a NumPy array of means, unclamped: a probability of exactly 0 or 1 gives an
        infinite input (softmax: the log of each probability, a row's input up to a constant)."""
        import numpy as np

        with np.errstate(divide="ignore"):
            if self is LOGIT:
                return np.log(mean) - np.log1p(-mean)
            if self is HALF_LOGIT:
                return (np.log(mean) - np.log1p(-mean)) / 2
            if self in (LOG, SOFTMAX):
                return np.log(mean)
        return mean

    def of_mean(self, mean: float) -> float:
        """``link(mean)`` for a scalar mean (the best constant's starting point)."""
        if self is LOGIT:
            p = min(max(mean, 1e-12), 1 - 1e-12)
            return math.log(p) - math.log1p(-p)
        if self is LOG:
            return math.log(max(mean, 1e-300))
        if self is HALF_LOGIT:
            return LOGIT.of_mean(mean) / 2
        return mean


IDENTITY = Link("identity", "identity")
LOGIT = Link("logit", "sigmoid")
LOG = Link("log", "exp (log link)")
SOFTMAX = Link("softmax", "softmax")
#: the exponential loss's: its best margin is half the log-odds, so the probability is sigmoid(2z)
HALF_LOGIT = Link("half_logit", "sigmoid(2z)")


class Hessian(enum.Enum):
    """The kind of a loss's Hessian in its input.

    ``DIAGONAL``: each element's loss depends on that element alone, and its second derivative is
    >= 0; ``INDEFINITE``: diagonal too, but it can be negative (a non-convex loss: focal); ``ZERO``:
    0 almost everywhere (piecewise linear: hinge, absolute error; a second-order method needs a
    substitute); ``ROW``: a full matrix per example over its class axis (softmax losses), of which
    ``hessian_diag`` gives the diagonal.
    """

    DIAGONAL = "diagonal"
    INDEFINITE = "indefinite"
    ZERO = "zero"
    ROW = "row"

    @property
    def is_diagonal(self) -> bool:
        return self is not Hessian.ROW


@dataclass(frozen=True)
class Option:
    """A loss's hyper-parameter, declared on its class: ``delta = lk.option(1.0, low=0, low_open=True)``.

    The class gets a keyword argument of that name (checked at construction: a finite number in the
    bounds, or a :class:`~losskit.LossInputError` naming it), the option is read as
    ``self.delta`` in the formula, and the compiled kernel receives it as a number."""

    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    doc: str = ""

    def check(self, value: Any, name: str) -> float:
        return number(value, name, low=self.low, high=self.high, low_open=self.low_open, high_open=self.high_open)


def option(default: float, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, doc: str = "") -> Any:
    """Declare a numeric option of a loss class (see :class:`Option`): ``delta = lk.option(1.0, low=0.0)``.

    Shapes: the option is one number (a Python float, checked finite and inside ``[low, high]``,
    either end open with ``low_open``/``high_open``), the same for every element of every call.

    >>> import losskit as lk
    >>> class Scaled(lk.ElementwiseLoss):
    ...     scale = lk.option(2.0, low=0.0, low_open=True)
    ...     def value(self, xp, z, y): return self.scale * (z - y) ** 2
    >>> Scaled(scale=3.0).scale
    3.0
    """
    return Option(default, low, high, low_open, high_open, doc)


def expected_number(low: float | None = None, high: float | None = None, low_open: bool = False,
                    high_open: bool = False) -> str:
    """What :func:`number` takes, in words: ``"a finite number > 0"``, ``"... >= 0 and <= 1"``."""
    lo = "" if low is None else ("> " if low_open else ">= ") + f"{low:g}"
    hi = "" if high is None else ("< " if high_open else "<= ") + f"{high:g}"
    return "a finite number" + (f" {lo}" if lo else "") + (f" and {hi}" if lo and hi else f" {hi}" if hi else "")


def number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float inside the given bounds, or a LossInputError naming ``name``."""
    expected = expected_number(low, high, low_open, high_open)
    if not _checks.is_number(value) or not math.isfinite(float(value)):
        raise _checks.fail(name, expected, repr(value))
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise _checks.fail(name, expected, repr(value))
    if high is not None and (v > high or (high_open and v == high)):
        raise _checks.fail(name, expected, repr(value))
    return v
