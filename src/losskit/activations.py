"""Output activations, stable for every finite input and exact at +-inf, on any array library.

Design note: each function takes the array, finds its namespace once and computes in float32
for half precision. ``softmax`` and ``log_softmax`` shift by the row maximum; a row whose
maximum is +inf gives the limit (all mass on the +inf entries, shared equally), and a row that
is all -inf gives the uniform distribution, the limit of equal logits going to -inf together.
The alternative, returning NaN there as ``exp(z - max)`` does, was rejected: a loss must never
be NaN for input that has a limit.
"""

from __future__ import annotations

from . import _array, _checks

__all__ = ["sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp"]


def _prepare(logits, name="logits"):
    _checks.given(**{name: logits})  # (None reached the array library as an AttributeError)
    xp, arrays = _array.namespace(**{name: logits})
    logits = arrays[name]
    _checks.floating(xp, logits, name)
    work = _array.compute_dtype(xp, logits.dtype)
    return xp, logits, (xp.astype(logits, work) if work != logits.dtype else logits)


def sigmoid_xp(xp, z):
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def log_sigmoid_xp(xp, z):
    # log(sigmoid(z)) = min(z, 0) - log1p(exp(-|z|)): no overflow, no cancellation. Written with selects at z < 0,
    # not minimum and abs: autodiff (JAX's) splits minimum's gradient at the tie z = 0 and takes |z|' = 1 there,
    # which summed to 1 where the derivative 1 - sigmoid(0) is 1/2 (a zero-initialised layer's logits are all 0)
    negative = z < 0
    return xp.where(negative, z, xp.zeros_like(z)) - xp.log1p(xp.exp(xp.where(negative, z, -z)))


def shifted_logits_xp(xp, z, axis=-1):
    """``(z - m, m)`` with ``m`` the row max, made safe where ``m`` is infinite; a row holding a NaN
    (``m`` NaN) stays NaN throughout, so its loss and gradient are NaN, as the arithmetic says."""
    m = xp.max(z, axis=axis, keepdims=True)
    keep = xp.isfinite(m) | xp.isnan(m)
    zero = xp.zeros_like(z)
    shifted = xp.where(keep, z - xp.where(keep, m, xp.zeros_like(m)), zero)
    # a +inf max: the +inf entries share all the mass (shift 0), the rest get -inf
    shifted = xp.where((m == xp.inf) & (z != xp.inf), zero - xp.inf, shifted)
    # an all -inf row is left as zeros: the uniform limit
    return shifted, xp.where(keep, m, xp.zeros_like(m))


def log_normalizer_xp(xp, shifted, axis=-1):
    """``log sum_k exp(shifted_k)`` for a row whose maximum is 0, accurate when it is tiny.

    The max entries contribute exactly 1 each, so the sum is ``1 + others`` and its log is
    ``log1p(others)``, summing only the entries below the max: a row whose max leads by 40
    has a loss of about 4e-18, which ``log(1 + 4e-18)`` would round to 0.
    """
    below = shifted < 0
    zero = xp.zeros_like(shifted)
    others = xp.sum(xp.where(below, xp.exp(xp.where(below, shifted, zero)), zero), axis=axis, keepdims=True)
    ties = xp.sum(xp.astype(~below, shifted.dtype), axis=axis, keepdims=True) - 1
    return xp.log1p(others + ties)


def _empty_axis(z, axis) -> bool:
    return z.shape[axis] == 0


def logsumexp_xp(xp, z, axis=-1, keepdims=False):
    if _empty_axis(z, axis):  # log of an empty sum: log 0
        shape = list(z.shape)
        if keepdims:
            shape[axis] = 1
        else:
            del shape[axis]
        return xp.full(tuple(shape), -xp.inf, dtype=z.dtype, device=_array.device(z))
    shifted, m = shifted_logits_xp(xp, z, axis)
    m_raw = xp.max(z, axis=axis, keepdims=True)
    # an infinite row maximum is the exact value of the whole row's logsumexp
    lse = xp.where(xp.isfinite(m_raw), m + log_normalizer_xp(xp, shifted, axis), m_raw)
    return lse if keepdims else xp.squeeze(lse, axis=axis)


