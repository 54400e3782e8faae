r"""The GRPO family (GRPO, DAPO's token-level loss, Dr. GRPO, GSPO) on per-token log-probabilities.

For a batch of ``B`` sampled sequences with per-token log-probs ``logp [B, T]`` under the policy
(0 where the target is ignored; ``m`` is the mask of the kept tokens, ``n_i`` their count in
sequence ``i``), the log-probs of the policy that sampled them ``old [B, T]``, one advantage per
sequence ``A [B]`` and, for the KL term, the reference model's log-probs ``ref [B, T]``:

.. math:: r_{it} = \exp(\mathrm{logp}_{it} - \mathrm{old}_{it}) \;\text{(token)}, \qquad
          r_{it} = s_i = \exp\Big(\tfrac{1}{n_i}\sum_t m_{it}(\mathrm{logp}_{it} - \mathrm{old}_{it})\Big)
          \;\text{(sequence: GSPO)}

.. math:: \ell_{it} = -\min\big(r_{it} A_i,\; \mathrm{clip}(r_{it}, 1 - \epsilon_{low}, 1 + \epsilon_{high}) A_i\big)
          + \beta\,\big(e^{\mathrm{ref}_{it} - \mathrm{logp}_{it}} - (\mathrm{ref}_{it} - \mathrm{logp}_{it}) - 1\big)

.. math:: L = \sum_{i,t} m_{it}\, c_i\, \ell_{it}, \qquad c_i = \frac{1}{B n_i}\ (\text{grpo}),\quad
          \frac{1}{\sum_{j,t} m_{jt}}\ (\text{bnpo}),\quad \frac{1}{B\,\mathrm{max\_length}}\ (\text{dr\_grpo})

These are TRL's ``GRPOTrainer`` definitions (``loss_type`` grpo / bnpo / dr_grpo,
``importance_sampling_level`` token / sequence) and Liger-Kernel's fused GRPO loss.

Design note. The loss is written as an *objective* of the sequence sweep
(:mod:`losskit.losses.logprobs`): a unit is one sequence, and :meth:`GRPOObjective.terms` returns
a chunk's share of ``L`` and ``dL / dlogp``. Every count the normalisation needs (``n_i``, the
batch's token count, ``B``) is read from the whole batch's mask when the objective is built, so
a chunk's share is exact for the batch: ``c_i`` is one number per sequence.

Gradients (as autodiff of the formula gives them):

- clipped surrogate, token importance: ``d / dlogp_it = -A_i r_it``, and 0 where the clipped term
  is the smaller one, i.e. ``A_i > 0`` and ``r_it > 1 + eps_high``, or ``A_i < 0`` and
  ``r_it < 1 - eps_low``. Ties: at ``r`` exactly on a bound (and for ``A = 0``) the gradient is
  the unclipped one, which is what torch's autograd gives (``clamp`` passes the gradient at its
  bounds and ``minimum`` splits a tie in halves, which add up to the whole).
- sequence importance (GSPO, the plain objective of Zheng et al. 2025, eq. 5, and TRL's
  ``importance_sampling_level="sequence"``): the ratio carries the gradient of the mean,
  ``d s_i / dlogp_it = s_i m_it / n_i``, into every token of the sequence, with the same
  clipping rule on ``s_i``. (GSPO-token's stop-gradient form has the same value and the same
  gradient when the advantage is one per sequence, as it is here.) The sequence's surrogate is
  counted once per kept token, as in TRL, so "grpo" gives GSPO's mean over sequences and "bnpo"
  and "dr_grpo" weight a sequence by its length.
- k3 KL: ``d / dlogp = 1 - exp(ref - logp)``.

Old and reference log-probs at ignored tokens are never read (they may hold anything, even inf).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .. import _array, _checks
from ._half import computes_half_in_float32
from ._shared import scaled_exp_minus_linear
from .declaration import number
from .formula import ArrayMath
from .logprobs import linear_arrays, sequence_sweep

__all__ = ["linear_grpo_loss", "linear_grpo_loss_value_and_grad", "GRPOOptions", "GRPOObjective", "grpo_objective",
           "IMPORTANCE", "NORMALIZATIONS"]

IMPORTANCE = ("token", "sequence")
NORMALIZATIONS = ("grpo", "bnpo", "dr_grpo")


#: the clip ratios TRL's GRPOTrainer logs, under its names
CLIP_RATIOS = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")


@dataclass(frozen=True, eq=False)
class GRPOOptions:
    """The options of a GRPO-family call, checked once, for every entry (NumPy, torch, JAX): the
    loss's own and the sweep's (``temperature``, ``ignore_index``, ``chunk_size``)."""

    beta: float = 0.0
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    importance: str = "token"
    normalization: str = "grpo"
    max_length: int | None = None
    temperature: float = 1.0
    ignore_index: int | None = -100
    chunk_size: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "beta", number(self.beta, "beta", low=0.0))
        set_(self, "epsilon_low", number(self.epsilon_low, "epsilon_low", low=0.0))
        set_(self, "epsilon_high", number(self.epsilon_high, "epsilon_high", low=0.0))
        if not isinstance(self.importance, str) or self.importance not in IMPORTANCE:
            raise _checks.fail("importance", '"token" (GRPO) or "sequence" (GSPO)', repr(self.importance))
        if not isinstance(self.normalization, str) or self.normalization not in NORMALIZATIONS:
            raise _checks.fail("normalization", 'one of "grpo", "bnpo", "dr_grpo"', repr(self.normalization))
        if self.max_length is not None:
            set_(self, "max_length", _checks.int_at_least(self.max_length, "max_length", 1,
                                                           "None or a positive int (tokens)"))
        set_(self, "temperature", number(self.temperature, "temperature", low=0.0, low_open=True))
        set_(self, "ignore_index", _checks.ignore_index(self.ignore_index))
        if self.chunk_size is not None:
            set_(self, "chunk_size", _checks.int_at_least(self.chunk_size, "chunk_size", 1,
                                                           "None or a positive int (tokens per chunk)"))

    @classmethod
    def of(cls, options: dict) -> GRPOOptions:
        """The options of a call's keyword arguments: an unknown one is named (the torch and JAX forms
        take them as ``**options``; the dataclass's own TypeError named no argument)."""
        _checks.known_options(options, [f.name for f in fields(cls)], "linear_grpo_loss")
        return cls(**options)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def aux_names(self) -> tuple[str, ...]:
        """The keys of ``aux``: TRL's logged statistics, ``kl`` only where ``beta > 0`` (as TRL logs it)."""
        return (("kl",) if self.beta else ()) + CLIP_RATIOS

    @property
    def means_over_tokens(self) -> bool:
        """Whether every sequence needs a kept token: the "grpo" mean and GSPO's ratio divide by it."""
        return self.normalization == "grpo" or self.importance == "sequence"


