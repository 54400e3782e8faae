"""Fast paths: compiled CPU kernels for NumPy input, and memory-lean fused linear + CE.

``fast_path`` is the single entry the core's ``Loss`` calls (unless ``impl="xp"``). It handles
NumPy float32/float64 input for softmax CE (2-D logits, integer labels), BCE-with-logits,
multi-label CE and MSE, value and gradient (``hessian_diag`` stays on the array-API path). It
returns ``None`` when it does not handle a call, and the array-API path runs instead: another
library or dtype, an option or layout the kernels do not cover, numba not installed, or a row
the kernel flagged (bad label, target outside [0, 1], non-finite logit), for which the
array-API path raises the precise error or returns the exact limit. With ``impl="fused"`` an
unhandled configuration raises instead of falling back.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from .._checks import fail
from ..reduction import reduce

__all__ = ["fast_path", "available", "value_and_grad"]


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can be used here (numba installed); asked once per process."""
    return importlib.util.find_spec("numba") is not None


def value_and_grad(loss, input, target, *, weight=None, normalizer=None, out=None):
    """``loss.value_and_grad(input, target)`` with the gradient written into ``out``.

    ``out`` is a C-contiguous NumPy array of the input's shape and dtype (it may be ``input``
    itself: the kernels read each entry before writing it), so a training step on NumPy needs
    no memory beyond its logits. Returns ``(value, out)``. Calls the kernels cannot take (see
    :func:`fast_path`) run on the array-API path and copy the gradient into ``out``.
    """
    from .._checks import fail as _fail

    if not (isinstance(out, np.ndarray) and isinstance(input, np.ndarray) and out.shape == input.shape
            and out.dtype == input.dtype and out.flags.c_contiguous and out.flags.writeable):
        raise _fail("out", f"a writeable C-contiguous NumPy array of shape {getattr(input, 'shape', '?')} "
                    f"and dtype {getattr(input, 'dtype', '?')}", f"{type(out).__name__} "
                    f"{getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}")
    result = fast_path(loss, np, input, target, weight, normalizer, 1, out=out)
    if result is None:
        value, grad = type(loss)(**_options(loss), impl="xp").value_and_grad(
            input, target, weight=weight, normalizer=normalizer)
        np.copyto(out, grad)
        return value, out
    return result[0], out


def _options(loss):
    return {k: v for k, v in vars(loss).items() if not k.startswith("_") and k != "impl"}


def fast_path(loss, xp, input, target, weight, normalizer, order, out=None):
    """``(value, grad, hess)`` from a compiled kernel, or ``None`` to use the array-API path."""
    handler = _HANDLERS.get(type(loss).__name__)
    handled = (order in (0, 1) and handler is not None and isinstance(input, np.ndarray)
               and input.dtype in (np.float32, np.float64) and isinstance(target, np.ndarray)
               and (weight is None or isinstance(weight, np.ndarray)) and available())
    result = handler(loss, input, target, weight, normalizer, order, out) if handled else _UNHANDLED
    if result is _UNHANDLED:
        if loss.impl == "fused":
            raise fail("impl", '"auto" or "xp" for this call (no compiled kernel handles it: NumPy '
                       'float32/float64 value or gradient of the four task losses only, numba installed)',
                       '"fused"')
        return None
    return result  # a tuple, or None when a kernel flagged a row for the array-API path


_UNHANDLED = object()


def _kernels():
    from . import kernels

    return kernels


def _scale(loss, weight, n, dtype, normalizer):
    """Per-example ``d value / d l_i`` for the reduction rule, as a float array of length n."""
    _, scale = reduce(np, np.zeros(n, dtype=dtype), weight, loss.reduction, normalizer)
    return np.ascontiguousarray(np.broadcast_to(np.asarray(scale, dtype=dtype), (n,)))


def _finish(loss, per_example, weight, normalizer, grad, order, dtype):
    value, _ = reduce(np, per_example, weight, loss.reduction, normalizer)
    value = np.asarray(value).astype(dtype, copy=False)
    value = value[()] if value.ndim == 0 else value
    return value, (grad if order == 1 else None), None


def _grad_buffer(out, like):
    return np.empty_like(like) if out is None else out.reshape(like.shape)


