r"""Vocabulary-parallel softmax cross-entropy over ``torch.distributed`` (Megatron-style).

Each rank holds the logits of every example for a contiguous slice of the vocabulary,
``logits[:, start:start + V_local]``; no rank ever holds a full row. Per example:

.. math:: l_i = \mathrm{lse}_i - (1 - a) z_{i, y_i} - \frac{a}{V} \sum_k z_{ik} + s\, \mathrm{lse}_i^2

with ``lse`` the log-sum-exp over the whole vocabulary (``z_loss`` scale ``s``). Forward needs
three all-reduces over the row statistics (MAX of the row max; one SUM of the stacked exp-sum,
target logit, row sum of logits and target class weight), each ``O(N)``, never ``O(N V)``.
Backward is local: ``softmax - y'`` on the rank's own slice, from the saved ``lse``. A CPU rank's share
(float32 / float64) runs in the compiled kernels of :mod:`losskit.fused.shards`, one pass over the shard
each; other devices take a torch-native chain of the same row statistics.
Semantics are losskit's (see docs/semantics.md): label smoothing is ``a/V`` over the full
vocabulary, ``class_weight[y_i]`` scales the whole loss of example i, ``ignore_index`` gives
weight 0, and the reduction rule is :mod:`losskit.reduction`'s.

Second derivatives are refused with a RuntimeError (on ``create_graph=True`` followed by a
backward through the gradient): they would need the derivative of the all-reduced row statistics,
that is more communication in the double backward. Without the refusal autograd would
differentiate the local backward with ``lse`` held constant and return a wrong Hessian silently.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from array_api_compat import array_namespace

from .. import _array, _checks, fused
from .. import reduction as _reduction
from ..losses.linear import LinearCEOptions
from . import _arguments
from ._first_order import first_order_only
from .linear import _checked, _saved_grad_dtype

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_SECOND_ORDER = ("losskit.torch.distributed: second derivatives of the vocab-parallel losses are not "
                 "supported (they would need all-reduces of the row statistics' derivatives); gather the "
                 "logits and use losskit.torch.SoftmaxCrossEntropy for a double backward")


#: the compiled CPU kernels (:mod:`losskit.fused.shards`) for a rank's float32 and float64 CPU logits (half
#: precision in a float32 copy); False: the torch-native chain everywhere, as on other devices (the tests run both)
COMPILED = True


class _VocabParallelCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, weight, class_weight, start, n_vocab, ignore_index, smoothing, z_loss,
                reduction, normalizer, group):
        z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        maxima = _group_max(z, group)
        row_max = maxima[-1]
        keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        mine, safe = _own_labels(target, keep, start, z.shape[-1])
        # the four row sums and the target's class weight, all-reduced at once
        sums, _ = _local_sums(z, maxima, mine, safe, smoothing, keep_exps=False)
        target_cw = (torch.where(mine, class_weight[safe], torch.zeros_like(row_max))
                     if class_weight is not None and class_weight.numel() else torch.zeros_like(row_max))
        stats = torch.cat([sums, target_cw.unsqueeze(0)])
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
        log_norm = _log_norm(stats)
        # lse - (1 - a) z_y - (a / V) sum_k z_k, each logit taken from the row max (lse - z_y formed as two
        # numbers of a row's own size: a sure row keeps its tiny loss)
        loss = log_norm - (1 - smoothing) * stats[2]
        if smoothing:  # only then: a masked (-inf) logit makes the row sum -inf, and 0 * -inf is NaN
            loss = loss - (smoothing / n_vocab) * stats[3]
        lse = row_max + log_norm
        if z_loss:
            loss = loss + z_loss * lse * lse
        example_weight = keep.to(z.dtype)
        if class_weight is not None:
            example_weight = example_weight * stats[4]
        if weight is not None:
            example_weight = example_weight * weight.to(z.dtype)
        xp = array_namespace(z)
        scale, _ = _reduction.scale(xp, example_weight, example_weight.shape[0], reduction, normalizer, z)
        value = _reduction.combine(xp, loss, example_weight, scale, reduction)
        ctx.save_for_backward(logits, lse, scale, safe, mine, row_max, log_norm, stats[2])
        ctx.options = (smoothing, n_vocab, z_loss)
        return value.to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        logits, lse, scale, safe, mine, row_max, log_norm, picked = ctx.saved_tensors
        smoothing, n_vocab, z_loss = ctx.options
        with torch.no_grad():
            z = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            # one N x V_local buffer, built in place; c: the row's scale times the upstream value (0-d, or one per
            # row for "none")
            scaled = (scale * grad_output).expand(row_max.shape)
            growth = 2 * z_loss * lse if z_loss else None
            host = _host_logits(z)
            if host is not None and _finite(row_max):
                grad = _recycled(host.size, host.dtype).reshape(host.shape)
                _host_gradient(host, row_max, log_norm, scaled, scale == 0, growth, smoothing, n_vocab, safe, mine,
                               picked, grad)
                grad = torch.from_numpy(grad)
            else:
                grad = _gradient(_shifted(z, row_max).exp_(), log_norm, scaled, growth, smoothing, n_vocab, safe,
                                 mine, picked, (scale == 0).expand(row_max.shape))
            grad = grad.to(logits.dtype)
        (grad,) = first_order_only((grad,), (logits, grad_output), _SECOND_ORDER)
        return grad, *([None] * 11)


# -- the row statistics both losses share. A rank may hold no column at all (a vocabulary smaller than the
# group, or an uneven split): its row max is -inf and its sums 0, and it takes part in every collective, as
# the others wait for it there

def _row_max(z):
    """``(row max, its column)`` of this rank's ``[N, V_local]`` logits; -inf (and 0) for a rank of no columns."""
    if z.shape[-1] == 0:
        return (torch.full(z.shape[:-1], float("-inf"), dtype=z.dtype, device=z.device),
                torch.zeros(z.shape[:-1], dtype=torch.int64, device=z.device))
    return z.max(dim=-1)


