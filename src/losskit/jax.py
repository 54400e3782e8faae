"""JAX layers: each loss and head as a ``jax.custom_vjp`` function with losskit's analytic gradient.

Import it explicitly (``import losskit.jax``); ``import losskit`` never imports JAX.

Design note: the core already runs on JAX arrays and traces under ``jit``/``vmap``, so
``jax.grad`` of a core loss works by differentiating its forward expression. These wrappers
instead give JAX the analytic gradient with respect to the logits: the forward's residuals are
the inputs themselves (no softmax kept), and the backward is the core's closed-form gradient,
which is exact where the autodiff of a stabilised forward can lose digits. Integer labels get a
``float0`` (no) cotangent. Float targets (soft labels, a teacher's probabilities), weights and
the normalizer get their true cotangents, by autodiff through the core's forward: a zero there
would silently stop a trained teacher's gradient, and under ``jit`` XLA drops the computation
when nobody asks for those cotangents (eager calls pay for it). Second derivatives: the backward
is written in differentiable ``jnp`` ops, so reverse-over-reverse (``jax.jacrev(jax.grad(f))``)
works and matches the core's ``hessian_diag``; forward mode (``jax.jvp``, ``jax.hessian``) is
not defined for a ``custom_vjp`` function, and JAX says so when asked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import heads as _heads
from .losses import REGISTRY

__all__ = [
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
    "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error", "loss_fn", "head",
]


def _no_cotangent(value):
    return np.zeros(jnp.shape(value), dtype=jax.dtypes.float0)


def _is_float(value) -> bool:
    return value is not None and jnp.issubdtype(jnp.result_type(value), jnp.floating)


def loss_fn(loss):
    """``f(logits, target, weight=None, normalizer=None)``: the core ``loss`` object as a
    ``jax.custom_vjp`` function whose backward is ``loss.grad`` (see the module note)."""

    @jax.custom_vjp
    def f(logits, target, weight, normalizer):
        return loss(logits, target, weight=weight, normalizer=normalizer)

    def forward(logits, target, weight, normalizer):
        return f(logits, target, weight, normalizer), (logits, target, weight, normalizer)

    def backward(residuals, upstream):
        logits, target, weight, normalizer = residuals
        grad = loss.grad(logits, target, weight=weight, normalizer=normalizer)
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


binary_cross_entropy = _functional("binary_cross_entropy")
binary_cross_entropy_with_logits = _functional("binary_cross_entropy_with_logits")
categorical_cross_entropy = _functional("categorical_cross_entropy")
softmax_cross_entropy = _functional("softmax_cross_entropy")
multilabel_cross_entropy = _functional("multilabel_cross_entropy")
mean_squared_error = _functional("mean_squared_error")


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
