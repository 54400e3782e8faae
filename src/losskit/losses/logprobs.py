r"""Per-token log-probabilities of ``hidden @ classifier.T (+ bias)``, chunked, and the sweep that
every post-training loss runs on.

For hidden states ``h``, a classifier ``C [V, D]``, a bias ``b`` and a temperature ``T``:

.. math:: s = (h C^\top + b) / T, \quad \log p_t = s_{t y_t} - \mathrm{lse}(s_t), \quad
          H_t = \mathrm{lse}(s_t) - \sum_k p_{tk} s_{tk}

and ``d log p_t / d s_t = onehot(y_t) - p_t``. A post-training loss (DPO, GRPO, ...) is a small
formula on the ``log p_t`` of a batch of sequences: given ``d loss / d log p_t = c_t``, the
gradient of the logits is ``c_t (onehot - p_t) / T`` and the three gemms of the linear
cross-entropy (:mod:`losskit.losses.linear`) finish the job.

Design note: the formula's ``c_t`` depends on whole sequences (a DPO pair's summed log-probs, a
GSPO sequence's mean), so :func:`sequence_sweep` hands the loss's *objective* whole *units* (a
pair, a sequence): a chunk of logits holds one or more whole units, the objective returns
``c_t`` for them, and the same chunk buffer becomes the gradient (3 gemms per token in all, as
the linear cross-entropy). With the default budget (about 2^25 logits per chunk) a unit of up to
4x the budget is held whole in one chunk (a DPO pair of 2 x 256 tokens at V = 128256 is 2x): one
gemm fewer is worth the larger buffer. A larger unit, or one over an explicit ``chunk_size``, is
done in two passes (log-probs over sub-chunks, then the logits recomputed for the gradient: one
gemm more), so any sequence length fits in bounded memory. The objective divides by batch-wide
counts, never by a chunk's, so the chunks' losses add up to the loss. On the NumPy path a chunk's
ignored tokens are dropped before its gemm (no loss, no gradient: their logits are never
needed), and the budget counts kept tokens; elsewhere the shapes stay static (JAX traces this
sweep under ``jit``) and ignored tokens are computed, then zeroed. The objective protocol
(``n_units``, ``rows(start, stop)``, ``terms(xp, logp, mask, start, stop) -> (loss, dlogp,
stats)``) is documented on :func:`sequence_sweep`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .. import _array, _checks
from ..activations import log_normalizer_xp, shifted_logits_xp
from ._half import computes_half_in_float32
from .declaration import number
from .distribution import _temperature_fits
from .linear import CHUNK_ELEMENTS, KeptRows, accumulate_at_b, check_bias

#: with the default budget, a unit of up to this many times the budget is held whole (one pass)
WHOLE_UNIT_FACTOR = 4

__all__ = ["linear_logprobs", "linear_logprobs_vjp", "TokenLogProbs", "Sweep", "sequence_sweep", "linear_arrays"]


class TokenLogProbs(NamedTuple):
    """What :func:`linear_logprobs` returns when ``entropy`` or ``accuracy`` is asked for (None where
    not asked): arrays in the shape of ``target``, 0 (False) at ignored tokens."""

    logps: Any
    entropy: Any
    accuracy: Any


@dataclass
class Sweep:
    """The result of :func:`sequence_sweep`: ``logps``/``entropy``/``accuracy`` ``[R, T]``; with an
    objective, ``loss`` (0-d), ``grads`` (``grad_hidden [R, T, D]``, ``grad_classifier [V, D]``,
    ``grad_bias [V]`` or None) and the objective's per-unit ``stats``, concatenated in unit order."""

    logps: Any
    entropy: Any = None
    accuracy: Any = None
    loss: Any = None
    grads: tuple | None = None
    stats: dict = field(default_factory=dict)


