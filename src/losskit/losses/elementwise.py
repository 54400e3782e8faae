r"""A loss written as one formula per element: the base of the elementwise catalogue and of a
user's own loss.

A subclass declares what it is and writes its formula once::

    class ExpMarginLoss(lk.ElementwiseLoss):  # AdaBoost's exponential loss on a margin
        name = "exp_margin_loss"
        target = "binary"
        def value(self, xp, z, y):             return xp.exp(-(2 * y - 1) * z)
        def derivative(self, xp, z, y):        return -(2 * y - 1) * xp.exp(-(2 * y - 1) * z)
        def second_derivative(self, xp, z, y): return xp.exp(-(2 * y - 1) * z)

``value`` is the loss of one element ``z`` against its target ``y``; ``derivative`` and
``second_derivative`` are its derivatives in ``z``. From these three functions come the
array-API reference (any library), the compiled CPU kernel (numba; :mod:`losskit.fused.formula`),
the torch path on other devices and the XLA path: they are the same text run with a different
``xp`` (see :mod:`losskit.losses.formula` for what ``xp`` offers). Weights, reductions, half
precision, ``out=`` and the checks of the target are the common ones of :class:`~losskit.Loss`.

The target kinds: ``"binary"`` (0/1 labels or probabilities in [0, 1]; the input is a logit),
``"sign"`` (labels 0/1 or -1/+1, given to the formula as -1/+1; the input is a score),
``"value"`` (any real), ``"count"`` (>= 0) and ``"positive"`` (> 0) (the input is a prediction).
``over_last_axis`` says what an example is: None, each element (the default); ``"sum"``, a row
over the last axis whose loss is the sum over it (multi-label); ``"mean"``, for an input of two or
more dimensions, a row of D values whose loss is their mean (multi-output regression).
"""

from __future__ import annotations

import functools
from typing import ClassVar

from .. import _array, _checks
from ..plan import Target
from . import _compiled
from .base import Loss, Terms, writes_own_formula
from .declaration import LOGIT, Task
from .formula import ArrayMath, check_formulas

__all__ = ["ElementwiseLoss", "IN_DOMAIN", "TARGETS", "multilabel_form"]

#: the target kinds an elementwise loss may declare, with what each means for the target's values
TARGETS = {
    "binary": "0/1 labels or probabilities in [0, 1]",
    "sign": "labels 0/1 or -1/+1",
    "value": "real values",
    "count": "non-negative values (y >= 0)",
    "positive": "positive values (y > 0)",
}

#: where a target value lies in each kind's domain (a NaN in none); "value" takes every real. The compiled
#: formula kernels test the same (losskit.fused.formula.row_kernel's ``domain``)
IN_DOMAIN = {
    "binary": lambda y: (y >= 0) & (y <= 1),
    "sign": lambda y: (y == 1) | (y == 0) | (y == -1),
    "count": lambda y: y >= 0,
    "positive": lambda y: y > 0,
}