def _holds(local_max, row_max, z):
    """The rows whose group max lies on this rank (a rank of columns)."""
    return (local_max == row_max) & (z.shape[-1] > 0)


def _own_labels(target, keep, start: int, local: int):
    """``(mine, safe)``: which rows' labels lie on this rank, and their column here (0 elsewhere)."""
    index = target - start
    mine = keep & (index >= 0) & (index < local)
    return mine, torch.where(mine, index, torch.zeros_like(index))


def _shifted(z, row_max, in_place: bool = False):
    """``z - row_max`` (the group's row max), exact where a logit is near the max; ``in_place``: over ``z``. Where
    the max is +-inf, 0 wherever a logit equals it: a +inf logit, whose inf - inf would be NaN (the limit: the
    softmax shares its mass among the +inf logits), and every logit of a row of -inf alone (the uniform
    softmax)."""
    top = z == row_max.unsqueeze(-1) if bool(torch.isinf(row_max).any()) else None  # only then: 2 passes fewer
    shifted = z.sub_(row_max.unsqueeze(-1)) if in_place else z - row_max.unsqueeze(-1)
    return shifted if top is None else shifted.masked_fill_(top, 0.0)


def _exp_sums(shifted, top, holds, restore: bool):
    """``(sum of exp over the logits but one at the row's max, 1 where this rank holds the max, the exps)`` per
    row, the exps written over ``shifted``: the exp-sum is the first two's total, kept apart so that its log is
    a ``log1p`` of the first (:func:`_log_norm`). The one left out is the local max's column ``top`` (its exp is
    1), on the rows whose group max lies here: O(N), no mask over the logits. ``restore``: the ones put back
    (the gradient's softmax reads the exps)."""
    holds_real = holds.to(shifted.dtype)
    exps = shifted.exp_()
    if not exps.shape[-1]:
        return exps.sum(-1), holds_real, exps
    at = top.unsqueeze(-1)
    exps.scatter_(-1, at, torch.where(holds, torch.zeros_like(holds_real), exps.gather(-1, at).squeeze(-1))
                  .unsqueeze(-1))
    below = exps.sum(-1)
    if restore:
        exps.scatter_(-1, at, torch.where(holds, torch.ones_like(holds_real), exps.gather(-1, at).squeeze(-1))
                      .unsqueeze(-1))
    return below, holds_real, exps


