"""The ``Loss`` object: one call path, ``entry (checks) -> plan -> kernel -> result``.

Design note: a loss class declares what it is (``name``, ``task``, ``link``, ``hessian``,
``best_constant``, ``gbdt_builtin``: the registry, heads, GBDT objectives, the torch and JAX
layers and ``eval`` read these, and keep no list of names) and supplies only what is particular to
it: how the target is checked and resolved (``_prepare``, returning a
:class:`~losskit.plan.Target`), the per-example loss with its derivatives on the array-API path
(``_terms``), and, optionally, its compiled kernel (``_kernel``; a hand-written kernel serves its
own class only, see :meth:`Loss.kernel_name`). :class:`~losskit.ElementwiseLoss` writes all three
from one formula. Weights, the reduction rule, dtype handling (half precision computed in float32)
and the scaling of the gradient are settled once, in :meth:`Loss.plan`, and every path consumes
that plan. The alternative of letting each path derive them was how an option came to be written
six times.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import _array, _checks
from .. import reduction as _reduction
from ..plan import Plan, Target
from . import _compiled, registry
from .declaration import IDENTITY, Hessian, Link, Option, Task, expected_number
from .options import Options


@dataclass
class Terms:
    """Per-example pieces a loss computes in the working dtype: ``loss`` has the batch shape;
    ``grad`` / ``hess`` the canonical input shape, derivatives of each example's own loss."""

    loss: Any
    grad: Any = None
    hess: Any = None