def policy_arrays(xp, n_rows: int, n_tokens: int, like, old_logps, advantages, ref_logps, options: GRPOOptions):
    """``old_logps [B, T]``, ``advantages [B]`` and ``ref_logps [B, T]`` (or None) checked and in
    ``like``'s dtype (integers and lists are taken); ``ref_logps`` is required when ``beta > 0``."""
    # hidden: the array ``like`` is, named as the user knows it in a "one library" error
    _, arrays = _array.namespace(hidden=like, old_logps=old_logps, advantages=advantages, ref_logps=ref_logps)
    token_shape = (n_rows, n_tokens)
    out = []
    for name, shape in (("old_logps", token_shape), ("advantages", (n_rows,)), ("ref_logps", token_shape)):
        value = arrays[name]
        if value is None:
            if name == "ref_logps" and not options.beta:
                out.append(None)
                continue
            expected = f"an array of shape {shape}" if name != "ref_logps" else \
                f"the reference model's per-token log-probs, shape {shape}, for beta={options.beta:g} > 0"
            raise _checks.fail(name, expected, "None")
        if not _array.isdtype(xp, value.dtype, ("real floating", "integral")):  # integers (a +-1 advantage) are cast
            raise _checks.fail(name, "real numbers", f"dtype {value.dtype}")
        if tuple(value.shape) != shape:
            per = "one advantage per sequence" if name == "advantages" else "one log-prob per token"
            raise _checks.fail(name, f"shape {shape} ({per} of target, shape {token_shape}; losskit never "
                               "broadcasts)", f"shape {tuple(value.shape)}")
        out.append(_array.as_dtype(xp, value, like.dtype))
    return out


