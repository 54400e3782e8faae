r"""Vocabulary-parallel softmax cross-entropy over ``torch.distributed`` (Megatron-style).

Each rank holds the logits of every example for a contiguous slice of the vocabulary,
``logits[:, start:start + V_local]``; no rank ever holds a full row. Per example:

.. math:: l_i = \mathrm{lse}_i - (1 - a) z_{i, y_i} - \frac{a}{V} \sum_k z_{ik} + s\, \mathrm{lse}_i^2

with ``lse`` the log-sum-exp over the whole vocabulary (``z_loss`` scale ``s``). Forward needs
three all-reduces over the row statistics (MAX of the row max; one SUM of the stacked exp-sum,
target logit, row sum of logits and target class weight), each ``O(N)``, never ``O(N V)``.
Backward is local: ``softmax - y'`` on the rank's own slice, from the saved ``lse``.
Semantics are losskit's (see docs/semantics.md): label smoothing is ``a/V`` over the full
vocabulary, ``class_weight[y_i]`` scales the whole loss of example i, ``ignore_index`` gives
weight 0, and the reduction rule is :mod:`losskit.reduction`'s.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from array_api_compat import array_namespace

from .. import _checks

__all__ = ["vocab_parallel_cross_entropy"]


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, class_weight, start, n_vocab, ignore_index, smoothing, z_loss,
                reduction, normalizer, group):
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        local = z.shape[-1]
        row_max = z.max(dim=-1).values
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        index = target - start
        mine = keep & (index >= 0) & (index < local)
        safe = torch.where(mine, index, torch.zeros_like(index))
        picked = z.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        # one all-reduce for the four row sums: exp-sum, target logit, logit sum, target class weight
        stats = torch.stack([
            torch.exp(z - row_max.unsqueeze(-1)).sum(-1),
            torch.where(mine, picked, torch.zeros_like(picked)),
            z.sum(-1),
            (torch.where(mine, class_weight[safe], torch.zeros_like(picked))
             if class_weight is not None else torch.zeros_like(picked)),
        ])
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
        lse = row_max + torch.log(stats[0])
        loss = lse - (1 - smoothing) * stats[1] - (smoothing / n_vocab) * stats[2]
        if z_loss:
            loss = loss + z_loss * lse * lse
        example_weight = keep.to(z.dtype)
        if class_weight is not None:
            example_weight = example_weight * stats[3]
        if weight is not None:
            example_weight = example_weight * weight.to(z.dtype)
        weighted = example_weight * torch.where(example_weight == 0, torch.zeros_like(loss), loss)
        if reduction == "none":
            value, scale = weighted, example_weight
        elif reduction == "sum":
            value, scale = weighted.sum(), example_weight
        else:
            denominator = torch.as_tensor(normalizer if normalizer is not None else example_weight.sum(),
                                          dtype=z.dtype, device=z.device)
            denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
            value, scale = weighted.sum() / denominator, example_weight / denominator
        ctx.save_for_backward(logits, lse, scale, safe, mine)
        ctx.options = (smoothing, n_vocab, z_loss)
        return value.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        logits, lse, scale, safe, mine = ctx.saved_tensors
        smoothing, n_vocab, z_loss = ctx.options
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        p = torch.exp(z - lse.unsqueeze(-1))
        grad = p * (1 + 2 * z_loss * lse.unsqueeze(-1)) - smoothing / n_vocab
        onehot = torch.zeros_like(grad).scatter_(-1, safe.unsqueeze(-1), 1.0) * mine.unsqueeze(-1)
        grad = grad - (1 - smoothing) * onehot
        upstream = grad_output.unsqueeze(-1) if grad_output.ndim else grad_output
        grad = torch.where(scale.unsqueeze(-1) == 0, torch.zeros_like(grad), grad) * scale.unsqueeze(-1)
        return (grad * upstream).to(logits.dtype), *([None] * 11)


def vocab_parallel_cross_entropy(logits, target, *, vocab_start: int, n_vocab: int | None = None,
                                 weight=None, class_weight=None, ignore_index=None, label_smoothing=0.0,
                                 z_loss: float = 0.0, reduction: str = "mean", normalizer=None, group=None):
    r"""Softmax cross-entropy of logits whose vocabulary axis is split across the ranks of ``group``.

    Shapes: ``logits [N, V_local]`` (this rank's columns ``vocab_start .. vocab_start + V_local``,
    float); ``target [N]`` global class indices (the same on every rank); ``weight [N]``;
    ``class_weight [V_local]``, this rank's slice. ``n_vocab`` is the full vocabulary size (default:
    the sum of ``V_local`` over the group, found with one all-reduce). Returns the same value on every
    rank: ``[N]`` for ``"none"``, else 0-d. Backward gives each rank the gradient of its own slice.

    Edges: labels outside ``[0, n_vocab)`` raise unless equal to ``ignore_index``; an all-ignored
    batch has mean 0; float16/bfloat16 logits are computed in float32.
    """
    _checks.reduction(reduction)
    smoothing = _checks.label_smoothing(label_smoothing)
    ignore = _checks.ignore_index(ignore_index)
    if logits.ndim != 2:
        raise _checks.fail("logits", "shape [N, V_local]", f"shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise _checks.fail("logits", "a floating-point tensor", f"dtype {logits.dtype}")
    if tuple(target.shape) != (logits.shape[0],) or target.dtype.is_floating_point:
        raise _checks.fail("target", f"integer class indices of shape ({logits.shape[0]},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    if n_vocab is None:
        size = torch.tensor([logits.shape[-1]], device=logits.device)
        dist.all_reduce(size, group=group)
        n_vocab = int(size.item())
    _checks.labels_in_range(array_namespace(target), target, n_vocab, ignore)
    if z_loss < 0:
        raise _checks.fail("z_loss", "a scale >= 0", repr(z_loss))
    if class_weight is not None:
        class_weight = torch.as_tensor(class_weight, dtype=torch.float32 if logits.dtype != torch.float64
                                       else torch.float64, device=logits.device)
        if tuple(class_weight.shape) != (logits.shape[-1],):
            raise _checks.fail("class_weight", f"this rank's slice, shape ({logits.shape[-1]},)",
                               f"shape {tuple(class_weight.shape)}")
    if normalizer is not None:
        normalizer = float(_checks.normalizer(normalizer))
    return _VocabParallelCE.apply(logits, target, weight, class_weight, vocab_start, n_vocab, ignore,
                                  smoothing, float(z_loss), reduction, normalizer, group)