def _group_max(z, group):
    """``(host, local max, its column or None, group max)`` of this rank's logits: ``host`` their NumPy view for
    the compiled kernels (:func:`_host_logits`), None where those do not take the call (another device, or a row
    whose group max is not finite); the column only from the torch-native chain (:func:`_local_sums` finds it
    where it needs it). One MAX all-reduce."""
    host = _host_logits(z)
    local_max, top = (_host_maxima(host), None) if host is not None else _row_max(z)
    row_max = local_max.clone()
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
    return (host if host is not None and _finite(row_max) else None), local_max, top, row_max


def _local_sums(z, maxima, mine, safe, smoothing: float, keep_exps: bool):
    """``(sums [4, N], exps or None)``: this rank's row sums to all-reduce (exp-sum below the max and the count
    at it from the compiled kernel, or the exp-sum but one logit at the max and whether this rank holds it from
    the torch-native chain: their totals are the same exp-sum; the shifted target logit; the shifted logit sum),
    from :func:`_group_max`'s ``maxima``. ``keep_exps``: ``exp(z - row_max)`` written over ``z`` and returned (the
    linear form's chunk, whose gradient is built in place), else ``z`` is left as it is."""
    host, local_max, top, row_max = maxima
    if host is not None:
        sums = _host_sums(host, row_max, mine, safe, smoothing, store=keep_exps)
        return sums, (torch.from_numpy(host) if keep_exps else None)  # (z's own memory: a contiguous chunk)
    if top is None:
        top = _row_max(z)[1]
    holds = _holds(local_max, row_max, z)
    shifted = _shifted(z, row_max, in_place=keep_exps)
    picked = torch.where(mine, _picked(shifted, safe), torch.zeros_like(row_max))
    logit_sum = shifted.sum(-1) if smoothing else torch.zeros_like(row_max)  # (read before the exp below)
    below, holds, exps = _exp_sums(shifted, top, holds, restore=keep_exps)
    return torch.stack([below, holds, picked, logit_sum]), (exps if keep_exps else None)


def _host_logits(z):
    """This rank's logits as a C-contiguous NumPy array for the compiled kernels (:mod:`losskit.fused.shards`),
    the tensor's own memory where it is contiguous; None where they do not take it (another device, half
    precision not yet widened, no column, numba missing, or :data:`COMPILED` off)."""
    if not (COMPILED and z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64) and z.shape[-1]
            and fused.available()):
        return None
    return np.ascontiguousarray(z.detach().numpy())


def _finite(row_max) -> bool:
    """Whether every row's group max is finite: the kernels' sums need it (a row of +inf or of -inf alone takes
    the torch-native chain's limits). Every rank holds the same maxima, so all take the same path."""
    return bool(torch.isfinite(row_max).all())


def _shard_kernel(name: str, size: int):
    """A kernel of :mod:`losskit.fused.shards`, serial below :data:`~losskit.losses._compiled.SERIAL_BELOW`
    elements (as a loss call's), with numba's threads started to sleep when idle above it."""
    from ..fused import shards
    from ..fused import threads as fused_threads
    from ..losses._compiled import SERIAL_BELOW

    kernel = getattr(shards, name)
    if size < SERIAL_BELOW:
        return fused.serial_twin(kernel)
    fused_threads.start()
    return kernel


def _recycled(size: int, dtype):
    from ..losses._compiled import recycled

    return recycled(size, dtype)


def _host_maxima(host):
    maxima = np.empty(host.shape[0], host.dtype)
    _shard_kernel("shard_maxima", host.size)(host, maxima)
    return torch.from_numpy(maxima)


def _host_sums(host, row_max, mine, safe, smoothing: float, store: bool):
    """The ``[4, N]`` row sums of :func:`losskit.fused.shards.shard_sums` (the torch-native chain's layout)."""
    sums = np.empty((4, host.shape[0]), host.dtype)
    labels = torch.where(mine, safe, -1).numpy()
    _shard_kernel("shard_sums", host.size)(host, row_max.numpy(), labels, bool(smoothing), store, sums)
    return torch.from_numpy(sums)


