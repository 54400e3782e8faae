"""Preference losses (DPO, IPO, hinge, robust, SimPO, ORPO, CPO): each objective against its paper's
formula written here in float64, its token derivatives against central differences, and each error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from losskit import LossInputError
from losskit.losses.preference import PAIR_LOSSES, pair_loss, preference_objective

IGNORE = -100
B, T = 3, 6

#: (loss, options) pairs: every loss, with and without its smoothing / margin / NLL options
CASES = [
    ("dpo", {}), ("dpo", {"beta": 0.3, "label_smoothing": 0.2}), ("dpo", {"beta": 0.2, "nll_weight": 0.7}),
    ("ipo", {}), ("ipo", {"beta": 0.5, "nll_weight": 0.3}),
    ("hinge", {}), ("hinge", {"beta": 0.05, "nll_weight": 1.0}),
    ("robust", {}), ("robust", {"beta": 0.4, "label_smoothing": 0.3}),
    ("simpo", {}), ("simpo", {"beta": 2.5, "gamma": 1.4, "label_smoothing": 0.1, "nll_weight": 0.5}),
    ("orpo", {}), ("orpo", {"lambda_": 0.7, "nll_weight": 0.0}),
    ("cpo", {}), ("cpo", {"beta": 0.3, "label_smoothing": 0.25, "nll_weight": 0.0}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in opts.items()) or 'defaults'}" for name, opts in CASES]


def _pairs(seed=0, n_pairs=B, n_tokens=T):
    """Hand-built log-probs, a mask with prompt/padding holes (every sequence keeps a token), the
    target that mask means, and reference log-prob sums."""
    rng = np.random.default_rng(seed)
    logp = -rng.gamma(2.0, 0.6, size=(2 * n_pairs, n_tokens))
    mask = rng.random((2 * n_pairs, n_tokens)) < 0.7
    mask[:, -1] = True
    logp = np.where(mask, logp, 0.0)
    target = np.where(mask, rng.integers(0, 50, size=mask.shape), IGNORE)
    ref = np.sum(np.where(mask, -rng.gamma(2.0, 0.6, size=mask.shape), 0.0), axis=1)
    return logp, mask, target, ref


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _paper_loss(name, opts, logp, mask, ref):
    """The batch loss as each paper (and TRL) writes it, pair by pair, in float64."""
    n_pairs = logp.shape[0] // 2
    beta = opts.get("beta", 0.1)
    eps = opts.get("label_smoothing", 0.0)
    nll_weight = opts.get("nll_weight", 1.0 if name in ("orpo", "cpo") else 0.0)
    total = 0.0
    for i in range(n_pairs):
        c, r = i, n_pairs + i
        sum_c, sum_r = logp[c][mask[c]].sum(), logp[r][mask[r]].sum()
        n_c, n_r = mask[c].sum(), mask[r].sum()
        if name == "dpo":  # Rafailov et al. eq. 7, cDPO's smoothing
            h = (sum_c - ref[c]) - (sum_r - ref[r])
            total += -(1 - eps) * _log_sigmoid(beta * h) - eps * _log_sigmoid(-beta * h)
        elif name == "ipo":  # Azar et al. eq. 17 on mean log-probs (the reference's sum averaged alike)
            h = (sum_c / n_c - ref[c] / n_c) - (sum_r / n_r - ref[r] / n_r)
            total += (h - 1 / (2 * beta)) ** 2
        elif name == "hinge":
            h = (sum_c - ref[c]) - (sum_r - ref[r])
            total += max(0.0, 1 - beta * h)
        elif name == "robust":  # Chowdhury et al.: unbiased under flips of rate eps
            h = (sum_c - ref[c]) - (sum_r - ref[r])
            total += ((1 - eps) * -_log_sigmoid(beta * h) + eps * _log_sigmoid(-beta * h)) / (1 - 2 * eps)
        elif name == "simpo":  # Meng et al. eq. 6: length-normalised reward, margin gamma
            x = beta * sum_c / n_c - beta * sum_r / n_r - opts.get("gamma", 0.5)
            total += -(1 - eps) * _log_sigmoid(x) - eps * _log_sigmoid(-x)
        elif name == "orpo":  # Hong et al. eqs. 4-7: odds p / (1 - p) of the mean log-prob's p
            p_c, p_r = math.exp(sum_c / n_c), math.exp(sum_r / n_r)
            log_or = math.log((p_c / (1 - p_c)) / (p_r / (1 - p_r)))
            total += -opts.get("lambda_", 0.1) * _log_sigmoid(log_or)
        elif name == "cpo":  # Xu et al. eq. 3 (summed log-probs, no reference)
            x = beta * (sum_c - sum_r)
            total += -(1 - eps) * _log_sigmoid(x) - eps * _log_sigmoid(-x)
    chosen = mask[:n_pairs]
    nll = -logp[:n_pairs][chosen].sum() / chosen.sum()  # mean over every chosen token of the batch
    return total / n_pairs + nll_weight * nll


def _objective(name, opts, mask, target, ref):
    loss = pair_loss(name, **opts)
    return preference_objective(np, loss, target, IGNORE, ref if loss.reference else None, np.float64)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=IDS)
def test_objective_matches_the_paper(name, opts):
    logp, mask, target, ref = _pairs()
    value, dlogp, _ = _objective(name, opts, mask, target, ref).terms(np, logp, mask, 0, B)
    np.testing.assert_allclose(value, _paper_loss(name, opts, logp, mask, ref), rtol=1e-13)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=IDS)
def test_objective_gradient_matches_central_differences(name, opts):
    logp, mask, target, ref = _pairs(1)
    objective = _objective(name, opts, mask, target, ref)
    _, dlogp, _ = objective.terms(np, logp, mask, 0, B)
    assert np.all(dlogp[~mask] == 0)
    step = 1e-6
    for r, t in zip(*np.nonzero(mask), strict=True):
        up, down = logp.copy(), logp.copy()
        up[r, t] += step
        down[r, t] -= step
        numeric = (objective.terms(np, up, mask, 0, B)[0] - objective.terms(np, down, mask, 0, B)[0]) / (2 * step)
        np.testing.assert_allclose(dlogp[r, t], numeric, rtol=1e-7, atol=1e-10, err_msg=f"token ({r}, {t})")


@pytest.mark.parametrize(("name", "opts"), CASES, ids=IDS)
def test_chunks_of_pairs_add_up_to_the_batch(name, opts):
    """The sweep calls terms on chunks of pairs: the losses add up and each row's dlogp is the batch's
    (global counts, never a chunk's)."""
    logp, mask, target, ref = _pairs(2, n_pairs=5)
    objective = _objective(name, opts, mask, target, ref)
    whole, dwhole, stats = objective.terms(np, logp, mask, 0, 5)
    total = 0.0
    for start, stop in [(0, 2), (2, 3), (3, 5)]:
        rows = objective.rows(start, stop)
        assert rows == [*range(start, stop), *range(5 + start, 5 + stop)]
        part, dpart, part_stats = objective.terms(np, logp[rows], mask[rows], start, stop)
        total += part
        np.testing.assert_allclose(dpart, dwhole[rows], rtol=1e-14, atol=1e-300)
        for key, value in part_stats.items():
            np.testing.assert_allclose(value, stats[key][start:stop], rtol=1e-14)
    np.testing.assert_allclose(total, whole, rtol=1e-13)


@pytest.mark.parametrize(("name", "opts"), CASES, ids=IDS)
def test_logged_statistics_are_trls(name, opts):
    """TRL logs beta * (logp - ref) for the reference losses and beta * logp for the reference-free ones
    (ORPO: its lambda), logp the sum or the mean as the loss takes it; means over pairs."""
    logp, mask, target, ref = _pairs(3)
    objective = _objective(name, opts, mask, target, ref)
    aux = objective.aux(np, objective.terms(np, logp, mask, 0, B)[2])
    loss = pair_loss(name, **opts)
    counts = mask.sum(1) if loss.per_token_mean else np.ones(2 * B)
    policy = logp.sum(1) / counts
    scale = opts.get("lambda_", 0.1) if name == "orpo" else opts.get("beta", 0.1)
    rewards = scale * (policy - ref / counts) if loss.reference else scale * policy
    chosen, rejected = rewards[:B], rewards[B:]
    np.testing.assert_allclose(aux["chosen_rewards"], chosen.mean(), rtol=1e-14)
    np.testing.assert_allclose(aux["rejected_rewards"], rejected.mean(), rtol=1e-14)
    np.testing.assert_allclose(aux["reward_margins"], (chosen - rejected).mean(), rtol=1e-13)
    assert aux["reward_accuracy"] == np.mean(chosen > rejected)
    np.testing.assert_allclose(aux["chosen_logps"], policy[:B].mean(), rtol=1e-14)
    np.testing.assert_allclose(aux["rejected_logps"], policy[B:].mean(), rtol=1e-14)
    if loss.nll_weight:
        np.testing.assert_allclose(aux["nll"], loss.nll_weight * -logp[:B][mask[:B]].mean(), rtol=1e-13)
    else:
        assert "nll" not in aux
    if name == "orpo":  # TRL's log_odds_ratio = mean log sigmoid(log odds), log_odds_chosen = mean log odds
        p = np.exp(policy)
        log_odds = np.log(p[:B] / (1 - p[:B])) - np.log(p[B:] / (1 - p[B:]))
        np.testing.assert_allclose(aux["log_odds_chosen"], log_odds.mean(), rtol=1e-12)
        np.testing.assert_allclose(aux["log_odds_ratio"], np.mean([_log_sigmoid(x) for x in log_odds]), rtol=1e-12)


def test_orpo_log_odds_near_probability_one_and_far_below():
    """log(1 - e^x) without cancellation: a mean log-prob of -1e-12 (p ~ 1) and of -60 (p ~ 1e-26)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    logp = np.array([[-1e-12, 0.0], [-60.0, 0.0]])
    mask = np.array([[True, False], [True, False]])
    target = np.where(mask, 1, IGNORE)
    objective = _objective("orpo", {"nll_weight": 0.0}, mask, target, None)
    value, dlogp, stats = objective.terms(np, logp, mask, 0, 1)

    def log_odds(x):
        x = mpmath.mpf(x)
        return x - mpmath.log(1 - mpmath.exp(x))

    z = log_odds(-1e-12) - log_odds(-60.0)
    np.testing.assert_allclose(stats["log_odds_chosen"][0], float(z), rtol=1e-14)
    # the value is ~ 0.1 e^-z with z ~ 88: z's rounding (88 eps) is its relative error
    np.testing.assert_allclose(value, float(-0.1 * mpmath.log(1 / (1 + mpmath.exp(-z)))), rtol=1e-12)
    slope = -0.1 * (1 / (1 + mpmath.exp(z)))  # d(-0.1 log sigmoid z) / dz
    np.testing.assert_allclose(dlogp[0, 0], float(slope / (1 - mpmath.exp(mpmath.mpf(-1e-12)))), rtol=1e-12)
    np.testing.assert_allclose(dlogp[1, 0], float(-slope / (1 - mpmath.exp(mpmath.mpf(-60)))), rtol=1e-12)


def test_hinge_has_zero_slope_past_the_margin_and_at_the_kink():
    logp = np.array([[-1.0], [-21.0]])  # margin 20 with beta 0.05: 1 - beta m = 0, the kink
    mask = np.ones_like(logp, dtype=bool)
    ref = np.zeros(2)
    value, dlogp, _ = _objective("hinge", {"beta": 0.05}, mask, np.ones((2, 1), dtype=int), ref).terms(
        np, logp, mask, 0, 1)
    assert value == 0 and np.all(dlogp == 0)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
@pytest.mark.parametrize(("name", "opts"), CASES[::2], ids=IDS[::2])
def test_objective_on_other_array_libraries(backend, name, opts):
    xp_module = pytest.importorskip(backend)
    from array_api_compat import array_namespace

    logp, mask, target, ref = _pairs(4)
    expected = _objective(name, opts, mask, target, ref).terms(np, logp, mask, 0, B)
    convert = xp_module.asarray if backend == "array_api_strict" else xp_module.from_numpy
    arrays = [convert(np.array(a)) for a in (logp, mask, target, ref)]
    xp = array_namespace(arrays[0])
    loss = pair_loss(name, **opts)
    objective = preference_objective(xp, loss, arrays[2], IGNORE, arrays[3] if loss.reference else None,
                                     arrays[0].dtype)
    value, dlogp, stats = objective.terms(xp, arrays[0], arrays[1], 0, B)
    np.testing.assert_allclose(float(value), expected[0], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(dlogp), expected[1], rtol=1e-14, atol=1e-300)
    aux = objective.aux(xp, stats)
    assert float(aux["reward_accuracy"]) == objective.aux(np, expected[2])["reward_accuracy"]


# ---- errors ---------------------------------------------------------------------------------------------

def test_every_loss_is_registered_by_its_name():
    assert sorted(PAIR_LOSSES) == ["cpo", "dpo", "hinge", "ipo", "orpo", "robust", "simpo"]
    assert all(cls.name == name for name, cls in PAIR_LOSSES.items())


@pytest.mark.parametrize(("name", "options", "argument", "words"), [
    ("kto", {}, "loss", "'dpo', 'ipo', 'hinge', 'robust', 'simpo', 'orpo', 'cpo'"),
    ("sigmoid", {}, "loss", "'dpo'"),
    (None, {}, "loss", "one of"),
    ("dpo", {"beta": -0.1}, "beta", ">= 0"),
    ("simpo", {"beta": -1.0}, "beta", ">= 0"),
    ("ipo", {"beta": 0.0}, "beta", "> 0"),
    ("dpo", {"beta": float("nan")}, "beta", "finite"),
    ("dpo", {"label_smoothing": 0.6}, "label_smoothing", "<= 0.5"),
    ("robust", {"label_smoothing": 0.5}, "label_smoothing", "< 0.5"),
    ("dpo", {"nll_weight": -1.0}, "nll_weight", ">= 0"),
    ("orpo", {"lambda_": -0.1}, "lambda_", ">= 0"),
    ("dpo", {"gamma": 0.5}, "gamma", "options are nll_weight, beta, label_smoothing"),
    ("orpo", {"beta": 0.5}, "beta", "lambda_"),
    ("ipo", {"label_smoothing": 0.1}, "label_smoothing", "no such option for loss='ipo'"),
    ("dpo", {"beta": "0.1"}, "beta", "finite number"),
])
def test_bad_options_name_the_argument(name, options, argument, words):
    with pytest.raises(LossInputError, match=f"^{argument}: ") as info:
        pair_loss(name, **options)
    assert words in str(info.value)


def _check(name, target, ref="auto", opts=None):
    loss = pair_loss(name, **(opts or {}))
    if isinstance(ref, str):
        ref = np.zeros(target.shape[0]) if loss.reference else None
    return preference_objective(np, loss, target, IGNORE, ref, np.float64)


def test_an_odd_number_of_rows_raises():
    with pytest.raises(LossInputError, match=r"^hidden: expected an even number of rows.*got 3 rows"):
        _check("dpo", np.ones((3, 4), dtype=int))
    with pytest.raises(LossInputError, match=r"^hidden: .*got 0 rows"):
        _check("dpo", np.ones((0, 4), dtype=int))


def test_ref_logps_missing_given_or_misshapen_raises():
    target = np.ones((4, 3), dtype=int)
    with pytest.raises(LossInputError, match=r"^ref_logps: expected the reference model's summed log-probs, "
                                             r"shape \(4,\), for loss='dpo', got None"):
        _check("dpo", target, ref=None)
    for name in ("simpo", "orpo", "cpo"):
        with pytest.raises(LossInputError, match=f"^ref_logps: expected None: loss='{name}' is reference-free"):
            _check(name, target, ref=np.zeros(4))
    with pytest.raises(LossInputError, match=r"^ref_logps: expected shape \(4,\).*got shape \(2,\)"):
        _check("hinge", target, ref=np.zeros(2))
    with pytest.raises(LossInputError, match=r"^ref_logps: expected a real floating-point array"):
        _check("robust", target, ref=np.zeros(4, dtype=int))


@pytest.mark.parametrize("name", ["ipo", "simpo", "orpo"])
def test_a_sequence_with_every_token_ignored_raises_where_a_mean_is_taken(name):
    target = np.ones((4, 3), dtype=int)
    target[3] = IGNORE  # the rejected sequence of pair 1
    with pytest.raises(LossInputError, match=r"^target: expected a token that is not ignore_index=-100 in every "
                                             rf"sequence \(loss='{name}'.*got row 3 \(rejected of pair 1\) all ignored"):
        _check(name, target)


def test_a_sum_loss_takes_an_empty_sequence_but_the_nll_needs_a_chosen_token():
    target = np.ones((4, 3), dtype=int)
    target[1] = IGNORE
    _check("dpo", target)  # a summed log-prob over no token is 0, as TRL's
    target[0] = IGNORE
    _check("dpo", target)
    with pytest.raises(LossInputError, match=r"^target: expected a chosen token .*nll_weight=0\.5.*got every "
                                             r"chosen token ignored"):
        _check("dpo", target, opts={"nll_weight": 0.5})
    with pytest.raises(LossInputError, match=r"^target: expected a chosen token"):
        _check("cpo", target)
