"""Preference losses (DPO, IPO, hinge, robust, SimPO, ORPO, CPO): each objective against its paper's
formula written here in float64, its token derivatives against central differences, and each error."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import losskit as lk
from losskit import LossInputError
from losskit.losses.linear import linear_cross_entropy_value_and_grad
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


def test_orpo_at_probability_one_in_the_dtype_is_finite_where_the_limit_is():
    """A mean log-prob of exactly 0 (every other token's probability underflowed) gave NaN: inf - inf
    log-odds for two such sequences, 0/0 slopes for one. Two such sequences have equal odds; one chosen
    against finite odds takes the limit: loss 0, slope lambda e^r / expm1(r) (from the closed form
    d/dc = -lambda sigma(-z) / (1 - e^c), z the log-odds ratio, as c -> 0)."""
    lam, r = 0.1, -0.5
    logp = np.array([[0.0], [0.0], [0.0], [r]])  # pairs (0, 0) and (0, r): chosen rows first
    mask = np.ones((4, 1), dtype=bool)
    objective = _objective("orpo", {"nll_weight": 0.0}, mask, np.ones((4, 1), dtype=int), None)
    with warnings.catch_warnings():  # NumPy's divide and invalid warnings on the way (log 0, inf - inf): none now
        warnings.simplefilter("error")
        value, dlogp, stats = objective.terms(np, logp, mask, 0, 2)
    np.testing.assert_allclose(value, (lam * np.log(2) + 0.0) / 2, rtol=1e-15)
    assert list(stats["log_odds_chosen"]) == [0.0, np.inf]
    np.testing.assert_allclose(dlogp[:, 0], [0.0, lam * np.exp(r) / np.expm1(r) / 2, 0.0, 0.0], rtol=1e-15)
    c = -1e-9  # near the limit, the generic formula agrees
    z = (c - np.log(-np.expm1(c))) - (r - np.log(-np.expm1(r)))
    assert -lam / (1 + np.exp(z)) / -np.expm1(c) == pytest.approx(lam * np.exp(r) / np.expm1(r), rel=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_fused_orpo_of_sequences_at_probability_one_is_finite(backend):
    """Logit gaps of 800: every log-prob is exactly 0 in float32 and float64. The loss is lambda log 2
    (equal infinite odds, NLL 0) and every gradient 0 (each token's softmax is one-hot in the dtype),
    on every backend; it was NaN."""
    hidden = np.zeros((2, 3, 2))
    hidden[..., 0] = 800.0
    classifier = np.zeros((5, 2))
    classifier[0, 0] = 1.0
    target = np.zeros((2, 3), dtype=np.int64)
    if backend == "numpy":
        value, grads = lk.linear_preference_loss_value_and_grad(hidden, classifier, target, loss="orpo")
    elif backend == "torch":
        torch = pytest.importorskip("torch")
        import losskit.torch as lt

        leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier)]
        value = lt.LinearPreferenceLoss("orpo")(*leaves, torch.tensor(target))
        value.backward()
        value, grads = value.detach().numpy(), [leaf.grad.numpy() for leaf in leaves]
    else:
        jax = pytest.importorskip("jax")
        import losskit.jax as lj

        value, grads = jax.value_and_grad(  # float64: the conftest enables x64
            lambda h, c: lj.linear_preference_loss(h, c, jax.numpy.asarray(target), loss="orpo"),
            argnums=(0, 1))(jax.numpy.asarray(hidden), jax.numpy.asarray(classifier))
    np.testing.assert_allclose(float(value), 0.1 * np.log(2), rtol=1e-14)
    for grad in grads[:2]:
        np.testing.assert_array_equal(np.asarray(grad), 0.0)


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
    ("dpo", {"gamma": 0.5}, "gamma", "an option of loss='dpo' (nll_weight, beta, label_smoothing)"),
    ("orpo", {"beta": 0.5}, "beta", "lambda_"),
    ("ipo", {"label_smoothing": 0.1}, "label_smoothing", "an option of loss='ipo'"),
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
    for bad in (np.zeros(4, dtype=complex), np.zeros(4, dtype=bool)):
        with pytest.raises(LossInputError, match=r"^ref_logps: expected real numbers"):
            _check("robust", target, ref=bad)


def test_integer_ref_logps_are_the_same_numbers_as_floats():
    """As GRPO's log-probs and advantages: an integer array (summed log-probs of -5, -6) was refused."""
    rng = np.random.default_rng(2)
    hidden, classifier, target = rng.normal(size=(4, 3, 2)), rng.normal(size=(5, 2)), rng.integers(0, 5, (4, 3))
    ints = np.array([-5, -6, -5, -7])
    value, grads = lk.linear_preference_loss_value_and_grad(hidden, classifier, target, ref_logps=ints)
    expected, expected_grads = lk.linear_preference_loss_value_and_grad(hidden, classifier, target,
                                                                        ref_logps=ints.astype(float))
    assert float(value) == float(expected)
    for grad, reference in zip(grads[:2], expected_grads[:2], strict=True):
        np.testing.assert_array_equal(grad, reference)


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


def test_pairs_of_empty_sequences_keep_their_reference_margin_in_every_form():
    """T = 0: every summed log-prob is 0, so DPO is -log sigmoid(beta ((0 - ref_c) - (0 - ref_r))) per pair
    (by hand), in the loss form and in the value-and-gradient form, whose gradients are zero. The latter
    gave 0, and with aux=True a KeyError ('chosen_rewards')."""
    rng = np.random.default_rng(0)
    hidden, classifier = rng.normal(size=(4, 0, 3)), rng.normal(size=(7, 3))
    target, ref = np.zeros((4, 0), dtype=int), np.array([0.5, -0.3, 0.2, 0.1])
    margins = 0.1 * ((0 - ref[:2]) - (0 - ref[2:]))
    expected = float(np.mean(np.log1p(np.exp(-margins))))
    assert float(lk.linear_preference_loss(hidden, classifier, target, ref_logps=ref)) == pytest.approx(expected)
    value, grads, aux = lk.linear_preference_loss_value_and_grad(hidden, classifier, target, ref_logps=ref, aux=True)
    assert float(value) == pytest.approx(expected)
    assert grads[0].shape == hidden.shape and not np.any(grads[1]) and grads[2] is None
    assert aux["chosen_rewards"] == pytest.approx(float(np.mean(-0.1 * ref[:2])))
    assert aux["reward_accuracy"] == 0.5  # pair 0: -0.05 < -0.02; pair 1: 0.03 > -0.01


# ---- fused: the loss and its gradients vs the naive computation (materialised logits) --------------------

D, V, TOKENS = 5, 11, 7
#: chunk budgets in tokens (a pair is 2 x 7 = 14): the whole batch, a pair split in two passes, one pair a
#: chunk, two pairs a chunk (the last chunk holding one)
CHUNKS = [None, 5, 14, 30]
#: (bias, temperature, ignore_index)
SETTINGS = [(False, 1.0, -100), (True, 0.7, -1)]


def _batch(dtype, ignore_index, seed=5):
    """hidden [2B, T, D], classifier, bias, target (prompt and padding ignored; every row keeps tokens)
    and reference sums near the policy's, so that margins take both signs and the hinge is both active
    and not."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(2 * B, TOKENS, D))
    classifier = rng.normal(scale=0.6, size=(V, D))
    bias = rng.normal(scale=0.5, size=V)
    target = rng.integers(0, V, size=(2 * B, TOKENS))
    target[:, :2] = ignore_index  # the prompt
    target[1, -2:] = ignore_index  # padding
    target[B + 2, -3:] = ignore_index
    ref = rng.normal(-12.0, 3.0, size=2 * B)
    return [a.astype(dtype) for a in (hidden, classifier, bias)] + [target, ref.astype(dtype)]


def _trl_formula(torch, name, opts, logp, mask, ref):
    """The batch loss from per-token log-probs, vectorised as TRL's trainers write it (torch, float64)."""
    F = torch.nn.functional
    n = logp.shape[0] // 2
    beta, eps = opts.get("beta", 0.1), opts.get("label_smoothing", 0.0)
    nll_weight = opts.get("nll_weight", 1.0 if name in ("orpo", "cpo") else 0.0)
    sums, counts = (logp * mask).sum(-1), mask.sum(-1)
    per_token = name in ("ipo", "simpo", "orpo")
    policy = sums / counts if per_token else sums
    if ref is not None:
        ref = ref / counts if per_token else ref
        margin = (policy[:n] - ref[:n]) - (policy[n:] - ref[n:])
    else:
        margin = policy[:n] - policy[n:]
    if name in ("dpo", "cpo", "simpo"):
        x = beta * margin - (opts.get("gamma", 0.5) if name == "simpo" else 0.0)
        losses = -(1 - eps) * F.logsigmoid(x) - eps * F.logsigmoid(-x)
    elif name == "ipo":
        losses = (margin - 1 / (2 * beta)) ** 2
    elif name == "hinge":
        losses = torch.relu(1 - beta * margin)
    elif name == "robust":
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)
    elif name == "orpo":
        c, r = policy[:n], policy[n:]
        log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
        losses = -opts.get("lambda_", 0.1) * F.logsigmoid(log_odds)
    nll = -(logp[:n] * mask[:n]).sum() / mask[:n].sum()
    return losses.mean() + nll_weight * nll


def _naive(name, opts, hidden, classifier, bias, target, ref, temperature, ignore_index):
    """Value and gradients by torch autograd in float64 through the materialised logits."""
    torch = pytest.importorskip("torch")
    h, c = (torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in (hidden, classifier))
    b = None if bias is None else torch.tensor(np.asarray(bias, dtype=np.float64), requires_grad=True)
    logits = h @ c.T + (0 if b is None else b)
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    mask = torch.tensor(target != ignore_index)
    labels = torch.tensor(np.where(target == ignore_index, 0, target))
    logp = torch.gather(log_probs, -1, labels[..., None])[..., 0] * mask
    loss = pair_loss(name, **opts)
    ref_t = torch.tensor(np.asarray(ref, dtype=np.float64)) if loss.reference else None
    value = _trl_formula(torch, name, opts, logp, mask.double(), ref_t)
    value.backward()
    return value.item(), (h.grad.numpy(), c.grad.numpy(), None if b is None else b.grad.numpy())


def _close(got, expected, rtol, what):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected)
    scale = np.max(np.abs(expected)) if expected.size else 1.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("with_bias", "temperature", "ignore_index"), SETTINGS, ids=["plain", "bias-temp-ignore"])