class Loss(ABC):
    """Base of every losskit loss. Options are set once; data is given per call.

    Call forms, each taking ``(input, target, *, weight=None, normalizer=None)``:

    * ``loss(input, target)`` -> the reduced value;
    * ``loss.value_and_grad(input, target, out=None)`` -> ``(value, d value / d input)``; with
      ``out`` (an array of the input's shape, library and dtype, NumPy or torch; it may be the
      input itself) the gradient is written there and ``out`` is returned (if the call raises,
      ``out``'s contents are unspecified);
    * ``loss.grad(input, target)`` -> ``d value / d input``;
    * ``loss.hessian_diag(input, target)`` -> the diagonal of ``d^2 value / d input^2``.

    ``weight`` is one non-negative number per example (the batch shape); ``normalizer``
    replaces the denominator of ``"mean"``. See :mod:`losskit.reduction` for the rule.
    """

    # -- what a loss declares (read by the registry, heads, GBDT, torch, JAX and eval) -----------
    #: the registry name, also the function form's name (None: an abstract base, not registered)
    name: ClassVar[str | None] = None
    #: the head task this loss serves (None: none); a name is read as :meth:`Task.parse` reads it
    task: ClassVar[Task | None] = None
    #: short names a head accepts for it (``lk.BinaryHead(loss="focal")``)
    aliases: ClassVar[tuple] = ()
    #: the link whose inverse maps the input to the predicted mean (heads' activation, eval)
    link: ClassVar[Link] = IDENTITY
    #: the kind of the Hessian in the input
    hessian: ClassVar[Hessian] = Hessian.DIAGONAL
    #: the curvature a GBDT objective hands over: "weight" (the true Hessian, floored where it is negative
    #: or underflows; where ``hessian`` is ZERO, the row's weight); "majorize" (where ZERO: the
    #: majorise-minimise curvature of a loss piecewise linear in a residual); "irls", for a robust loss of
    #: the error ``e`` that is a concave function of ``e^2`` (Huber, pseudo-Huber, log-cosh): ``l'(e) / e``,
    #: the curvature of the quadratic that touches it at ``e`` and lies above it (a leaf's Newton step is
    #: then a weighted mean of residuals, where the true Hessian, near 0 far out, took steps of thousands);
    #: "bounded", for a loss that is not convex everywhere (focal losses): the true Hessian but at least
    #: ``|g| / 4``, so that a row's Newton step is at most four margin units where the curvature is negative
    #: or near 0 (a floor of ``1e-6 w`` alone let a leaf of rare positives step by 10^4)
    gbdt_curvature: ClassVar[str] = "weight"
    #: True when the value is a sum of terms of the error ``input - target`` alone, so that
    #: ``d value / d target = -d value / d input`` (a framework layer's target cotangent, exact and
    #: with no autodiff through a formula whose intermediates may overflow where the value does not)
    of_error: ClassVar[bool] = False
    #: True when an example is a row over a class axis (the ``axis`` option says which)
    over_classes: ClassVar[bool] = False
    #: True when the value is plain arithmetic on the inputs, with no select, log or exp (the
    #: squared and absolute errors): XLA's CPU backend sums such a value whole (YNNPACK), so losskit.jax
    #: gives it no guard (``_sums_separately``)
    arithmetic_value: ClassVar[bool] = False
    #: True when the value and the gradient of ``_terms`` share intermediate arrays (the Gaussian NLL's ``y - m``
    #: and ``exp(-s / 2)``), which XLA writes out as full arrays: losskit.jax then computes them as two passes
    #: that share nothing, as it does an elementwise formula's (``_two_passes``)
    shares_terms: ClassVar[bool] = False
    #: True when the weighted mean loss of a constant input ``c`` is least at ``c = link(weighted mean
    #: target)`` (its gradient in ``c`` is a positive factor times ``link^-1(c) - mean``): the squared error,
    #: BCE without pos_weight or smoothing, the Tweedie deviances, the exponential loss. The best constant is
    #: then that closed form, not a search (which met deviances that overflow about claims in the thousands)
    mean_matching: ClassVar[bool] = False
    #: name of the first argument in messages: "logits", "probs" or "predictions"
    input_name = "logits"
    #: True when one example spans the last axis of the (canonical) input
    reduces_last_axis = False
    #: the record of this loss's options (validated at construction)
    Options = Options

    #: whether subclasses may run the ``_kernel`` this class declares (True only for a kernel made
    #: from the subclass's own formula): a hand-written kernel serves its own class alone
    _kernel_inherits: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        curvature_declared = "gbdt_curvature" in vars(cls)
        # a GBDT library's built-in is this class's loss: a subclass (Poly-1 of softmax CE, KL of it)
        # computes other math, and one that is the same loss declares it again
        if "gbdt_builtin" not in vars(cls):
            cls.gbdt_builtin = Loss.gbdt_builtin
        # a fact about a formula holds for that formula: a subclass that writes its own declares it anew
        if writes_own_formula(cls):
            for fact in ("of_error", "arithmetic_value", "shares_terms", "mean_matching"):
                if fact not in vars(cls):
                    setattr(cls, fact, False)
            # and so does a best constant in closed form (the absolute error's median, the hinge's majority
            # sign): a user's pinball loss on AbsoluteError started a GBDT at the median (found in review)
            if "_best_constant" not in vars(cls):
                cls._best_constant = Loss._best_constant
            if "gbdt_curvature" not in vars(cls):  # "irls" or "majorize" rests on the parent's formula's shape
                cls.gbdt_curvature = Loss.__dict__["gbdt_curvature"]
        if vars(cls).get("hessian") is Hessian.INDEFINITE and not curvature_declared:
            cls.gbdt_curvature = "bounded"  # a Hessian that can be negative, floored alone, let leaves step by 10^4
        declared = {k: v for k, v in vars(cls).items() if isinstance(v, Option)}
        if declared or cls.__init__ is Loss.__init__:  # keyword arguments named after the options
            _declare_options(cls, declared)
        if cls.__dict__.get("task") is not None:
            cls.task = Task.parse(cls.task, f"{cls.__name__}.task")
        if cls.__dict__.get("name"):
            registry.register(cls)

    def __new__(cls, *args: Any, **options: Any):
        # a catalogue class with an __init__ of its own (keyword parameters written out): an unknown keyword
        # named with the ones it takes, not Python's TypeError from that __init__. A user's class with an
        # __init__ of its own may take keywords of its own: its __init__ says what it takes.
        if options and getattr(cls.__init__, "__module__", "").startswith("losskit."):
            _checks.known_options(options, _option_names(cls.Options), cls.__name__)
        return super().__new__(cls)

    def __init__(self, **options: Any):
        if options:  # an unknown keyword: named, with the ones this loss takes
            _checks.known_options(options, _option_names(self.Options), type(self).__name__)
        self.options = self.Options(**options)
        # the options read as attributes (loss.reduction), each an instance attribute: the
        # __getattr__ fallback below costs a microsecond a read, several reads a call
        for field in self.options.__dataclass_fields__:
            if not hasattr(type(self), field):  # a class attribute of that name wins, as before
                self.__dict__[field] = getattr(self.options, field)

    def __setattr__(self, name: str, value: Any) -> None:
        options = self.__dict__.get("options")
        if options is not None and (name == "options" or name in options.__dataclass_fields__) \
                and not _unchanged(value, options if name == "options" else getattr(options, name)):
            # every path reads the one record checked at construction (the compiled kernels, the torch and JAX
            # forms): an attribute set afterwards changed the array-API path's formula alone, so a call's
            # value depended on its size (HuberLoss().delta = 5: 4.5 at e = 3 on one path, 2.5 on the other)
            raise AttributeError(f"{type(self).__name__}.{name} is fixed at construction (every path reads the "
                                 f"options checked then): use loss.replace({name}=...) for a loss with another value"
                                 if name != "options" else f"{type(self).__name__}.options is fixed at construction")
        super().__setattr__(name, value)

    def __getattr__(self, name: str):
        options = self.__dict__.get("options")
        if options is not None and name in options.__dataclass_fields__:
            return getattr(options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.options.as_dict().items())
        return f"{type(self).__name__}({items})"

    def replace(self, **changes: Any) -> Loss:
        """A loss of the same class with ``changes`` to its options (checked as at construction),
        for example ``loss.replace(reduction="none")`` for per-example values. Shapes as ``self``.

        >>> import losskit as lk
        >>> lk.HuberLoss(delta=2.0).replace(reduction="sum")
        HuberLoss(reduction='sum', impl='auto', delta=2.0)
        """
        _checks.known_options(changes, _option_names(self.Options), type(self).__name__)
        return type(self)(**self.options.replace(**changes).as_dict())

    def _spans_last_axis(self, ndim: int) -> bool:
        return self.reduces_last_axis

    def example_axis(self, ndim: int) -> int | None:
        """The input axis one example spans (the class or value axis) for an ``ndim``-D input,
        in the caller's layout; None when each element is an example. A framework layer uses it
        to spread a per-example upstream gradient over that axis."""
        if self.over_classes:
            return self.options.axis % ndim
        return ndim - 1 if ndim >= 1 and self._spans_last_axis(ndim) else None

    # -- the public call forms -------------------------------------------------------------
    def __call__(self, input, target, *, weight=None, normalizer=None):
        return self.compute(self.plan(input, target, weight=weight, normalizer=normalizer), 0)[0]

    def value_and_grad(self, input, target, *, weight=None, normalizer=None, out=None):
        if out is not None:
            _compiled.check_out(out, input, self.input_name)
        return self.compute(self.plan(input, target, weight=weight, normalizer=normalizer), 1, out)

    def grad(self, input, target, *, weight=None, normalizer=None):
        return self.value_and_grad(input, target, weight=weight, normalizer=normalizer)[1]

    def hessian_diag(self, input, target, *, weight=None, normalizer=None):
        return self.compute(self.plan(input, target, weight=weight, normalizer=normalizer), 2)[1]

    def sum_and_weight(self, input, target, *, weight=None):
        r"""``(sum_i w_i l_i, sum_i w_i)``: the two parts of ``"mean"``, for combining partial results.

        Means of several batches (files, chunks, workers) combine exactly as
        ``sum(totals) / sum(weights)``, which a mean of means does not. ``w_i`` is the full
        example weight (``weight`` times ``class_weight[y_i]``, 0 for ignored labels). Both are
        0-d arrays of the input's library, in the working dtype (the input's; float32 for half
        precision, whose sums of a batch pass 65504); lazy for Dask input.

        >>> import numpy as np, losskit as lk
        >>> total, w = lk.SoftmaxCrossEntropy().sum_and_weight(np.zeros((2, 2)), np.array([0, 1]))
        >>> round(float(total / w), 6)
        0.693147
        """
        plan = self.plan(input, target, weight=weight, reduction="sum")
        plan = dataclasses.replace(plan, dtype=plan.input.dtype)  # totals stay in the working dtype
        total = self.compute(plan, 0)[0]
        xp = plan.xp
        count = xp.sum(plan.weight) if plan.weight is not None else \
            xp.asarray(float(plan.n_examples), dtype=plan.input.dtype, device=_array.device(plan.input))
        return total, xp.astype(count, plan.dtype)

    # -- what a subclass supplies ------------------------------------------------------------
    @abstractmethod
    def _prepare(self, xp, input, target) -> Target:
        """Check ``target`` against ``input`` (canonical layout) and resolve it."""

    @abstractmethod
    def _terms(self, plan: Plan, order: int) -> Terms:
        """Per-example loss and, up to ``order``, its elementwise derivatives (array-API path)."""

    def best_constant(self, target, weight=None) -> float:
        """The constant input that minimises the weighted mean loss over ``target`` (NumPy, one
        value per row): the start of a GBDT (``base_score``) and the baseline of ``demo``/``eval``.
        0 where one constant per output has no single value (several outputs or units) and for no rows.
        The target and weight are checked as the loss checks them; :meth:`_best_constant` finds it."""
        import numpy as np

        label = np.asarray(target, dtype=np.float64)
        units = self.units_per_value
        if label.ndim > 1 or (self.reduces_last_axis and units != 1):
            return 0.0  # one constant per output has no single value: start at 0
        if not np.all(np.isfinite(label)):
            raise _checks.fail("target", "finite values (a best constant of NaN or inf starts nothing)",
                               "NaN or inf")
        if not label.size:
            return 0.0
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        # the loss's own checks of the target's values and the weight (NumPy's average raised its own errors)
        shape = label.shape if units is None else label.shape + (units,)
        self.replace(reduction="sum", impl="xp")(np.zeros(shape), label, weight=w)
        if w is not None and not np.sum(w) > 0:
            raise _checks.fail("weight", "weights with a positive sum (the weighted mean of no weight is "
                               "undefined)", "a sum of 0")
        return float(self._best_constant(label, w))

    def _best_constant(self, label, weight) -> float:
        """:meth:`best_constant` on a checked, finite, non-empty float64 ``label [N]`` and ``weight``
        (None or ``[N]``, a positive sum). ``link(weighted mean)`` for a loss that declares
        ``mean_matching``, else a bounded 1-D minimisation around it."""
        import numpy as np
        from scipy.optimize import minimize_scalar

        total = self.replace(reduction="mean")
        centre = self.link.of_mean(float(np.average(label, weights=weight)))
        if self.mean_matching:
            return centre
        spread = 10.0 * (float(np.std(label)) + 1.0)
        # searched as an offset u from the centre; where the centre is far from 0 against the spread, on targets
        # moved by it if the loss reads the error z - y alone (one rounding, exact for nearby values): about a
        # centre of 1.7e9 the method's tolerance (sqrt(eps) |x|) passed the bracket's width (25) and it stopped
        # at its first point, 4.7 off; about 1e6 the input's spacing (1e-10) made two nearby points one value
        # and Huber's search end at the mean. (Near 0 the first parabolic step lands on the centre exactly,
        # the mean for the squared error, which a search on targets moved by it finds to sqrt(eps) only.)
        moved = self.of_error and self.link is IDENTITY and abs(centre) > spread
        shifted = label - centre if moved else label
        base = 0.0 if moved else centre
        result = minimize_scalar(lambda u: float(total(np.full(label.shape, base + u), shifted, weight=weight)),
                                 bounds=(-spread, spread), method="bounded", options={"xatol": 1e-10})
        return centre + float(result.x)

    #: the same loss taken on probabilities (the class), for predictions given as probabilities; not
    #: inherited (read from the class's own ``__dict__``): set with :func:`same_loss_on_logits_and_probabilities`
    probability_form: ClassVar[type | None] = None
    #: on a loss on probabilities, the same loss taken on logits (the class): what a GBDT, whose trees add
    #: up margins, trains instead; not inherited, as ``probability_form``
    logits_form: ClassVar[type | None] = None

    @property
    def units_per_value(self) -> int | None:
        """How many units one target value takes when it is more than one (a head's outputs, a GBDT's margins
        per row): the quantiles of :class:`QuantileLoss`, the Gaussian NLL's mean and log-variance. None for
        a loss of one unit per target value."""
        return None

    def per_label(self) -> Loss | None:
        """For a multi-label loss (a row's loss is a sum over its labels): the loss of one label, with
        the same options, as an elementwise loss (per-label tables in ``eval``); else None."""
        return None

    def gbdt_builtin(self, library: str):
        """``(objective, params)`` of ``library``'s ("xgboost" or "lightgbm") built-in objective that
        is this loss with these options, or None where the library has none. Not inherited: a subclass
        that is the same loss declares it again (``gbdt_builtin = Parent.gbdt_builtin``)."""
        return None

    @classmethod
    def kernel_name(cls) -> str | None:
        """The name of the compiled kernel this class runs (its own, or one made from its own formula);
        None when it has none. The torch-native and XLA paths pick their formulation by it."""
        return _kernel_name(cls)

    def _kernel(self, plan: Plan, host: dict, with_grad: bool):
        """This loss's compiled kernel on the plan's host (NumPy) arrays: ``(scaled_loss, grad)``,
        or None when a row was flagged. Only losses with a kernel override it."""
        return _compiled.UNHANDLED

    def _check_input(self, xp, input, source_dtype) -> None:  # noqa: B027 - optional hook
        """Check the input's values (probabilities...); ``input`` is already in the working dtype."""

    def _canonical(self, xp, input, target):
        """Move axes so the class axis (if any) is last. Returns ``(input, target, restore)``
        with ``restore`` mapping a gradient back to the caller's layout (None: identity)."""
        return input, target, None

    # -- entry -> plan ---------------------------------------------------------------------
    def plan(self, input, target, *, weight=None, normalizer=None, reduction: str | None = None) -> Plan:
        """Check a call's arguments and resolve it into a :class:`~losskit.plan.Plan`."""
        name = self.input_name
        _checks.given(**{name: input, "target": target})
        xp, arrays = _array.namespace(**{name: input, "target": target, "weight": weight})
        input, target, weight = arrays[name], arrays["target"], arrays["weight"]
        _checks.known_shapes(**arrays)
        _checks.floating(xp, input, name)
        source_dtype = input.dtype
        work = _array.compute_dtype(xp, input.dtype)
        normalizer = _checks.normalizer(normalizer, xp, work)
        if work != input.dtype:
            input = xp.astype(input, work)
        input, target, restore = self._canonical(xp, input, target)
        self._check_input(xp, input, source_dtype)
        resolved = self._prepare(xp, input, target)
        spans = self._spans_last_axis(input.ndim)
        batch_shape = tuple(input.shape[:-1]) if spans else tuple(input.shape)
        weight = _example_weight(xp, weight, batch_shape, work)
        if resolved.weight is not None:
            if weight is None:
                weight = resolved.weight
            elif getattr(self.options, "class_weight", None) is None:  # (an ignore mask of 0/1: nothing to overflow)
                weight = weight * resolved.weight
            else:
                weight = _weight_product(xp, weight, resolved.weight, work)
        reduction_ = self.reduction if reduction is None else reduction
        scale, _ = _reduction.scale(xp, weight, math.prod(batch_shape), reduction_, normalizer, input)
        return Plan(xp=xp, input=input, dtype=source_dtype, target=resolved, weight=weight, scale=scale,
                    reduction=reduction_,
                    smoothing=getattr(self.options, "label_smoothing", 0.0), spans_last_axis=spans,
                    restore=restore)

    # -- plan -> kernel -> result ----------------------------------------------------------
    def compute(self, plan: Plan, order: int, out=None):
        """``(value, derivative)`` of a plan: the gradient for ``order`` 1, the Hessian diagonal for 2
        (None for 0). The compiled kernel where one takes the call, else :meth:`reference`."""
        result = _compiled.UNHANDLED
        if self.options.impl != "xp" and order < 2:
            result = _compiled.run(self, plan, order == 1, out)
        # (an empty batch has nothing to compute: the reference's 0, as for "auto", not an error that would stop a
        # training loop at its empty last batch)
        # (second order has no kernel: a Hessian is the reference's under every impl, and GBDT objectives and torch's
        # double backward of a "fused" loss ask for one)
        if result is _compiled.UNHANDLED and self.options.impl == "fused" and order < 2 \
                and _array.size(plan.input) != 0:
            raise _checks.fail("impl", '"auto" or "xp" for this call (no compiled kernel handles it: NumPy or '
                               'torch CPU float32/float64 arrays of at least one axis, the value or gradient of a '
                               'loss with a kernel, numba installed)', '"fused"')
        if result is None or result is _compiled.UNHANDLED:  # flagged rows, or no kernel: the reference
            result = self.reference(plan, order)
            if out is not None and order == 1:
                out[...] = result[1]
                result = (result[0], out)
        return result

    def reference(self, plan: Plan, order: int):
        """The array-API path, on any backend: the reference every other path equals."""
        xp = plan.xp
        if plan.n_examples == 0:  # nothing to compute (and Dask's max over an empty batch raises)
            zeros = xp.zeros_like(plan.input)
            empty = xp.zeros(plan.batch_shape, dtype=plan.input.dtype, device=_array.device(plan.input))
            terms = Terms(empty, zeros, zeros)
        else:
            with _array.quiet(xp):
                terms = self._terms(plan, order)
        value = xp.astype(_reduction.combine(xp, terms.loss, plan.weight, plan.scale, plan.reduction),
                          plan.dtype)
        if order == 0:
            return value, None
        scale = plan.scale[..., None] if plan.spans_last_axis and plan.scale.ndim else plan.scale
        derivative = terms.grad if order == 1 else terms.hess
        if plan.weight is not None:  # a weight-0 example contributes 0 even where its terms are inf
            derivative = xp.where(scale == 0, xp.zeros_like(derivative), derivative)
        scaled = scale * derivative
        if plan.restore is not None:
            scaled = plan.restore(scaled)
        return value, xp.astype(scaled, plan.dtype)


