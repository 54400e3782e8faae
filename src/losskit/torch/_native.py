"""Torch-native kernels for tensors the compiled CPU kernels cannot take (CUDA, other devices).

Each consumes the core's call plan, like the compiled kernels, and computes the loss and the
scaled gradient in a few fused-friendly torch ops, never the array-API core's ~35 passes. A row
with a non-finite input returns None, and the caller answers with the core's reference path,
which gives the exact +-inf limits. Accuracy tricks are the core's: the softmax normaliser is
``log1p`` of the terms below the row max, and the label's gradient is ``-sum_{k != y} p_k``.
Functions are found by the name of the kernel the loss's class runs (``kernel_name()``: a subclass
with other math has none). BCE and the squared error call the core's own formula functions
(``bce_logits_terms``, ``squared_error_terms``, which the reference and the XLA path run too) with
``torch`` as the namespace. A loss written as a formula (:class:`~losskit.ElementwiseLoss`) runs
its own formula on the tensors: the same text as its compiled kernel and its reference.
"""

from __future__ import annotations

import torch

from .. import _array, _checks
from .. import reduction as _reduction
from ..losses.binary import _BinaryBase, bce_logits_terms
from ..losses.regression import squared_error_terms

__all__ = ["value_and_grad"]


def value_and_grad(loss, plan, with_grad: bool):
    """``(value, grad)`` for ``plan`` (canonical layout, working dtype), or None for the reference."""
    name = type(loss).kernel_name()
    kernel = (lambda plan, with_grad: _formula(loss, plan, with_grad)) if name == "formula" else _KERNELS.get(name)
    # a value that cannot be read (meta tensors) counts as finite: nothing else could run there
    if kernel is None or _array.concrete_bool(torch.isfinite(plan.input).all()) is False:
        return None
    result = kernel(plan, with_grad)
    if result is None:
        return None
    per_example, grad = result
    scale = plan.scale
    value = _reduction.combine(plan.xp, per_example, plan.weight, scale, plan.reduction).to(plan.dtype)
    if not with_grad:
        return value, None
    row = scale.unsqueeze(-1) if plan.spans_last_axis and scale.ndim else scale
    grad = grad.mul_(row).masked_fill_(row == 0, 0.0) if plan.weight is not None else grad.mul_(row)
    if plan.restore is not None:  # a class axis other than the last: the ops ran on the moved view, whose
        grad = plan.restore(grad)  # strides the gradient kept, so the caller's layout is a view again
    return value, grad.to(plan.dtype)


def _softmax_ce(plan, with_grad):
    labels = plan.target.labels
    if labels is None:
        return None
    z, a = plan.input, plan.smoothing
    k = z.shape[-1]
    m = z.amax(-1, keepdim=True)
    shifted = z - m
    e = shifted.exp()
    below = torch.where(shifted < 0, e, 0.0).sum(-1)
    ties = (shifted == 0).sum(-1).to(z.dtype) - 1
    index = labels.long().unsqueeze(-1)
    shifted_y = shifted.gather(-1, index).squeeze(-1)
    loss = torch.log1p(below + ties) - (1 - a) * shifted_y  # lse - z_y, without rounding lse
    if a:
        loss = loss - (a / k) * shifted.sum(-1)
    if _array.concrete_bool(torch.isfinite(loss).all()) is False:
        return None
    if not with_grad:
        return loss, None
    total = (1 + below + ties).unsqueeze(-1)
    grad = e.div_(total)
    if a:
        grad.sub_(a / k)
    # at the label: p_y - 1 = -sum_{k != y} p_k, exact when p_y rounds to 1
    e_y = torch.where(shifted_y == 0, 1.0, shifted_y.exp())
    rest = below + ties + (1 - e_y)
    grad.scatter_(-1, index, (a * (1 - 1 / k) - rest / total.squeeze(-1)).unsqueeze(-1))
    return loss, grad


def _bce_logits(plan, with_grad):
    # the core's formula, told that the input is finite (checked above): no 0 * inf guards
    y, neg = _BinaryBase._smoothed(plan)
    loss, grad, _ = bce_logits_terms(torch, plan.input, y, plan.target.pos_weight, 1 if with_grad else 0,
                                     finite=True, neg=neg)
    return (loss.sum(-1) if plan.spans_last_axis else loss), grad


def _squared_error(plan, with_grad):
    _checks.no_nan(torch, plan.target.dense, "target")  # the plan leaves it to where the target is read
    loss, grad, _ = squared_error_terms(torch, plan.input, plan.target.dense, 1 if with_grad else 0)
    return loss, grad


def _formula(loss, plan, with_grad):
    terms = loss._terms(plan, 1 if with_grad else 0)
    return terms.loss, terms.grad


_KERNELS = {"softmax_ce": _softmax_ce, "bce_logits": _bce_logits, "squared_error": _squared_error}