def _host_gradient(host, row_max, log_norm, scaled, zero, growth, smoothing: float, n_vocab: int, safe, mine, picked,
                   out=None) -> None:
    """:func:`_gradient` by :func:`losskit.fused.shards.shard_grad` into ``out``, or over ``host``'s stored exps
    (``shard_grad_stored``) when ``out`` is None. ``zero``: the rows of scale 0 (0 whatever the upstream value)."""
    def rows(t):
        return t.detach().to(torch.float64).expand(row_max.shape).contiguous().numpy()

    labels = torch.where(mine, safe, -1).numpy()
    zero = zero.expand(row_max.shape).to(torch.uint8).contiguous().numpy()
    growth = rows(torch.zeros_like(row_max) if growth is None else growth)
    common = (rows(log_norm), rows(scaled), zero, growth, float(smoothing), float(n_vocab), labels, rows(picked))
    if out is None:
        _shard_kernel("shard_grad_stored", host.size)(host, *common)
    else:
        _shard_kernel("shard_grad", host.size)(host, row_max.numpy(), *common, out)


def _log_norm(stats):
    """``log sum_k exp(z_k - max)`` from the all-reduced :func:`_exp_sums` (rows 0 and 1 of ``stats``):
    ``log1p`` of the exp-sum but one logit at the max, plus the ranks holding the max less one (each left one
    out; exact for a row that is sure of one class, where the log of 1 + 1e-9 rounded to 1 gave a loss of 0)."""
    return torch.log1p(stats[0] + (stats[1] - 1))


def _picked(shifted, safe):
    """The shifted logit at each row's label column (0 on a rank of no columns: no label is there)."""
    if shifted.shape[-1] == 0:
        return torch.zeros(shifted.shape[:-1], dtype=shifted.dtype, device=shifted.device)
    return shifted.gather(-1, safe.unsqueeze(-1)).squeeze(-1)


def _gradient(exps, log_norm, scaled, growth, smoothing: float, n_vocab: int, safe, mine, picked, zero_rows):
    """The gradient on this rank's columns, in place of ``exps`` = ``exp(z - row_max)``: ``(softmax (1 + growth) -
    a / V) c``, and ``(p_y (1 + growth) - a / V - (1 - a)) c`` at the label (:func:`_set_at_labels`), with ``c``
    = ``scaled`` per row folded into the softmax's one multiply; 0 on ``zero_rows`` (weight 0), even for inf
    logits. The softmax is ``exps * exp(-log_norm)``, from the shifted logits, not ``exp(z - lse)``: lse rounds
    to the precision of the row max, which at logits of 1e4 in float32 put an error of 3e-4 in every gradient.
    ``growth``: z-loss's ``2 s lse`` per row, or None."""
    factor = torch.exp(-log_norm) * scaled
    if growth is not None:
        factor = factor * (1 + growth)
    grad = exps.mul_(factor.unsqueeze(-1))
    if smoothing:
        grad.sub_((smoothing / n_vocab * scaled).unsqueeze(-1))
    _set_at_labels(grad, safe, mine, picked, log_norm, smoothing, n_vocab, growth, scaled)
    if bool(zero_rows.any()):  # (a pass only when a row has weight 0)
        grad.masked_fill_(zero_rows.unsqueeze(-1), 0.0)
    return grad


def _set_at_labels(grad, safe, mine, picked, log_norm, smoothing: float, n_vocab: int, growth, scaled) -> None:
    """``grad[i, y_i] = (p_y (1 + growth) - a / V - (1 - a)) scaled_i`` on the rows whose label lies here, with
    ``p_y - 1`` as ``expm1(s_y - log_norm)`` (``picked`` = ``s_y``, the shifted label logit): a sure row's p_y
    rounds to 1, and ``p_y - 1`` to 0 where it is -1e-8."""
    if not grad.shape[-1]:
        return
    below = torch.expm1(picked - log_norm)  # p_y - 1
    value = below + smoothing * (1 - 1 / n_vocab)
    if growth is not None:
        value = value + (below + 1) * growth
    value = value * scaled
    at = safe.unsqueeze(-1)
    grad.scatter_(-1, at, torch.where(mine, value.to(grad.dtype), grad.gather(-1, at).squeeze(-1)).unsqueeze(-1))


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


def _class_weight_slice(class_weight, like, width: int | None = None):
    """This rank's ``class_weight`` slice as a checked tensor on ``like``'s device, in its compute dtype
    (float32 for half precision), or None."""
    if class_weight is None:
        return None
    width = like.shape[-1] if width is None else width
    work = torch.float64 if like.dtype == torch.float64 else torch.float32
    class_weight = torch.as_tensor(class_weight, dtype=work, device=like.device)
    if tuple(class_weight.shape) != (width,):
        raise _checks.fail("class_weight", f"this rank's slice, shape ({width},)", f"shape {tuple(class_weight.shape)}")
    _checks.non_negative(array_namespace(class_weight), class_weight, "class_weight")
    return class_weight