def _weight_product(xp, weight, class_weight, work):
    """``weight * class_weight``, refused naming ``weight`` where two finite factors overflow the working dtype:
    the mean was a silent NaN, and the two paths' gradients differed (inf against NaN; found in review). Only a
    loss with class weights pays this pass: an ignore mask alone cannot make a product overflow."""
    with _array.quiet(xp):
        product = weight * class_weight
        overflow = _array.concrete_bool(xp.any(xp.isinf(product)))  # (None under a trace or lazily: as computed)
    if overflow:  # (each factor is finite: both were checked)
        raise _checks.fail("weight", f"weights whose products with the class weights fit {work}",
                           "a product that overflows to inf", "scale the weights (or the class weights) down")
    return product


def _unchanged(value, current) -> bool:  # (not cached: lists are unhashable, and True hashed as 1, found in review)
    """Whether setting ``value`` over an option's ``current`` changes nothing (a subclass's ``__init__`` that
    assigns what it passed on, as it did before options were fixed): the same object, or an equal number or
    string."""
    if value is current:
        return True
    if isinstance(value, str) or isinstance(current, str):
        return isinstance(value, str) and isinstance(current, str) and value == current
    number = (int, float)
    return isinstance(value, number) and isinstance(current, number) and not isinstance(value, bool) \
        and not isinstance(current, bool) and value == current


