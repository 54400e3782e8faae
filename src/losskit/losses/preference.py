r"""Preference losses (DPO, IPO, hinge, robust DPO, SimPO, ORPO, CPO) on a sequence sweep's log-probs.

Layout (TRL's and Liger's): ``hidden [2B, T, D]`` holds B chosen sequences, then their B rejected
ones (rows ``i`` and ``B + i`` are pair ``i``); ``target [2B, T]`` holds token ids, ``ignore_index``
on prompt and padding; ``ref_logps [2B]`` the reference model's *summed* log-probs, in the same
order.

Every loss is a formula on each pair's two sequence scores,

.. math:: s = \log\pi(y) - \log\pi_{\mathrm{ref}}(y) \quad\text{(reference-free losses: }
          s = \log\pi(y)\text{)},

where :math:`\log\pi(y)` is the sum of the sequence's token log-probs, or their mean for the
per-token losses (IPO, SimPO, ORPO). A per-token loss divides the reference's sum by the same token
count: TRL runs the reference model through the same averaging. The loss is the mean over the B
pairs, plus ``nll_weight`` times the chosen tokens' NLL (the mean over every chosen token of the
batch, as TRL's ``rpo_alpha``, ``cpo_alpha`` and ORPO's SFT term).

Design note: one frozen class per loss declares its name, whether it reads the reference, whether
it averages, its options (checked once, at construction) and one formula: the per-pair loss and its
derivatives in the pair's two scores. :class:`PreferenceObjective` is everything else, shared by
all: the scores from a chunk's log-probs, the mean over pairs, the NLL, the chain rule back to each
token and the logged statistics; it is the objective that
:func:`~losskit.losses.logprobs.sequence_sweep` runs, each chunk holding whole pairs. Writing each
loss as a function of the whole log-prob array (one derivative per loss and token) was rejected:
two numbers per pair are all a loss has to state, and the chain rule is then written, and tested,
once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .. import _array, _checks
from ..activations import log_sigmoid_xp, sigmoid_xp
from ._half import computes_half_in_float32
from .declaration import number
from .logprobs import linear_arrays, sequence_sweep

__all__ = ["linear_preference_loss", "linear_preference_loss_value_and_grad", "PairLoss",
           "DPO", "IPO", "Hinge", "RobustDPO", "SimPO", "ORPO", "CPO", "PAIR_LOSSES", "pair_loss",
           "PreferenceObjective", "preference_objective"]

#: the bounds every option of these losses is checked against (a class narrows them in ``bounds``)
_BOUNDS: dict[str, dict] = {
    "beta": {"low": 0.0},
    "label_smoothing": {"low": 0.0, "high": 0.5},
    "nll_weight": {"low": 0.0},
    "gamma": {},
    "lambda_": {"low": 0.0},
}


def _smoothed_sigmoid(xp, z, smoothing: float, slope: float):
    """``-(1 - a) log sigmoid(z) - a log sigmoid(-z)`` and its derivative times ``slope`` (dz/dm)."""
    loss = -log_sigmoid_xp(xp, z)
    grad = -sigmoid_xp(xp, -z)
    if smoothing:  # the flipped label's share: -a log sigmoid(-z), derivative a sigmoid(z)
        loss = (1 - smoothing) * loss - smoothing * log_sigmoid_xp(xp, -z)
        grad = (1 - smoothing) * grad + smoothing * sigmoid_xp(xp, z)
    return loss, slope * grad


def _log1mexp(xp, x):
    """``log(1 - exp(x))`` for ``x <= 0`` (Maechler 2012): ``log(-expm1(x))`` near 0, where
    ``1 - exp(x)`` cancels, ``log1p(-exp(x))`` below ``-log 2``, where ``-expm1`` loses the tail."""
    near = x > -math.log(2.0)
    far_x = xp.where(near, xp.full_like(x, -1.0), x)
    near_x = xp.where(near & (x != 0), x, xp.full_like(x, -1.0))  # x = 0 (p = 1): -inf, set below without log(0)
    value = xp.where(near, xp.log(-xp.expm1(near_x)), xp.log1p(-xp.exp(far_x)))
    return xp.where(x == 0, xp.full_like(x, -math.inf), value)


@dataclass(frozen=True, eq=False)
class PairLoss:
    """A preference loss: its options (checked once, here) and its formula on a pair's scores."""

    #: the ``loss=`` name
    name: ClassVar[str] = ""
    #: whether the scores subtract the reference's log-probs (``ref_logps`` required)
    reference: ClassVar[bool] = True
    #: whether a sequence's log-prob is the mean over its tokens (else the sum)
    per_token_mean: ClassVar[bool] = False
    #: the bounds of this loss's options where they differ from ``_BOUNDS``
    bounds: ClassVar[dict] = {}

    nll_weight: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            checked = number(getattr(self, f.name), f.name, **{**_BOUNDS[f.name], **self.bounds.get(f.name, {})})
            object.__setattr__(self, f.name, checked)

    #: the names of the loss's own logged statistics (beside the rewards, log-probs and NLL)
    own_stats: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def options(self) -> dict:
        """The checked options, as plain floats (what the torch and JAX forms pass on)."""
        return {name: getattr(self, name) for name in self.option_names()}

    def aux_names(self) -> tuple[str, ...]:
        """The keys of ``aux``: TRL's logged statistics for this loss and its options."""
        return ("chosen_rewards", "rejected_rewards", "reward_margins", "reward_accuracy", "chosen_logps",
                "rejected_logps", *(("nll",) if self.nll_weight else ()), *self.own_stats)

    @property
    def reward_scale(self) -> float:
        """The factor of TRL's logged rewards, ``scale * score``."""
        return self.beta

    def margin_terms(self, xp, margin):
        """``(loss, d loss / d margin)`` per pair, for a loss of the margin ``chosen - rejected`` alone."""
        raise NotImplementedError

    def pair_terms(self, xp, chosen, rejected):
        """``(loss, d loss / d chosen, d loss / d rejected, stats)`` per pair, from the two scores."""
        loss, grad = self.margin_terms(xp, chosen - rejected)
        return loss, grad, -grad, {}