def log_softmax_xp(xp, z, axis=-1):
    if _empty_axis(z, axis):  # no classes: nothing to normalise
        return z
    shifted, _ = shifted_logits_xp(xp, z, axis)
    return shifted - log_normalizer_xp(xp, shifted, axis)


def softmax_xp(xp, z, axis=-1):
    if _empty_axis(z, axis):
        return z
    e = xp.exp(shifted_logits_xp(xp, z, axis)[0])
    return e / xp.sum(e, axis=axis, keepdims=True)


def _finish(xp, result, like):
    return xp.astype(result, like.dtype) if result.dtype != like.dtype else result


def sigmoid(logits):
    r"""Logistic sigmoid :math:`\sigma(z) = 1 / (1 + e^{-z})`, elementwise.

    Shapes: ``[...] -> [...]``, same library, dtype and device as ``logits``.
    Edges: exact 0 at -inf and 1 at +inf; never overflows (``exp`` only sees ``-|z|``).

    >>> import numpy as np, losskit as lk
    >>> lk.sigmoid(np.array([0.0, 1000.0, -1000.0])).tolist()
    [0.5, 1.0, 0.0]
    """
    xp, raw, z = _prepare(logits)
    return _finish(xp, sigmoid_xp(xp, z), raw)


def log_sigmoid(logits):
    r""":math:`\log \sigma(z) = \min(z, 0) - \log(1 + e^{-|z|})`, elementwise.

    Shapes: ``[...] -> [...]``. Edges: -inf at -inf, 0 at +inf; for z << 0 it is z itself
    (no ``log(0)``), for z >> 0 it is ``-exp(-z)`` to full precision.

    >>> import numpy as np, losskit as lk
    >>> float(lk.log_sigmoid(np.array(-1000.0)))
    -1000.0
    """
    xp, raw, z = _prepare(logits)
    return _finish(xp, log_sigmoid_xp(xp, z), raw)


def logsumexp(logits, axis=-1, keepdims=False):
    r""":math:`\log \sum_k e^{z_k}` along ``axis``, shifted by the maximum.

    Shapes: ``[..., K, ...] -> [..., ...]`` (the axis kept as 1 with ``keepdims``).
    Edges: +inf if any entry is +inf; -inf if all are -inf or the axis is empty; finite otherwise.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.logsumexp(np.array([1000.0, 1000.0]))), 6)
    1000.693147
    """
    xp, raw, z = _prepare(logits)
    ax = _checks.axis(axis, z.ndim)
    return _finish(xp, logsumexp_xp(xp, z, ax, _checks.flag(keepdims, "keepdims")), raw)


def log_softmax(logits, axis=-1):
    r""":math:`\log \mathrm{softmax}(z)_k = z_k - \log \sum_j e^{z_j}` along ``axis``.

    Shapes: ``[..., K, ...] -> [..., K, ...]``. Edges: finite for finite rows; entries of a row
    with +inf logits: 0 - log(count of +inf) on those, -inf elsewhere; an all -inf row: log(1/K);
    an empty axis gives an empty result.

    >>> import numpy as np, losskit as lk
    >>> lk.log_softmax(np.array([0.0, 0.0])).round(6).tolist()
    [-0.693147, -0.693147]
    """
    xp, raw, z = _prepare(logits)
    return _finish(xp, log_softmax_xp(xp, z, _checks.axis(axis, z.ndim)), raw)


def softmax(logits, axis=-1):
    r""":math:`\mathrm{softmax}(z)_k = e^{z_k} / \sum_j e^{z_j}` along ``axis``.

    Shapes: ``[..., K, ...] -> [..., K, ...]``; rows sum to 1. Edges: as :func:`log_softmax`.

    >>> import numpy as np, losskit as lk
    >>> lk.softmax(np.log(np.array([1.0, 2.0, 5.0]))).round(6).tolist()
    [0.125, 0.25, 0.625]
    """
    xp, raw, z = _prepare(logits)
    return _finish(xp, softmax_xp(xp, z, _checks.axis(axis, z.ndim)), raw)