def _option_names(record: type) -> tuple:
    """The fields of an options record (asked at every construction)."""
    return tuple(f.name for f in dataclasses.fields(record))


def require_loss_object(value, name: str = "loss") -> None:
    """``value`` must be a loss object, not its class (``HuberLoss()``, not ``HuberLoss``): a class passed
    where an instance goes failed later, deep inside, in Python's own words."""
    if isinstance(value, type) and issubclass(value, Loss):
        raise _checks.fail(name, f"a loss object (an instance: {value.__name__}(...))", f"the class {value.__name__}")
    if not isinstance(value, Loss):
        raise _checks.fail(name, "a losskit Loss object", f"{type(value).__name__} {value!r:.80}")


@functools.cache
def _kernel_name(cls) -> str | None:
    """:meth:`Loss.kernel_name`, once per class (it is asked on every call)."""
    owner = next(c for c in cls.__mro__ if "_kernel" in c.__dict__)
    if owner is Loss or (owner is not cls and not owner._kernel_inherits):
        return None  # a subclass never runs a kernel written for other math
    return getattr(cls._kernel, "__name__", None)


def writes_own_formula(cls) -> bool:
    """Whether ``cls`` itself writes a formula (``value``, ``derivative`` or ``_terms``): the facts about its
    parent's formula (of_error, mean_matching, a closed-form best constant, a link) are then not its own."""
    return any(k in vars(cls) for k in ("value", "derivative", "_terms"))