@dataclass(frozen=True, eq=False)
class DPO(PairLoss):
    r"""Sigmoid DPO (Rafailov et al. 2023) with cDPO's label smoothing (TRL's ``loss_type="sigmoid"``).

    .. math:: l = -(1 - \epsilon)\log\sigma(\beta m) - \epsilon\log\sigma(-\beta m),
              \quad m = s_c - s_r \text{ (summed log-probs, minus the reference's)}
    """

    name = "dpo"
    beta: float = 0.1
    label_smoothing: float = 0.0

    def margin_terms(self, xp, margin):
        return _smoothed_sigmoid(xp, self.beta * margin, self.label_smoothing, self.beta)


@dataclass(frozen=True, eq=False)
class IPO(PairLoss):
    r"""IPO (Azar et al. 2023, eq. 17) on mean token log-probs, as TRL's ``loss_type="ipo"``.

    .. math:: l = \left(m - \frac{1}{2\beta}\right)^2
    """

    name = "ipo"
    per_token_mean = True
    bounds = {"beta": {"low_open": True}}  # 1 / (2 beta)
    beta: float = 0.1

    def margin_terms(self, xp, margin):
        gap = margin - 1 / (2 * self.beta)
        return gap * gap, 2 * gap


@dataclass(frozen=True, eq=False)
class Hinge(PairLoss):
    r"""The hinge loss of RSO (Liu et al. 2023), TRL's ``loss_type="hinge"``: :math:`l = \max(0, 1 - \beta m)`.

    At the kink the derivative is 0 (the one ``torch.relu`` takes)."""

    name = "hinge"
    beta: float = 0.1

    def margin_terms(self, xp, margin):
        slack = 1 - self.beta * margin
        active = slack > 0
        zero = xp.zeros_like(slack)
        return xp.where(active, slack, zero), xp.where(active, zero - self.beta, zero)