class GRPOObjective:
    """The GRPO family as an objective of the sequence sweep: a unit is one sequence (row).

    Built once per call from the whole batch: ``mask [B, T]`` (bool, the kept tokens),
    ``old_logps [B, T]``, ``advantages [B]``, ``ref_logps [B, T]`` or None, in one dtype.
    ``terms(xp, logp, mask, start, stop)`` returns the share of sequences start..stop-1 in the
    loss, ``d loss / d logp`` (0 at ignored tokens) and per-sequence statistics: the fraction of
    the sequence's kept tokens clipped below (``A < 0`` and ``r < 1 - eps_low``) and above
    (``A > 0`` and ``r > 1 + eps_high``), TRL's clip ratios, and with ``ref_logps`` the mean k3 KL.
    """

    def __init__(self, xp, mask, old_logps, advantages, ref_logps, options: GRPOOptions):
        n_rows, n_tokens = mask.shape
        self.n_units = n_rows
        self.options = options
        self.mask = mask
        zero = xp.zeros_like(old_logps)
        # ignored tokens: old = ref = 0 = logp, so every term there is 0 and finite whatever the input held
        self.old_logps = xp.where(mask, old_logps, zero)
        self.ref_logps = None if ref_logps is None else xp.where(mask, ref_logps, zero)
        self.advantages = advantages
        self.counts = xp.sum(xp.astype(mask, old_logps.dtype), axis=1)  # n_i
        # n_i where it divides: a sequence without a kept token (an error where a mean over its tokens is
        # asked for, found by grpo_objective where the values can be read) then adds 0, never NaN
        self.divisors = xp.maximum(self.counts, xp.ones_like(self.counts))
        self.scale = self._scale(xp, n_rows, n_tokens)  # c_i

    def _scale(self, xp, n_rows, n_tokens):
        """``c_i``, the weight of each kept token of sequence i in the loss."""
        opts, counts = self.options, self.counts
        if opts.normalization == "grpo":
            return 1 / (n_rows * self.divisors)
        if opts.normalization == "bnpo":
            # a batch without a kept token has loss 0 (TRL clamps the count to 1 the same way)
            return xp.ones_like(counts) / xp.maximum(xp.sum(counts), _array.full_like_scalar(xp, 1, counts))
        return xp.ones_like(counts) / (n_rows * (n_tokens if opts.max_length is None else opts.max_length))

    def rows(self, start: int, stop: int) -> list[int]:
        return list(range(start, stop))

    def _surrogate(self, xp, log_ratio, advantage):
        """``-min(r A, clip(r) A)`` and its derivative in ``log r`` (``-A r`` or 0), and the
        clipped-below / clipped-above indicators."""
        opts = self.options
        ratio = xp.exp(log_ratio)
        low, high = 1 - opts.epsilon_low, 1 + opts.epsilon_high
        clipped = xp.clip(ratio, low, high)
        # A = 0 adds exactly 0, also where r overflows to inf (a log-ratio above 88.7 in float32): inf * 0
        # would make the loss and every gradient NaN
        zero = xp.zeros_like(ratio)
        scored = xp.where(advantage == 0, zero, ratio * advantage)
        loss = -xp.minimum(scored, clipped * advantage)
        below = (advantage < 0) & (ratio < low)
        above = (advantage > 0) & (ratio > high)
        # the clipped term is strictly the smaller exactly there, and it does not move with r
        grad = xp.where(below | above | (advantage == 0), zero, -advantage * ratio)
        return loss, grad, below, above

    def terms(self, xp, logp, mask, start: int, stop: int):
        # on NumPy without its floating-point warnings: a ratio past the dtype (inf), times an advantage of 0,
        # is taken by where; torch and JAX compute it without a word (as the catalogue's array-API path)
        with _array.quiet(xp):
            return self._terms(xp, logp, mask, start, stop)

    def _terms(self, xp, logp, mask, start: int, stop: int):
        opts = self.options
        old = self.old_logps[start:stop, ...]
        advantage = self.advantages[start:stop]
        divisors, scale = self.divisors[start:stop], self.scale[start:stop]
        kept = xp.astype(mask, logp.dtype)
        log_ratio = logp - old  # 0 at ignored tokens
        if opts.importance == "token":
            loss, grad, below, above = self._surrogate(xp, log_ratio, advantage[:, None])
            below, above = xp.astype(below, logp.dtype) * kept, xp.astype(above, logp.dtype) * kept
        else:
            # GSPO: s_i = exp(mean of the sequence's log-ratios), d s_i / d logp_it = s_i / n_i; the
            # sequence's surrogate counts once per kept token (TRL), n_i times: the two cancel, and
            # each kept token gets the sequence's d surrogate / d log s_i
            loss, grad, below, above = self._surrogate(xp, xp.sum(log_ratio, axis=1) / divisors, advantage)
            loss, grad = loss[:, None], grad[:, None]
            below, above = xp.astype(below, logp.dtype)[:, None] * kept, xp.astype(above, logp.dtype)[:, None] * kept
        stats = {}
        if self.ref_logps is not None:
            delta = self.ref_logps[start:stop, ...] - logp  # 0 at ignored tokens
            # k3 = e^d - d - 1, which cancels as d^2 / 2 for small d (expm1(d) - d kept eps / |d| of it: 6.5e-4
            # relative in float32 at d = 1e-4): the Taylor series there (scaled_exp_minus_linear)
            kl = scaled_exp_minus_linear(ArrayMath(xp, delta), delta, xp.ones_like(delta), xp.exp(delta))
            stats["kl"] = xp.sum(kl * kept, axis=1) / divisors
            if opts.beta:
                loss = loss + opts.beta * kl
                grad = grad - opts.beta * xp.expm1(delta)  # d k3 / d logp = 1 - e^d
        weight = scale[:, None] * kept
        stats["clip_ratio_low"] = xp.sum(below, axis=1) / divisors
        stats["clip_ratio_high"] = xp.sum(above, axis=1) / divisors
        return xp.sum(loss * weight), grad * weight, stats

    def aux(self, xp, stats) -> dict:
        """TRL's logged statistics from the per-sequence ``stats`` of a sweep, as its ``masked_batch_mean``
        takes them: means over the batch's kept tokens, except GSPO's clip ratios (one ratio per
        sequence), which are means over the sequences. ``region`` is ``low + high`` (a token is
        clipped below only where A < 0, above only where A > 0)."""
        counts = self.counts
        tokens = xp.maximum(xp.sum(counts), _array.full_like_scalar(xp, 1, counts))

        def over_tokens(per_sequence):  # the per-sequence means weighted back by their token counts
            return xp.sum(per_sequence * counts) / tokens

        def over_sequences(per_sequence):  # GSPO; an empty batch's mean is 0, not 0 / 0
            return xp.sum(per_sequence) / max(per_sequence.shape[0], 1)

        over = over_tokens if self.options.importance == "token" else over_sequences
        low, high = over(stats["clip_ratio_low"]), over(stats["clip_ratio_high"])
        out = {"clip_ratio/low_mean": low, "clip_ratio/high_mean": high, "clip_ratio/region_mean": low + high}
        if self.options.beta:
            out["kl"] = over_tokens(stats["kl"])
        return {name: out[name] for name in self.options.aux_names()}