def _vocab_size_and_checks(target, local: int, start, n_vocab, ignore, group) -> tuple[int, int]:
    """``(n_vocab, start)``: the full vocabulary size, the sum of the shards' widths over the group, from one
    all-gather of each rank's ``(vocab_start, width)``; labels checked (before it when ``n_vocab`` is given).
    A given ``n_vocab`` must equal that sum: the loss takes each logit from its row's max, which cancels only
    over ``n_vocab`` columns, and label smoothing spreads ``a / n_vocab`` over every column (a padded
    vocabulary's padding is part of it: give it -inf logits). The shards must tile ``0 .. n_vocab``: two ranks
    of one ``vocab_start``, or a start past the vocabulary, gave a wrong loss without a word (found in review).
    Every rank gathers the same shards, so a mismatch raises on every rank alike."""
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise _checks.fail("vocab_start", "an int (this rank's first column in the full vocabulary)", repr(start))
    start = int(start)
    if n_vocab is not None:
        _checks.labels_in_range(array_namespace(target), target, n_vocab, ignore)
    mine = torch.tensor([start, local], dtype=torch.int64, device=target.device)  # NCCL needs it on the GPU
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, mine, group=group)
    shards = [tuple(int(v) for v in shard.tolist()) for shard in gathered]
    total = sum(width for _, width in shards)
    if n_vocab is None:
        _checks.labels_in_range(array_namespace(target), target, total, ignore)
    elif n_vocab != total:
        raise _checks.fail("n_vocab", f"the sum of the shards' widths over the group ({total})", repr(n_vocab),
                           "a padded vocabulary's padding columns count: give them -inf logits")
    edge = 0
    for first, width in sorted(shard for shard in shards if shard[1]):  # (a rank of no column starts anywhere)
        if first != edge:
            break
        edge += width
    if edge != total or any(not 0 <= first <= total for first, _ in shards):
        raise _checks.fail("vocab_start", f"shards that tile the vocabulary 0..{total} without gap or overlap "
                           "(each rank's vocab_start the sum of the widths of the ranks before it)",
                           f"(vocab_start, width) {', '.join(map(str, shards))} by rank")
    return total, start


