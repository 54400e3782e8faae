"""JAX layers: each loss and head as a ``jax.custom_vjp`` function with losskit's analytic gradient.

Import it explicitly (``import losskit.jax``); ``import losskit`` never imports JAX.

Design note: the core already runs on JAX arrays and traces under ``jit``/``vmap``, so
``jax.grad`` of a core loss works by differentiating its forward expression. These wrappers
instead give JAX the analytic gradient with respect to the logits, computed from the core's call
plan: the forward rule computes the value and the gradient together and keeps the gradient as
the residual, so the backward is one multiplication. Softmax CE with integer labels has its own
XLA sweep (:func:`_softmax_ce`: one variadic row reduction, the label's logit by a gather, no
second log-sum-exp); every other loss runs its own array-API formula (``_terms``, the reference's
text, where XLA fuses the elementwise ops), with the sums of an elementwise formula kept from
YNNPACK (:class:`_SeparateSums`). Inputs with +-inf take the core's reference expression in the
softmax sweep (``lax.cond`` on one ``isfinite`` reduction); the formulas are exact there as
written. The code stays in XLA ops, so it runs on GPU and TPU as well. XLA on CPU flushes
subnormal results to zero; where a row's loss would be made of such terms, the softmax sweep
re-sums them shifted (:func:`_below_with_subnormals`), so a sure row's loss survives wherever the
loss itself is a normal number. Integer labels get a
``float0`` (no) cotangent. Float targets (soft labels, a teacher's probabilities), weights and
the normalizer get their true cotangents, by autodiff through the core's forward: a zero there
would silently stop a trained teacher's gradient, and under ``jit`` XLA drops the computation
when nobody asks for those cotangents (eager calls pay for it). Second derivatives: the backward
is written in differentiable ``jnp`` ops, so reverse-over-reverse (``jax.jacrev(jax.grad(f))``)
works and matches the core's ``hessian_diag``; forward mode (``jax.jvp``, ``jax.hessian``) is
not defined for a ``custom_vjp`` function, and JAX says so when asked.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import heads as _heads
from .. import reduction as _reduction
from ..losses import REGISTRY, catalogue

__all__ = [*catalogue(), "loss_fn", "head", "linear_logprobs", "fused_linear", "linear_grpo_loss", "linear_jsd_loss",
           "linear_preference_loss"]


def _no_cotangent(value):
    return np.zeros(jnp.shape(value), dtype=jax.dtypes.float0)


def _is_float(value) -> bool:
    return value is not None and jnp.issubdtype(jnp.result_type(value), jnp.floating)


@jax.custom_jvp
def _row_sums(*terms):
    """Sums over the last axis of several same-shaped terms in one variadic reduction: one pass that
    XLA fuses with the terms' producers (separate sums would each recompute them)."""
    zeros = tuple(jnp.zeros((), t.dtype) for t in terms)
    return jax.lax.reduce(terms, zeros, lambda x, y: tuple(u + v for u, v in zip(x, y, strict=True)),
                          (terms[0].ndim - 1,))


@_row_sums.defjvp
def _row_sums_jvp(primals, tangents):
    # a sum is linear: its tangent is the sum of the tangents, written with jnp.sum so that reverse
    # mode (second derivatives through the forward rule) can transpose it
    return _row_sums(*primals), tuple(jnp.sum(t, axis=-1) for t in tangents)


#: the shift of the terms far below a row's max, by working dtype: a power of two, so that
#: d + shift is exact for every d <= -shift (a multiple of ulp(d), no larger than |d|), and small
#: enough that exp(d + shift) is normal where exp(d) would be subnormal (float32 below -87.3,
#: float64 below -708.4)
_FAR_SHIFT = {np.dtype(np.float32): 64.0, np.dtype(np.float64): 512.0}