@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize(("name", "opts"), CASES, ids=IDS)
def test_fused_loss_and_gradients_match_the_naive_computation(name, opts, chunk_size, with_bias, temperature,
                                                              ignore_index, dtype):
    hidden, classifier, bias, target, ref = _batch(dtype, ignore_index)
    bias = bias if with_bias else None
    ref = ref if PAIR_LOSSES[name].reference else None
    expected_value, expected_grads = _naive(name, opts, hidden, classifier, bias, target, ref, temperature,
                                            ignore_index)
    value, grads = lk.linear_preference_loss_value_and_grad(
        hidden, classifier, target, loss=name, ref_logps=ref, bias=bias, ignore_index=ignore_index,
        temperature=temperature, chunk_size=chunk_size, **opts)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert value.dtype == dtype and all(g is None or g.dtype == dtype for g in grads)
    _close(value, expected_value, rtol, "value")
    for what, got, expected in zip(("grad_hidden", "grad_classifier", "grad_bias"), grads, expected_grads,
                                   strict=True):
        if expected is None:
            assert got is None
        else:
            _close(got, expected, rtol, what)
    # the value alone (one gemm a chunk, the formula on all pairs) is the same number
    _close(lk.linear_preference_loss(hidden, classifier, target, loss=name, ref_logps=ref, bias=bias,
                                     ignore_index=ignore_index, temperature=temperature, chunk_size=chunk_size,
                                     **opts), expected_value, rtol, "value without gradients")


