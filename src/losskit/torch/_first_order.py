"""Refusing second derivatives where a backward is first-order only.

An ``autograd.Function`` whose backward uses values saved as constants (the row log-sum-exp, or
gradients computed in the forward sweep) gives a *wrong* second derivative under
``create_graph=True``, silently: autograd differentiates the backward's ops with those values
held fixed, or finds no graph at all and treats a gradient penalty as a constant. Wrapping the
finished gradients with :func:`first_order_only` turns that into a RuntimeError with a message
that says what to use instead. ``torch.autograd.function.once_differentiable`` is not enough: it
attaches its error only when an upstream gradient requires grad, which a plain
``torch.autograd.grad(loss, x, create_graph=True)`` does not.
"""

from __future__ import annotations

import torch

__all__ = ["first_order_only"]


class _Refused(torch.autograd.Function):
    """Identity on a finished gradient that raises when differentiated. The anchors are inputs that
    require grad, so the output joins the graph of a ``create_graph=True`` backward."""

    @staticmethod
    def forward(ctx, grad, message, *anchors):
        ctx.message = message
        return grad.clone()

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(ctx.message)


def first_order_only(grads, anchors, message: str):
    """``grads`` unchanged, or, inside a ``create_graph=True`` backward, each behind a node that raises
    ``RuntimeError(message)`` when differentiated. ``anchors``: the Function's tensor inputs (None
    allowed); ``grads`` may hold None."""
    if not torch.is_grad_enabled():  # a plain backward: nothing can differentiate these
        return tuple(grads)
    anchors = [a for a in anchors if a is not None and a.requires_grad]
    return tuple(None if g is None else _Refused.apply(g, message, *anchors) for g in grads)
