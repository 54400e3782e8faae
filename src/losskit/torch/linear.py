"""``torch.autograd`` form of the fused linear + cross-entropy (see :mod:`losskit.losses.linear`).

The forward computes the loss and all gradients in one chunked sweep (never the N x V logits)
and saves only the gradients; backward scales them by the upstream gradient. So a training
step costs one sweep of matmuls, not a forward and a second recomputing backward.
"""

from __future__ import annotations

import torch

from ..losses.linear import linear_binary_cross_entropy_value_and_grad, linear_cross_entropy_value_and_grad

__all__ = ["linear_cross_entropy", "linear_binary_cross_entropy"]


class _FusedLinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sweep, options, hidden, classifier, target, bias, weight):
        bias = None if bias is None else bias.detach()
        value, grads = sweep(hidden.detach(), classifier.detach(), target, bias=bias, weight=weight, **options)
        if value.ndim:
            raise RuntimeError("losskit.torch.linear_*: reduction='none' has no fused backward; "
                               "use 'sum' or 'mean'")
        ctx.save_for_backward(*(g for g in grads if g is not None))
        ctx.has_bias = bias is not None
        return value

    @staticmethod
    def backward(ctx, upstream):
        saved = ctx.saved_tensors
        grad_hidden, grad_classifier = saved[0] * upstream, saved[1] * upstream
        grad_bias = saved[2] * upstream if ctx.has_bias else None
        return None, None, grad_hidden, grad_classifier, None, grad_bias, None


def linear_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, **options):
    """:func:`losskit.linear_cross_entropy` with autograd: ``loss.backward()`` fills ``hidden.grad``,
    ``classifier.grad`` (and ``bias.grad``). Reductions "sum" and "mean" only. Options as the core
    function; ``weight [N]`` is the per-example weight."""
    options.setdefault("reduction", "mean")
    return _FusedLinearLoss.apply(linear_cross_entropy_value_and_grad, options, hidden, classifier, target, bias,
                                  weight)


def linear_binary_cross_entropy(hidden, classifier, target, *, bias=None, weight=None, **options):
    """:func:`losskit.linear_binary_cross_entropy` with autograd (reductions "sum" and "mean")."""
    options.setdefault("reduction", "mean")
    return _FusedLinearLoss.apply(linear_binary_cross_entropy_value_and_grad, options, hidden, classifier, target,
                                  bias, weight)