@dataclass(frozen=True, eq=False)
class RobustDPO(PairLoss):
    r"""Robust DPO (Chowdhury et al. 2024), TRL's ``loss_type="robust"``: unbiased under label flips
    of rate :math:`\epsilon < 1/2`.

    .. math:: l = \frac{-(1 - \epsilon)\log\sigma(\beta m) + \epsilon\log\sigma(-\beta m)}{1 - 2\epsilon}
    """

    name = "robust"
    bounds = {"label_smoothing": {"high_open": True}}  # 1 - 2 eps > 0
    beta: float = 0.1
    label_smoothing: float = 0.0

    def margin_terms(self, xp, margin):
        z, a = self.beta * margin, self.label_smoothing
        loss = (-(1 - a) * log_sigmoid_xp(xp, z) + a * log_sigmoid_xp(xp, -z)) / (1 - 2 * a)
        grad = -(1 - a) * sigmoid_xp(xp, -z) - a * sigmoid_xp(xp, z)
        return loss, self.beta * grad / (1 - 2 * a)


@dataclass(frozen=True, eq=False)
class SimPO(PairLoss):
    r"""SimPO (Meng et al. 2024): reference-free, mean token log-probs, a target margin
    :math:`\gamma`, with label smoothing as TRL's ``CPOTrainer(loss_type="simpo")``.

    .. math:: l = -(1 - \epsilon)\log\sigma(\beta m - \gamma) - \epsilon\log\sigma(-(\beta m - \gamma))

    ``gamma`` is the paper's :math:`\gamma` and TRL's ``simpo_gamma`` (default 0.5), not the SimPO
    repository's ``gamma_beta_ratio`` (:math:`\gamma / \beta`). ``nll_weight`` defaults to 0 (the
    paper); TRL's ``cpo_alpha`` defaults to 1, which is CPO-SimPO.
    """

    name = "simpo"
    reference = False
    per_token_mean = True
    beta: float = 0.1
    gamma: float = 0.5
    label_smoothing: float = 0.0

    def margin_terms(self, xp, margin):
        return _smoothed_sigmoid(xp, self.beta * margin - self.gamma, self.label_smoothing, self.beta)


