"""JAX layers: each loss and head as a ``jax.custom_vjp`` function with losskit's analytic gradient.

Import it explicitly (``import losskit.jax``); ``import losskit`` never imports JAX.

Design note: the core already runs on JAX arrays and traces under ``jit``/``vmap``, so
``jax.grad`` of a core loss works by differentiating its forward expression. These wrappers
instead give JAX the analytic gradient with respect to the logits, computed from the core's call
plan: the forward rule computes the value and the gradient together and keeps the gradient as
the residual, so the backward is one multiplication. Softmax CE and Poly-1 with integer
labels, KL divergence with probability targets, distillation and the Crammer-Singer hinge have their own XLA row sweeps
(:mod:`losskit.jax.rows`: a row's sums in one pass or a few, one pass for the gradient, no
log-softmax written out; softmax CE and Poly-1 take one plain sum, which YNNPACK computes whole, of
the exps with the label's left out; KL's rows take their normaliser and entropy from plain sums, and
a row sure of its class its terms below the max from one more; distillation one variadic row
reduction; the hinge a max and a min over the classes, no ``argmax``);
every other loss runs its own
array-API formula (``_terms``, the reference's text, where XLA fuses the elementwise ops; an
:class:`~losskit.ElementwiseLoss`'s value and derivative as two passes, :func:`_two_passes`), with the
sums of a loss whose examples are not class-axis rows kept from YNNPACK (:class:`_SeparateSums`), or, for a loss that
declares ``value_in_arithmetic`` (log-cosh: its value without a select), handed to YNNPACK whole
(:class:`_ArithmeticValue`). A row whose max is +-inf or NaN: the softmax CE
and Poly-1 sweep shifts it as the reference does (:func:`rows.shifted`: selects, no branch) and its
own arithmetic then gives the reference's exact limits, as the hinge's does; KL, distillation and
softmax focal, whose plain sums YNNPACK takes without a select, send such a batch to the core's
reference expression (``lax.cond``
on one ``isfinite`` reduction). Why not that ``lax.cond`` for softmax CE too: the common call then
paid two more ``[N, K]`` temporaries (62.5 MiB at 256 x 32000 float32, against 0.5 MiB without
it: XLA keeps the branch's arrays apart from the call's output; issue 15, BENCHMARKS.md). Every
other loss's formula is exact there as written. The code stays in XLA ops, so it runs on GPU and
TPU as well. XLA on CPU flushes subnormal results to zero; where a row's loss would be made of
such terms, the softmax CE and KL sweeps re-sum them shifted (``rows._below_with_subnormals``),
so a sure row's loss survives wherever the loss itself is a normal number. Integer labels get a
``float0`` (no) cotangent. A loss of the error alone (``Loss.of_error``: the squared and absolute
errors, Huber, smooth L1, pseudo-Huber, log-cosh) gives its target minus the input's cotangent.
Other float targets (soft labels, a teacher's probabilities), weights and
the normalizer get their true cotangents, by autodiff through the core's forward: a zero there
would silently stop a trained teacher's gradient. A cotangent nobody asks for is never computed
(``symbolic_zeros``: the forward rule is told which arguments are differentiated), so an eager
``jax.grad`` in the logits alone does not run that autodiff (it did: 2.2x the time). Second derivatives: the backward
is written in differentiable ``jnp`` ops, so reverse-over-reverse (``jax.jacrev(jax.grad(f))``)
works and matches the core's ``hessian_diag`` (an elementwise loss's derivative is differentiated
by its declared ``second_derivative``: :class:`_DeclaredCurvature`), and so does ``jax.hessian`` (forward
over reverse: forward mode through the backward's ``jnp`` ops); forward mode through the loss itself
(``jax.jvp``, ``jax.jacfwd(f)``) is not defined for a ``custom_vjp`` function, and JAX says so when asked.
An eager call on CPU arrays runs as one compiled program once the NumPy path has checked its values
(:func:`_eager_program`: a small call of a catalogue loss), not op by op.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _array, _checks
from .. import heads as _heads
from .. import reduction as _reduction
from .._checks import is_number
from ..losses import REGISTRY, catalogue
from ..losses.base import require_loss_object
from ..losses.elementwise import ElementwiseLoss
from ..losses.formula import ArrayMath
from . import rows as _rows

__all__ = [*catalogue(), "loss_fn", "head", "linear_logprobs", "fused_linear", "linear_grpo_loss", "linear_jsd_loss",
           "linear_preference_loss"]


def _is_float(value) -> bool:
    return value is not None and jnp.issubdtype(jnp.result_type(value), jnp.floating)


def _formula(plan, *, loss):
    """Any other loss: its own array-API formula (``_terms``) on the traced arrays; XLA fuses the
    elementwise ops into a pass for the value and one for the gradient."""
    result = loss._terms(plan, 1)
    return result.loss, result.grad


class _ArithmeticValue:
    """``loss`` whose ``value`` is its ``value_in_arithmetic`` (the same branches without a select),
    so that its own ``_terms`` sums a value that XLA hands to YNNPACK whole: one read of the inputs
    and nothing written, where :class:`_SeparateSums` costs a written value and a read back.

    The derivative reads the inputs and its constants from behind an ``optimization_barrier``, so
    that XLA shares nothing between the two passes: a subexpression or a broadcast constant shared
    with a YNNPACK fusion is written to memory as a full array (log-cosh: ``|e|`` and nine constants,
    measured). The barrier goes on the derivative's side, an XLA loop, which takes a scalar operand
    at no cost; YNNPACK broadcasts a scalar operand as a pass of its own (10 multiplications by
    one: 54 ms against 20 ms with literal constants, 50M elements)."""

    def __init__(self, loss):
        self._loss = loss

    def __getattr__(self, name):
        return getattr(self._loss, name)

    def value(self, xp, z, y):
        return self._loss.value_in_arithmetic(xp, z, y)

    def derivative(self, xp, z, y):
        z, y = jax.lax.optimization_barrier((z, y))
        # the loss's XLA form of its derivative where it declares one (log-cosh: tanh)
        derivative = getattr(self._loss, "derivative_in_xla", self._loss.derivative)

        def formula(z, y):
            return derivative(_UnsharedConstants(jnp, z), z, y)

        return _curved(self._loss, formula)(z, y) if _declares_curvature(self._loss) else formula(z, y)


class _UnsharedConstants(ArrayMath):
    """``ArrayMath`` whose constants are 0-d arrays behind an ``optimization_barrier``: XLA cannot
    share them (their broadcasts) with another pass (see :class:`_ArithmeticValue`)."""

    def _array(self, value):
        if isinstance(value, (int, float)):
            return jax.lax.optimization_barrier(jnp.asarray(value, dtype=self._like.dtype))
        return value

    def constant(self, value):
        return self._array(value)

    def zeros_like(self, x):
        return self._array(0.0)

    def ones_like(self, x):
        return self._array(1.0)


class _DeclaredCurvature:
    """``loss`` whose ``derivative`` is differentiated by its declared ``second_derivative``
    (``jax.custom_jvp``), not by autodiff through the derivative's formula, so that reverse-over-
    reverse gives ``hessian_diag``'s values. Why: a formula written for one pass, not for its own
    derivative, can cancel there. Pseudo-Huber's ``e (1 + h) / (h (1 + h))`` differentiates to terms
    of size 1 / h whose sum is 1 / h^3: a relative error of eps h^2, 1e12 eps at large |e| / delta.
    The target's tangent is ``-second_derivative`` for a loss of the error (``of_error``), else
    autodiff of the derivative in the target. :class:`_ArithmeticValue`'s derivative takes the same
    rule (log-cosh's ``tanh`` autodiffed to ``1 - tanh^2``, 0 for |e| > 19)."""

    def __init__(self, loss):
        self._loss = loss

    def __getattr__(self, name):
        return getattr(self._loss, name)

    def derivative(self, xp, z, y):
        loss = self._loss
        return _curved(loss, lambda z, y: loss.derivative(ArrayMath(jnp, z), z, y))(z, y)


def _curved(loss, formula):
    """``formula(z, y)``, ``loss``'s derivative, as a ``jax.custom_jvp`` whose tangent in ``z`` is the
    declared ``second_derivative`` (see :class:`_DeclaredCurvature`)."""

    @jax.custom_jvp
    def derivative(z, y):
        return formula(z, y)

    @derivative.defjvp
    def tangent(primals, tangents):
        z, y = primals
        dz, dy = tangents
        curvature = loss.second_derivative(ArrayMath(jnp, z), z, y)
        # the target's tangent: -curvature for a loss of the error, else autodiff of the formula in y
        along_y = -curvature * dy if loss.of_error else jax.jvp(lambda y: formula(z, y), (y,), (dy,))[1]
        return derivative(z, y), curvature * dz + along_y

    return derivative


def _declares_curvature(loss) -> bool:
    return isinstance(loss, ElementwiseLoss) and type(loss).second_derivative is not ElementwiseLoss.second_derivative


def _two_passes(plan, *, loss):
    """An elementwise formula's value and derivative as two passes that share nothing: the derivative
    reads the inputs from behind an ``optimization_barrier``. Why: XLA writes each subexpression the
    two share to memory as a full array (pseudo-Huber's ``h``, its mask and ``1 / (h (1 + h))``: three
    arrays), where recomputing it in each pass is free next to the memory traffic. Measured at 50M
    float32 (``jit(value_and_grad)``, one process, alternating): pseudo-Huber 255 -> 159 ms, sigmoid
    focal 654 -> 298, exponential 267 -> 177, ASL 834 -> 559, Poisson 207 -> 182; the rest within 5%
    either way (Tweedie 1.05x slower). BCE's hand-written terms share one ``exp`` and stay one pass
    (1.03x slower in two)."""
    value = loss._terms(plan, 0).loss
    z, target = jax.lax.optimization_barrier((plan.input, plan.target))
    curved = _DeclaredCurvature(loss) if _declares_curvature(loss) else loss
    grad = type(loss)._terms(curved, dataclasses.replace(plan, input=z, target=target), 1).grad
    return value, grad


def _arithmetic_formula(plan, *, loss):
    result = type(loss)._terms(_ArithmeticValue(loss), plan, 1)
    return result.loss, result.grad


def _select_guard(array):
    """``array`` unchanged (NaN stays NaN), behind a select that XLA cannot fold away."""
    return jnp.where(jnp.isnan(array), jnp.asarray(jnp.nan, array.dtype), array)


class _SeparateSums:
    """``jax.numpy`` whose ``sum`` of a floating array reads it behind :func:`_select_guard`.

    Why: XLA's CPU backend hands a sum to YNNPACK together with the add / max / abs / divide ops
    that feed it, and then writes each of their operands, a broadcast zero included, to memory as a
    full array: a hinge or pseudo-Huber value cost 3-5 passes over memory instead of one (measured:
    ``benchmarks/jax_layer.py``), BCE's five (``exp(-|z|)``, its ``log1p``, ``1 - y`` and the two
    guarded products; optax's three). YNNPACK takes no select, so a formula stays one loop fusion
    and the sum reads its result once: BCE 1.6x optax at 8M elements (was 1.1x), 1.5x at 50M (was
    0.99x). It serves every loss whose examples are not rows over a class axis
    (:func:`_sums_separately`); a softmax row's sums are several, and each read back costs more
    than the operands YNNPACK writes (softmax CE with soft labels 37 -> 47 ms, Crammer-Singer 15 ->
    20 ms at 256 x 32000, measured). A sum over an axis of a few terms (at most :data:`_ADDED_AXIS`: the
    quantile loss's per-example sum over its quantiles) is additions in the formula's loop instead, no
    reduction at all: guarded, its terms were written out and read back (0.48x the ``jnp`` formula, then
    1.08-1.11x; BENCHMARKS.md). The per-example value is read behind the guard too
    (:func:`_xla_value_and_grad`): YNNPACK took those additions, or a sum of terms (the Gaussian NLL's), into
    the reduction and wrote each operand (the quantile loss 0.42x again with a later XLA)."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def sum(x, /, *args, **kwargs):
        floating = jnp.issubdtype(x.dtype, jnp.floating)
        axis = kwargs.get("axis", args[0] if args else None)
        if floating and len(args) + len(kwargs) == 1 and isinstance(axis, int) and 1 <= x.shape[axis] <= _ADDED_AXIS:
            # a few units per example (the quantile loss's): added one by one in the formula's own loop, where a
            # guarded reduction wrote the [..., units] terms out and read them back (2.3x the jnp formula's time)
            parts = [jax.lax.index_in_dim(x, i, axis % x.ndim, keepdims=False) for i in range(x.shape[axis])]
            return functools.reduce(jnp.add, parts)
        return jnp.sum(_select_guard(x) if floating else x, *args, **kwargs)


#: an axis of at most this many terms is summed by :class:`_SeparateSums` as additions in the formula's loop
_ADDED_AXIS = 8


_SEPARATE_SUMS = _SeparateSums()


def _sums_separately(loss) -> bool:
    """Whether ``loss``'s formula runs with :class:`_SeparateSums`: every loss but those over a
    class axis (``over_classes``) and those of a plain arithmetic value (``arithmetic_value``: the
    squared error, whose ``e * e`` YNNPACK squares and sums itself from the written ``e``; 8M
    float32 values: 9.7 ms so, as optax, against 15.5 ms with the guard; the same at 50000 x 1000. The
    absolute error, whose ``|z - y|`` YNNPACK sums reading the inputs: 50M float32, 123.2 -> 93.6 ms,
    0.75x -> 1.08x the ``jnp`` formula; ``benchmarks.catalogue``, BENCHMARKS.md)."""
    return not (loss.over_classes or loss.arithmetic_value)


def _xla_value_and_grad(loss, plan, terms, scales_itself=False):
    """``terms(plan) -> (per-example loss, gradient)`` reduced and scaled (``scales_itself``: the gradient comes
    scaled, by :func:`losskit.jax.rows.scaled_grad`)."""
    per_example, grad = terms(plan)
    if plan.xp is _SEPARATE_SUMS:
        # the reduction reads the per-example value behind a select, as every sum of these losses does: XLA
        # handed the sum to YNNPACK with the adds and broadcasts that feed it and wrote each of their operands
        # (the Gaussian NLL's three terms and a broadcast constant, the quantile loss's three slices)
        per_example = _select_guard(per_example)
    # jnp, not the plan's namespace: a call of NumPy arrays alone plans on NumPy, and its terms, JAX arrays
    # (traced in the custom_vjp), reached NumPy's where (softmax focal of NumPy logits and labels raised
    # TracerArrayConversionError)
    value = _reduction.combine(jnp, per_example, plan.weight, plan.scale, plan.reduction)
    return value.astype(plan.dtype), (grad if scales_itself else _rows.scaled_grad(plan, grad)).astype(plan.dtype)



def _value_and_grad(loss, logits, target, weight, normalizer, with_grad: bool):
    """``(value, grad)`` of one call; a small eager call runs as one compiled program."""
    if any(isinstance(a, jax.Array) for a in (logits, target, weight)):
        # beside a JAX array a NumPy one (JAX hands a custom_vjp's NumPy argument on as its own NumPy-backed
        # literal) was 'arrays of two libraries': made JAX's. All NumPy stays NumPy (differentiating with
        # respect to NumPy logits: the literal is their value)
        logits, target, weight = (jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in (logits, target, weight))
    program = _eager_program(loss, logits, target, weight, normalizer, with_grad)
    if program is not None:
        # op by op, each of the call's 20-70 ops compiled a program of its own at each new shape (about 35 ms
        # each on a CPU): an eager jax.grad of softmax CE at 256 x 10 took 2.1 s the first time, 0.1 s after
        number = float(normalizer) if is_number(normalizer) else normalizer  # an int would be another program
        return program(logits, target, weight, number)
    return _traced_value_and_grad(loss, logits, target, weight, normalizer, with_grad)


#: the dtypes whose JAX CPU arrays the NumPy path reads as they are
_HOST_DTYPES = frozenset(map(np.dtype, ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                        "uint32", "uint64", "bool")))
#: eager calls of at most this many logits run as one program: above, the arithmetic outweighs the ops'
#: compiles, and the values' check on the host (a NumPy reference forward) would add a fifth or more
EAGER_PROGRAM_UP_TO = 1 << 20


def _eager_program(loss, logits, target, weight, normalizer, with_grad: bool):
    """The compiled program of a small eager call of one of losskit's own losses on CPU JAX arrays of dtypes
    NumPy reads (concrete: not a trace of jit, grad or vmap), once the NumPy path has checked the call's
    values; None for any other call. The checks (labels in range, probabilities in [0, 1], a target in the
    loss's domain) run where the arithmetic reads the values, and no check can read a traced array: so the
    array-API reference runs on NumPy views (no compile), its value discarded, raising what the op-by-op
    path raises. A loss of one's own keeps the op-by-op path: its formula may read module globals that
    change between calls. One program per loss class and options but ``impl`` (the functional forms make a new
    loss object at each call; a catalogue loss is its options)."""
    options = loss.options.as_dict()
    key = tuple(item for item in options.items() if item[0] != "impl")
    try:
        hash(key)
    except TypeError:  # an option given as an array
        return None
    if not type(loss).__module__.startswith("losskit.") or set(vars(loss)) - {*options, "options"}:
        return None
    arrays = [a for a in (logits, target, weight) if a is not None]
    if normalizer is not None and not is_number(normalizer):
        arrays.append(normalizer)
    for array in arrays:  # a NumPy array or a number among them keeps the op-by-op path and its errors
        if not isinstance(array, jax.Array) or isinstance(array, jax.core.Tracer) \
                or np.dtype(array.dtype) not in _HOST_DTYPES \
                or any(device.platform != "cpu" for device in array.devices()):
            return None
    if logits.size > EAGER_PROGRAM_UP_TO:
        return None
    host = [None if a is None or is_number(a) else np.asarray(a) for a in (logits, target, weight, normalizer)]
    with np.errstate(all="ignore"):  # the value is discarded: its overflow is the program's to give
        loss.reference(loss.plan(host[0], host[1], weight=host[2], normalizer=host[3]), 0)
    return _program(type(loss), key, with_grad)


@functools.lru_cache(maxsize=256)
def _program(cls, options, with_grad: bool):
    """The ``jax.jit`` program of ``cls`` with ``options`` (:func:`_eager_program`). The normalizer, a number or an
    array, is an argument: one that changes per batch compiles nothing new."""
    loss = cls(**dict(options))

    def run(logits, target, weight, normalizer):
        return _traced_value_and_grad(loss, logits, target, weight, normalizer, with_grad)

    return jax.jit(run)


def _traced_value_and_grad(loss, logits, target, weight, normalizer, with_grad: bool):
    plan = loss.plan(logits, target, weight=weight, normalizer=normalizer)
    order = 1 if with_grad else 0
    if plan.restore is not None:  # a moved class axis: the reference
        return loss.reference(plan, order)
    plan = _rows.checked_plan(loss, plan)
    sweep = _rows.sweep_for(loss, plan, with_grad)
    if sweep is None:  # the loss's own formula and limits
        if not with_grad:
            return loss.reference(plan, order)
        if type(loss).kernel_name() == "formula" and hasattr(loss, "value_in_arithmetic"):
            return _xla_value_and_grad(loss, plan, functools.partial(_arithmetic_formula, loss=loss))
        if _sums_separately(loss):
            plan = dataclasses.replace(plan, xp=_SEPARATE_SUMS)
        # two passes for an elementwise formula and a loss that declares shared terms (Loss.shares_terms)
        passes = _two_passes if type(loss).kernel_name() == "formula" or loss.shares_terms else _formula
        return _xla_value_and_grad(loss, plan, functools.partial(passes, loss=loss))
    maxima = tuple(jnp.max(rows, axis=-1) for rows in sweep.rows(plan))

    def sweep_run():
        value, grad = _xla_value_and_grad(loss, plan, functools.partial(sweep.run, maxima=maxima), sweep.scales_itself)
        return (value, grad) if with_grad else (value, None)

    if sweep.limits:  # the sweep gives a row whose max is +-inf (or NaN) its exact limits itself
        return sweep_run()
    # else such a row takes the reference (only the branch taken runs); -inf entries below a finite
    # max are exact in the sweeps
    finite = functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(m)) for m in maxima])
    return jax.lax.cond(finite, sweep_run, lambda: loss.reference(plan, order))


def loss_fn(loss):
    """``f(logits, target, weight=None, normalizer=None)``: the core ``loss`` object as a
    ``jax.custom_vjp`` function with the analytic gradient (see the module note)."""
    require_loss_object(loss)

    # a JAX array option (a class weight, focal's per-class alpha) is an argument of the custom_vjp, not a constant
    # it closes over: jit, vmap and grad then see it (closed over, jax.grad of one met UnexpectedTracerError, and
    # jit(grad) or grad(jit) other errors, none naming it), and a differentiated one is refused by name
    traced = {field.name: getattr(loss.options, field.name) for field in dataclasses.fields(loss.options)
              if isinstance(getattr(loss.options, field.name), jax.Array)}

    def with_options(options):
        return loss.replace(**options) if options else loss

    @jax.custom_vjp
    def f(logits, target, weight, normalizer, options):
        return _value_and_grad(with_options(options), logits, target, weight, normalizer, False)[0]

    def forward(logits, target, weight, normalizer, options):
        # symbolic zeros: each argument comes as a CustomVJPPrimal that says whether it is
        # differentiated, so a cotangent nobody asked for is never computed (an eager call paid
        # for all of them: autodiff through the core's forward for a float weight, say)
        differentiated = [name for name, value in options.items() if getattr(value, "perturbed", False)]
        if differentiated:  # losskit.jax gives no option a gradient: a silent 0 otherwise
            raise _checks.fail(differentiated[0], "an array held constant: losskit.jax differentiates logits, "
                               "target, weight and normalizer, never a loss's options",
                               "an array jax.grad differentiates", "wrap it in jax.lax.stop_gradient")
        options = {name: getattr(value, "value", value) for name, value in options.items()}
        asked = tuple(getattr(a, "perturbed", False) for a in (logits, target, weight, normalizer))
        if asked[1] and getattr(loss, "target", None) == "sign":
            # the hinge losses read the target as signs: its derivative is 0 almost everywhere, which a
            # differentiated target got without a word where optax's hinge gives -s z (found in review)
            raise _checks.fail("target", f"labels held constant ({type(loss).__name__} reads its target as signs "
                               "+-1, with no derivative in them)", "an array jax.grad differentiates",
                               "wrap it in jax.lax.stop_gradient")
        logits, target, weight, normalizer = (getattr(a, "value", a) for a in (logits, target, weight, normalizer))
        value, grad = _value_and_grad(with_options(options), logits, target, weight, normalizer, True)
        return value, (grad, logits, target, weight, normalizer, asked, options)

    def backward(residuals, upstream):
        grad, logits, target, weight, normalizer, asked, options = residuals
        if isinstance(upstream, jax.custom_derivatives.SymbolicZero):
            return (None, None, None, None, None)
        active = with_options(options)
        if upstream.ndim:  # reduction="none": one upstream value per example
            axis = active.example_axis(logits.ndim)
            upstream_b = upstream if axis is None else jnp.expand_dims(upstream, axis)
        else:
            upstream_b = upstream
        others = {"target": target, "weight": weight, "normalizer": normalizer}
        floats = {k: v for (k, v), wanted in zip(others.items(), asked[1:], strict=True) if wanted and _is_float(v)}
        cotangents = {}
        if active.of_error and "target" in floats and jnp.shape(target) == jnp.shape(logits):
            # d value / d target = -d value / d input, exactly (Loss.of_error)
            cotangents["target"] = (-(grad * upstream_b)).astype(jnp.result_type(target))
            del floats["target"]
        if floats:  # autodiff through the forward, for the float inputs only (see the module note)
            def value(inputs):
                merged = {**others, **inputs}
                return active(logits, merged["target"], weight=merged["weight"],
                              normalizer=merged["normalizer"])

            _, vjp = jax.vjp(value, floats)
            cotangents.update(vjp(upstream)[0])
        rest = tuple(cotangents.get(k) for k in ("target", "weight", "normalizer"))
        return (grad * upstream_b if asked[0] else None, *rest, None)

    f.defvjp(forward, backward, symbolic_zeros=True)

    def call(logits, target, weight=None, normalizer=None):
        # a list works eagerly and under jit alike: made an array here (under jit the custom_vjp traced its
        # elements apart: a raw TracerArrayConversionError; under grad a 'list of dtype object')
        logits, target, weight = (_listed(name, value) for name, value in
                                  (("logits", logits), ("target", target), ("weight", weight)))
        for name, value in (("logits", logits), ("target", target), ("weight", weight)):
            if value is not None and _array.is_array(value) and not isinstance(value, (jax.Array, np.ndarray)):
                # a torch tensor, say: JAX's own TypeError named no argument
                raise _checks.fail(name, "a JAX or NumPy array (losskit.jax's functions run under JAX)",
                                   f"{type(value).__module__}.{type(value).__name__}",
                                   "for other arrays call the core loss (losskit.<Loss>)")
            if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind not in "biuf":
                # string labels, say: JAX's own TypeError named no argument
                raise _checks.fail(name, "real numbers or bools", f"a NumPy array of dtype {value.dtype}",
                                   "encode labels first (a head's encode)" if value.dtype.kind in "USO" else "")
        # NumPy arrays made JAX's here, as jit makes its arguments (float64 to float32 without x64): kept NumPy,
        # the backward's re-call met them beside the tracers of a differentiated target or weight and refused
        # the mix, and a NumPy namespace read a JAX normalizer as a number (its gradient silently 0)
        # (Python numbers too: an eager call of them planned on NumPy and gave a NumPy float64 where jit gave a
        # JAX float32, and grad warned of a float64 astype; found in review)
        logits, target, weight = (jnp.asarray(v) if isinstance(v, (np.ndarray, np.generic)) or _checks.is_number(v)
                                  else v for v in (logits, target, weight))
        if normalizer is not None:
            # here, where a number is still a number: inside the custom_vjp it is a traced array, whose
            # value the plan cannot check (a 0, negative or NaN normalizer gave a wrong loss without a word).
            # Any library's 0-d array will do (the custom_vjp makes it JAX's); integer logits: the plan says so
            dtype = jnp.result_type(logits)
            work = _array.compute_dtype(jnp, dtype) if jnp.issubdtype(dtype, jnp.floating) else None
            normalizer = _checks.normalizer(normalizer, jnp, work, library=False)
        return f(logits, target, weight, normalizer, traced)

    call.__doc__ = f"custom_vjp form of {loss!r}"
    return call


def _functional(name: str):
    cls, function = REGISTRY[name]

    def fn(logits, target, *, weight=None, normalizer=None, **options: Any):
        return loss_fn(cls(impl="xp", **options))(logits, target, weight, normalizer)

    fn.__name__ = name
    fn.__doc__ = (f"``jax.custom_vjp`` form of :func:`losskit.{name}` (same options and values; "
                  f"the backward is the analytic gradient).\n\n    " + (function.__doc__ or ""))
    return fn


# one custom_vjp function per registered loss, under the core function's name
globals().update({name: _functional(name) for name in catalogue()})


def _listed(name: str, value):
    """A Python list or tuple as a NumPy array (the core's errors for a ragged or non-numeric one); else
    ``value`` itself."""
    if isinstance(value, list | tuple):
        return _array.namespace(**{name: value})[1][name]
    return value


class _Head:
    """A core head whose ``loss`` is a ``jax.custom_vjp`` function; everything else is the core head's."""

    def __init__(self, core: _heads.Head):
        self.core = core
        self._loss = loss_fn(core.loss_object)

    def __getattr__(self, name):
        return getattr(self.core, name)

    def loss(self, logits, target, *, weight=None, normalizer=None):
        logits, target = _listed("logits", logits), _listed("target", target)
        logits, target, _ = self.core._align(jnp, logits, target)
        return self._loss(logits, target, weight, normalizer)

    def __repr__(self) -> str:  # the core head's, marked as this module's (it was the default object repr)
        return f"losskit.jax.head({self.core!r})"


def head(task: str, **options: Any) -> _Head:
    """:func:`losskit.head` whose ``loss`` is differentiable by ``jax.grad`` with the analytic gradient.

    ``head(task, ...).loss(logits, target)`` works under ``jit``, ``grad`` and ``vmap``;
    ``activation``, ``predict``, ``units`` and the rest are the core head's.
    """
    return _Head(_heads.head(task, **options))


from .linear import fused_linear, linear_logprobs  # noqa: E402 - the fused linear losses' JAX forms
from .linear_jsd import linear_jsd_loss  # noqa: E402
from .policy import linear_grpo_loss  # noqa: E402
from .preference import linear_preference_loss  # noqa: E402
