"""A torch-native path for the commonest case: softmax cross-entropy of (N, K) logits with
integer labels. Same options, values and gradients as the core (tested), in a few passes.

Design note: the generic layer runs the core's array-API expression twice (forward, then
backward), about 35 elementwise passes with a fresh N x K temporary each on 4096 x 32000. Here
forward is ``torch.logsumexp`` and a gather, and saves the per-row log-sum-exp and the
per-example scale of the reduction (2 N numbers); backward builds the gradient in one buffer,
in place: ``exp(z - lse)``, minus the smoothing, minus ``1 - a`` at the label, times the scale.
Rows with a non-finite logit fall back to the core, which gives the exact +-inf limits.
Double backward: the backward op's own backward is :func:`hvp_op`, the analytic
Hessian-vector product ``r_i (p * v - p <p, v>)`` (``r_i`` the example's scale times its
upstream gradient) and the derivative with respect to the upstream gradient; a third derivative
raises.
"""

from __future__ import annotations

import json

import torch
from array_api_compat import array_namespace
from torch import Tensor

from .. import _checks
from ..reduction import reduce

__all__ = ["applies", "SoftmaxCEFunction"]

NAME = "softmax_cross_entropy"


def applies(loss, input: Tensor, target: Tensor) -> bool:
    """Whether this path handles the call: 2-D logits, class axis last (or 1), 1-D integer labels."""
    return (input.ndim == 2 and target.ndim == 1 and not target.dtype.is_floating_point
            and target.dtype != torch.bool and loss.axis in (-1, 1) and input.dtype.is_floating_point)


def _core(options: str):
    from . import _core_loss

    return _core_loss(NAME, options)


@torch.library.custom_op("losskit::softmax_ce_forward", mutates_args=())
def forward_op(options: str, logits: Tensor, target: Tensor, weight: Tensor | None,
               normalizer: float | None) -> tuple[Tensor, Tensor, Tensor]:
    loss = _core(options)
    xp = array_namespace(logits)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    _checks.floating(xp, logits, "logits")
    target = loss._prepare(xp, z, target)  # shape and label range, as the core checks them
    weight = loss._example_weight(xp, weight, (z.shape[0],), z.dtype)
    lse = torch.logsumexp(z, dim=-1)
    if not bool(torch.isfinite(lse).all()):  # +-inf logits: the core's exact limits
        value = loss(logits, target, weight=weight, normalizer=normalizer)
        return value, lse, torch.full_like(lse, float("nan"))
    keep = None if loss.ignore_index is None else target != loss.ignore_index
    labels = target if keep is None else torch.where(keep, target, torch.zeros_like(target))
    picked = z.gather(1, labels.unsqueeze(1)).squeeze(1)
    a, n_classes = loss.label_smoothing, z.shape[1]
    per_example = lse - picked if a == 0 else lse - (1 - a) * picked - (a / n_classes) * z.sum(1)
    cw = loss._class_weight_array(xp, z)
    if cw is not None:
        weight = cw[labels] if weight is None else weight * cw[labels]
    if keep is not None:
        weight = keep.to(z.dtype) if weight is None else weight * keep
    value, scale = reduce(xp, per_example, weight, loss.reduction, normalizer)
    return value.to(logits.dtype), lse, torch.broadcast_to(scale, lse.shape).clone()


@forward_op.register_fake
def _forward_fake(options, logits, target, weight, normalizer):
    rows = logits.shape[0]
    shape = (rows,) if json.loads(options)["reduction"] == "none" else ()
    work = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    per_row = logits.new_empty((rows,), dtype=work)
    return logits.new_empty(shape), per_row, torch.empty_like(per_row)


@torch.library.custom_op("losskit::softmax_ce_backward", mutates_args=())
def backward_op(options: str, logits: Tensor, target: Tensor, weight: Tensor | None, normalizer: float | None,
                lse: Tensor, scale: Tensor, upstream: Tensor) -> Tensor:
    loss = _core(options)
    if bool(torch.isnan(scale).any()):  # the forward fell back to the core: so does the backward
        grad = loss.grad(logits, target, weight=weight, normalizer=normalizer)
        return grad * (upstream.unsqueeze(1) if upstream.ndim else upstream)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    a, n_classes = loss.label_smoothing, z.shape[1]
    keep = None if loss.ignore_index is None else target != loss.ignore_index
    labels = target if keep is None else torch.where(keep, target, torch.zeros_like(target))
    grad = torch.sub(z, lse.unsqueeze(1)).exp_()  # the softmax, in the one buffer we return
    if a:
        grad.sub_(a / n_classes)
    grad.scatter_add_(1, labels.unsqueeze(1), torch.full_like(lse, -(1 - a)).unsqueeze(1))
    row_scale = scale * upstream
    grad.mul_(row_scale.unsqueeze(1))
    return grad.to(logits.dtype)