@pytest.mark.parametrize("chunk_size", [None, 5, 30])
@pytest.mark.parametrize(("name", "opts"), CASES[::2], ids=IDS[::2])
def test_fused_aux_is_the_objectives_on_the_naive_logps(name, opts, chunk_size):
    hidden, classifier, bias, target, ref = _batch(np.float64, IGNORE)
    ref = ref if PAIR_LOSSES[name].reference else None
    logits = hidden @ classifier.T + bias
    log_probs = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    mask = target != IGNORE
    logp = np.where(mask, np.take_along_axis(log_probs, np.where(mask, target, 0)[..., None], -1)[..., 0], 0.0)
    objective = _objective(name, opts, mask, target, ref)
    expected = objective.aux(np, objective.terms(np, logp, mask, 0, B)[2])
    value, _, aux = lk.linear_preference_loss_value_and_grad(hidden, classifier, target, loss=name, ref_logps=ref,
                                                             bias=bias, chunk_size=chunk_size, aux=True, **opts)
    value_only, aux_only = lk.linear_preference_loss(hidden, classifier, target, loss=name, ref_logps=ref,
                                                     bias=bias, chunk_size=chunk_size, aux=True, **opts)
    assert tuple(aux) == tuple(expected) == tuple(aux_only) == pair_loss(name, **opts).aux_names()
    for key in expected:
        np.testing.assert_allclose(aux[key], expected[key], rtol=1e-12, atol=1e-15, err_msg=key)
        np.testing.assert_allclose(aux_only[key], expected[key], rtol=1e-12, atol=1e-15, err_msg=key)
    np.testing.assert_allclose(value_only, value, rtol=1e-13)