@dataclass(frozen=True, eq=False)
class ORPO(PairLoss):
    r"""ORPO (Hong et al. 2024): the chosen NLL plus :math:`\lambda` times the odds-ratio loss on mean
    token log-probs :math:`\bar c, \bar r`, as TRL's ``ORPOTrainer``.

    .. math:: l = \mathrm{NLL}_c - \lambda\log\sigma\left(\log\frac{e^{\bar c}}{1 - e^{\bar c}}
              - \log\frac{e^{\bar r}}{1 - e^{\bar r}}\right)

    ``lambda_`` is TRL's ``ORPOConfig.beta`` (default 0.1), and scales the logged rewards as there;
    ORPO takes no ``beta``. The NLL is ``nll_weight`` (default 1) times the chosen tokens' mean NLL.
    A sequence whose every token has probability 1 in the working dtype (mean log-prob exactly 0: the
    probability of every other token underflows, logit gaps above ~104 in float32, ~745 in float64)
    has infinite odds. Two such sequences have equal odds (the loss is :math:`\lambda\log 2` plus the
    NLL, not NaN); such a chosen sequence against a rejected one of finite odds has loss 0 and the
    derivative's limit there, :math:`\lambda e^{\bar r} / \mathrm{expm1}(\bar r)`; such a rejected sequence
    against a chosen one of finite odds gives the limit, an infinite loss (its true log-odds need the
    log-probs below the dtype's range). Either way its tokens' gradients are 0 in that dtype.
    """

    name = "orpo"
    reference = False
    per_token_mean = True
    own_stats = ("log_odds_ratio", "log_odds_chosen")
    lambda_: float = 0.1
    nll_weight: float = 1.0

    @property
    def reward_scale(self) -> float:
        return self.lambda_

    def pair_terms(self, xp, chosen, rejected):
        # log odds log(p / (1 - p)) = log p - log(1 - p), the latter without cancellation
        # two equal odds (both infinite too) give 0, not inf - inf: each side's odds set to 0 before subtracting
        tie, zero = chosen == rejected, xp.zeros_like(chosen)
        z = (xp.where(tie, zero, chosen - _log1mexp(xp, chosen))
             - xp.where(tie, zero, rejected - _log1mexp(xp, rejected)))
        ratio = log_sigmoid_xp(xp, z)
        dz = -self.lambda_ * sigmoid_xp(xp, -z)  # d(-lambda log sigmoid z) / dz
        # d log odds / d x = 1 / (1 - e^x) = -1 / expm1(x); at x = 0 (odds infinite) the tokens' own
        # gradients are 0, so only a finite value matters: the limit where there is one, else 0
        em_c, em_r = xp.expm1(chosen), xp.expm1(rejected)
        safe_c = xp.where(em_c == 0, xp.full_like(em_c, -1.0), em_c)
        safe_r = xp.where(em_r == 0, xp.full_like(em_r, -1.0), em_r)
        zero = xp.zeros_like(z)
        d_chosen = xp.where(em_c == 0, xp.where(em_r == 0, zero, self.lambda_ * xp.exp(rejected) / safe_r),
                            -dz / safe_c)
        d_rejected = xp.where(em_r == 0, zero, dz / safe_r)
        return (-self.lambda_ * ratio, d_chosen, d_rejected, {"log_odds_ratio": ratio, "log_odds_chosen": z})


@dataclass(frozen=True, eq=False)
class CPO(PairLoss):
    r"""CPO (Xu et al. 2024, eq. 3), TRL's ``CPOTrainer(loss_type="sigmoid")``: sigmoid on the
    policy's summed log-prob margin (no reference), plus the chosen NLL (``nll_weight``, TRL's
    ``cpo_alpha``, default 1), with label smoothing as TRL's.

    .. math:: l = -(1 - \epsilon)\log\sigma(\beta m) - \epsilon\log\sigma(-\beta m) + \alpha\,\mathrm{NLL}_c
    """

    name = "cpo"
    reference = False
    beta: float = 0.1
    label_smoothing: float = 0.0
    nll_weight: float = 1.0

    def margin_terms(self, xp, margin):
        return _smoothed_sigmoid(xp, self.beta * margin, self.label_smoothing, self.beta)


#: the losses by their ``loss=`` name (the name is each class's own attribute)
PAIR_LOSSES: dict[str, type[PairLoss]] = {cls.name: cls for cls in (DPO, IPO, Hinge, RobustDPO, SimPO, ORPO, CPO)}


def pair_loss(loss: Any, **options) -> PairLoss:
    """The loss named ``loss`` with ``options``, checked: an unknown name or option raises, naming it."""
    cls = PAIR_LOSSES.get(loss) if isinstance(loss, str) else None
    if cls is None:
        raise _checks.fail("loss", "one of " + ", ".join(repr(name) for name in PAIR_LOSSES), repr(loss))
    hint = "ORPO's weight is lambda_, TRL's ORPOConfig.beta" if cls is ORPO and "beta" in options else ""
    _checks.known_options(options, cls.option_names(), f"loss={loss!r}", hint)
    return cls(**options)