def linear_arrays(hidden, classifier, target, bias, *, sequences: bool = False):
    """The namespace and the checked arrays of a token-level linear call: ``hidden [..., D]`` (``[R,
    T, D]`` when ``sequences``), ``classifier [V, D]`` of hidden's dtype, integer ``target`` of
    shape ``hidden.shape[:-1]``, ``bias [V]`` or None."""
    _checks.given(hidden=hidden, classifier=classifier, target=target)
    xp, arrays = _array.namespace(hidden=hidden, classifier=classifier, target=target, bias=bias)
    hidden, classifier, target, bias = arrays["hidden"], arrays["classifier"], arrays["target"], arrays["bias"]
    _checks.floating(xp, hidden, "hidden")
    _checks.floating(xp, classifier, "classifier")
    if sequences and hidden.ndim != 3:
        raise _checks.fail("hidden", "a 3-D array [sequences, tokens, features]", f"shape {tuple(hidden.shape)}")
    if hidden.ndim < 2:
        raise _checks.fail("hidden", "an array [..., features]", f"shape {tuple(hidden.shape)}")
    if classifier.ndim != 2 or classifier.shape[1] != hidden.shape[-1]:
        raise _checks.fail("classifier", f"shape (V, {hidden.shape[-1]}) to match hidden's features",
                           f"shape {tuple(classifier.shape)}")
    if classifier.shape[0] == 0:
        raise _checks.fail("classifier", "at least one class (row)", f"shape {tuple(classifier.shape)}")
    if hidden.dtype != classifier.dtype:
        raise _checks.fail("classifier", f"dtype {hidden.dtype} (hidden's)", f"dtype {classifier.dtype}")
    if not _array.isdtype(xp, target.dtype, "integral") or tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise _checks.fail("target", f"integer token ids of shape {tuple(hidden.shape[:-1])} (hidden's without "
                           "the features)", f"shape {tuple(target.shape)} and dtype {target.dtype}")
    # in the index dtype: -100 (ignore_index) and ids up to V compare in uint8 / int8 wrapped (156 taken as
    # ignored, a valid 199 refused or NaN under jit at V = 256)
    target = _array.as_index(xp, target)
    if bias is not None:
        check_bias(xp, bias, classifier.shape[0], hidden.dtype)
        bias = xp.astype(bias, hidden.dtype)
    return xp, hidden, classifier, target, bias