def test_fused_errors_name_the_argument():
    hidden, classifier, bias, target, ref = _batch(np.float64, IGNORE)
    call = lk.linear_preference_loss
    with pytest.raises(LossInputError, match=r"^hidden: expected an even number of rows"):
        call(hidden[:5], classifier, target[:5], ref_logps=ref[:5])
    with pytest.raises(LossInputError, match=r"^hidden: expected a 3-D array"):
        call(hidden[:, 0], classifier, target[:, 0], ref_logps=ref)
    with pytest.raises(LossInputError, match=r"^target: expected integer token ids of shape \(6, 7\)"):
        call(hidden, classifier, target[:, :5], ref_logps=ref)
    with pytest.raises(LossInputError, match=r"^classifier: expected shape \(V, 5\)"):
        call(hidden, classifier[:, :4], target, ref_logps=ref)
    with pytest.raises(LossInputError, match=r"^ref_logps: expected shape \(6,\)"):
        call(hidden, classifier, target, ref_logps=ref[:4])
    with pytest.raises(LossInputError, match=r"^ref_logps: expected the reference model's summed log-probs"):
        call(hidden, classifier, target, loss="robust")
    with pytest.raises(LossInputError, match=r"^ref_logps: expected None: loss='simpo' is reference-free"):
        call(hidden, classifier, target, loss="simpo", ref_logps=ref)
    with pytest.raises(LossInputError, match=r"^beta: expected a finite number >= 0, got -0.5"):
        call(hidden, classifier, target, ref_logps=ref, beta=-0.5)
    with pytest.raises(LossInputError, match=r"^loss: expected one of 'dpo', 'ipo', 'hinge', 'robust', 'simpo', "
                                             r"'orpo', 'cpo', got 'sigmoid'"):
        call(hidden, classifier, target, loss="sigmoid", ref_logps=ref)
    with pytest.raises(LossInputError, match=r"^temperature: "):
        call(hidden, classifier, target, ref_logps=ref, temperature=0.0)
    with pytest.raises(LossInputError, match=r"^chunk_size: "):
        call(hidden, classifier, target, ref_logps=ref, chunk_size=0)
    empty = target.copy()
    empty[B + 1] = IGNORE
    with pytest.raises(LossInputError, match=r"^target: .*row 4 \(rejected of pair 1\) all ignored"):
        call(hidden, classifier, empty, loss="ipo", ref_logps=ref)
    torch = pytest.importorskip("torch")
    with pytest.raises(LossInputError, match=r"^arrays: expected arrays of one library"):
        call(hidden, classifier, target, ref_logps=torch.from_numpy(ref))