def _softmax_ce(loss, input, target, weight, normalizer, order, out=None):
    if (input.ndim != 2 or loss.axis not in (-1, 1) or target.dtype.kind not in "iu"
            or target.shape != (input.shape[0],)):
        return _UNHANDLED
    n, k = input.shape
    weight = loss._example_weight(np, weight, (n,), input.dtype)
    cw = loss._class_weight_array(np, input)
    keep = np.ones(n, dtype=bool) if loss.ignore_index is None else target != loss.ignore_index
    labels = np.ascontiguousarray(target, dtype=np.int64)
    if cw is not None:
        in_range = keep & (labels >= 0) & (labels < k)
        class_w = np.where(in_range, cw[np.where(in_range, labels, 0)], 0).astype(input.dtype)
        weight = class_w if weight is None else weight * class_w
    if loss.ignore_index is not None:
        weight = keep.astype(input.dtype) if weight is None else weight * keep
    z = np.ascontiguousarray(input)
    per_example = np.empty(n, dtype=input.dtype)
    grad = _grad_buffer(out, z)
    flags = np.zeros(n, dtype=np.uint8)
    _kernels().softmax_ce_rows(z, labels, keep, _scale(loss, weight, n, input.dtype, normalizer),
                               loss.label_smoothing, per_example, grad, flags)
    if flags.any():
        return None
    return _finish(loss, per_example, weight, normalizer, grad, order, input.dtype)


def _binary_target(loss, input, target):
    if target.shape != input.shape or target.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(target, dtype=input.dtype)


def _pos_weight(loss, input, k):
    pw = loss._pos_weight(np, input)
    return np.ascontiguousarray(np.broadcast_to(np.ones(1, input.dtype) if pw is None else pw, (k,)),
                                dtype=input.dtype)


def _bce(loss, input, target, weight, normalizer, order, out=None):
    y = _binary_target(loss, input, target)
    if y is None or input.ndim == 0:
        return _UNHANDLED
    shape = input.shape
    pw = loss._pos_weight(np, input)
    # rows of the last axis (pos_weight runs along it); a 1-D input without a per-element
    # pos_weight is read as rows of one element, so the kernel still splits it across threads
    k = shape[-1] if input.ndim >= 2 or (pw is not None and pw.ndim == 1) else 1
    weight = loss._example_weight(np, weight, shape, input.dtype)
    pw = _pos_weight(loss, input, k)
    count = input.size
    scale = _scale(loss, None if weight is None else weight.reshape(-1), count, input.dtype, normalizer)
    z2, y2 = np.ascontiguousarray(input).reshape(-1, k), y.reshape(-1, k)
    elements = np.empty_like(z2)
    grad = _grad_buffer(out, z2)
    flags = np.zeros(z2.shape[0], dtype=np.uint8)
    _kernels().bce_rows(z2, y2, pw, scale.reshape(-1, k), loss.label_smoothing, elements, grad, flags)
    if flags.any():
        return None
    return _finish(loss, elements.reshape(shape), weight, normalizer, grad.reshape(shape), order, input.dtype)


def _multilabel(loss, input, target, weight, normalizer, order, out=None):
    y = _binary_target(loss, input, target)
    if y is None or input.ndim < 2:
        return _UNHANDLED
    shape, k = input.shape, input.shape[-1]
    rows = input.size // k if k else 0
    weight = loss._example_weight(np, weight, shape[:-1], input.dtype)
    scale = _scale(loss, None if weight is None else weight.reshape(-1), rows, input.dtype, normalizer)
    z2, y2 = np.ascontiguousarray(input).reshape(rows, k), y.reshape(rows, k)
    elements = np.empty_like(z2)
    grad = _grad_buffer(out, z2)
    flags = np.zeros(rows, dtype=np.uint8)
    _kernels().bce_rows(z2, y2, _pos_weight(loss, input, k), scale.reshape(rows, 1), loss.label_smoothing,
                        elements, grad, flags)
    if flags.any():
        return None
    per_example = elements.sum(axis=-1).reshape(shape[:-1])
    return _finish(loss, per_example, weight, normalizer, grad.reshape(shape), order, input.dtype)


def _squared_error(loss, input, target, weight, normalizer, order, out=None):
    if target.shape != input.shape or target.dtype.kind not in "iuf" or input.ndim == 0:
        return _UNHANDLED
    shape = input.shape
    batch = shape if input.ndim == 1 else shape[:-1]
    k = 1 if input.ndim == 1 else shape[-1]
    rows = input.size // k if k else 0
    weight = loss._example_weight(np, weight, batch, input.dtype)
    scale = _scale(loss, None if weight is None else weight.reshape(-1), rows, input.dtype, normalizer)
    pred = np.ascontiguousarray(input).reshape(rows, k)
    y = np.ascontiguousarray(target, dtype=input.dtype).reshape(rows, k)
    per_example = np.empty(rows, dtype=input.dtype)
    grad = _grad_buffer(out, pred)
    flags = np.zeros(rows, dtype=np.uint8)
    _kernels().squared_error_rows(pred, y, scale, per_example, grad, flags)
    if flags.any():
        return None
    per_example = per_example.reshape(batch)
    return _finish(loss, per_example, weight, normalizer, grad.reshape(shape), order, input.dtype)


_HANDLERS = {
    "SoftmaxCrossEntropy": _softmax_ce,
    "BinaryCrossEntropyWithLogits": _bce,
    "MultilabelCrossEntropy": _multilabel,
    "MeanSquaredError": _squared_error,
}