class ElementwiseLoss(Loss):
    """Base of the losses written as one formula per element (see the module note)."""

    #: the kind of target (a key of :data:`TARGETS`)
    target: ClassVar[str] = "value"
    #: None (each element is an example), "sum" (a row's loss is the sum over the last axis) or
    #: "mean" (for 2-D or more, a row's loss is the mean over the last axis)
    over_last_axis: ClassVar[str | None] = None
    _kernel_inherits = True  # the kernel is made from each subclass's own formula

    def __init_subclass__(cls, **kwargs):
        if cls.__dict__.get("target", cls.target) not in TARGETS:
            raise TypeError(f"{cls.__name__}.target must be one of {', '.join(map(repr, TARGETS))}, "
                            f"not {cls.__dict__.get('target')!r}")
        if "input_name" not in cls.__dict__:
            cls.input_name = "logits" if cls.target in ("binary", "sign") else "predictions"
        # a binary loss's link is the logit unless it declares its own; a subclass of a binary loss that keeps
        # its formula keeps its link too (a subclass of the exponential loss lost its half-logit: its best
        # constant came out twice the minimiser's and its probabilities miscalibrated, found in review)
        parent = cls.__mro__[1]
        same_formula = (getattr(parent, "target", None) == "binary" and parent is not ElementwiseLoss
                        and not writes_own_formula(cls))
        if "link" not in cls.__dict__ and cls.target == "binary" and cls.link is not LOGIT and not same_formula:
            cls.link = LOGIT
        if "task" not in cls.__dict__ and cls.__dict__.get("name"):
            labels = cls.target in ("binary", "sign")
            cls.task = Task.BINARY if labels else Task.REGRESSION
            if cls.over_last_axis == "sum" and labels:  # (a sum over outputs of a value target is a regression)
                cls.task = Task.MULTILABEL
        if cls.over_last_axis == "sum":
            cls.reduces_last_axis = True
        super().__init_subclass__(**kwargs)
        # after the options are declared: a formula reads on self only the numeric ones
        check_formulas(cls, options=[f for f in cls.Options.__dataclass_fields__ if f not in ("reduction", "impl")])

    # -- the formula (a subclass writes these) ----------------------------------------------------
    def value(self, xp, z, y):
        """The loss of one element ``z`` against its target ``y``."""
        raise NotImplementedError(f"{type(self).__name__} writes no value formula")

    def derivative(self, xp, z, y):
        """``d value / d z``."""
        raise NotImplementedError(f"{type(self).__name__} writes no derivative")

    @classmethod
    def writes_derivative(cls) -> bool:
        """Whether the class writes its own ``derivative`` (a value-only class is compiled for its value)."""
        return cls.derivative is not ElementwiseLoss.derivative

    def second_derivative(self, xp, z, y):
        """``d^2 value / d z^2`` (for ``hessian_diag`` and GBDT objectives)."""
        raise NotImplementedError(f"{type(self).__name__} writes no second derivative: hessian_diag "
                                  "needs one")

    def check_target(self, xp, target) -> None:
        """Further checks of the target's values (after the kind's own); raise with ``_checks.fail``.
        A subclass that has one and also narrows :meth:`target_domain` to what it checks keeps the
        compiled path's single pass; otherwise the compiled path runs it first, on the whole target."""

    def target_domain(self) -> str:
        """The key of :data:`TARGETS` whose values this loss takes, with these options: the declared
        ``target``, or a narrower one that :meth:`check_target` enforces. The compiled kernel flags a row
        holding a value outside it (the reference then raises the precise error)."""
        return self.target

    # -- the common machinery -------------------------------------------------------------------
    def _spans_last_axis(self, ndim: int) -> bool:
        if self.over_last_axis == "sum":
            return True
        return self.over_last_axis == "mean" and ndim >= 2

    def _prepare(self, xp, input, target) -> Target:
        if self.over_last_axis == "sum" and input.ndim == 0:
            raise _checks.fail(self.input_name, "an array with a label axis [..., K]", "a 0-d array")
        if self.over_last_axis and input.ndim >= 1 and self._spans_last_axis(input.ndim) and input.shape[-1] == 0:
            raise _checks.fail(self.input_name, "at least one value per example along the last axis",
                               f"shape {tuple(input.shape)}")
        _checks.same_shape("target", target, self.input_name, tuple(input.shape))
        if not _array.isdtype(xp, target.dtype, ("real floating", "integral", "bool")):
            raise _checks.fail("target", f"a real-valued array of {TARGETS[self.target]}", f"dtype {target.dtype}")
        # the values are checked where they are read: in _terms (the reference) and, in the same pass
        # that computes the loss, by the compiled kernel, which flags a row holding a value outside
        # target_domain(), so the reference raises (a separate pass over the target cost more than the
        # kernel itself on a 50M-element call)
        return Target(dense=_array.as_dtype(xp, target, input.dtype))

    def _checked_target(self, xp, target):
        """``(target, outside)``: ``target`` with its values checked (raising the precise error), as the formula
        reads it (a ``"sign"`` target as -1/+1); ``outside`` where a value lies outside :meth:`target_domain`
        when no check could read them (a traced or lazy array, :func:`losskit._checks.nan_where`), else None."""
        read = _checks.no_nan(xp, target, "target")
        given, kind = target, self.target
        if kind == "binary":
            _checks.in_unit_interval(xp, target, "target")
        elif kind == "sign":
            if _array.concrete_bool(xp.all(IN_DOMAIN[kind](target))) is False:
                raise _checks.fail("target", "labels 0/1 or -1/+1", "another value")
            target = xp.where(target > 0, xp.ones_like(target), -xp.ones_like(target))
        elif kind in ("count", "positive") and _array.concrete_bool(xp.any(~IN_DOMAIN[kind](target))):
            raise _checks.fail("target", f"{TARGETS[kind]} for {type(self).__name__}",
                               f"a minimum of {float(xp.min(target)):.6g}")
        self.check_target(xp, target)
        domain = IN_DOMAIN.get(self.target_domain())
        return target, None if read or domain is None else ~domain(given)

    def _terms(self, plan, order):
        xp, z = plan.xp, plan.input
        y, outside = self._checked_target(xp, plan.target.dense)
        math = ArrayMath(xp, z)
        loss = self.value(math, z, y)
        d = None
        if order == 1:
            d = self.derivative(math, z, y)
        elif order == 2:
            d = self.second_derivative(math, z, y)
        if outside is not None:  # traced or lazy: NaN where the target is outside the domain (a formula's
            # branches may not carry a NaN target through: the hinge's derivative where(y z < 1, -y, 0) gave 0)
            loss = _checks.nan_where(xp, loss, outside)
            d = None if d is None else _checks.nan_where(xp, d, outside)
        if plan.spans_last_axis:
            if self.over_last_axis == "mean":
                loss = xp.mean(loss, axis=-1)
                d = None if d is None else d / z.shape[-1]
            else:
                loss = xp.sum(loss, axis=-1)
        return Terms(loss, d if order == 1 else None, d if order == 2 else None)

    def per_label(self):
        if self.over_last_axis != "sum":
            return None
        return _per_label_class(type(self))(**self.options.as_dict())

    def _kernel(self, plan, arrays, with_grad):
        cls = type(self)
        if cls.check_target is not ElementwiseLoss.check_target and cls.target_domain is ElementwiseLoss.target_domain:
            self._checked_target(plan.xp, plan.target.dense)  # a check the kernel cannot make: made here
        return _compiled.formula(self, plan, arrays, with_grad)

    _kernel.__name__ = "formula"


@functools.cache
def _per_label_class(cls: type) -> type:
    """``cls`` with each element its own example: same formula, no registry name."""
    return type(f"{cls.__name__}PerLabel", (cls,), {"name": None, "over_last_axis": None, "reduces_last_axis": False,
                                                    "__module__": cls.__module__})


def multilabel_form(cls: type, class_name: str, name: str, aliases: tuple = ()) -> type:
    """The multi-label form of an elementwise binary loss ``cls``: one example is a row of K labels,
    its loss the sum of ``cls``'s over them (as :class:`MultilabelCrossEntropy` sums BCE). The
    formula is ``cls``'s own, so the kernel is too."""
    doc = (f"Multi-label form of :class:`{cls.__name__}`: logits ``[..., K]``, target ``[..., K]``, one "
           f"example per row, its loss the sum over the K labels; ``weight [...]`` per row.\n\n"
           f"    Elementwise formula, gradient and Hessian as :class:`{cls.__name__}`.")
    return type(class_name, (cls,), {"name": name, "over_last_axis": "sum", "reduces_last_axis": True,
                                     "task": "multilabel", "aliases": aliases, "__doc__": doc,
                                     "__module__": cls.__module__})