def grpo_objective(xp, target, like, *, old_logps, advantages, ref_logps, options: GRPOOptions) -> GRPOObjective:
    """The checked objective of one call: ``target [B, T]`` integer (its ``options.ignore_index``
    tokens are not kept), the other arrays as :class:`GRPOObjective` takes them, in ``like``'s dtype.

    Raises LossInputError naming the argument: shapes that disagree with target's; ``ref_logps``
    missing for ``beta > 0``; ``max_length`` below a sequence's kept tokens for "dr_grpo"; a sequence
    whose tokens are all ignored where a mean over its tokens is asked for ("grpo", or GSPO).
    """
    n_rows, n_tokens = target.shape
    old_logps, advantages, ref_logps = policy_arrays(xp, n_rows, n_tokens, like, old_logps, advantages, ref_logps,
                                                     options)
    ignore_index = options.ignore_index
    mask = xp.ones(target.shape, dtype=xp.bool, device=_array.device(target)) if ignore_index is None \
        else target != ignore_index
    objective = GRPOObjective(xp, mask, old_logps, advantages, ref_logps, options)
    if options.normalization == "dr_grpo" and options.max_length is not None and n_rows:
        # the kept tokens, not target's width: a layout that keeps the (ignored) prompt in target is as wide
        # as prompt plus completion, and TRL's max_completion_length is below that
        longest = xp.max(objective.counts)
        if _array.concrete_bool(longest > options.max_length):
            raise _checks.fail("max_length", f"an int >= {int(longest)} (the most tokens a sequence keeps: dr_grpo "
                               "divides by B * max_length, the most a sequence may hold)", repr(options.max_length))
    if options.means_over_tokens and _array.concrete_bool(xp.any(objective.counts == 0)):
        empty = int(xp.argmin(objective.counts))
        why = 'normalization="grpo"' if options.normalization == "grpo" else 'importance="sequence"'
        raise _checks.fail("target", f"at least one token not equal to ignore_index={ignore_index} in every "
                           f"sequence ({why} takes a mean over a sequence's tokens)",
                           f"sequence {empty} with all its tokens ignored")
    return objective