def _chunk_rows(chunk_size, n_vocab: int) -> int:
    if chunk_size is None:
        return max(1, CHUNK_ELEMENTS // n_vocab)
    return _checks.int_at_least(chunk_size, "chunk_size", 1, "None or a positive int (tokens per chunk)")


class _Tokens:
    """One call's fixed pieces: the arrays, and how a chunk of tokens becomes its statistics and,
    given ``c = d loss / d log p``, its three gradients."""

    def __init__(self, xp, hidden, classifier, target, bias, temperature, ignore_index, entropy):
        self.xp, self.classifier, self.bias = xp, classifier, bias
        self.inv_t = 1.0 / temperature
        self.entropy = entropy
        self.n_vocab = classifier.shape[0]
        self.mask = target != ignore_index if ignore_index is not None else \
            xp.ones(target.shape, dtype=xp.bool, device=_array.device(target))
        self.labels = xp.where(self.mask, target, xp.zeros_like(target))
        self.host = _host_kernels(hidden, classifier, bias)
        self.classes = xp.arange(self.n_vocab, dtype=target.dtype, device=_array.device(hidden))

    def logits(self, h):
        if self.host is not None:
            return self.host.logits(h, self.classifier, self.bias)
        return self._fresh_logits(h)

    def _fresh_logits(self, h):
        z = h @ self.xp.matrix_transpose(self.classifier)
        return z if self.bias is None else z + self.bias

    def stats(self, h, labels, for_grad=False):
        """``(z, logp, entropy, correct, state)`` of tokens ``h [n, D]``; ``state`` is what
        :meth:`grad` needs to turn ``z`` into the gradient (``for_grad``: it will be asked)."""
        z = self.logits(h)
        if self.host is not None:
            result = self.host.stats(z, labels, self.inv_t, self.entropy, for_grad)
            if result is not None:
                return result
            z = self._fresh_logits(h)  # a flagged chunk: the kernel may have written exps into its buffer
        return self._stats_xp(z, labels)

    def _stats_xp(self, z, labels):
        xp = self.xp
        # not z / T - max: that overflows first; a +inf logit (finite hidden states past float32's limit) is
        # shifted to 0, the others to -inf (inf - inf was NaN: the limits 0 and -inf)
        d = shifted_logits_xp(xp, z)[0] * self.inv_t
        e = xp.exp(d)
        norm = log_normalizer_xp(xp, d)[:, 0]  # log1p of the terms below the max: tiny log-probs kept
        total = xp.exp(norm)
        onehot = labels[:, None] == self.classes
        zero = xp.zeros_like(d)
        d_y = xp.sum(xp.where(onehot, d, zero), axis=-1)
        # an id outside the vocabulary (checked before the sweep, unless traced or lazy): NaN, not log p = -norm
        d_y = xp.where(_checks.valid_labels(labels, self.n_vocab), d_y, xp.full_like(d_y, math.nan))
        entropy = norm - xp.sum(xp.where(e > 0, e * d, zero), axis=-1) / total if self.entropy else None
        rest = xp.sum(xp.where(onehot, zero, e), axis=-1) / total
        correct = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1) >= xp.max(z, axis=-1)
        return z, d_y - norm, entropy, correct, (e / total[:, None], onehot, rest)

    def grad(self, z, labels, coef, state):
        """``d loss / d z`` of a chunk, from ``coef [n]`` (in ``z``'s memory on the host path)."""
        if isinstance(state, _HostState):
            return self.host.grad(z, self.inv_t, coef, state)
        xp = self.xp
        p, onehot, rest = state
        c = xp.astype(coef, z.dtype)[:, None] * self.inv_t
        return c * xp.where(onehot, rest[:, None], -p)

    def backprop(self, h, g, parts, grads):
        """Folds a chunk's ``d loss / d z`` into the gradients: ``g C`` kept in ``parts``; ``g^T h``
        and the bias's column sums accumulated in ``grads``."""
        xp = self.xp
        parts.append(g @ self.classifier)
        grads[0] = accumulate_at_b(xp, grads[0], xp.matrix_transpose(g), h)
        if grads[1] is not None:
            grads[1] = grads[1] + xp.sum(g, axis=0)


def _host_kernels(hidden, classifier, bias):
    import numpy as np

    from .. import fused

    arrays = [hidden, classifier] + ([] if bias is None else [bias])
    if fused.available() and all(isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64) for x in arrays):
        from ..fused import threads

        threads.start()  # numba's threads, to sleep soon when idle (before the parallel kernels' first run)
        return _Host()
    return None


class _Host:
    """The NumPy float32/float64 path: the compiled kernels of :mod:`losskit.fused.logprobs`, the
    chunk buffer becoming its own gradient. A chunk with a non-finite logit returns None from
    :meth:`stats`, and the caller takes the array-API expression, which gives the limits.

    One buffer serves every chunk of a call (a fresh ``n x V`` array per chunk would be mapped
    and faulted in anew each time). The sweep drops a chunk's ignored tokens before its gemm
    (:class:`~losskit.losses.linear.KeptRows`): they have no loss and no gradient."""

    def __init__(self):
        self.buffer = None

    def logits(self, h, classifier, bias):
        import numpy as np

        n, n_vocab = h.shape[0], classifier.shape[0]
        if self.buffer is None or self.buffer.shape[0] < n:
            self.buffer = None  # the old one freed before the new one is mapped
            self.buffer = np.empty((n, n_vocab), dtype=h.dtype)
        z = self.buffer[:n]
        np.matmul(h, classifier.T, out=z)
        if bias is not None:
            z += bias
        return z

    def stats(self, z, labels, inv_t, with_entropy, store_exp):
        import numpy as np

        from ..fused.logprobs import token_stats_rows

        n = z.shape[0]
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        logp, row_max, log_norm, rest = (np.empty(n) for _ in range(4))
        entropy = np.empty(n if with_entropy else 0)
        correct, flags = np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.uint8)
        token_stats_rows(z, labels, inv_t, logp, row_max, log_norm, rest, entropy, correct, with_entropy, store_exp,
                         flags)
        if flags.any():
            return None
        return (z, logp.astype(z.dtype), entropy.astype(z.dtype) if with_entropy else None, correct.astype(bool),
                _HostState(labels, row_max, log_norm, rest, store_exp))

    def grad(self, z, inv_t, coef, state):
        import numpy as np

        from ..fused.logprobs import token_grad_rows

        token_grad_rows(z, state.labels, inv_t, state.row_max, state.log_norm, state.rest,
                        np.ascontiguousarray(coef, dtype=np.float64), state.stored)
        return z


