"""JAX forms of the fused linear losses: ``jax.custom_vjp`` functions over the core's chunked sweeps.

Imported by :mod:`losskit.jax` (``import losskit.jax``); ``import losskit`` never imports JAX.

Design note: the core sweeps (:mod:`losskit.losses.logprobs`, the post-training losses built on
it) are written against the array API, so under ``jit`` they trace into XLA as they are: the
chunk loop unrolls into one gemm, one softmax pass and two gemms per chunk, and no N x V array
is ever an operand. A fused loss's forward rule returns the value and keeps the three gradients
its sweep computed as the residuals; the backward multiplies them by the upstream gradient.
:func:`linear_logprobs` cannot know its upstream gradient in the forward, so its backward is a
second sweep (:func:`losskit.linear_logprobs_vjp`). Integer targets get a ``float0`` cotangent;
the other arrays a loss reads (reference log-probs, advantages) are constants: differentiating one
raises a :class:`~losskit.LossInputError` naming it (its cotangent would be a silent 0), but for a
distillation's teacher, held constant by design (zero cotangents: GKD trains the student).
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks
from ..losses.linear import check_scalar_reduction
from ..losses.logprobs import TokenLogProbs
from ..losses.logprobs import linear_logprobs as _core_logprobs
from ..losses.logprobs import linear_logprobs_vjp as _core_logprobs_vjp

__all__ = ["fused_linear", "linear_logprobs", "host_target"]


def _zero_cotangent(value):
    if value is None:
        return None
    if not jnp.issubdtype(jnp.result_type(value), jnp.inexact):
        return np.zeros(jnp.shape(value), dtype=jax.dtypes.float0)
    return jnp.zeros_like(value)


def fused_linear(function, hidden, classifier, target, *, bias=None, extras=None, aux=(), held=(),
                 one_program=False, **options):
    """``function(hidden, classifier, target, *, bias, **extras, **options) -> (value, (grad_hidden,
    grad_classifier, grad_bias)[, aux])``, a core fused linear loss, as a differentiable JAX
    function of ``hidden``, ``classifier`` and ``bias`` (see the module note). With ``aux`` (names
    of statistics), returns ``(value, {name: statistic})``; the statistics carry no gradient. ``held``: the
    extras held constant by design (a distillation's teacher), whose cotangent is 0 even when differentiated;
    differentiating any other extra raises a :class:`~losskit.LossInputError` naming it. ``one_program``: an
    eager call runs ``function`` as one cached ``jax.jit`` program (:func:`_program`; losskit's own forms, whose
    value checks of a known target run before it); else op by op, as called (a function made per call, or one
    that reads its arrays' values, as it is)."""
    check_scalar_reduction(options.get("reduction"))
    extras = {name: jnp.asarray(value) for name, value in (extras or {}).items() if value is not None}
    ids = _ids_of(function)
    if ids is not None:  # a loss of class ids: a known target's ids checked here (see _known_ids_in_range)
        _known_ids_in_range(target, classifier, _checks.ignore_index(options.get("ignore_index", ids.default)))
    # a NumPy target closed over by a jitted function: one library in the sweep (None: the JSD without labels)
    target = None if target is None else jnp.asarray(target)
    if aux:
        options["aux"] = True

    run = (_program(_sweep, function, options, tuple(aux)) if one_program
           else functools.partial(_sweep, function, options, tuple(aux)))

    @jax.custom_vjp
    def value(hidden, classifier, bias, target, extras):
        loss, _, stats = run(hidden, classifier, bias, target, extras)
        return loss, stats

    def forward(hidden, classifier, bias, target, extras):
        # symbolic zeros: each argument comes as a CustomVJPPrimal that says whether it is differentiated
        traced = [name for name, array in extras.items() if getattr(array, "perturbed", False) and name not in held]
        # its cotangent would be a silent 0. (losskit.torch takes a constant that requires grad as the constant it is
        # documented to be, detached: a reference model's log-probs computed outside no_grad require grad, and
        # requires_grad asks for no derivative in them, where jax.grad in one does)
        if traced:
            raise _checks.fail(traced[0], "an array held constant: the fused losses differentiate hidden, classifier "
                               "and bias alone", "an array jax.grad differentiates",
                               "wrap it in jax.lax.stop_gradient")
        hidden, classifier, bias, target = (getattr(a, "value", a) for a in (hidden, classifier, bias, target))
        extras = {name: getattr(array, "value", array) for name, array in extras.items()}
        loss, grads, stats = run(hidden, classifier, bias, target, extras)
        return (loss, stats), (grads, target, extras)

    def backward(residuals, cotangents):
        (grad_hidden, grad_classifier, grad_bias), target, extras = residuals
        upstream = cotangents[0]
        if isinstance(upstream, jax.custom_derivatives.SymbolicZero):  # only the statistics were used
            upstream = jnp.zeros((), grad_hidden.dtype)
        return (upstream * grad_hidden, upstream * grad_classifier,
                None if grad_bias is None else upstream * grad_bias, _zero_cotangent(target),
                jax.tree_util.tree_map(_zero_cotangent, extras))

    value.defvjp(forward, backward, symbolic_zeros=True)
    loss, stats = value(hidden, classifier, bias, target, extras)
    return (loss, {name: jax.lax.stop_gradient(s) for name, s in stats.items()}) if aux else loss


def _sweep(function, options, aux, hidden, classifier, bias, target, extras):
    result = function(hidden, classifier, target, bias=bias, **extras, **options)
    stats = {name: jnp.asarray(result[2][name]) for name in aux} if aux else {}
    return result[0], result[1], stats


def _program(sweep, function, options: dict, *constants):
    """``sweep(function, options, *constants, *arrays)`` as a function of the arrays alone: one ``jax.jit``
    program per function and options (cached), so that an eager call (``jax.grad`` without ``jit``) runs the
    sweep as one XLA program, compiled once per shape. Op by op, each of the sweep's small ops was compiled at
    each new shape: a first eager ``jax.grad`` of ``linear_logprobs`` on 4 x 64 tokens lowered 176 programs, now
    9 (``python -m benchmarks.jax_eager --fused``, BENCHMARKS.md). Under the caller's ``jit`` the program is
    inlined. Options that are not hashable (an array) keep the op-by-op call. An option's type is part of the
    key: ``True``, ``1`` and ``1.0`` are equal and hash alike, and a program traced (and its options checked) for
    one was taken for the others (found in review: ``chunk_size=True`` passed after ``chunk_size=1``, and the
    other way round a refused call refused the next)."""
    key = tuple((name, type(value), value) for name, value in sorted(options.items()))
    try:
        return _cached_program(sweep, function, key, constants)
    except TypeError:  # an unhashable option
        return functools.partial(sweep, function, options, *constants)


@functools.lru_cache(maxsize=128)
def _cached_program(sweep, function, options: tuple, constants: tuple):
    return jax.jit(functools.partial(sweep, function, {name: value for name, _, value in options}, *constants))


def host_target(target):
    """``target`` as NumPy when its values are known (a NumPy array, or a JAX array that is no tracer: one closed
    over by a jitted function), else None. Under ``jit`` every value the traced sweep derives from it is a
    tracer, even from a constant, so its value checks (ids in the vocabulary, a token kept in a sequence) read
    nothing there: a known target is checked here, before the trace, as the eager call checks it."""
    if target is None or isinstance(target, jax.core.Tracer):
        return None
    return np.asarray(target)


def _ids_of(function):
    """``function``'s ``ignore_index`` parameter, the mark of a loss of class ids (its default that function's own:
    linear_cross_entropy's None, the post-training losses' -100), or None: a loss of dense targets (the multi-label
    BCE's 0/1 rows were checked as class ids, and the -100 assumed for every function was named in the errors;
    found in review)."""
    try:
        return inspect.signature(function).parameters.get("ignore_index")
    except (TypeError, ValueError):  # a callable without a signature: no check of its own
        return None


def _known_ids_in_range(target, classifier, ignore_index) -> None:
    """A known target's ids checked against the vocabulary, before the trace (:func:`host_target`: the sweep's
    own check reads no value under jit, where an id outside the vocabulary gave NaN)."""
    host = host_target(target)
    if host is not None:
        _checks.labels_in_range(np, host, np.shape(classifier)[0], ignore_index)


def linear_logprobs(hidden, classifier, target, *, bias=None, temperature=1.0, ignore_index=-100, entropy=False,
                    accuracy=False, chunk_size=None):
    """:func:`losskit.linear_logprobs` as a differentiable JAX function of ``hidden``, ``classifier``
    and ``bias``: its backward is the chunked :func:`losskit.linear_logprobs_vjp` sweep. The entropy
    and the accuracy carry no gradient."""
    options = {"temperature": temperature, "ignore_index": ignore_index, "chunk_size": chunk_size}
    _known_ids_in_range(target, classifier, _checks.ignore_index(ignore_index))

    statistics = _program(_logprobs_sweep, _core_logprobs, options)
    vjp = _program(_logprobs_vjp_sweep, _core_logprobs_vjp, options)

    @jax.custom_vjp
    def sweep(hidden, classifier, bias, target):
        return statistics(hidden, classifier, bias, target)

    def forward(hidden, classifier, bias, target):
        return sweep(hidden, classifier, bias, target), (hidden, classifier, bias, target)

    def backward(residuals, cotangents):
        hidden, classifier, bias, target = residuals
        return (*vjp(hidden, classifier, bias, target, cotangents[0]), _zero_cotangent(target))

    sweep.defvjp(forward, backward)
    entropy, accuracy = _checks.flag(entropy, "entropy"), _checks.flag(accuracy, "accuracy")
    logps, entropy_, accuracy_ = sweep(hidden, classifier, bias, jnp.asarray(target))
    if not (entropy or accuracy):
        return logps
    return TokenLogProbs(logps, jax.lax.stop_gradient(entropy_) if entropy else None,
                         accuracy_ if accuracy else None)


def _logprobs_sweep(function, options, hidden, classifier, bias, target):
    return tuple(function(hidden, classifier, target, bias=bias, entropy=True, accuracy=True, **options))


def _logprobs_vjp_sweep(function, options, hidden, classifier, bias, target, upstream):
    return tuple(function(hidden, classifier, target, upstream, bias=bias, **options))
