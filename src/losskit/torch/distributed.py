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

Second derivatives are refused with a RuntimeError (on ``create_graph=True`` followed by a
backward through the gradient): they would need the derivative of the all-reduced row statistics,
that is more communication in the double backward. Without the refusal autograd would
differentiate the local backward with ``lse`` held constant and return a wrong Hessian silently.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from array_api_compat import array_namespace

from .. import _array, _checks
from .. import reduction as _reduction
from ..losses.linear import LinearCEOptions
from . import _arguments
from ._first_order import first_order_only

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_SECOND_ORDER = ("losskit.torch.distributed: second derivatives of the vocab-parallel losses are not "
                 "supported (they would need all-reduces of the row statistics' derivatives); gather the "
                 "logits and use losskit.torch.SoftmaxCrossEntropy for a double backward")


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
        # the logits shifted by the row max, 0 wherever a logit equals it: a +inf logit too, whose
        # inf - inf would be NaN (the limit: the softmax shares its mass among the +inf logits)
        shifted = (z - row_max.unsqueeze(-1)).masked_fill_(z == row_max.unsqueeze(-1), 0.0)  # in place: no
        # second logits-sized buffer at the forward's peak
        picked = shifted.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
        # one all-reduce for the four row sums: exp-sum, shifted target logit, shifted logit sum, target
        # class weight
        stats = torch.stack([
            torch.exp(shifted).sum(-1),
            torch.where(mine, picked, torch.zeros_like(picked)),
            shifted.sum(-1),
            (torch.where(mine, class_weight[safe], torch.zeros_like(picked))
             if class_weight is not None else torch.zeros_like(picked)),
        ])
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
        lse = row_max + torch.log(stats[0])
        # lse - (1 - a) z_y - (a / V) sum_k z_k, each logit taken from the row max
        loss = torch.log(stats[0]) - (1 - smoothing) * stats[1]
        if smoothing:  # only then: a masked (-inf) logit makes the row sum -inf, and 0 * -inf is NaN
            loss = loss - (smoothing / n_vocab) * stats[2]
        if z_loss:
            loss = loss + z_loss * lse * lse
        example_weight = keep.to(z.dtype)
        if class_weight is not None:
            example_weight = example_weight * stats[3]
        if weight is not None:
            example_weight = example_weight * weight.to(z.dtype)
        xp = array_namespace(z)
        scale, _ = _reduction.scale(xp, example_weight, example_weight.shape[0], reduction, normalizer, z)
        value = _reduction.combine(xp, loss, example_weight, scale, reduction)
        ctx.save_for_backward(logits, lse, scale, safe, mine, row_max, stats[0])
        ctx.options = (smoothing, n_vocab, z_loss)
        return value.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        logits, lse, scale, safe, mine, row_max, total = ctx.saved_tensors
        smoothing, n_vocab, z_loss = ctx.options
        with torch.no_grad():
            z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            # one N x V_local buffer, built in place: softmax (1 + 2 s lse) - a/V - (1 - a) at the label
            grad = torch.sub(z, lse.unsqueeze(-1)).exp_()
            # a row whose max is +inf, or whose every logit is -inf: the limit's softmax, 1 / (their count) at
            # each logit equal to the max (exp(z - lse) is NaN there)
            infinite = torch.isinf(row_max)
            if bool(infinite.any()):
                at_top = (z == row_max.unsqueeze(-1)).to(grad.dtype) / total.unsqueeze(-1)
                grad = torch.where(infinite.unsqueeze(-1), at_top, grad)
            if z_loss:
                grad.mul_(1 + 2 * z_loss * lse.unsqueeze(-1))
            if smoothing:
                grad.sub_(smoothing / n_vocab)
            at_label = (-(1 - smoothing) * mine.to(grad.dtype)).unsqueeze(-1)
            grad.scatter_add_(-1, safe.unsqueeze(-1), at_label)
            grad.mul_((scale * grad_output).unsqueeze(-1))  # upstream: 0-d, or one per row for "none"
            grad.masked_fill_((scale == 0).unsqueeze(-1), 0.0)  # weight 0 adds 0 even for inf logits
            grad = grad.to(logits.dtype)
        (grad,) = first_order_only((grad,), (logits, grad_output), _SECOND_ORDER)
        return grad, *([None] * 11)