class PreferenceObjective:
    """The objective of a preference loss for :func:`~losskit.losses.logprobs.sequence_sweep`: a unit
    is a pair, whose rows are its chosen row ``i`` and rejected row ``B + i``. Built (and the data
    checked) by :func:`preference_objective`."""

    def __init__(self, xp, loss: PairLoss, mask, ref_logps, dtype):
        self.loss, self.mask = loss, mask
        self.n_units = n_pairs = mask.shape[0] // 2
        counts = xp.sum(xp.astype(mask, dtype), axis=-1)
        # a sequence's score is its log-prob sum times this (1 / its token count for the mean)
        self.per_row = 1 / counts if loss.per_token_mean else xp.ones_like(counts)
        self.ref = None if ref_logps is None else ref_logps * self.per_row
        self.nll_scale = loss.nll_weight / xp.sum(counts[:n_pairs]) if loss.nll_weight else None

    def rows(self, start: int, stop: int) -> list[int]:
        return list(range(start, stop)) + list(range(self.n_units + start, self.n_units + stop))

    def _pick(self, xp, array, start, stop):
        return xp.concat([array[start:stop], array[self.n_units + start:self.n_units + stop]])

    def terms(self, xp, logp, mask, start: int, stop: int):
        """``(loss, dlogp, stats)`` of pairs ``start..stop-1``; ``logp``/``mask`` rows as :meth:`rows`."""
        n = stop - start
        per_row = self._pick(xp, self.per_row, start, stop)
        policy = xp.sum(logp, axis=-1) * per_row
        score = policy if self.ref is None else policy - self._pick(xp, self.ref, start, stop)
        chosen, rejected = score[:n], score[n:]
        loss, d_chosen, d_rejected, stats = self.loss.pair_terms(xp, chosen, rejected)
        value = xp.sum(loss) / self.n_units
        coef = xp.concat([d_chosen, d_rejected]) * per_row / self.n_units  # d value / d logp_t, per row
        dlogp = xp.broadcast_to(coef[:, None], logp.shape)
        scale = self.loss.reward_scale
        stats = {"chosen_rewards": scale * chosen, "rejected_rewards": scale * rejected,
                 "chosen_logps": policy[:n], "rejected_logps": policy[n:], **stats}
        if self.nll_scale is not None:  # + w * (-sum of chosen token log-probs) / (batch's chosen tokens)
            nll = -self.nll_scale * xp.sum(logp[:n, ...], axis=-1)
            value = value + xp.sum(nll)
            is_chosen = xp.arange(2 * n, device=_array.device(logp))[:, None] < n
            dlogp = xp.where(is_chosen, dlogp - self.nll_scale, dlogp)
            stats["nll"] = nll
        return value, xp.where(mask, dlogp, xp.zeros_like(dlogp)), stats

    def aux(self, xp, stats) -> dict:
        """TRL's logged statistics from the per-pair ``stats`` of a sweep: means over the pairs (the
        NLL: its sum, the loss's own term), and the reward accuracy ``mean(chosen > rejected)``."""
        chosen, rejected = stats["chosen_rewards"], stats["rejected_rewards"]
        derived = {"reward_margins": xp.mean(chosen - rejected),
                   "reward_accuracy": xp.mean(xp.astype(chosen > rejected, chosen.dtype)),
                   "nll": xp.sum(stats["nll"]) if "nll" in stats else None}
        return {name: derived[name] if name in derived else xp.mean(stats[name]) for name in self.loss.aux_names()}


