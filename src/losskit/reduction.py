r"""The one reduction rule that every loss, gradient and kernel follows.

With per-example losses :math:`l_i` and effective weights :math:`w_i` (``weight`` times
``class_weight[target]``, 0 for ignored examples, 1 when nothing is given):

* ``"none"``: :math:`w_i l_i`, one value per example;
* ``"sum"``:  :math:`\sum_i w_i l_i`;
* ``"mean"``: :math:`\sum_i w_i l_i / D` with :math:`D = \sum_i w_i`, or ``normalizer`` when given.

So ``mean == sum(none) / sum(w)`` always. When every weight is 0 (a batch of ignored labels)
``"mean"`` is defined as 0 with gradient 0, where PyTorch returns NaN.

The rule is split in two so that it is settled before any loss is computed: :func:`scale` gives
:math:`c_i = d\,\mathrm{value} / d l_i` (``w_i``, or ``w_i / D`` for ``"mean"``) from the weights
alone, and :func:`combine` turns per-example losses into the value. Every path computes
:math:`c_i l_i` (0 where :math:`c_i = 0`, even if :math:`l_i` is inf) and sums it, or not, and the
gradient of the reduced value is :math:`c_i\, d l_i / dz`.
"""

from __future__ import annotations

import functools

import numpy as np
from array_api_compat import is_dask_namespace

from . import _array, _checks
from ._array import device as _device
from ._array import size as _size

__all__ = ["scale", "combine", "reduce"]


def scale(xp, weight, n_examples: int, reduction: str, normalizer, like):
    """Return ``(scale, denominator)`` for the reduction rule, in ``like``'s dtype and device.

    ``weight`` is ``None`` (all ones) or batch-shaped; ``scale`` is then batch-shaped, or a 0-d
    array when every example scales alike. ``denominator`` is 0-d (1 for "none" and "sum"; inf when
    the weights' sum overflows the dtype, the scale then made from the weights scaled down first).
    ``normalizer`` is a Python number (taken in ``like``'s dtype, never a narrower default) or
    a 0-d array.
    """
    _checks.reduction(reduction)
    if weight is None and normalizer is None and type(like) is np.ndarray:
        return _numpy_unit_scale(like.dtype, n_examples, reduction)
    one = xp.ones((), dtype=like.dtype, device=_device(like))
    base = one if weight is None else weight
    if reduction != "mean":
        return base, one
    overflow = False  # whether the weights' sum overflows; None where it is not known before the run
    if normalizer is not None:
        if isinstance(normalizer, (int, float)):
            denominator = xp.asarray(normalizer, dtype=like.dtype, device=_device(like))
        else:
            denominator = xp.astype(normalizer, like.dtype)
    elif weight is None:  # never 0: the guard below is not needed
        denominator = xp.asarray(float(max(n_examples, 1)), dtype=like.dtype, device=_device(like))
        return one / denominator, denominator
    else:
        with _array.quiet(xp):  # a sum that overflows is handled below (NumPy's warning escaped, found in review)
            denominator = xp.sum(weight)
        # finite weights whose sum passes the dtype's largest number (float32 weights near 3e38) would
        # give w / inf = 0 everywhere
        overflow = _array.concrete_bool(xp.isinf(denominator))  # None under a trace or lazily (Dask)
        if overflow:
            return _overflow_scale(xp, weight, one), denominator
    # an empty or all-ignored batch: 0 / 0 is defined as 0, not NaN. A normalizer is never 0 (checked where
    # it can be read): one of 0 under a trace divides as given (inf or NaN), rather than reading as 1 (the sum)
    if normalizer is None:
        denominator = xp.where(denominator == 0, one, denominator)
    scale_ = base / denominator
    if overflow is None:  # not known before the run: both forms are built
        scale_ = xp.where(xp.isinf(denominator), _overflow_scale(xp, weight, one), scale_)
    return scale_, denominator