def vocab_parallel_cross_entropy(logits, target, *, vocab_start: int, n_vocab: int | None = None,
                                 weight=None, class_weight=None, ignore_index=None, label_smoothing=0.0,
                                 z_loss: float = 0.0, reduction: str = "mean", normalizer=None, group=None):
    r"""Softmax cross-entropy of logits whose vocabulary axis is split across the ranks of ``group``.

    Shapes: ``logits [N, V_local]`` (this rank's columns ``vocab_start .. vocab_start + V_local``,
    float); ``target [N]`` global class indices (the same on every rank); ``weight [N]``;
    ``class_weight [V_local]``, this rank's slice. ``n_vocab`` is the full vocabulary size: the sum of
    ``V_local`` over the group, found with one all-reduce (a given one must equal it). A rank may hold no
    column (``V_local = 0``: a vocabulary smaller than the group). Returns the same value on every
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
    _arguments.tensors("the vocab-parallel losses take torch tensors", logits=logits, target=target)
    if logits.ndim != 2:
        raise _checks.fail("logits", "shape [N, V_local]", f"shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise _checks.fail("logits", "a floating-point tensor", f"dtype {logits.dtype}")
    if tuple(target.shape) != (logits.shape[0],) or target.dtype.is_floating_point:
        raise _checks.fail("target", f"integer class indices of shape ({logits.shape[0]},)",
                           f"shape {tuple(target.shape)} and dtype {target.dtype}")
    target = target.long()  # uint8 / int8 ids compared with V or shifted by vocab_start would wrap
    weight = _example_weight(weight, logits.shape[0])
    class_weight = _class_weight_slice(class_weight, logits)
    if normalizer is not None:
        normalizer = float(_checks.normalizer(normalizer))
    n_vocab, vocab_start = _vocab_size_and_checks(target, logits.shape[-1], vocab_start, n_vocab, ignore, group)
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
        # float16's kept in float32 until backward has scaled them, as the other fused forms keep them (rounded
        # here at unit scale, a token mean's small gradients were subnormal whatever GradScaler's scale: 1.4e-2
        # off at 1024, found in review)
        saved = _saved_grad_dtype(hidden)
        grads = [None if g is None else g.to(saved if t.is_floating_point() else t.dtype)
                 for g, t in zip(grads, layer, strict=True)]
        ctx.save_for_backward(hidden, classifier_shard, bias_shard, *grads)
        return value.to(hidden.dtype)

    @staticmethod
    def backward(ctx, upstream):
        hidden, classifier_shard, bias_shard, *grads = ctx.saved_tensors
        with torch.no_grad():
            grads = [None if g is None else (g * upstream).to(t.dtype)
                     for g, t in zip(grads, (hidden, classifier_shard, bias_shard), strict=True)]
        grads = first_order_only(grads, (hidden, classifier_shard, bias_shard, upstream), _SECOND_ORDER)
        return *grads, None, None


def _vocab_parallel_linear_sweep(hidden, weight_shard, bias_shard, target, *, start, n_vocab,
                                 example_weight, class_weight, ignore_index, smoothing, z_loss, reduction,
                                 normalizer, rows, group):
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    mine, safe = _own_labels(target, keep, start, weight_shard.shape[0])  # this rank's rows of the classifier
    w = keep.to(hidden.dtype)
    if class_weight is not None:  # the target's class weight lives on one rank: share it first
        target_cw = torch.where(mine, class_weight[safe], torch.zeros_like(w)) if class_weight.numel() \
            else torch.zeros_like(w)
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
        maxima = _group_max(z, group)
        host, row_max = maxima[0], maxima[-1]
        own, at = mine[begin:end], safe[begin:end]
        stats, exps = _local_sums(z, maxima, own, at, smoothing, keep_exps=True)  # (z's logits are read no more)
        dist.all_reduce(stats, group=group)
        log_norm = _log_norm(stats)
        lse = row_max + log_norm
        # lse - z_y formed from the shifted logits (a sure row keeps its tiny loss, as the core's sweep does)
        loss = log_norm - (1 - smoothing) * stats[2] + z_loss * lse * lse
        if smoothing:  # 0 * a -inf row sum would be NaN
            loss = loss - (smoothing / n_vocab) * stats[3]
        chunk_w = w[begin:end]
        total = total + (scale[begin:end] * torch.where(chunk_w == 0, torch.zeros_like(loss), loss)).sum()
        growth = 2 * z_loss * lse if z_loss else None
        if host is not None:  # in place over the exps
            g = exps
            _host_gradient(host, row_max, log_norm, scale[begin:end], chunk_w == 0, growth, smoothing, n_vocab, at,
                           own, stats[2])
        else:
            g = _gradient(exps, log_norm, scale[begin:end], growth, smoothing, n_vocab, at, own, stats[2],
                          chunk_w == 0)
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
    # tensors on hidden's device, the layer in hidden's dtype, no gradient asked of the target: the fused linear
    # ops' rules (a NumPy hidden met raw AttributeErrors, a float64 shard beside float32 hidden was rounded)
    _checked(hidden, weight_shard, target, bias_shard, {}, names=("hidden", "classifier_shard", "target", "bias_shard"))
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
    if bias_shard is not None and tuple(bias_shard.shape) != (weight_shard.shape[0],):
        # an [N, V_local] bias broadcast in the logits and summed over rows in its gradient: every row the column sum
        raise _checks.fail("bias_shard", f"shape ({weight_shard.shape[0]},) (one per row of classifier_shard)",
                           f"shape {tuple(bias_shard.shape)}")
    target = target.long()  # uint8 / int8 ids compared with V or shifted by vocab_start would wrap
    weight = _example_weight(weight, hidden.shape[0])
    # (on hidden's device, in its compute dtype: a list with CUDA hidden was indexed on the CPU, and float16
    # hidden rounded the weights to float16 where the sweep computes in float32)
    class_weight = _class_weight_slice(class_weight, hidden, weight_shard.shape[0])
    n_vocab, vocab_start = _vocab_size_and_checks(target, weight_shard.shape[0], vocab_start, n_vocab, ignore,
                                                  group)
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