def _option_arguments(arguments: dict) -> dict:
    """The :class:`GRPOOptions` fields among a public function's arguments (its ``locals()``)."""
    return {f.name: arguments[f.name] for f in fields(GRPOOptions)}


def _prepared(hidden, classifier, target, bias, old_logps, advantages, ref_logps, **options):
    """The checked arrays of a call, its options (``options`` are :class:`GRPOOptions`' fields) and its
    objective."""
    options = GRPOOptions(**options)
    xp, hidden, classifier, target, bias = linear_arrays(hidden, classifier, target, bias, sequences=True)
    objective = grpo_objective(xp, target, hidden, old_logps=old_logps, advantages=advantages, ref_logps=ref_logps,
                               options=options)
    return xp, hidden, classifier, target, bias, options, objective


@computes_half_in_float32
def linear_grpo_loss_value_and_grad(hidden, classifier, target, *, old_logps, advantages, ref_logps=None, beta=0.0,
                                    epsilon_low=0.2, epsilon_high=0.2, importance="token", normalization="grpo",
                                    max_length=None, temperature=1.0, bias=None, ignore_index=-100, chunk_size=None,
                                    aux=False):
    """``(value, (grad_hidden, grad_classifier, grad_bias))`` of :func:`linear_grpo_loss`, in one chunked
    sweep (3 gemms per chunk; 4 when one sequence exceeds ``chunk_size`` tokens). ``grad_bias`` is
    None without a bias; the gradients have the shapes of hidden, classifier and bias. Arguments and
    shapes as :func:`linear_grpo_loss`; no gradient flows to ``old_logps``, ``advantages`` or ``ref_logps``.
    With ``aux=True``: ``(value, grads, aux)``, ``aux`` as :func:`linear_grpo_loss`'s."""
    aux = _checks.flag(aux, "aux")
    xp, hidden, classifier, target, bias, options, objective = _prepared(
        hidden, classifier, target, bias, old_logps, advantages, ref_logps, **_option_arguments(locals()))
    sweep = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=options.temperature,
                           ignore_index=options.ignore_index, objective=objective, chunk_size=options.chunk_size)
    if aux:
        return sweep.loss, sweep.grads, objective.aux(xp, sweep.stats)
    return sweep.loss, sweep.grads