class _HostState(NamedTuple):
    """What the gradient kernel needs of the statistics kernel's results."""

    labels: Any
    row_max: Any
    log_norm: Any
    rest: Any
    stored: bool


def sequence_sweep(xp, hidden, classifier, target, *, bias=None, temperature=1.0, ignore_index=-100,
                   objective=None, entropy=False, accuracy=False, chunk_size=None) -> Sweep:
    """Log-probs of ``hidden [R, T, D]`` at ``target [R, T]`` and, with an ``objective``, its loss
    and gradients, chunk by chunk (arrays checked by :func:`linear_arrays`).

    The objective: ``n_units``; ``rows(start, stop)``, the sequence indices of units
    ``start..stop-1`` in the order ``terms`` receives them; ``terms(xp, logp, mask, start, stop)``
    with ``logp``, ``mask`` ``[len(rows), T]`` (logp 0 where masked) returns ``(loss, dlogp,
    stats)``: this chunk's 0-d contribution to the loss, ``d loss / d logp`` (0 where masked) and a
    dict of per-unit arrays; for an empty batch (no unit, or no token) it is called once, with every unit
    and no token kept. Chunks hold whole units (see the module note); ``chunk_size`` is the
    budget in tokens (default: about 2^25 logits, and a unit of up to 4x that in one chunk).
    """
    temperature = number(temperature, "temperature", low=0.0, low_open=True)
    _temperature_fits(xp, temperature, hidden.dtype, squared=False)  # 1 / T inf in float32 below 2.9e-39
    ignore_index = _checks.ignore_index(ignore_index)
    n_seq, n_tok = hidden.shape[0], hidden.shape[1]
    if n_seq * n_tok == 0:
        return _empty(xp, hidden, classifier, bias, objective, entropy, accuracy)
    budget = _chunk_rows(chunk_size, classifier.shape[0])
    whole_unit = budget if chunk_size is not None else WHOLE_UNIT_FACTOR * budget
    _checks.labels_in_range(xp, target, classifier.shape[0], ignore_index)
    tokens = _Tokens(xp, hidden, classifier, target, bias, temperature, ignore_index, entropy)
    if objective is None:  # no unit: any tokens may share a chunk
        flat = _Flat(n_seq * n_tok)
        result = _run(xp, tokens, xp.reshape(hidden, (n_seq * n_tok, 1, hidden.shape[-1])),
                      xp.reshape(tokens.labels, (-1, 1)), xp.reshape(tokens.mask, (-1, 1)), flat, budget, False, budget)
        return Sweep(*(None if a is None else xp.reshape(a, (n_seq, n_tok)) for a in result.pieces[:3]))
    result = _run(xp, tokens, hidden, tokens.labels, tokens.mask, objective, budget, True, whole_unit)
    logps, entropy_, correct = result.pieces[:3]
    return Sweep(logps, entropy_, correct if accuracy else None, result.loss,
                 (result.grad_hidden, *result.grads), result.stats)


class _Flat:
    """The trivial objective of a sweep without one: each token its own unit, no loss."""

    def __init__(self, n_units):
        self.n_units = n_units

    def rows(self, start, stop):
        return range(start, stop)


@dataclass
class _Result:
    pieces: tuple
    loss: Any = None
    grad_hidden: Any = None
    grads: list | None = None
    stats: dict = field(default_factory=dict)