def _softmax_ce(plan, row_max):
    """Softmax CE of integer labels, value and gradient in one row sweep."""
    labels = plan.target.labels
    z, a = plan.input, plan.smoothing
    k = z.shape[-1]
    d = z - row_max[..., None]
    e = jnp.exp(d)
    zero = jnp.zeros((), z.dtype)
    terms = (jnp.where(d < 0, e, zero), (d >= 0).astype(z.dtype))
    # the smoothing's sums only when it is on: of z - max, and of z / K for a row whose span
    # exceeds the dtype (z - max overflows there, z / K does not)
    sums = _row_sums(*terms, d, z / k) if a else _row_sums(*terms)
    below, ties = sums[0], sums[1] - 1
    below = _below_with_subnormals(z, row_max, below, ties)
    # the label's logit by a gather (N reads), not a masked sum over the row: the sweep above then
    # reads e alone (labels are in range here: an ignored one is 0, weighted 0)
    d_y = jnp.take_along_axis(z, labels[..., None], axis=-1, mode="clip")[..., 0] - row_max
    e_y = jnp.exp(d_y)  # flushed to 0 only where 1 - e_y is 1 anyway
    # lse - z_y = log1p(terms below the max) - (z_y - max): a sure row keeps its tiny loss
    log_norm = jnp.log1p(below + ties)
    loss = log_norm - (1 - a) * d_y
    if a:  # a (lse - mean z), with mean z - max from whichever sum is finite
        shifted_mean = jnp.where(jnp.isfinite(sums[2]), sums[2] / k, sums[3] - row_max)
        loss = loss - a * shifted_mean
    total = (1 + below + ties)[..., None]
    rest = (below + ties + (1 - e_y))[..., None]  # 1 - e_y first: exactly 0 when the label is the max
    onehot = labels[..., None] == jax.lax.broadcasted_iota(labels.dtype, z.shape, z.ndim - 1)
    # at the label p_y - 1 = -sum_{k != y} p_k: exact when p_y rounds to 1
    grad = jnp.where(onehot, a * (1 - 1 / k) - rest / total, e / total - a / k)
    return loss, grad


def _below_with_subnormals(z, row_max, below, ties):
    """``sum_{d_k < 0} e^(d_k)`` per row, with the terms XLA flushed to zero put back.

    XLA's CPU backend flushes subnormals to zero, so e^d of a term far below the max (float32:
    d < -87.3) is lost, and with it the whole loss of a sure row: [88, 0, 0] has loss
    2 e^-88 = 1.2e-38, a normal number made of two subnormal terms. When some row's terms other than
    one max sum to so little that K such terms could matter, the rows are summed again, those far
    terms as e^(d + shift), exact in the argument, scaled back once per row. The common call pays
    one comparison per row (``lax.cond``: only the branch taken runs; it takes the logits, already
    in memory, rather than z - max, which XLA would then write out for every call)."""
    info = jnp.finfo(z.dtype)
    lost = jnp.any(below + ties < z.shape[-1] * float(info.tiny) / float(info.eps))
    shift = _FAR_SHIFT[np.dtype(z.dtype)]

    def resum():
        d = z - row_max[..., None]
        far = d <= -shift
        e = jnp.exp(jnp.where(far, d + shift, d))
        zero = jnp.zeros((), d.dtype)
        near, far_sum = _row_sums(jnp.where((d < 0) & ~far, e, zero), jnp.where(far, e, zero))
        return near + far_sum * jnp.asarray(np.exp(-shift), d.dtype)

    return jax.lax.cond(lost, resum, lambda: below)


def _formula(plan, row_max=None, *, loss):
    """Any other loss: its own array-API formula (``_terms``) on the traced arrays; XLA fuses the
    elementwise ops into a pass for the value and one for the gradient."""
    result = loss._terms(plan, 1)
    return result.loss, result.grad


def _xla_terms(loss, plan):
    """The XLA formulation of ``loss`` for this plan: the softmax sweep for softmax CE with integer
    labels, else the loss's own formula; None where only the reference gives the answer (a moved
    class axis)."""
    if plan.restore is not None:
        return None
    if type(loss).kernel_name() == "softmax_ce" and plan.target.labels is not None:
        return _softmax_ce
    return functools.partial(_formula, loss=loss)


def _select_guard(array):
    """``array`` unchanged (NaN stays NaN), behind a select that XLA cannot fold away."""
    return jnp.where(jnp.isnan(array), jnp.asarray(jnp.nan, array.dtype), array)


class _SeparateSums:
    """``jax.numpy`` whose ``sum`` of a floating array reads it behind :func:`_select_guard`.

    Why: XLA's CPU backend hands a sum to YNNPACK together with the add / max / abs / divide ops
    that feed it, and then writes each of their operands, a broadcast zero included, to memory as a
    full array: a hinge or pseudo-Huber value cost 3-5 passes over memory instead of one (measured:
    ``benchmarks/jax_layer.py``). YNNPACK takes no select, so a formula stays one loop fusion and
    the sum reads its result once, as in optax. It serves the elementwise formulas (their values end
    in such ops); a plain ``e * e`` (squared error) is faster with YNNPACK doing the product, and
    keeps ``jax.numpy`` itself."""

    def __getattr__(self, name):
        return getattr(jnp, name)

    @staticmethod
    def sum(x, /, *args, **kwargs):
        return jnp.sum(_select_guard(x) if jnp.issubdtype(x.dtype, jnp.floating) else x, *args, **kwargs)


