"""Derivatives of a core loss's array-API forward taken by torch's autograd, in the arrays' own dtypes
(a float32 target's cotangent in float32, as JAX gives it): the
independent reference of ``losskit.jax``'s gradients, cotangents and Hessian-vector products
(tests/test_jax.py).

Why torch and not JAX's own autodiff of the same forward: JAX's eager mode compiles each of the
forward's and backward's small ops for each new shape, torch runs them as they come. For the 314
cases and reductions of ``test_grad_and_jit_equal_the_core_gradient`` the gradients took 17.8 s
with ``jax.grad`` and 0.26 s with torch, equal to 1e-10 (2026-12-04). That the core's forward is
differentiable by JAX itself stays tested (tests/test_losses_common.py,
``test_gradient_matches_jax_grad``).
"""

from __future__ import annotations

import numpy as np
import torch


def _tensor(array, requires_grad=False):
    if array is None:
        return None
    array = np.array(array)  # a copy, in the array's own dtype (a float32 target stays float32)
    return torch.tensor(array, requires_grad=True) if requires_grad else torch.as_tensor(array)


def grad(core, z, target, *, weight=None, normalizer=None, upstream=1.0):
    """d sum(core(z, target) * upstream) / dz."""
    x = _tensor(z, requires_grad=True)
    value = core(x, _tensor(target), weight=_tensor(weight), normalizer=normalizer)
    (gradient,) = torch.autograd.grad((value * _tensor(upstream)).sum(), x, allow_unused=True)
    return _numpy(gradient, x)


def cotangents(core, z, target, weight, normalizer, *, float_target):
    """The gradients of ``core(z, target, weight=weight, normalizer=normalizer)`` in the target (when
    ``float_target``), the weight and the normalizer (a number), in that order."""
    t = _tensor(target, requires_grad=float_target)
    w = _tensor(weight, requires_grad=True)
    n = _tensor(float(normalizer), requires_grad=True)
    inputs = (t, w, n) if float_target else (w, n)
    value = core(_tensor(z), t, weight=w, normalizer=n)
    # a target read only for its sign (the hinge losses) is unused by the graph: its cotangent is 0
    grads = torch.autograd.grad(value.sum(), inputs, allow_unused=True)
    return tuple(_numpy(g, like) for g, like in zip(grads, inputs, strict=True))


def _numpy(gradient, like):
    """``gradient`` as a NumPy array; None (unused) as zeros shaped ``like``. Added to a zero tensor: a
    gradient autograd knows to be 0 (the second derivative of a piecewise-linear loss) comes as a
    ``ZeroTensor``, which does not convert to NumPy."""
    if gradient is None:
        return np.zeros(tuple(like.shape), dtype=np.float64)
    return (torch.zeros_like(like).detach() + gradient).numpy()


def hessian_vector_product(core, z, target, vector, *, weight=None):
    """H v, H the Hessian of ``core(z, target)`` in ``z``: reverse over reverse."""
    x = _tensor(z, requires_grad=True)
    value = core(x, _tensor(target), weight=_tensor(weight))
    (first,) = torch.autograd.grad(value.sum(), x, create_graph=True)
    if not first.requires_grad:  # a gradient constant in z (piecewise-linear losses): H = 0
        return np.zeros(tuple(x.shape))
    (second,) = torch.autograd.grad((first * _tensor(vector)).sum(), x, allow_unused=True)
    return _numpy(second, x)