def _plan(objective, unit_tokens, budget: int, whole_unit: int):
    """``(start, stop, two_pass)`` unit ranges: as many whole units as fit ``budget`` tokens (at least
    one), counting ``unit_tokens [n_units]`` (each unit's tokens that reach the gemm); ``two_pass``
    for a unit of more than ``whole_unit`` tokens, which is swept in two passes."""
    import numpy as np

    ends = np.cumsum(unit_tokens)
    chunks, start, before = [], 0, 0
    while start < objective.n_units:
        stop = max(start + 1, int(np.searchsorted(ends, before + budget, side="right")))
        size = int(ends[stop - 1]) - before
        chunks.append((start, stop, size > whole_unit))
        start, before = stop, int(ends[stop - 1])
    return chunks


def _unit_tokens(objective, mask, compact: bool):
    """Each unit's tokens that reach the gemm: its kept ones on the host path, else all of them."""
    import numpy as np

    n_units, n_tok = objective.n_units, mask.shape[1]
    if not compact:
        return np.full(n_units, len(objective.rows(0, 1)) * n_tok) if n_units else np.zeros(0, dtype=np.int64)
    per_row = np.asarray(mask).sum(axis=1)
    if isinstance(objective, _Flat | _Upstream):  # a unit is a row
        return per_row
    return np.array([per_row[list(objective.rows(u, u + 1))].sum() for u in range(n_units)], dtype=np.int64)


def _take_rows(xp, array, rows):
    rows = list(rows)
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return array[rows[0]:rows[0] + len(rows), ...]
    return xp.take(array, xp.asarray(rows, device=_array.device(array)), axis=0)


def _run(xp, tokens, hidden, labels, mask, objective, budget, with_grad, whole_unit) -> _Result:
    n_tok, n_feat = hidden.shape[1], hidden.shape[-1]
    host = tokens.host  # NumPy: a chunk's ignored tokens are dropped before its gemm
    order, logps, entropies, corrects, grad_parts = [], [], [], [], []
    grads = [xp.zeros(tokens.classifier.shape, dtype=tokens.classifier.dtype,
                      device=_array.device(tokens.classifier)),
             None if tokens.bias is None else xp.zeros(tokens.bias.shape, dtype=tokens.bias.dtype,
                                                       device=_array.device(tokens.bias))] if with_grad else None
    loss, stats = None, {}
    for start, stop, two_pass in _plan(objective, _unit_tokens(objective, mask, host is not None), budget,
                                       whole_unit):
        rows = objective.rows(start, stop)
        order.extend(rows)
        h = _take_rows(xp, hidden, rows)
        h = xp.reshape(h, (math.prod(h.shape[:-1]), n_feat))  # not -1: 0 features leave it undefined
        y = xp.reshape(_take_rows(xp, labels, rows), (-1,))
        keep = xp.reshape(_take_rows(xp, mask, rows), (-1,))
        # a chunk of no kept token runs the kernels on 0 rows: no logits, and no pass over the gradients
        kept_rows = None if host is None else KeptRows(keep)
        if kept_rows is not None:
            h, y = kept_rows.take(h), kept_rows.take(y)
        else:  # an ignored token's hidden state reaches no output: a NaN there made g^T h, the classifier's
            # gradient, NaN (0 * NaN); one pass over [rows, D] beside the chunk's gemms
            h = xp.where(keep[:, None], h, xp.zeros_like(h))

        def spread(values, kept_rows=kept_rows, keep=keep):  # a kept-token array as the chunk's, 0 at the ignored
            if kept_rows is not None:
                return kept_rows.spread(values)
            return values & keep if values.dtype == xp.bool else xp.where(keep, values, xp.zeros_like(values))

        # pass 1: the statistics of every sub-chunk (one sub-chunk unless a unit is swept in two passes)
        subs = [(a, min(a + budget, h.shape[0])) for a in range(0, h.shape[0], budget)] if two_pass else \
            [(0, h.shape[0])]
        kept, parts = [], ([], [], [])
        for a, b in subs:
            z, logp, ent, correct, state = tokens.stats(h[a:b, ...], y[a:b], for_grad=with_grad and not two_pass)
            for part, value in zip(parts, (logp, ent, correct), strict=True):
                if value is not None:
                    part.append(value)
            kept.append((z, state) if not two_pass else (None, None))
        chunk_logp, chunk_ent, chunk_correct = (spread(xp.concat(p) if len(p) > 1 else p[0]) if p else None
                                                for p in parts)
        logps.append(chunk_logp)
        if chunk_ent is not None:
            entropies.append(chunk_ent)
        corrects.append(chunk_correct)
        if not with_grad:
            continue
        shape = (len(rows), n_tok)
        part, dlogp, part_stats = objective.terms(xp, xp.reshape(chunk_logp, shape), xp.reshape(keep, shape),
                                                  start, stop)
        loss = part if loss is None else loss + part
        for key, value in part_stats.items():
            stats.setdefault(key, []).append(value)
        coef = xp.reshape(xp.where(xp.reshape(keep, shape), dlogp, xp.zeros_like(dlogp)), (-1,))
        if kept_rows is not None:
            coef = kept_rows.take(coef)
        # pass 2: the gradient, in the chunk's own buffer (recomputed when a unit was split)
        chunk_parts = []
        for (a, b), (z, state) in zip(subs, kept, strict=True):
            if z is None:
                z, _, _, _, state = tokens.stats(h[a:b, ...], y[a:b], for_grad=True)
            tokens.backprop(h[a:b, ...], tokens.grad(z, y[a:b], coef[a:b], state), chunk_parts, grads)
        grad_h = xp.concat(chunk_parts) if len(chunk_parts) > 1 else chunk_parts[0]
        grad_parts.append(grad_h if kept_rows is None else kept_rows.spread(grad_h))
    pieces = tuple(_in_order(xp, parts, order) if parts else None for parts in (logps, entropies, corrects))
    if not with_grad:
        return _Result(pieces)
    grad_hidden = xp.reshape(_in_order(xp, grad_parts, order), hidden.shape)
    stats = {key: xp.concat(values) for key, values in stats.items()}
    return _Result(pieces, loss, grad_hidden, grads, stats)