@computes_half_in_float32
def linear_grpo_loss(hidden, classifier, target, *, old_logps, advantages, ref_logps=None, beta=0.0, epsilon_low=0.2,
                     epsilon_high=0.2, importance="token", normalization="grpo", max_length=None, temperature=1.0,
                     bias=None, ignore_index=-100, chunk_size=None, aux=False):
    r"""The GRPO family's loss on ``hidden @ classifier.T (+ bias)``, without the N x V logits in memory.

    .. math:: \ell_{it} = -\min(r_{it} A_i, \mathrm{clip}(r_{it}, 1 - \epsilon_{low}, 1 + \epsilon_{high}) A_i)
              + \beta\,(e^{\mathrm{ref}_{it} - \log p_{it}} - (\mathrm{ref}_{it} - \log p_{it}) - 1),
              \quad L = \sum_{i,t} m_{it} c_i \ell_{it}

    with ``log p = log_softmax((hidden @ classifier.T + bias) / temperature)[target]``, the ratio
    ``r_it = exp(log p_it - old_it)`` (``importance="token"``: GRPO, DAPO, Dr. GRPO) or
    ``exp(mean_t(log p_it - old_it))`` for every token of sequence i (``"sequence"``: GSPO), and
    ``c_i = 1 / (B n_i)`` (``normalization="grpo"``: mean over a sequence's ``n_i`` kept tokens,
    then over sequences), ``1 / sum(n)`` (``"bnpo"``, DAPO's token-level mean) or
    ``1 / (B max_length)`` (``"dr_grpo"``; ``max_length`` defaults to ``T``, target's length: pass
    TRL's ``max_completion_length`` for a normaliser that does not change with the batch's
    padding). As TRL's ``GRPOTrainer`` defines them; see :mod:`losskit.losses.policy` for the
    gradients and the clip's ties.

    Shapes: ``hidden [B, T, D]``, ``classifier [V, D]``, ``target [B, T]`` token ids with
    ``ignore_index`` on prompt and padding, ``old_logps [B, T]`` (the sampling policy's per-token
    log-probs, at the same temperature), ``advantages [B]``, ``ref_logps [B, T]`` (required when
    ``beta > 0``), ``bias [V]``. Values of ``old_logps`` / ``ref_logps`` at ignored tokens are
    never read. ``chunk_size``: tokens per chunk (default: about 2^25 logits per chunk).

    With ``aux=True``: ``(loss, aux)``, ``aux`` TRL's logged statistics (0-d arrays, keys named as
    TRL's metrics): ``"clip_ratio/low_mean"`` (the fraction of the batch's kept tokens with ``A < 0``
    and ``r < 1 - epsilon_low``), ``"clip_ratio/high_mean"`` (``A > 0``, ``r > 1 + epsilon_high``),
    ``"clip_ratio/region_mean"`` (either), fractions of the sequences for GSPO; and where
    ``beta > 0``, ``"kl"``, the mean k3 KL over the kept tokens.

    >>> import numpy as np, losskit as lk
    >>> h, c = np.ones((1, 2, 3)), np.zeros((4, 3))  # uniform over 4 tokens: log p = -log 4
    >>> old = np.full((1, 2), -np.log(4))  # on-policy: r = 1, loss -A
    >>> float(lk.linear_grpo_loss(h, c, np.array([[0, 3]]), old_logps=old, advantages=np.array([0.5])))
    -0.5
    """
    _checks.flag(aux, "aux")
    xp, hidden, classifier, target, bias, options, objective = _prepared(
        hidden, classifier, target, bias, old_logps, advantages, ref_logps, **_option_arguments(locals()))
    # no gradient asked: the log-probs alone (one gemm per chunk, not three), then the formula on all sequences
    logps = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=options.temperature,
                           ignore_index=options.ignore_index, chunk_size=options.chunk_size).logps
    value, _, stats = objective.terms(xp, logps, objective.mask, 0, objective.n_units)
    return (value, objective.aux(xp, stats)) if aux else value