#: the call's own keywords and arguments, which no option may be named
_CALL_NAMES = frozenset({"input", "target", "weight", "normalizer", "logits", "probs", "predictions", "out", "self"})


def _declare_options(cls, declared: dict) -> None:
    """Turn ``name = lk.option(...)`` class attributes into the class's options record and keyword
    arguments (a declared option is then read as ``self.name``, through the record)."""
    base = cls.Options
    for key in declared:
        # a keyword of the call or a name the class has: `weight = lk.option()` met inspect's raw "duplicate
        # parameter name", `hessian = lk.option()` ran in the kernel while the array path read the class's
        # declaration (found in review)
        if key in _CALL_NAMES or any(key in vars(klass) for klass in cls.__mro__[1:] if klass is not object):
            raise TypeError(f"{cls.__name__}.{key}: an option may not be named {key!r}, a name the loss's call or "
                            f"its class already uses; give the option another name")
    if declared:
        cls.Options = _options_record(cls, base, declared)
    for key in declared:
        delattr(cls, key)
    params = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
              for f in dataclasses.fields(cls.Options)]
    params = params[len(dataclasses.fields(base)):] + params[:len(dataclasses.fields(base))]

    def __init__(self, **options):
        Loss.__init__(self, **options)

    __init__.__signature__ = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
                                                *params])
    described = [f"    {key}: {spec.doc} (default {spec.default!r}; "
                 f"{expected_number(spec.low, spec.high, spec.low_open, spec.high_open)})"
                 for key, spec in declared.items() if spec.doc]
    if described:  # what help() shows beside the signature
        __init__.__doc__ = "Options:\n" + "\n".join(described)
    cls.__init__ = __init__


