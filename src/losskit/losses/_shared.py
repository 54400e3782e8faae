"""Pieces the issue-8 losses share: the functional form of a Loss class, the per-row (multi-label)
form of an elementwise binary loss, target checks, and numerically careful scalar helpers."""

from __future__ import annotations

import inspect
import math

from .. import _checks
from ..plan import Target
from .base import Terms


def functional(cls, name: str, doc: str):
    """``name(input, target, *, weight=None, normalizer=None, <cls's options>)``: one call of ``cls``.

    The signature shown is the class's own options, so ``help()`` lists them."""

    def fn(input, target, *, weight=None, normalizer=None, **options):
        return cls(**options)(input, target, weight=weight, normalizer=normalizer)

    options = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(cls.input_name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("target", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("weight", inspect.Parameter.KEYWORD_ONLY, default=None),
         inspect.Parameter("normalizer", inspect.Parameter.KEYWORD_ONLY, default=None), *options])
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    fn.__module__ = cls.__module__
    return fn


def per_row(cls, name: str):
    """The multi-label form of an elementwise binary loss: one example is a row of K labels,
    its loss the sum of ``cls``'s loss over them (as :class:`MultilabelCrossEntropy` sums BCE)."""

    def _prepare(self, xp, input, target):
        if input.ndim == 0:
            raise _checks.fail(self.input_name, "an array with a label axis [..., K]", "a 0-d array")
        return cls._prepare(self, xp, input, target)

    def _terms(self, plan, order):
        terms = cls._terms(self, plan, order)
        return Terms(plan.xp.sum(terms.loss, axis=-1), terms.grad, terms.hess)

    doc = (f"Multi-label form of :class:`{cls.__name__}`: logits ``[..., K]``, target ``[..., K]``, one "
           f"example per row, its loss the sum over the K labels; ``weight [...]`` per row.\n\n"
           f"    Elementwise formula, gradient and Hessian as :class:`{cls.__name__}`.")
    return type(name, (cls,), {"reduces_last_axis": True, "_prepare": _prepare, "_terms": _terms,
                               "__doc__": doc, "__module__": cls.__module__})


def real_target(xp, input, target, input_name: str):
    """A real-valued target of the input's shape, in the working dtype, without NaN."""
    _checks.same_shape("target", target, input_name, tuple(input.shape))
    if not xp.isdtype(target.dtype, ("real floating", "integral", "bool")):
        raise _checks.fail("target", "a real-valued array", f"dtype {target.dtype}")
    target = xp.astype(target, input.dtype)
    _checks.no_nan(xp, target, "target")
    return target


def unit_target(xp, input, target, input_name: str) -> Target:
    """0/1 labels or probabilities of the input's shape (the binary losses' targets)."""
    target = real_target(xp, input, target, input_name)
    _checks.in_unit_interval(xp, target, "target")
    return Target(dense=target)


def times(xp, coef, value):
    """``coef * value`` with 0 where ``coef`` is 0 and ``value`` infinite: an exact ``0 * inf`` limit,
    not NaN; a finite value is kept, so that autodiff gives d/d coef = value (as binary._times)."""
    return coef * xp.where((coef == 0) & ~xp.isfinite(value), xp.zeros_like(value), value)


# Taylor coefficients of phi(x) = e^x - 1 - x from x^2 / 2! to x^11 / 11!
_PHI_SERIES = tuple(1.0 / math.factorial(n) for n in range(2, 12))


def exp_minus_linear(xp, x):
    """``phi(x) = e^x - 1 - x`` (>= 0), to a few eps over the whole line.

    ``expm1(x) - x`` cancels for small |x| (phi ~ x^2 / 2): below |x| = 0.1 a Taylor series to
    x^11 is used instead (truncation < 1e-18 relative); above, the cancellation costs at most
    2 eps / |x| <= 20 eps."""
    small = xp.abs(x) < 0.1
    xs = xp.where(small, x, xp.zeros_like(x))  # the series' branch never sees a large x
    series = xp.zeros_like(x)
    for c in reversed(_PHI_SERIES):
        series = (series + c) * xs
    series = series * xs
    xl = xp.where(small, xp.ones_like(x), x)  # nor the other branch a small one
    return xp.where(small, series, xp.expm1(xl) - xl)