def _in_order(xp, parts, order):
    """Chunks' per-token arrays (rows in sweep order) back in the rows' own order, ``[R, ...]``."""
    flat = xp.concat(parts) if len(parts) > 1 else parts[0]
    flat = xp.reshape(flat, (len(order), -1))
    if order == list(range(len(order))):
        return flat
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return xp.take(flat, xp.asarray(inverse, device=_array.device(flat)), axis=0)


def _empty(xp, hidden, classifier, bias, objective, entropy, accuracy) -> Sweep:
    """An empty batch: no tokens, zero gradients, and the objective's loss and statistics of its units
    with every token left out, as the sweep would give them (a DPO pair of empty sequences still has
    its reference margin: the loss is not 0)."""
    device = _array.device(hidden)
    zeros = xp.zeros(hidden.shape[:2], dtype=hidden.dtype, device=device)
    sweep = Sweep(zeros, zeros if entropy else None, xp.zeros(hidden.shape[:2], dtype=xp.bool, device=device)
                  if accuracy else None)
    if objective is not None:
        shape = (len(objective.rows(0, objective.n_units)), hidden.shape[1])
        loss, _, sweep.stats = objective.terms(xp, xp.zeros(shape, dtype=hidden.dtype, device=device),
                                               xp.zeros(shape, dtype=xp.bool, device=device), 0, objective.n_units)
        sweep.loss = xp.astype(xp.asarray(loss, device=device), hidden.dtype)
        sweep.grads = (xp.zeros_like(hidden), xp.zeros_like(classifier), None if bias is None else xp.zeros_like(bias))
    return sweep


class _Upstream:
    """The objective of a vector-Jacobian product: ``d loss / d log p`` given, each token a unit."""

    def __init__(self, xp, upstream):
        self.upstream = upstream
        self.n_units = upstream.shape[0]

    def rows(self, start, stop):
        return range(start, stop)

    def terms(self, xp, logp, mask, start, stop):
        return xp.zeros((), dtype=logp.dtype), xp.astype(self.upstream[start:stop, None], logp.dtype), {}