def _options_record(cls: type, base: type, declared: dict) -> type:
    def post_init(record):
        base.__post_init__(record)
        for key, spec in declared.items():
            record._set(key, spec.check(getattr(record, key), key))

    fields = [(key, Any, dataclasses.field(default=spec.default)) for key, spec in declared.items()]
    record = dataclasses.make_dataclass(f"{cls.__name__}Options", fields, bases=(base,), frozen=True, eq=False,
                                        namespace={"__post_init__": post_init})
    # where pickle finds it (a loss, a torch module or a fitted model that holds one is saved by reference to
    # its class): ``<module>.<LossClass>.Options``, not make_dataclass's ``types.<Name>Options``
    record.__module__, record.__qualname__ = cls.__module__, f"{cls.__qualname__}.Options"
    return record


def _example_weight(xp, weight, batch_shape, work):
    if weight is None:
        return None
    if not _array.isdtype(xp, weight.dtype, ("real floating", "integral")):
        raise _checks.fail("weight", "a real-valued array", f"dtype {weight.dtype}")
    _checks.same_shape("weight", weight, "one value per example", batch_shape)
    _array.refuse_past(xp, weight, work, "weight")
    weight = _array.as_dtype(xp, weight, work)
    return _checks.non_negative(xp, weight, "weight")


def same_loss_on_logits_and_probabilities(on_logits: type, on_probabilities: type) -> None:
    """Declare ``on_logits`` and ``on_probabilities`` the one loss taken on logits and on probabilities
    (each class's ``probability_form`` / ``logits_form``, both ways at once)."""
    on_logits.probability_form = on_probabilities
    on_probabilities.logits_form = on_logits