def _overflow_scale(xp, weight, one):
    """``w / sum(w)`` for finite weights whose sum overflows: the weights times ``f * f``, ``f`` a
    power of two near ``1 / sqrt(max w)``, one exact product at a time, then divided by their sum.
    Not ``w / max(w)``: XLA's CPU code divides by multiplying with the reciprocal, and ``1 / 3e38`` is
    subnormal, flushed to 0; nor a constant factor, which XLA's simplifier moves out of the sum (to
    ``inf * c``). Finite for any weights (under a trace the branch runs whatever is selected, and a
    NaN there would reach the weights' cotangent)."""
    if _size(weight) == 0:
        return weight
    top = xp.max(weight)
    half_exponent = xp.ceil(xp.log2(xp.where(top > one, top, one))) / 2
    factor = xp.pow(one + one, -half_exponent)
    unit = (weight * factor) * factor
    total = xp.sum(unit)
    return unit / xp.where(total > 0, total, one)


@functools.lru_cache(maxsize=256)
def _numpy_unit_scale(dtype, n_examples: int, reduction: str):
    """:func:`scale` of unweighted NumPy examples, made once per (dtype, count, reduction): the same
    arithmetic and types, read-only (a training loop asks the same every step)."""
    one = np.ones((), dtype)
    one.flags.writeable = False
    if reduction != "mean":
        return one, one
    denominator = np.asarray(float(max(n_examples, 1)), dtype)
    denominator.flags.writeable = False
    return one / denominator, denominator  # the quotient is a NumPy scalar, immutable already


def combine(xp, loss, weight, scale_, reduction: str):
    """The reduced value from per-example ``loss`` and the plan's ``scale``: ``c_i l_i`` summed
    for "sum" and "mean", kept per example for "none"; 0 where ``c_i`` is 0."""
    # where, not a bare product: an ignored example (weight 0) with an infinite loss adds 0; a finite
    # loss is kept, so that autodiff gives d value / d weight_i = l_i / D at weight 0 too
    weighted = loss * scale_ if weight is None and reduction != "mean" else \
        scale_ * xp.where((scale_ == 0) & ~xp.isfinite(loss), xp.zeros_like(loss), loss)
    if reduction == "none":
        return weighted
    if reduction == "mean" and weight is None and scale_.ndim == 0:  # sum first, then scale once
        total = xp.sum(loss)
        # unless the sum overflows where the mean does not (float32 losses near 3e38: the compiled kernels,
        # which scale each row, gave the mean and the reference inf). Asked of host arrays only: on a GPU
        # the question would wait for the device at every call, and under a trace there is no value
        host = isinstance(total, (np.ndarray, np.generic)) or _on_cpu(_device(total))
        if host and _array.concrete_bool(xp.isinf(total)) and _array.concrete_bool(xp.all(xp.isfinite(loss))):
            return xp.sum(weighted)
        if is_dask_namespace(xp):  # lazy: both forms in the graph, the guard read when it is computed (ten
            # float32 losses of 1e38 gave inf on Dask, 1e38 on NumPy)
            return xp.where(xp.isinf(total) & xp.all(xp.isfinite(loss)), xp.sum(weighted), total * scale_)
        return total * scale_
    return xp.sum(weighted)


def _on_cpu(device) -> bool:
    """Whether ``device`` is the host CPU: torch's ``cpu``, JAX's ``cpu:0`` (a device whose platform is the
    CPU; the test was ``str(device) == "cpu"``, and JAX's CPU mean of float32 losses near 3e38 was inf)."""
    return getattr(device, "platform", None) == "cpu" or str(device) == "cpu"


def reduce(xp, loss, weight, reduction: str, normalizer=None):
    """Return ``(value, scale)``: :func:`combine` of :func:`scale` (for callers holding losses)."""
    scale_, _ = scale(xp, weight, _size(loss), reduction, normalizer, loss)
    return combine(xp, loss, weight, scale_, reduction), scale_