def test_docs_example_runs_and_its_asserts_hold():
    """docs/post-training.md, "Preference losses": its block asserts, by hand-worked formulas, the DPO value
    and the chosen reward of a uniform policy."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "post-training.md").read_text()
    section = text.split("## Preference losses", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks and "assert abs(loss - math.log1p(math.exp(-0.1 * margin))) < 1e-12" in blocks[0]
    for block in blocks:
        exec(block, {})


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize(("name", "opts"), CASES[1::2], ids=IDS[1::2])
def test_fused_on_torch_and_jax_arrays_matches_the_naive_computation(name, opts, chunk_size, backend):
    """The core function on torch tensors and JAX arrays (the array-API sweep): results in the input's
    library, equal to autograd through the materialised logits."""
    pytest.importorskip(backend)
    from conftest import to_backend

    hidden, classifier, bias, target, ref = _batch(np.float64, -1)
    ref = ref if PAIR_LOSSES[name].reference else None
    expected_value, expected_grads = _naive(name, opts, hidden, classifier, bias, target, ref, 0.7, -1)
    args = [to_backend(backend, a) for a in (hidden, classifier, target)]
    value, grads, aux = lk.linear_preference_loss_value_and_grad(
        *args, loss=name, ref_logps=None if ref is None else to_backend(backend, ref), bias=to_backend(backend, bias),
        ignore_index=-1, temperature=0.7, chunk_size=chunk_size, aux=True, **opts)
    assert type(value) is type(args[0]) and type(aux["reward_margins"]) is type(args[0])
    _close(np.asarray(value), expected_value, 1e-10, "value")
    for what, got, expected in zip(("grad_hidden", "grad_classifier", "grad_bias"), grads, expected_grads,
                                   strict=True):
        assert type(got) is type(args[0])
        _close(np.asarray(got), expected, 1e-10, what)


# ---- torch and JAX forms, against the NumPy results --------------------------------------------------------

def _core_result(name, opts, dtype=np.float64, chunk_size=5, temperature=0.7):
    hidden, classifier, bias, target, ref = _batch(dtype, IGNORE)
    ref = ref if PAIR_LOSSES[name].reference else None
    value, grads, aux = lk.linear_preference_loss_value_and_grad(
        hidden, classifier, target, loss=name, ref_logps=ref, bias=bias, temperature=temperature, chunk_size=chunk_size,
        aux=True, **opts)
    return (hidden, classifier, bias, target, ref), value, grads, aux


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compile"])
@pytest.mark.parametrize(("name", "opts"), [CASES[1], CASES[4], CASES[10], CASES[12]], ids=[IDS[i] for i in (1, 4, 10, 12)])
def test_torch_module_matches_the_numpy_function(name, opts, compiled):
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    (hidden, classifier, bias, target, ref), value, grads, aux = _core_result(name, opts)
    module = lt.LinearPreferenceLoss(name, temperature=0.7, chunk_size=5, aux=True, **opts)
    run = torch.compile(module, fullgraph=True) if compiled else module
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
    loss, stats = run(leaves[0], leaves[1], torch.as_tensor(target),
                      ref_logps=None if ref is None else torch.as_tensor(ref), bias=leaves[2])
    (2 * loss).backward()
    np.testing.assert_allclose(loss.item(), value, rtol=1e-13)
    for leaf, grad in zip(leaves, grads, strict=True):
        np.testing.assert_allclose(leaf.grad.numpy(), 2 * grad, rtol=1e-13, atol=1e-16)
    assert tuple(stats) == tuple(aux)
    for key in aux:
        assert not stats[key].requires_grad
        np.testing.assert_allclose(stats[key].item(), aux[key], rtol=1e-13, atol=1e-16, err_msg=key)


def test_torch_module_float32_meta_and_checked_options():
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    (hidden, classifier, bias, target, ref), value, grads, _ = _core_result("dpo", {}, np.float32, chunk_size=None)
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier)]
    loss = lt.LinearPreferenceLoss(temperature=0.7)(*leaves, torch.as_tensor(target), torch.as_tensor(ref),
                                                    torch.as_tensor(bias))
    loss.backward()
    assert loss.dtype == torch.float32 and loss.item() == value
    for leaf, grad in zip(leaves, grads[:2], strict=True):
        np.testing.assert_array_equal(leaf.grad.numpy(), grad)
    meta = [torch.zeros(a.shape, device="meta", requires_grad=True) for a in (hidden, classifier)]
    out = lt.LinearPreferenceLoss("simpo")(*meta, torch.as_tensor(target).to("meta"))
    out.backward()
    assert out.shape == () and meta[0].grad.shape == hidden.shape and meta[1].grad.shape == classifier.shape
    for kwargs, argument in [({"loss": "kto"}, "loss"), ({"beta": -1.0}, "beta"), ({"loss": "orpo", "beta": 0.2}, "beta"),
                             ({"temperature": 0}, "temperature"), ({"chunk_size": 0}, "chunk_size"),
                             ({"aux": 1}, "aux"), ({"ignore_index": 1.5}, "ignore_index")]:
        with pytest.raises(LossInputError, match=f"^{argument}: "):
            lt.LinearPreferenceLoss(**kwargs)
    with pytest.raises(LossInputError, match=r"^ref_logps: expected the reference model's summed log-probs"):
        lt.LinearPreferenceLoss("dpo")(*leaves, torch.as_tensor(target))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [None, 5, 30])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "opts"), CASES[::3], ids=IDS[::3])
def test_jax_function_under_jit_and_grad_matches_the_numpy_function(name, opts, dtype, chunk_size, temperature):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    (hidden, classifier, bias, target, ref), value, grads, aux = _core_result(name, opts, dtype, chunk_size,
                                                                              temperature)
    ref_j = None if ref is None else jnp.asarray(ref)

    def loss_fn(h, c, b):
        return lj.linear_preference_loss(h, c, jnp.asarray(target), loss=name, ref_logps=ref_j, bias=b,
                                         temperature=temperature, chunk_size=chunk_size, aux=True, **opts)

    (out, stats), jax_grads = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True))(
        *(jnp.asarray(a) for a in (hidden, classifier, bias)))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert out.dtype == dtype
    np.testing.assert_allclose(float(out), value, rtol=rtol)
    for mine, grad in zip(jax_grads, grads, strict=True):
        np.testing.assert_allclose(np.asarray(mine), grad, rtol=rtol, atol=rtol * np.abs(grad).max())
    assert sorted(stats) == sorted(aux)  # a JAX pytree: keys come back sorted
    for key in aux:
        # atol: a statistic such as ORPO's mean log-odds difference (~7e-3) is a cancellation of O(1) terms
        np.testing.assert_allclose(float(stats[key]), aux[key], rtol=rtol, atol=rtol / 10, err_msg=key)


# --- against TRL 1.16's own trainer code -------------------------------------------------------------
# Each case runs TRL's trainer method (tests/_trl.py says which, and what it stubs) on the logits
# hidden @ W.T + b in float64 under torch autograd, and losskit's fused loss on the same hidden
# states: the value, the three gradients and the logged statistics agree to 1e-10 relative.
# TRL's names differ from ours; the mapping is the point of each case (docs/post-training.md).

TRL_B, TRL_T, TRL_D, TRL_V = 3, 5, 4, 11

#: (TRL trainer, TRL options, our loss, our options, what losskit gets as ref_logps):
#: "ref" the reference sums, "zero" zeros (CPO is DPO with no reference), None none
TRL_CASES = [
    ("dpo", {"loss_type": "sigmoid", "beta": 0.3}, "dpo", {"beta": 0.3}, "ref"),
    ("dpo", {"loss_type": "hinge", "beta": 0.5}, "hinge", {"beta": 0.5}, "ref"),
    ("dpo", {"loss_type": "ipo", "beta": 0.5}, "ipo", {"beta": 0.5}, "ref"),
    ("dpo", {"loss_type": "robust", "beta": 0.3, "label_smoothing": 0.3}, "robust",
     {"beta": 0.3, "label_smoothing": 0.3}, "ref"),
    # RPO: TRL 1.16 has no rpo_alpha; its "sft" loss, weighted, is the NLL term
    ("dpo", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.7], "beta": 0.2}, "dpo",
     {"beta": 0.2, "nll_weight": 0.7}, "ref"),
    # TRL 1.16's "sigmoid" ignores label_smoothing (only "robust" and "exo_pair" read it)
    ("dpo", {"loss_type": "sigmoid", "beta": 0.3, "label_smoothing": 0.2}, "dpo", {"beta": 0.3}, "ref"),
    ("cpo", {"loss_type": "sigmoid", "beta": 0.3, "label_smoothing": 0.2, "cpo_alpha": 0.7}, "cpo",
     {"beta": 0.3, "label_smoothing": 0.2, "nll_weight": 0.7}, None),
    ("cpo", {"loss_type": "simpo", "beta": 2.5, "simpo_gamma": 1.4, "label_smoothing": 0.1, "cpo_alpha": 0.5},
     "simpo", {"beta": 2.5, "gamma": 1.4, "label_smoothing": 0.1, "nll_weight": 0.5}, None),
    ("cpo", {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0}, "simpo",
     {"beta": 2.0, "gamma": 0.5}, None),
    # cDPO's smoothed sigmoid, which DPOTrainer 1.16 no longer has: CPO's sigmoid is DPO with a zero reference
    ("cpo", {"loss_type": "sigmoid", "beta": 0.3, "label_smoothing": 0.2, "cpo_alpha": 0.0}, "dpo",
     {"beta": 0.3, "label_smoothing": 0.2}, "zero"),
    ("cpo", {"loss_type": "hinge", "beta": 0.5, "cpo_alpha": 0.0}, "hinge", {"beta": 0.5}, "zero"),
    ("cpo", {"loss_type": "ipo", "beta": 0.5, "cpo_alpha": 0.3}, "ipo", {"beta": 0.5, "nll_weight": 0.3}, "zero"),
]
TRL_IDS = [f"{trainer}-{'+'.join(np.atleast_1d(opts['loss_type']))}-as-{name}-{i}"
           for i, (trainer, opts, name, _, _) in enumerate(TRL_CASES)]

#: TRL's logged metric -> our aux key
TRL_STATS = {"rewards/chosen": "chosen_rewards", "rewards/rejected": "rejected_rewards",
             "rewards/margins": "reward_margins", "rewards/accuracies": "reward_accuracy",
             "logps/chosen": "chosen_logps", "logps/rejected": "rejected_logps"}


@pytest.fixture(scope="module")
def trl_units():
    pytest.importorskip("trl")
    import _trl

    return _trl


def _trl_batch(seed=11):
    """hidden [2B, T, D], classifier, bias, target with a prompt token and padding ignored, and
    reference sums near the policy's (margins of both signs; the hinge active and not)."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(2 * TRL_B, TRL_T, TRL_D))
    classifier = rng.normal(scale=0.6, size=(TRL_V, TRL_D))
    bias = rng.normal(scale=0.5, size=TRL_V)
    target = rng.integers(0, TRL_V, size=(2 * TRL_B, TRL_T))
    target[:, 0] = IGNORE
    target[1, -2:] = IGNORE
    target[TRL_B + 2, -1:] = IGNORE
    ref = rng.normal(-9.0, 2.0, size=2 * TRL_B)
    return hidden, classifier, bias, target, ref