def _tokens_view(xp, hidden, target):
    """``hidden [..., D]`` as ``[N, 1, D]`` and ``target`` as ``[N, 1]``: each token its own sequence."""
    n = 1
    for size in target.shape:
        n *= size
    return xp.reshape(hidden, (n, 1, hidden.shape[-1])), xp.reshape(target, (n, 1))


@computes_half_in_float32
def linear_logprobs(hidden, classifier, target, *, bias=None, temperature=1.0, ignore_index=-100, entropy=False,
                    accuracy=False, chunk_size=None):
    r"""Per-token ``log p(target)`` under ``softmax((hidden @ classifier.T + bias) / temperature)``,
    chunked: the N x V logits are never held (one chunk of about 2^25 logits at a time).

    .. math:: \log p_t = s_{t y_t} - \mathrm{lse}(s_t), \quad s = (h C^\top + b) / T

    Shapes: ``hidden [..., D]``, ``classifier [V, D]``, ``target`` integer of shape
    ``hidden.shape[:-1]``, ``bias [V]``. Returns the log-probs in the shape of ``target``, 0 at
    ``ignore_index``. With ``entropy=True`` and/or ``accuracy=True`` it returns a
    :class:`TokenLogProbs` ``(logps, entropy, accuracy)``: the softmax's entropy
    ``lse(s) - sum_k p_k s_k`` per token, and whether the target is an argmax of the logits (ties
    count), 0 / False at ignored tokens. Gradients: :func:`linear_logprobs_vjp` (NumPy),
    ``losskit.torch.linear_logprobs`` (autograd), ``losskit.jax.linear_logprobs`` (``custom_vjp``).

    >>> import numpy as np, losskit as lk
    >>> float(lk.linear_logprobs(np.ones((1, 2)), np.zeros((4, 2)), np.array([3]))[0])  # uniform: log 1/4
    -1.3862943611198906
    """
    entropy, accuracy = _checks.flag(entropy, "entropy"), _checks.flag(accuracy, "accuracy")
    xp, hidden, classifier, target, bias = linear_arrays(hidden, classifier, target, bias)
    flat_hidden, flat_target = _tokens_view(xp, hidden, target)
    sweep = sequence_sweep(xp, flat_hidden, classifier, flat_target, bias=bias, temperature=temperature,
                           ignore_index=ignore_index, entropy=entropy, accuracy=accuracy, chunk_size=chunk_size)
    shaped = [None if a is None else xp.reshape(a, target.shape) for a in (sweep.logps, sweep.entropy, sweep.accuracy)]
    return TokenLogProbs(*shaped) if entropy or accuracy else shaped[0]


@computes_half_in_float32
def linear_logprobs_vjp(hidden, classifier, target, upstream, *, bias=None, temperature=1.0, ignore_index=-100,
                        chunk_size=None):
    r"""``(grad_hidden, grad_classifier, grad_bias)`` of ``sum(upstream * linear_logprobs(...))``: the
    vector-Jacobian product of :func:`linear_logprobs`, in one chunked sweep (3 gemms per chunk).
    ``upstream`` has the shape of ``target``; ignored tokens get no gradient; ``grad_bias`` is None
    without a bias."""
    xp, hidden, classifier, target, bias = linear_arrays(hidden, classifier, target, bias)
    if upstream is None:
        raise _checks.fail("upstream", f"an array of shape {tuple(target.shape)}", "None")
    upstream = _array.option_array(xp, upstream, "upstream", hidden)
    _checks.same_shape("upstream", upstream, "target", tuple(target.shape))
    flat_hidden, flat_target = _tokens_view(xp, hidden, target)
    objective = _Upstream(xp, xp.reshape(xp.astype(upstream, hidden.dtype), (-1,)))
    sweep = sequence_sweep(xp, flat_hidden, classifier, flat_target, bias=bias, temperature=temperature,
                           ignore_index=ignore_index, objective=objective, chunk_size=chunk_size)
    grad_hidden, grad_classifier, grad_bias = sweep.grads
    return xp.reshape(grad_hidden, hidden.shape), grad_classifier, grad_bias