_SEPARATE_SUMS = _SeparateSums()


def _xla_value_and_grad(loss, plan, terms, row_max=None):
    per_example, grad = terms(plan, row_max)
    value = _reduction.combine(plan.xp, per_example, plan.weight, plan.scale, plan.reduction)
    scale = plan.scale[..., None] if plan.spans_last_axis and plan.scale.ndim else plan.scale
    grad = jnp.where(scale == 0, 0, scale * grad) if plan.weight is not None else scale * grad
    return value.astype(plan.dtype), grad.astype(plan.dtype)


def _value_and_grad(loss, logits, target, weight, normalizer, with_grad: bool):
    plan = loss.plan(logits, target, weight=weight, normalizer=normalizer)
    terms = _xla_terms(loss, plan)
    order = 1 if with_grad else 0
    if terms is None or (terms is not _softmax_ce and not with_grad):
        return loss.reference(plan, order)
    if terms is not _softmax_ce:  # the reference's formula and limits
        if type(loss).kernel_name() == "formula":  # an elementwise formula: see _SeparateSums
            plan = dataclasses.replace(plan, xp=_SEPARATE_SUMS)
        return _xla_value_and_grad(loss, plan, terms)
    row_max = jnp.max(plan.input, axis=-1)

    def native():
        value, grad = _xla_value_and_grad(loss, plan, terms, row_max)
        return (value, grad) if with_grad else (value, None)

    # a row whose max is +-inf (or NaN): the reference's exact limits; only the branch taken runs.
    # -inf entries below a finite max are exact in the native formula
    return jax.lax.cond(jnp.all(jnp.isfinite(row_max)), native, lambda: loss.reference(plan, order))


def loss_fn(loss):
    """``f(logits, target, weight=None, normalizer=None)``: the core ``loss`` object as a
    ``jax.custom_vjp`` function with the analytic gradient (see the module note)."""

    @jax.custom_vjp
    def f(logits, target, weight, normalizer):
        return _value_and_grad(loss, logits, target, weight, normalizer, False)[0]

    def forward(logits, target, weight, normalizer):
        value, grad = _value_and_grad(loss, logits, target, weight, normalizer, True)
        return value, (grad, logits, target, weight, normalizer)

    def backward(residuals, upstream):
        grad, logits, target, weight, normalizer = residuals
        if upstream.ndim:  # reduction="none": one upstream value per example
            axis = loss.example_axis(logits.ndim)
            upstream_b = upstream if axis is None else jnp.expand_dims(upstream, axis)
        else:
            upstream_b = upstream
        others = {"target": target, "weight": weight, "normalizer": normalizer}
        floats = {k: v for k, v in others.items() if _is_float(v)}
        cotangents = {}
        if floats:  # autodiff through the forward, for the float inputs only (see the module note)
            def value(inputs):
                merged = {**others, **inputs}
                return loss(logits, merged["target"], weight=merged["weight"],
                            normalizer=merged["normalizer"])

            _, vjp = jax.vjp(value, floats)
            (cotangents,) = vjp(upstream)
        rest = tuple(None if others[k] is None else cotangents[k] if k in cotangents
                     else _no_cotangent(others[k]) for k in ("target", "weight", "normalizer"))
        return (grad * upstream_b, *rest)

    f.defvjp(forward, backward)

    def call(logits, target, weight=None, normalizer=None):
        return f(logits, target, weight, normalizer)

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


class _Head:
    """A core head whose ``loss`` is a ``jax.custom_vjp`` function; everything else is the core head's."""

    def __init__(self, core: _heads.Head):
        self.core = core
        self._loss = loss_fn(core.loss_object)

    def __getattr__(self, name):
        return getattr(self.core, name)

    def loss(self, logits, target, *, weight=None, normalizer=None):
        logits, target, _ = self.core._align(jnp, logits, target)
        return self._loss(logits, target, weight, normalizer)


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