def _example_weight(weight, n_rows: int):
    """``weight`` checked as the single-process losses check it: a tensor of one value >= 0 per row, not
    requiring grad (the backward gives it none: a silent None)."""
    if weight is None:
        return None
    _arguments.tensors("torch.as_tensor(weight)", weight=weight)
    _arguments.no_grad("detach it", weight=weight)
    _checks.same_shape("weight", weight, "one value per row", (n_rows,))
    _checks.non_negative(array_namespace(weight), weight, "weight")
    return weight


def _vocab_size_and_checks(target, local: int, n_vocab, ignore, group) -> int:
    """The full vocabulary size (summed over the group when not given); labels checked."""
    if n_vocab is None:
        size = torch.tensor([local], device=target.device)  # NCCL needs it on the GPU
        dist.all_reduce(size, group=group)
        n_vocab = int(size.item())
    _checks.labels_in_range(array_namespace(target), target, n_vocab, ignore)
    return n_vocab


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
    batch has mean 0; float16/bfloat16 logits are computed in float32; ``-inf`` logits (masked
    vocabulary entries) are exact, with gradient 0 there (an infinite loss if label smoothing puts
    mass on them, as in PyTorch); ``+inf`` logits give the core loss's limit (the softmax shares its mass
    among them: ``log`` of their count when the label is one of them, else ``+inf``; ``+inf`` with label
    smoothing, but for a row of +inf alone), with ``z_loss`` an infinite loss whose gradient is not
    finite; a row whose every logit is ``-inf`` gives ``log V`` and the uniform softmax's gradient, as the
    single-process loss does. A second derivative raises. When the
    logits come from a ``hidden`` that requires grad, ``hidden.grad`` on each rank holds only its
    slice's contribution: all-reduce it (Megatron's "copy to tensor-parallel region").

    Example (2 ranks, each with its half of a 6-word vocabulary)::

        start = 3 * dist.get_rank()
        loss = vocab_parallel_cross_entropy(logits[:, start:start + 3], target, vocab_start=start,
                                            ignore_index=-100, label_smoothing=0.1)
    """
    opts = LinearCEOptions(ignore_index=ignore_index, label_smoothing=label_smoothing, z_loss=z_loss,
                           reduction=reduction)  # every option checked before any collective
    smoothing, ignore, z_loss = opts.label_smoothing, opts.ignore_index, opts.z_loss
    if logits.ndim != 2:
        raise _checks.fail("logits", "shape [N, V_local]", f"shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise _checks.fail("logits", "a floating-point tensor", f"dtype {logits.dtype}")
    if tuple(target.shape) != (logits.shape[0],) or target.dtype.is_floating_point:
        raise _checks.fail("target", f"integer class indices of shape ({logits.shape[0]},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    target = target.long()  # uint8 / int8 ids compared with V or shifted by vocab_start would wrap
    weight = _example_weight(weight, logits.shape[0])
    n_vocab = _vocab_size_and_checks(target, logits.shape[-1], n_vocab, ignore, group)
    if class_weight is not None:
        class_weight = torch.as_tensor(class_weight, dtype=torch.float32 if logits.dtype != torch.float64
                                       else torch.float64, device=logits.device)
        if tuple(class_weight.shape) != (logits.shape[-1],):
            raise _checks.fail("class_weight", f"this rank's slice, shape ({logits.shape[-1]},)",
                               f"shape {tuple(class_weight.shape)}")
        _checks.non_negative(array_namespace(class_weight), class_weight, "class_weight")
    if normalizer is not None:
        normalizer = float(_checks.normalizer(normalizer))
    return _VocabParallelCE.apply(logits, target, weight, class_weight, vocab_start, n_vocab, ignore,
                                  smoothing, float(z_loss), reduction, normalizer, group)


class _VocabParallelLinearCE(torch.autograd.Function):
    """Forward computes the loss and all three gradients in one chunked sweep; backward scales them."""

    @staticmethod
    def forward(ctx, hidden, classifier_shard, bias_shard, target, options):
        # half precision in float32: a vocabulary's sum of exps passes float16's 65504 once V does
        layer = (hidden, classifier_shard, bias_shard)
        work = _array.compute_dtype(array_namespace(hidden), hidden.dtype)
        value, grads = _vocab_parallel_linear_sweep(*(None if t is None else t.detach().to(work) for t in layer),
                                                    target, **options)
        grads = [None if g is None else g.to(t.dtype) for g, t in zip(grads, layer, strict=True)]
        ctx.save_for_backward(hidden, classifier_shard, bias_shard, *grads)
        return value.to(hidden.dtype)

    @staticmethod
    def backward(ctx, upstream):
        hidden, classifier_shard, bias_shard, *grads = ctx.saved_tensors
        with torch.no_grad():
            grads = [None if g is None else g * upstream for g in grads]
        grads = first_order_only(grads, (hidden, classifier_shard, bias_shard, upstream), _SECOND_ORDER)
        return *grads, None, None


def _vocab_parallel_linear_sweep(hidden, weight_shard, bias_shard, target, *, start, n_vocab,
                                 example_weight, class_weight, ignore_index, smoothing, z_loss, reduction,
                                 normalizer, rows, group):
    local = weight_shard.shape[0]  # this rank's rows of the classifier
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    index = target - start
    mine = keep & (index >= 0) & (index < local)
    safe = torch.where(mine, index, torch.zeros_like(index))
    w = keep.to(hidden.dtype)
    if class_weight is not None:  # the target's class weight lives on one rank: share it first
        target_cw = torch.where(mine, class_weight[safe], torch.zeros_like(w))
        dist.all_reduce(target_cw, group=group)
        w = w * target_cw
    if example_weight is not None:
        w = w * example_weight.to(hidden.dtype)
    scale, _ = _reduction.scale(array_namespace(hidden), w, w.shape[0], reduction, normalizer, hidden)  # w's shape
    grad_hidden = torch.empty_like(hidden)
    grad_weight = torch.zeros_like(weight_shard)
    grad_bias = None if bias_shard is None else torch.zeros_like(bias_shard)
    total = torch.zeros((), dtype=hidden.dtype)
    for begin in range(0, hidden.shape[0], rows):
        end = min(begin + rows, hidden.shape[0])
        # a row of weight 0 (ignored) reaches no output: its hidden state as 0, so that NaN there adds
        # nothing to g^T h, the shard's gradient
        h = torch.where((w[begin:end] == 0).unsqueeze(-1), torch.zeros_like(hidden[begin:end]), hidden[begin:end])
        z = h @ weight_shard.T if bias_shard is None else torch.addmm(bias_shard, h, weight_shard.T)
        row_max = z.max(dim=-1).values
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
        own, at = mine[begin:end], safe[begin:end]
        picked = z.gather(-1, at.unsqueeze(-1)).squeeze(-1)
        stats = torch.stack([torch.exp(z - row_max.unsqueeze(-1)).sum(-1),
                             torch.where(own, picked, torch.zeros_like(picked)), z.sum(-1)])
        dist.all_reduce(stats, group=group)
        lse = row_max + torch.log(stats[0])
        loss = lse - (1 - smoothing) * stats[1] + z_loss * lse * lse
        if smoothing:  # 0 * a -inf row sum would be NaN
            loss = loss - (smoothing / n_vocab) * stats[2]
        chunk_w = w[begin:end]
        total = total + (scale[begin:end] * torch.where(chunk_w == 0, torch.zeros_like(loss), loss)).sum()
        g = torch.exp(z - lse.unsqueeze(-1)).mul_(1 + 2 * z_loss * lse.unsqueeze(-1))
        g.sub_(smoothing / n_vocab)
        g.scatter_add_(-1, at.unsqueeze(-1), (-(1 - smoothing) * own.to(g.dtype)).unsqueeze(-1))
        g = torch.where(chunk_w.unsqueeze(-1) == 0, torch.zeros_like(g), g)
        g.mul_(scale[begin:end].unsqueeze(-1))
        part = g @ weight_shard
        dist.all_reduce(part, group=group)  # every rank's slice of the vocabulary contributes to d/dh
        grad_hidden[begin:end] = part
        grad_weight.addmm_(g.T, h)
        if grad_bias is not None:
            grad_bias += g.sum(0)
    return total, (grad_hidden, grad_weight, grad_bias)


def vocab_parallel_linear_cross_entropy(hidden, classifier_shard, target, *, vocab_start: int, bias_shard=None,
                                        n_vocab: int | None = None, weight=None, class_weight=None,
                                        ignore_index=None, label_smoothing=0.0, z_loss: float = 0.0,
                                        reduction: str = "mean", normalizer=None,
                                        chunk_size: int | None = None, group=None):
    r"""Fused linear + cross-entropy with the output layer split by vocabulary across ranks.

    Each rank holds ``classifier_shard [V_local, D]`` (rows ``vocab_start .. vocab_start + V_local`` of
    the full ``[V, D]`` layer) and the same ``hidden [N, D]`` and ``target [N]``. Per chunk of rows
    the rank forms only its ``chunk x V_local`` logits, all-reduces the row statistics (as
    :func:`vocab_parallel_cross_entropy`) and the chunk's ``d loss / d hidden``; ``classifier_shard``
    and ``bias_shard`` get the gradient of their own rows. Neither ``N x V`` nor ``N x V_local`` is
    ever held. Loss as :func:`losskit.linear_cross_entropy` (without softcap); reductions "sum"
    and "mean" (the gradients are computed in the forward sweep). Returns the same value on every
    rank.
    """
    opts = LinearCEOptions(chunk_size=chunk_size, ignore_index=ignore_index, label_smoothing=label_smoothing,
                           z_loss=z_loss, reduction=reduction)  # every option checked before any collective
    if opts.reduction not in ("sum", "mean"):
        raise _checks.fail("reduction", '"sum" or "mean" (the fused sweep needs a scalar loss)',
                           repr(reduction))
    smoothing, ignore = opts.label_smoothing, opts.ignore_index
    weight_shard = classifier_shard
    for name, array in (("hidden", hidden), ("classifier_shard", weight_shard)):
        if array.ndim != 2 or not array.dtype.is_floating_point:
            raise _checks.fail(name, "a 2-D floating-point tensor",
                               f"shape {tuple(array.shape)}, {array.dtype}")
    if hidden.shape[1] != weight_shard.shape[1]:
        raise _checks.fail("classifier_shard", f"shape (V_local, {hidden.shape[1]})",
                           f"shape {tuple(weight_shard.shape)}")
    if tuple(target.shape) != (hidden.shape[0],) or target.dtype.is_floating_point:
        raise _checks.fail("target", f"integer class indices of shape ({hidden.shape[0]},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    target = target.long()  # uint8 / int8 ids compared with V or shifted by vocab_start would wrap
    weight = _example_weight(weight, hidden.shape[0])
    n_vocab = _vocab_size_and_checks(target, weight_shard.shape[0], n_vocab, ignore, group)
    if class_weight is not None:
        class_weight = torch.as_tensor(class_weight, dtype=hidden.dtype)
        if tuple(class_weight.shape) != (weight_shard.shape[0],):
            raise _checks.fail("class_weight", f"this rank's slice, shape ({weight_shard.shape[0]},)",
                               f"shape {tuple(class_weight.shape)}")
        _checks.non_negative(array_namespace(class_weight), class_weight, "class_weight")
    # the chunk rows from what every rank shares (the full vocabulary over the group's size), not this
    # rank's width: ranks of different widths ran different numbers of chunks, and their per-chunk
    # all-reduces no longer paired up (gloo aborted; NCCL would hang)
    ranks = dist.get_world_size(group)
    rows = opts.rows(hidden.shape[0], -(-n_vocab // ranks))
    options = {"start": vocab_start, "n_vocab": n_vocab, "example_weight": weight,
               "class_weight": class_weight, "ignore_index": ignore, "smoothing": smoothing,
               "z_loss": opts.z_loss, "reduction": opts.reduction,
               "normalizer": None if normalizer is None else float(_checks.normalizer(normalizer)),
               "rows": rows, "group": group}
    return _VocabParallelLinearCE.apply(hidden, weight_shard, bias_shard, target, options)