def _run_trl(trl_units, call, hidden, classifier, bias):
    """TRL's loss through ``call(model)``, its value, its gradients (autograd) and its metrics."""
    leaves = [trl_units.tensor(a, grad=True) for a in (hidden, classifier, bias)]
    loss, metrics = call(trl_units.HiddenStateLM(*leaves))
    loss.backward()
    return loss.item(), [leaf.grad.numpy() for leaf in leaves], metrics


def _assert_matches_trl(value, grads, trl_value, trl_grads, rtol):
    np.testing.assert_allclose(value, trl_value, rtol=rtol)
    for what, mine, theirs in zip(("hidden", "classifier", "bias"), grads, trl_grads, strict=True):
        _close(mine, theirs, rtol, f"gradient of {what}")


@pytest.mark.parametrize(("trainer", "trl_opts", "name", "opts", "ref_kind"), TRL_CASES, ids=TRL_IDS)
def test_value_gradients_and_statistics_equal_trls_trainer(trl_units, trainer, trl_opts, name, opts, ref_kind):
    hidden, classifier, bias, target, ref = _trl_batch()
    if trainer == "dpo":
        call = lambda model: trl_units.dpo(model, target, ref, **trl_opts)  # noqa: E731
    else:
        call = lambda model: trl_units.cpo(model, target, **trl_opts)  # noqa: E731
    trl_value, trl_grads, metrics = _run_trl(trl_units, call, hidden, classifier, bias)
    ref_logps = {"ref": ref, "zero": np.zeros(2 * TRL_B), None: None}[ref_kind]
    value, grads, aux = lk.linear_preference_loss_value_and_grad(
        hidden, classifier, target, bias=bias, loss=name, ref_logps=ref_logps, chunk_size=7, aux=True, **opts)
    _assert_matches_trl(value, grads, trl_value, trl_grads, rtol=1e-10)
    if trl_opts["loss_type"] == "ipo" and trainer == "dpo":
        # DPOTrainer logs the rewards of the *summed* log-ratios whatever the loss; ours are IPO's means
        # (as CPOTrainer's IPO logs them): DPOTrainer's IPO statistics are our "dpo" statistics
        aux = lk.linear_preference_loss(hidden, classifier, target, bias=bias, loss="dpo", ref_logps=ref,
                                        beta=opts["beta"], aux=True)[1]
    for key, ours in TRL_STATS.items():
        # TRL counts the accurate pairs in float32 (``.float()``): a share of 3 pairs is exact to 6e-8
        atol = 1e-7 if key == "rewards/accuracies" else 1e-12
        np.testing.assert_allclose(float(aux[ours]), metrics[key], rtol=1e-10, atol=atol, err_msg=key)
    if trainer == "cpo" and opts.get("nll_weight", 0.0) > 0:  # CPOTrainer logs the unweighted NLL
        np.testing.assert_allclose(float(aux["nll"]) / opts["nll_weight"], metrics["nll_loss"], rtol=1e-10)
    if ref_kind == "ref":  # margins of both signs: the accuracy could fail either way
        assert 0.0 < metrics["rewards/accuracies"] < 1.0