def preference_objective(xp, loss: PairLoss, target, ignore_index, ref_logps, dtype) -> PreferenceObjective:
    """The objective of ``loss`` for ``target [2B, T]``, the data checked: an even number of rows, at
    least one pair; ``ref_logps [2B]`` given exactly when the loss reads it; a token in every
    sequence where a mean is taken, and in the chosen rows where there is an NLL term."""
    n_rows = target.shape[0]
    if n_rows % 2 or n_rows == 0:
        raise _checks.fail("hidden", "an even number of rows, at least 2 (B chosen sequences, then their B "
                           "rejected ones)", f"{n_rows} rows")
    mask = xp.ones(target.shape, dtype=xp.bool, device=_array.device(target)) if ignore_index is None else \
        target != ignore_index
    if loss.reference and ref_logps is None:
        raise _checks.fail("ref_logps", f"the reference model's summed log-probs, shape ({n_rows},), for "
                           f"loss={loss.name!r}", "None")
    if not loss.reference and ref_logps is not None:
        raise _checks.fail("ref_logps", f"None: loss={loss.name!r} is reference-free", "an array")
    if ref_logps is not None:
        if not _array.isdtype(xp, ref_logps.dtype, ("real floating", "integral")):  # integers are cast, as GRPO's
            raise _checks.fail("ref_logps", "real numbers", f"dtype {ref_logps.dtype}")
        _checks.same_shape("ref_logps", ref_logps, "one per row of hidden", (n_rows,))
        ref_logps = _array.as_dtype(xp, ref_logps, dtype)
    counts = xp.sum(xp.astype(mask, dtype), axis=-1)  # exact in float32 below 2^24 tokens
    if loss.per_token_mean and _array.concrete_bool(xp.any(counts == 0)):
        row = int(xp.argmin(counts))
        side, pair = ("chosen", row) if row < n_rows // 2 else ("rejected", row - n_rows // 2)
        raise _checks.fail("target", f"a token that is not ignore_index={ignore_index} in every sequence (loss="
                           f"{loss.name!r} takes the mean log-prob per token)",
                           f"row {row} ({side} of pair {pair}) all ignored")
    if loss.nll_weight and _array.concrete_bool(xp.sum(counts[:n_rows // 2]) == 0):
        raise _checks.fail("target", f"a chosen token that is not ignore_index={ignore_index} (the chosen NLL, "
                           f"nll_weight={loss.nll_weight:g}, is a mean over them)", "every chosen token ignored")
    return PreferenceObjective(xp, loss, mask, ref_logps, dtype)


def _prepared(hidden, classifier, target, bias, loss, ref_logps, beta, ignore_index, options):
    """The checked arrays and the objective of a call (options first: they need no data)."""
    pair = pair_loss(loss, **({} if beta is None else {"beta": beta}), **options)
    xp, hidden, classifier, target, bias = linear_arrays(hidden, classifier, target, bias, sequences=True)
    ref_logps = _array.namespace(hidden=hidden, ref_logps=ref_logps)[1]["ref_logps"]
    objective = preference_objective(xp, pair, target, _checks.ignore_index(ignore_index), ref_logps, hidden.dtype)
    return xp, hidden, classifier, target, bias, objective


@computes_half_in_float32
def linear_preference_loss_value_and_grad(hidden, classifier, target, *, loss="dpo", ref_logps=None, beta=None,
                                          bias=None, ignore_index=-100, temperature=1.0, chunk_size=None, aux=False,
                                          **options):
    r"""``(value, (grad_hidden, grad_classifier, grad_bias))`` of :func:`linear_preference_loss`, in one sweep.

    Shapes: the gradients have the shapes of ``hidden [2B, T, D]``, ``classifier [V, D]`` and ``bias
    [V]`` (None without a bias); ``value`` is 0-d. With ``aux=True``: ``(value, grads, aux)``, ``aux``
    as :func:`linear_preference_loss`'s (the return the torch and JAX wrappers,
    ``losskit.torch.linear.fused_linear`` and ``losskit.jax.fused_linear``, take).
    """
    aux = _checks.flag(aux, "aux")
    xp, hidden, classifier, target, bias, objective = _prepared(hidden, classifier, target, bias, loss, ref_logps,
                                                                beta, ignore_index, options)
    sweep = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=temperature,
                           ignore_index=ignore_index, objective=objective, chunk_size=chunk_size)
    if aux:
        return sweep.loss, sweep.grads, objective.aux(xp, sweep.stats)
    return sweep.loss, sweep.grads


@computes_half_in_float32
def linear_preference_loss(hidden, classifier, target, *, loss="dpo", ref_logps=None, beta=None, bias=None,
                           ignore_index=-100, temperature=1.0, chunk_size=None, aux=False, **options):
    r"""A preference loss of the policy ``softmax((hidden @ classifier.T + bias) / temperature)``, fused
    with the output layer: the ``2B x T x V`` logits are never held (chunks of whole pairs).

    .. math:: \log\pi(y) = \sum_t \log p_t(y_t) \;\text{(or the mean over the tokens)}, \quad
              L = \frac{1}{B}\sum_{i=1}^{B} l(s_{c,i}, s_{r,i}) + w\,\mathrm{NLL}_c

    Shapes: ``hidden [2B, T, D]`` (chosen rows first, then the rejected rows in the same order),
    ``classifier [V, D]``, ``target [2B, T]`` token ids with ``ignore_index`` on prompt and padding,
    ``ref_logps [2B]`` the reference model's summed log-probs (None for the reference-free losses:
    ``"simpo"``, ``"orpo"``, ``"cpo"``; given to them, it raises rather than being ignored),
    ``bias [V]``. The ``loss`` and its options (each loss's own; any other raises):

    * ``"dpo"``: ``beta`` (0.1), ``label_smoothing`` (cDPO, in [0, 0.5]);
    * ``"ipo"``: ``beta`` (> 0), on mean token log-probs;
    * ``"hinge"``: ``beta``;
    * ``"robust"``: ``beta``, ``label_smoothing`` (in [0, 0.5));
    * ``"simpo"``: ``beta``, ``gamma`` (0.5, TRL's ``simpo_gamma``), ``label_smoothing``, mean log-probs;
    * ``"orpo"``: ``lambda_`` (0.1, TRL's ``ORPOConfig.beta``; no ``beta``), mean log-probs;
    * ``"cpo"``: ``beta``, ``label_smoothing``.

    Every loss takes ``nll_weight``: the weight of the chosen tokens' mean NLL (TRL's ``rpo_alpha``;
    default 0, and 1 for ``"orpo"`` and ``"cpo"``, whose NLL term it is). ``beta=None`` is each
    loss's default (0.1). The formulas are in :mod:`losskit.losses.preference` and
    docs/post-training.md. ``chunk_size`` is the chunk budget in tokens; a pair longer than it is
    done in two passes.

    Returns the loss (0-d, the mean over pairs). With ``aux=True``, ``(loss, aux)``: ``aux`` holds
    TRL's logged statistics as 0-d arrays, means over the pairs: ``chosen_rewards``,
    ``rejected_rewards`` (``beta * (log pi - log pi_ref)``, or ``beta * log pi`` without reference,
    ORPO's scale being ``lambda_``), ``reward_margins``, ``reward_accuracy`` (the share of pairs whose
    chosen reward is the larger), ``chosen_logps``, ``rejected_logps`` (the policy's, summed or
    averaged as the loss takes them); ``nll`` (the weighted NLL term) where there is one; ORPO's
    ``log_odds_ratio`` and ``log_odds_chosen``.

    >>> import numpy as np, losskit as lk
    >>> h, c = np.ones((2, 3, 2)), np.zeros((4, 2))  # uniform policy: both sequences alike, margin 0
    >>> round(float(lk.linear_preference_loss(h, c, np.zeros((2, 3), dtype=int), ref_logps=np.zeros(2))), 6)
    0.693147
    """
    aux = _checks.flag(aux, "aux")
    xp, hidden, classifier, target, bias, objective = _prepared(hidden, classifier, target, bias, loss, ref_logps,
                                                                beta, ignore_index, options)
    # no gradient asked: the log-probs alone (one gemm per chunk, not three), then the formula on all pairs
    logps = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=temperature,
                           ignore_index=ignore_index, chunk_size=chunk_size).logps
    value, _, stats = objective.terms(xp, logps, objective.mask, 0, objective.n_units)
    return (value, objective.aux(xp, stats)) if aux else value