@backward_op.register_fake
def _backward_fake(options, logits, target, weight, normalizer, lse, scale, upstream):
    return torch.empty_like(logits)


class SoftmaxCEFunction(torch.autograd.Function):
    """Autograd for :func:`forward_op`: saves the logits (already alive), the per-row log-sum-exp
    and the per-example scale; the backward is :func:`backward_op`."""

    @staticmethod
    def forward(options, logits, target, weight, normalizer):
        value, lse, scale = forward_op(options, logits, target, weight, normalizer)
        return value, lse, scale

    @staticmethod
    def setup_context(ctx, inputs, output):
        options, logits, target, weight, normalizer = inputs
        _, lse, scale = output
        ctx.options, ctx.normalizer = options, normalizer
        ctx.save_for_backward(logits, target, weight, lse, scale)
        ctx.mark_non_differentiable(lse, scale)

    @staticmethod
    def backward(ctx, grad_value, grad_lse, grad_scale):
        logits, target, weight, lse, scale = ctx.saved_tensors
        grad = backward_op(ctx.options, logits, target, weight, ctx.normalizer, lse, scale, grad_value)
        return None, grad, None, None, None


def _backward_setup(ctx, inputs, output):
    options, logits, target, weight, normalizer, lse, scale, upstream = inputs
    ctx.options, ctx.normalizer = options, normalizer
    ctx.save_for_backward(logits, target, weight, scale, upstream)


def _backward_backward(ctx, vector):
    logits, target, weight, scale, upstream = ctx.saved_tensors
    hvp, grad_upstream = hvp_op(ctx.options, logits, target, weight, ctx.normalizer, scale, upstream, vector)
    # lse depends on the logits too: hvp is the total derivative through them, so lse gets none
    return None, hvp, None, None, None, None, None, grad_upstream


torch.library.register_autograd("losskit::softmax_ce_backward", _backward_backward,
                                setup_context=_backward_setup)


@torch.library.custom_op("losskit::softmax_ce_hvp", mutates_args=())
def hvp_op(options: str, logits: Tensor, target: Tensor, weight: Tensor | None, normalizer: float | None,
           scale: Tensor, upstream: Tensor, vector: Tensor) -> tuple[Tensor, Tensor]:
    """``(H v, d <grad, v> / d upstream)`` for the gradient ``backward_op`` returned."""
    loss = _core(options)
    if bool(torch.isnan(scale).any()):  # the forward fell back to the core: so does this
        from . import _hessian_vector_product

        row_upstream = upstream.unsqueeze(1) if upstream.ndim else upstream
        hvp = _hessian_vector_product(loss, NAME, logits, target, weight, normalizer, vector * row_upstream)
        per_row = (loss.grad(logits, target, weight=weight, normalizer=normalizer) * vector).sum(1)
        return hvp, (per_row if upstream.ndim else per_row.sum()).to(upstream.dtype)
    z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    v = vector.to(z.dtype)
    p = torch.softmax(z, dim=1)
    pv = p * v
    row_scale = (scale * upstream).unsqueeze(1)
    hvp = row_scale * (pv - p * pv.sum(1, keepdim=True))
    # the gradient per unit upstream: scale_i (p - y'), contracted with v
    a, n_classes = loss.label_smoothing, z.shape[1]
    labels = target if loss.ignore_index is None else \
        torch.where(target != loss.ignore_index, target, torch.zeros_like(target))
    per_row = pv.sum(1) - a / n_classes * v.sum(1) - (1 - a) * v.gather(1, labels.unsqueeze(1)).squeeze(1)
    per_row = scale * per_row
    return hvp.to(logits.dtype), (per_row if upstream.ndim else per_row.sum()).to(upstream.dtype)


@hvp_op.register_fake
def _hvp_fake(options, logits, target, weight, normalizer, scale, upstream, vector):
    return torch.empty_like(logits), torch.empty_like(upstream)


def _refuse(ctx, *grads):
    from . import _THIRD_ORDER

    raise RuntimeError(_THIRD_ORDER)


torch.library.register_autograd("losskit::softmax_ce_hvp", _refuse,
                                setup_context=lambda ctx, inputs, output: None)