def test_dpo_trainers_sigmoid_ignores_label_smoothing_and_ours_is_cdpo(trl_units):
    """A difference in meaning between DPOTrainer 1.16 and losskit: our "dpo" takes cDPO's
    label smoothing (Mitchell 2023; earlier TRL releases' "sigmoid" too); TRL 1.16's "sigmoid" reads no
    smoothing. Smoothing 0 is TRL's number (the case above); smoothing e is CPO's smoothed sigmoid
    on the log-ratios, which differs from TRL's DPO value."""
    hidden, classifier, bias, target, ref = _trl_batch()
    trl_value, _, _ = _run_trl(trl_units, lambda model: trl_units.dpo(
        model, target, ref, loss_type="sigmoid", beta=0.3, label_smoothing=0.2), hidden, classifier, bias)
    smoothed = lk.linear_preference_loss(hidden, classifier, target, bias=bias, loss="dpo", ref_logps=ref,
                                         beta=0.3, label_smoothing=0.2)
    assert abs(smoothed - trl_value) > 1e-3 * abs(trl_value)


@pytest.mark.parametrize("lambda_", [0.1, 0.7])
def test_orpo_equals_trls_odds_ratio_loss(trl_units, lambda_):
    """ORPOTrainer (beta = lambda), no prompt tokens in the attention mask beyond the first token, which
    is never a label: its NLL is then over the chosen answers, as ours. TRL computes the odds ratio in
    float32 (``odds_ratio_loss`` casts the mean log-probs with ``.float()``), so the tolerance is
    float32's: our float64 value is the more accurate one."""
    hidden, classifier, bias, target, _ = _trl_batch()
    trl_value, trl_grads, metrics = _run_trl(
        trl_units, lambda model: trl_units.orpo(model, target, beta=lambda_), hidden, classifier, bias)
    value, grads, aux = lk.linear_preference_loss_value_and_grad(
        hidden, classifier, target, bias=bias, loss="orpo", lambda_=lambda_, chunk_size=7, aux=True)
    _assert_matches_trl(value, grads, trl_value, trl_grads, rtol=1e-6)
    for key, ours in {**TRL_STATS, "log_odds_ratio": "log_odds_ratio", "log_odds_chosen": "log_odds_chosen",
                      "nll_loss": "nll"}.items():
        np.testing.assert_allclose(float(aux[ours]), metrics[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_orpo_trainers_nll_reads_the_prompt_and_ours_reads_the_answer(trl_units):
    """ORPOTrainer's SFT term is the NLL over every attended token of the chosen sequence, the prompt
    included (its comment: "computed over the full prompt and response"); ours, like CPO's and DPO's
    "sft", is over the answer's tokens. TRL's number is our ORPO without its NLL plus the linear
    cross-entropy over the chosen rows with the prompt tokens kept."""
    hidden, classifier, bias, target, _ = _trl_batch()
    target[:, :2] = IGNORE  # a three-token prompt; the first token is predicted by nothing, TRL's NLL reads two
    trl_value, trl_grads, _ = _run_trl(trl_units, lambda model: trl_units.orpo(
        model, target, beta=0.3, prompt_in_attention=True), hidden, classifier, bias)
    value, grads = lk.linear_preference_loss_value_and_grad(hidden, classifier, target, bias=bias, loss="orpo",
                                                           lambda_=0.3, nll_weight=0.0)
    prompt = np.cumsum(target != IGNORE, axis=1) == 0  # the tokens before the answer (input id 0 in _trl)
    chosen_with_prompt = np.where(prompt, 0, target)[:TRL_B]
    nll, nll_grads = linear_cross_entropy_value_and_grad(
        hidden[:TRL_B].reshape(-1, TRL_D), classifier, chosen_with_prompt.reshape(-1), bias=bias,
        ignore_index=IGNORE)
    grad_hidden = grads[0].copy()
    grad_hidden[:TRL_B] += nll_grads[0].reshape(TRL_B, TRL_T, TRL_D)
    _assert_matches_trl(value + nll, (grad_hidden, grads[1] + nll_grads[1], grads[2] + nll_grads[2]),
                        trl_value, trl_grads, rtol=1e-6)
    answer_only = lk.linear_preference_loss(hidden, classifier, target, bias=bias, loss="orpo", lambda_=0.3)
    assert abs(answer_only - trl_value) > 1e-3 * abs(trl_value)


def test_jit_checks_a_known_target_as_the_eager_call_does():
    """Under jax.jit the sweep's checks read no value (every array derived from the target is a tracer): a
    rejected sequence with no token gave NaN for SimPO, an id outside the vocabulary NaN for DPO. A target
    whose values are known before the trace (NumPy, or closed over) is now checked there."""
    jax = pytest.importorskip("jax")
    import losskit.jax as lj

    rng = np.random.default_rng(0)
    h, w = jax.numpy.asarray(rng.normal(size=(2, 3, 4))), jax.numpy.asarray(rng.normal(size=(7, 4)))
    empty = np.array([[1, 2, 3], [-100, -100, -100]])
    outside = np.array([[1, 2, 9], [3, 4, 5]])
    with pytest.raises(lk.LossInputError, match="^target: expected a token that is not ignore_index=-100"):
        jax.jit(lambda a: lj.linear_preference_loss(a, w, empty, loss="simpo"))(h)
    with pytest.raises(lk.LossInputError, match="^target: expected class indices in \\[0, 7\\)"):
        jax.jit(jax.grad(lambda a: lj.linear_preference_loss(a, w, outside, ref_logps=np.zeros(2))))(h)


def test_the_torch_module_under_no_grad_runs_the_value_alone(monkeypatch):
    """Found in review: LinearPreferenceLoss and LinearGRPOLoss under torch.no_grad (an evaluation loop) ran the
    value-and-gradient sweep, three gemms a chunk and a [V, D] gradient buffer (0.32 s against the value alone's
    0.15 s). Now the core's value-only form: the same value and statistics, the gradient sweep never called."""
    import torch

    import losskit.losses.policy as policy
    import losskit.losses.preference as preference
    import losskit.torch as lt

    gen = torch.Generator().manual_seed(0)
    hidden, classifier = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64), torch.randn(7, 5, generator=gen,
                                                                                               dtype=torch.float64)
    target, ref = torch.randint(0, 7, (4, 3), generator=gen), torch.randn(4, generator=gen, dtype=torch.float64)
    module = lt.LinearPreferenceLoss(loss="dpo", aux=True)
    value, aux = module(hidden.clone().requires_grad_(True), classifier, target, ref)
    grpo = {"old_logps": torch.full((4, 3), -2.0, dtype=torch.float64), "advantages": torch.tensor([1.0, -1, 0.5, 0])}
    grpo_value = lt.LinearGRPOLoss()(hidden.clone().requires_grad_(True), classifier, target, **grpo)

    def never(*args, **kwargs):
        raise AssertionError("the gradient sweep ran under no_grad")

    monkeypatch.setattr(preference, "linear_preference_loss_value_and_grad", never)
    monkeypatch.setattr(policy, "linear_grpo_loss_value_and_grad", never)
    with torch.no_grad():
        again, aux_again = module(hidden, classifier, target, ref)
        assert float(lt.LinearGRPOLoss()(hidden, classifier, target, **grpo)) == pytest.approx(float(grpo_value),
                                                                                              rel=1e-12)
    assert float(again) == pytest.approx(float(value), rel=1e-12)
    assert {k: float(v) for k, v in aux_again.items()} == pytest.approx({k: float(v) for k, v in aux.items()},
                                                                         rel=1e-12)
    nothing_asks = lt.LinearGRPOLoss()(hidden, classifier, target, **grpo)  # no tensor requires grad
    assert float(nothing_asks) == pytest.approx(float(grpo_value), rel=1e-12)
