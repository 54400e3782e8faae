"""The GRPO family: the objective on hand-built log-probs against a reference written from TRL's
GRPOTrainer / the GSPO paper (torch float64, autograd for its gradient) and central finite
differences; the errors of each bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from array_api_compat import array_namespace

import losskit as lk
from conftest import backend_available, library_of, to_backend, to_numpy
from losskit import LossInputError
from losskit.losses.policy import GRPOObjective, GRPOOptions, grpo_objective

B, T = 5, 6
IGNORE = -100
IMPORTANCE = ("token", "sequence")
NORMALIZATIONS = ("grpo", "bnpo", "dr_grpo")


def reference_loss(logp, mask, old, advantages, ref, *, beta, epsilon_low, epsilon_high, importance,
                   normalization, max_length):
    """TRL's GRPOTrainer._compute_loss, written from its definitions (torch, any dtype; logp may
    require grad). ``mask`` is float; values at ignored tokens are multiplied away, as in TRL."""
    log_ratio = logp - old
    log_weights = log_ratio
    if importance == "sequence":  # GSPO: s_i = (pi / pi_old)^(1 / |y_i|), the exp of the mean token log-ratio
        log_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1))[:, None]
    coef_1 = torch.exp(log_weights)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(coef_1 * advantages[:, None], coef_2 * advantages[:, None])
    if beta:
        per_token = per_token + beta * (torch.exp(ref - logp) - (ref - logp) - 1)
    per_token = per_token * mask  # broadcasts GSPO's [B, 1] over the tokens
    if normalization == "grpo":
        return (per_token.sum(-1) / mask.sum(-1)).mean()
    if normalization == "bnpo":
        return per_token.sum() / mask.sum().clamp(min=1.0)
    return per_token.sum() / (logp.shape[0] * max_length)


def _batch(seed=0, ignored=True):
    """Hand-built log-probs: log-ratios spread over both sides of both clip bounds (never within
    0.02 of a kink), advantages of both signs and one 0, garbage in old / ref at ignored tokens."""
    rng = np.random.default_rng(seed)
    mask = np.ones((B, T), dtype=bool)
    if ignored:
        mask[0, 4:] = False  # padding
        mask[2, :2] = False  # prompt
        mask[3, ::2] = False
    log_ratio = rng.choice([-0.9, -0.45, -0.3, -0.1, 0.05, 0.12, 0.25, 0.4, 0.8], size=(B, T))
    logp = -rng.uniform(0.1, 3.0, size=(B, T))
    old = logp - log_ratio
    ref = logp + rng.normal(scale=0.5, size=(B, T))
    advantages = np.array([1.3, -0.7, 0.0, 2.1, -1.6])
    logp = np.where(mask, logp, 0.0)
    old = np.where(mask, old, rng.normal(scale=30, size=(B, T)))
    ref = np.where(mask, ref, rng.normal(scale=30, size=(B, T)))
    return logp, mask, old, advantages, ref


def _options(importance, normalization, beta=0.04, epsilon_low=0.2, epsilon_high=0.28, max_length=None):
    if normalization == "dr_grpo" and max_length is None:
        max_length = T + 3
    return GRPOOptions(beta=beta, epsilon_low=epsilon_low, epsilon_high=epsilon_high, importance=importance,
                       normalization=normalization, max_length=max_length, ignore_index=IGNORE)


def _objective(batch, options):
    logp, mask, old, advantages, ref = batch
    target = np.where(mask, 1, IGNORE)
    return grpo_objective(array_namespace(logp), target, logp, old_logps=old, advantages=advantages,
                          ref_logps=ref, options=options)


def _reference(batch, options, logp=None):
    base, mask, old, advantages, ref = batch
    logp = torch.from_numpy(base if logp is None else logp)
    max_length = options.max_length if options.max_length is not None else T
    return reference_loss(logp, torch.from_numpy(mask.astype(np.float64)), torch.from_numpy(old),
                          torch.from_numpy(advantages), torch.from_numpy(ref), beta=options.beta,
                          epsilon_low=options.epsilon_low, epsilon_high=options.epsilon_high,
                          importance=options.importance, normalization=options.normalization,
                          max_length=max_length)


def _terms(objective, batch, chunks=((0, B),)):
    """Loss and dlogp over the given chunks of units, as the sweep would call terms."""
    logp, mask = batch[0], batch[1]
    xp = array_namespace(logp)
    losses, grads = [], []
    for start, stop in chunks:
        rows = objective.rows(start, stop)
        loss, grad, _ = objective.terms(xp, logp[rows], mask[rows], start, stop)
        losses.append(float(loss))
        grads.append(grad)
    return sum(losses), np.concatenate(grads)


CASES = list(itertools.product(IMPORTANCE, NORMALIZATIONS, (0.0, 0.04)))


@pytest.mark.parametrize(("importance", "normalization", "beta"), CASES)
def test_loss_matches_trl_definition(importance, normalization, beta):
    batch = _batch()
    options = _options(importance, normalization, beta=beta)
    loss, _ = _terms(_objective(batch, options), batch)
    expected = float(_reference(batch, options))
    assert loss == pytest.approx(expected, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize(("importance", "normalization", "beta"), CASES)
def test_dlogp_matches_central_differences(importance, normalization, beta):
    batch = _batch(seed=1)
    options = _options(importance, normalization, beta=beta)
    _, grad = _terms(_objective(batch, options), batch)
    logp, mask = batch[0], batch[1]
    step = 1e-6
    numeric = np.zeros_like(logp)
    for i, t in zip(*np.nonzero(mask), strict=True):
        up, down = logp.copy(), logp.copy()
        up[i, t] += step
        down[i, t] -= step
        numeric[i, t] = (float(_reference(batch, options, up)) - float(_reference(batch, options, down))) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-10)
    assert np.all(grad[~mask] == 0)


@pytest.mark.parametrize(("importance", "normalization", "beta"), CASES)
def test_chunks_of_units_add_up_to_the_batch_and_match_autograd(importance, normalization, beta):
    """Each chunk's share uses the whole batch's counts: any split gives torch autograd's gradient."""
    batch = _batch(seed=2)
    options = _options(importance, normalization, beta=beta)
    logp = torch.from_numpy(batch[0].copy()).requires_grad_(True)
    base, mask, old, advantages, ref = batch
    expected = reference_loss(logp, torch.from_numpy(mask.astype(np.float64)), torch.from_numpy(old),
                              torch.from_numpy(advantages), torch.from_numpy(ref), beta=beta,
                              epsilon_low=options.epsilon_low, epsilon_high=options.epsilon_high,
                              importance=importance, normalization=normalization,
                              max_length=options.max_length or T)
    expected.backward()
    for chunks in (((0, B),), ((0, 1), (1, 3), (3, B)), tuple((i, i + 1) for i in range(B))):
        loss, grad = _terms(_objective(batch, options), batch, chunks)
        assert loss == pytest.approx(expected.item(), rel=1e-13, abs=1e-15)
        np.testing.assert_allclose(grad, logp.grad.numpy() * mask, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("importance", IMPORTANCE)
@pytest.mark.parametrize("advantage", [1.5, -1.5, 0.0])
def test_ties_on_the_clip_bounds_take_autograds_gradient(importance, advantage):
    """r exactly on a bound (log-ratio 0, epsilons 0): torch's clamp passes the gradient at its bounds
    and its min splits the tie in halves, so the whole unclipped gradient -A r comes through."""
    mask = np.ones((2, 3), dtype=bool)
    logp = np.array([[-0.5, -1.0, -2.0], [-0.1, -0.2, -0.3]])
    advantages = np.array([advantage, -advantage])
    options = GRPOOptions(epsilon_low=0.0, epsilon_high=0.0, importance=importance)
    xp = array_namespace(logp)
    objective = GRPOObjective(xp, mask, logp.copy(), advantages, None, options)
    loss, grad, _ = objective.terms(xp, logp, mask, 0, 2)
    tensor = torch.from_numpy(logp.copy()).requires_grad_(True)
    expected = reference_loss(tensor, torch.ones(2, 3, dtype=torch.float64), torch.from_numpy(logp),
                              torch.from_numpy(advantages), None, beta=0.0, epsilon_low=0.0, epsilon_high=0.0,
                              importance=importance, normalization="grpo", max_length=None)
    expected.backward()
    assert float(loss) == pytest.approx(expected.item(), abs=1e-15)
    np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(grad, -advantages[:, None] / (2 * 3) * np.ones((2, 3)), rtol=1e-15)


def test_clipped_tokens_get_no_gradient_and_are_counted():
    """Closed form: A > 0 above 1 + eps_high, A < 0 below 1 - eps_low: the clipped constant, gradient 0."""
    logp = np.zeros((2, 2))
    old = np.array([[-0.5, 0.0], [0.5, 0.0]])  # r = e^0.5 (above 1.2), 1; e^-0.5 (below 0.8), 1
    advantages = np.array([2.0, -3.0])
    mask = np.ones((2, 2), dtype=bool)
    xp = array_namespace(logp)
    objective = GRPOObjective(xp, mask, old, advantages, None, GRPOOptions(normalization="bnpo"))
    loss, grad, stats = objective.terms(xp, logp, mask, 0, 2)
    # tokens: -1.2 * 2, -1 * 2, -(0.8 * -3), -(1 * -3); bnpo: / 4
    assert float(loss) == pytest.approx((-2.4 - 2.0 + 2.4 + 3.0) / 4, rel=1e-15)
    np.testing.assert_allclose(grad, [[0.0, -2.0 / 4], [0.0, 3.0 / 4]], rtol=1e-15)
    np.testing.assert_array_equal(stats["clip_ratio_high"], [0.5, 0.0])
    np.testing.assert_array_equal(stats["clip_ratio_low"], [0.0, 0.5])


def test_gspo_closed_form():
    """One sequence of two kept tokens, log-ratios 0.1 and 0.2: s = e^0.15 inside [0.8, 1.2]; the loss
    is -s A, each token's gradient -s A / 2 (d s / d logp_t = s / 2; "grpo", B = 1). Log-ratios 0.1
    and 0.3: s = e^0.2 > 1.2 with A > 0, so the loss is -1.2 A and no token gets a gradient."""
    mask = np.array([[True, True, False]])
    logp = np.array([[-1.0, -2.0, 0.0]])
    xp = array_namespace(logp)
    for old, s, clipped in (([[-1.1, -2.2, 5.0]], math.exp(0.15), False), ([[-1.1, -2.3, 5.0]], 1.2, True)):
        objective = GRPOObjective(xp, mask, np.array(old), np.array([0.5]), None, GRPOOptions(importance="sequence"))
        loss, grad, stats = objective.terms(xp, logp, mask, 0, 1)
        assert float(loss) == pytest.approx(-0.5 * s, rel=1e-14)
        expected = [[0.0, 0.0, 0.0]] if clipped else [[-0.5 * s / 2, -0.5 * s / 2, 0.0]]
        np.testing.assert_allclose(grad, expected, rtol=1e-14)
        assert float(stats["clip_ratio_high"][0]) == float(clipped)


def test_k3_kl_closed_form_and_stats():
    """k3 at d = ref - logp: e^d - d - 1, gradient 1 - e^d; tiny d keeps its relative accuracy (d^2 / 2)."""
    logp = np.array([[-1.0, -1.0]])
    ref = np.array([[-0.5, -1.0 + 1e-6]])
    mask = np.ones((1, 2), dtype=bool)
    xp = array_namespace(logp)
    objective = GRPOObjective(xp, mask, logp.copy(), np.array([0.0]), ref, GRPOOptions(beta=0.1))
    loss, grad, stats = objective.terms(xp, logp, mask, 0, 1)
    tiny = float(ref[0, 1] - logp[0, 1])  # exact (Sterbenz): 1e-6 up to the rounding of -1 + 1e-6
    kl = [math.exp(0.5) - 1.5, math.expm1(tiny) - tiny]
    assert float(loss) == pytest.approx(0.1 * sum(kl) / 2, rel=1e-14)
    np.testing.assert_allclose(grad, [[0.1 * (1 - math.exp(0.5)) / 2, -0.1 * math.expm1(tiny) / 2]], rtol=1e-14)
    np.testing.assert_allclose(stats["kl"], [sum(kl) / 2], rtol=1e-14)
    assert kl[1] == pytest.approx(tiny * tiny / 2, rel=1e-5)


def test_ignored_tokens_never_read_old_or_ref():
    batch = _batch(seed=3)
    logp, mask, old, advantages, ref = batch
    poisoned = (logp, mask, np.where(mask, old, np.inf), advantages, np.where(mask, ref, -np.inf))
    for importance, normalization in itertools.product(IMPORTANCE, NORMALIZATIONS):
        options = _options(importance, normalization)
        loss, grad = _terms(_objective(poisoned, options), poisoned)
        clean_loss, clean_grad = _terms(_objective(batch, options), batch)
        assert math.isfinite(loss) and np.all(np.isfinite(grad))
        assert loss == clean_loss
        np.testing.assert_array_equal(grad, clean_grad)


def test_dr_grpo_max_length_defaults_to_target_length():
    batch = _batch(seed=4)
    loss, _ = _terms(_objective(batch, GRPOOptions(normalization="dr_grpo", beta=0.04)), batch)
    expected = float(_reference(batch, GRPOOptions(normalization="dr_grpo", beta=0.04, max_length=T)))
    assert loss == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("normalization", ["grpo", "bnpo"])
def test_max_length_is_read_by_dr_grpo_only(normalization):
    """One config may carry TRL's max_completion_length for every loss_type: grpo and bnpo divide by
    token counts (TRL's definition, which has no max_length), whatever max_length says."""
    batch = _batch(seed=5)
    expected = float(_reference(batch, GRPOOptions(normalization=normalization, beta=0.04)))
    for max_length in (T, T + 7, 10 * T):
        options = GRPOOptions(normalization=normalization, beta=0.04, max_length=max_length)
        assert _terms(_objective(batch, options), batch)[0] == pytest.approx(expected, rel=1e-13)
    with pytest.raises(lk.LossInputError, match="^max_length: expected None or a positive int"):
        GRPOOptions(normalization=normalization, max_length=0)


def test_bnpo_token_importance_allows_an_all_ignored_sequence():
    batch = list(_batch(seed=5))
    batch[1] = batch[1].copy()
    batch[1][1] = False
    batch[0] = np.where(batch[1], batch[0], 0.0)
    for normalization in ("bnpo", "dr_grpo"):
        options = _options("token", normalization)
        loss, grad = _terms(_objective(batch, options), batch)
        assert loss == pytest.approx(float(_reference(batch, options)), rel=1e-13)
        assert np.all(grad[1] == 0)


# ---- errors ----

def test_options_errors_name_the_argument():
    cases = [({"beta": -0.1}, "beta"), ({"epsilon_low": -0.2}, "epsilon_low"), ({"epsilon_high": -1}, "epsilon_high"),
             ({"beta": float("nan")}, "beta"), ({"importance": "tokens"}, "importance"),
             ({"normalization": "dapo"}, "normalization"), ({"max_length": 0}, "max_length"),
             ({"max_length": 2.5}, "max_length"), ({"temperature": 0}, "temperature"),
             ({"temperature": float("inf")}, "temperature"), ({"chunk_size": 0}, "chunk_size"),
             ({"chunk_size": 2.0}, "chunk_size"), ({"ignore_index": 1.5}, "ignore_index")]
    for kwargs, name in cases:
        with pytest.raises(LossInputError, match=f"^{name}: expected"):
            GRPOOptions(**kwargs)


def _error(batch, options, **changes):
    logp, mask, old, advantages, ref = batch
    arrays = {"old_logps": old, "advantages": advantages, "ref_logps": ref, **changes}
    target = changes.pop("target", np.where(mask, 1, IGNORE))
    arrays.pop("target", None)
    return grpo_objective(array_namespace(logp), target, logp, options=options, **arrays)


def test_data_errors_name_the_argument():
    batch = _batch()
    options = _options("token", "grpo")
    cases = [({"old_logps": batch[2][:, :-1]}, "old_logps", r"shape \(5, 6\)"),
             ({"old_logps": batch[2].T}, "old_logps", r"shape \(5, 6\)"),
             ({"ref_logps": batch[4][:-1]}, "ref_logps", r"shape \(5, 6\)"),
             ({"advantages": batch[3][:, None]}, "advantages", r"shape \(5,\)"),
             ({"advantages": batch[3][:-1]}, "advantages", r"shape \(5,\)"),
             ({"old_logps": None}, "old_logps", "None"),
             ({"advantages": None}, "advantages", "None"),
             ({"ref_logps": None}, "ref_logps", "beta=0.04 > 0"),
             ({"old_logps": np.zeros((B, T), dtype=bool)}, "old_logps", "real numbers"),
             ({"advantages": np.ones(B, dtype=np.complex128)}, "advantages", "real numbers")]
    for changes, name, text in cases:
        with pytest.raises(LossInputError, match=f"^{name}: expected.*{text}"):
            _error(batch, options, **changes)
    # beta = 0 needs no reference
    _error(batch, _options("token", "grpo", beta=0.0), ref_logps=None)


def test_integer_advantages_and_lists_are_taken_as_numbers():
    batch = _batch(seed=6)
    options = _options("token", "grpo")
    signs = np.array([1, -1, 0, 1, -1])
    objective = _error(batch, options, advantages=signs, old_logps=batch[2].tolist())
    loss, _ = _terms(objective, batch)
    expected = _reference((batch[0], batch[1], batch[2], signs.astype(np.float64), batch[4]), options)
    assert objective.advantages.dtype == np.float64
    assert loss == pytest.approx(float(expected), rel=1e-13)


@pytest.mark.parametrize(("importance", "normalization"),
                         [("token", "grpo"), ("sequence", "grpo"), ("sequence", "bnpo"), ("sequence", "dr_grpo")])
def test_a_sequence_with_every_token_ignored_where_a_mean_is_asked(importance, normalization):
    batch = _batch()
    target = np.where(batch[1], 1, IGNORE)
    target[3] = IGNORE
    with pytest.raises(LossInputError, match=r"^target: expected .*ignore_index=-100.*got sequence 3 with all"):
        _error(batch, _options(importance, normalization), target=target)


def test_dr_grpo_max_length_below_the_sequence_length():
    with pytest.raises(LossInputError, match=r"^max_length: expected an int >= 6"):
        _error(_batch(), _options("token", "dr_grpo", max_length=T - 1))
    _error(_batch(), _options("token", "dr_grpo", max_length=T))  # equal is fine


# ---- the fused loss: hidden, classifier, bias -> loss and gradients, against the materialised logits ----

D, V = 4, 7


def _fused_data(seed, dtype, with_bias, temperature):
    """Hidden states, classifier, bias, targets with prompt / padding ignored, and old / ref log-probs
    placed at log-ratios away from the clip bounds (read from the float64 naive log-probs)."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, T, D)).astype(dtype)
    classifier = rng.normal(size=(V, D)).astype(dtype)
    bias = rng.normal(size=V).astype(dtype) if with_bias else None
    target = rng.integers(0, V, size=(B, T))
    target[0, 4:] = IGNORE
    target[2, :2] = IGNORE
    target[3, ::2] = IGNORE
    logp = _naive_logps(torch.from_numpy(hidden.astype(np.float64)), torch.from_numpy(classifier.astype(np.float64)),
                        None if bias is None else torch.from_numpy(bias.astype(np.float64)), target,
                        temperature).numpy()
    log_ratio = rng.choice([-0.9, -0.45, -0.3, -0.1, 0.05, 0.12, 0.25, 0.4, 0.8], size=(B, T))
    old = (logp - log_ratio).astype(dtype)
    ref = (logp + rng.normal(scale=0.5, size=(B, T))).astype(dtype)
    advantages = np.array([1.3, -0.7, 0.0, 2.1, -1.6], dtype=dtype)
    return hidden, classifier, bias, target, old, advantages, ref


def _naive_logps(hidden, classifier, bias, target, temperature):
    """The materialised logits, log_softmax, gather: float64 torch, differentiable."""
    logits = hidden @ classifier.T
    if bias is not None:
        logits = logits + bias
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    index = torch.from_numpy(np.where(target == IGNORE, 0, target))
    return torch.gather(logprobs, -1, index[..., None])[..., 0] * torch.from_numpy(target != IGNORE)


def _naive_fused(data, temperature, options):
    hidden, classifier, bias, target, old, advantages, ref = (None if a is None else np.asarray(a, dtype=np.float64)
                                                              if a.dtype.kind == "f" else a for a in data)
    leaves = [torch.from_numpy(a).requires_grad_(True) for a in (hidden, classifier)]
    leaves.append(None if bias is None else torch.from_numpy(bias).requires_grad_(True))
    logp = _naive_logps(*leaves, target, temperature)
    mask = torch.from_numpy((target != IGNORE).astype(np.float64))
    loss = reference_loss(logp, mask, torch.from_numpy(old), torch.from_numpy(advantages), torch.from_numpy(ref),
                          beta=options["beta"], epsilon_low=options["epsilon_low"],
                          epsilon_high=options["epsilon_high"], importance=options["importance"],
                          normalization=options["normalization"], max_length=options.get("max_length") or T)
    grads = torch.autograd.grad(loss, [leaf for leaf in leaves if leaf is not None])
    return loss.item(), [g.numpy() for g in grads]


def _close(actual, expected, tol):
    actual = np.asarray(actual, dtype=np.float64)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * float(np.max(np.abs(expected))))


# chunk sizes in tokens (T = 6 per sequence): one pass (several sequences, one sequence, the whole
# batch) and two passes (a sequence split in sub-chunks)
CHUNKS = [None, T, 2 * T + 1, 1, 4]
FUSED_CASES = [(imp, norm, beta, chunk) for (imp, norm, beta) in CASES for chunk in CHUNKS]


@pytest.mark.parametrize(("importance", "normalization", "beta", "chunk_size"), FUSED_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_loss_and_gradients_match_the_materialised_logits(importance, normalization, beta, chunk_size, dtype):
    with_bias, temperature = chunk_size != T, 0.7 if chunk_size in (None, 1) else 1.0
    data = _fused_data(7, dtype, with_bias, temperature)
    hidden, classifier, bias, target, old, advantages, ref = data
    options = {"beta": beta, "epsilon_low": 0.2, "epsilon_high": 0.28, "importance": importance,
               "normalization": normalization, "max_length": T + 2 if normalization == "dr_grpo" else None}
    value, grads = lk.linear_grpo_loss_value_and_grad(
        hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref, bias=bias,
        temperature=temperature, ignore_index=IGNORE, chunk_size=chunk_size, **options)
    expected, expected_grads = _naive_fused(data, temperature, options)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert np.asarray(value).dtype == dtype and grads[0].dtype == dtype
    _close(value, expected, tol)
    assert (grads[2] is None) == (bias is None)
    for actual, reference in zip([g for g in grads if g is not None], expected_grads, strict=True):
        _close(actual, reference, tol)
    loss_only = lk.linear_grpo_loss(hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref,
                                    bias=bias, temperature=temperature, ignore_index=IGNORE, chunk_size=chunk_size,
                                    **options)
    _close(loss_only, expected, tol)


@pytest.mark.parametrize("importance", ["token", "sequence"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_zero_advantage_adds_zero_even_where_the_ratio_overflows(importance, dtype):
    """A sequence of advantage 0 adds exactly 0 to the loss and its gradients, whatever its ratio: with
    log-ratios of +1000 (r = inf in either dtype) the result equals that of ratios near 1 for it; it was
    NaN (inf * 0), loss and every gradient. And NumPy says nothing on the way (it warned of the overflow and of
    inf * 0, which the formula takes by where, as torch and JAX compute it silently)."""
    import warnings

    hidden, classifier, bias, target, old, advantages, ref = _fused_data(7, dtype, True, 1.0)
    assert advantages[2] == 0
    far = old.copy()
    far[2] = far[2] - 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [lk.linear_grpo_loss_value_and_grad(hidden, classifier, target, old_logps=o, advantages=advantages,
                                                      bias=bias, importance=importance, ignore_index=IGNORE)
                   for o in (old, far)]
    (value, grads), (far_value, far_grads) = results
    assert np.isfinite(far_value) and far_value == value
    for g, far_g in zip(grads, far_grads, strict=True):
        np.testing.assert_array_equal(far_g, g)


def test_fused_errors_name_the_argument():
    hidden, classifier, bias, target, old, advantages, ref = _fused_data(0, np.float64, True, 1.0)
    call = {"old_logps": old, "advantages": advantages, "ref_logps": ref, "beta": 0.04, "ignore_index": IGNORE}
    cases = [({"old_logps": old[:, 1:]}, "old_logps"), ({"advantages": advantages[1:]}, "advantages"),
             ({"ref_logps": ref[:-1]}, "ref_logps"), ({"ref_logps": None}, "ref_logps"), ({"beta": -1.0}, "beta"),
             ({"epsilon_low": -0.1}, "epsilon_low"), ({"epsilon_high": -0.1}, "epsilon_high"),
             ({"importance": "seq"}, "importance"), ({"normalization": "mean"}, "normalization"),
             ({"normalization": "dr_grpo", "max_length": T - 1}, "max_length"), ({"chunk_size": 0}, "chunk_size"),
             ({"temperature": 0.0}, "temperature")]
    for changes, name in cases:
        with pytest.raises(LossInputError, match=f"^{name}: expected"):
            lk.linear_grpo_loss(hidden, classifier, target, **{**call, **changes})
    with pytest.raises(LossInputError, match="^hidden: expected a 3-D array"):
        lk.linear_grpo_loss(hidden[0], classifier, target[0], **call)
    with pytest.raises(LossInputError, match="^target: expected integer token ids"):
        lk.linear_grpo_loss(hidden, classifier, target[:, 1:], **call)
    with pytest.raises(LossInputError, match="^arrays: expected arrays of one library.*old_logps: numpy"):
        lk.linear_grpo_loss(torch.tensor(hidden), torch.tensor(classifier), torch.tensor(target),
                            **{**call, "advantages": torch.tensor(advantages), "ref_logps": torch.tensor(ref)})
    empty = target.copy()
    empty[1] = IGNORE
    for importance, normalization in (("token", "grpo"), ("sequence", "bnpo")):
        with pytest.raises(LossInputError, match="^target: expected .* got sequence 1 with all its tokens ignored"):
            lk.linear_grpo_loss(hidden, classifier, empty, importance=importance, normalization=normalization, **call)


@pytest.mark.parametrize("backend", ["torch", "jax", "array_api_strict"])
@pytest.mark.parametrize(("importance", "normalization"), [("token", "bnpo"), ("sequence", "grpo")])
def test_fused_on_other_backends_matches_the_materialised_logits(backend, importance, normalization):
    """The array-API path (no compiled kernel): the library's own arrays in, the same numbers out."""
    if not backend_available(backend):
        pytest.skip(f"{backend} is not installed")
    data = _fused_data(3, np.float64, True, 1.3)
    hidden, classifier, bias, target, old, advantages, ref = data
    # ignored tokens' old / ref values are never read: inf there changes nothing
    old, ref = np.where(target == IGNORE, np.inf, old), np.where(target == IGNORE, -np.inf, ref)
    options = {"beta": 0.04, "epsilon_low": 0.2, "epsilon_high": 0.28, "importance": importance,
               "normalization": normalization}
    arrays = [to_backend(backend, a) for a in (hidden, classifier, bias, target, old, advantages, ref)]
    value, grads = lk.linear_grpo_loss_value_and_grad(
        arrays[0], arrays[1], arrays[3], old_logps=arrays[4], advantages=arrays[5], ref_logps=arrays[6],
        bias=arrays[2], temperature=1.3, ignore_index=IGNORE, chunk_size=4, **options)
    expected, expected_grads = _naive_fused(data, 1.3, options)
    assert library_of(value) == library_of(grads[0]) == backend
    _close(to_numpy(value), expected, 1e-10)
    for actual, reference in zip(grads, expected_grads, strict=True):
        _close(to_numpy(actual), reference, 1e-10)


def test_bnpo_batch_without_a_kept_token_gives_zero():
    """docs/post-training.md: "bnpo" on a batch with no kept token is 0 (TRL clamps the count to 1)."""
    mask = np.zeros((2, 3), dtype=bool)
    logp = np.zeros((2, 3))
    xp = array_namespace(logp)
    objective = GRPOObjective(xp, mask, np.full((2, 3), 7.0), np.array([1.0, -1.0]), np.full((2, 3), -7.0),
                              GRPOOptions(normalization="bnpo", beta=0.1))
    loss, grad, _ = objective.terms(xp, logp, mask, 0, 2)
    assert float(loss) == 0.0 and np.all(grad == 0)


def test_an_empty_batch_gives_zero_and_its_statistics_in_every_form():
    """B = 0: the loss is 0 and the gradients are empty; aux=True raised KeyError('clip_ratio_low') in the
    value-and-gradient form, which now gives the loss form's statistics."""
    hidden, classifier = np.zeros((0, 3, 2)), np.ones((5, 2))
    args = dict(old_logps=np.zeros((0, 3)), advantages=np.zeros(0), aux=True)
    value, aux = lk.linear_grpo_loss(hidden, classifier, np.zeros((0, 3), dtype=int), **args)
    v, grads, aux_vg = lk.linear_grpo_loss_value_and_grad(hidden, classifier, np.zeros((0, 3), dtype=int), **args)
    assert float(value) == float(v) == 0.0 and grads[0].shape == (0, 3, 2) and not np.any(grads[1])
    assert aux_vg == aux and set(aux) >= {"clip_ratio/low_mean", "clip_ratio/high_mean"}


def test_the_docs_examples_run():
    """docs/post-training.md's GRPO examples, NumPy and torch (their asserts: closed forms on-policy)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "post-training.md").read_text()
    section = text[text.index("## GRPO family"):]
    section = section[:section.index("\n## ", 3)] if "\n## " in section[3:] else section
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/post-training.md GRPO block {index}", "exec"), {})


# ---- torch and JAX forms ----

TORCH_CASES = [("token", "bnpo", 0.04), ("sequence", "grpo", 0.04), ("token", "dr_grpo", 0.0)]


def _layer_options(importance, normalization, beta):
    return {"beta": beta, "epsilon_low": 0.2, "epsilon_high": 0.28, "importance": importance,
            "normalization": normalization, "temperature": 0.8, "chunk_size": 4}


@pytest.mark.parametrize(("importance", "normalization", "beta"), TORCH_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_torch_module_backward_matches_the_materialised_logits_and_numpy(importance, normalization, beta, dtype):
    import losskit.torch as lt

    data = _fused_data(11, dtype, True, 0.8)
    hidden, classifier, bias, target, old, advantages, ref = data
    options = _layer_options(importance, normalization, beta)
    expected, expected_grads = _naive_fused(data, 0.8, {**options, "max_length": None})
    core_value, core_grads = lk.linear_grpo_loss_value_and_grad(
        hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref, bias=bias, **options)
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
    constants = [torch.tensor(a, requires_grad=True) for a in (old, advantages, ref)]
    loss = lt.LinearGRPOLoss(**options)(leaves[0], leaves[1], torch.tensor(target), old_logps=constants[0],
                                        advantages=constants[1], ref_logps=constants[2], bias=leaves[2])
    (3 * loss).backward()
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert loss.dtype == leaves[0].dtype and loss.shape == ()
    _close(loss.item(), expected, tol)
    assert loss.item() == pytest.approx(float(core_value), rel=1e-12 if dtype == np.float64 else 1e-6)
    for leaf, reference, core in zip(leaves, expected_grads, core_grads, strict=True):
        _close(leaf.grad.numpy(), 3 * reference, tol)
        _close(leaf.grad.numpy(), 3 * core, 1e-12 if dtype == np.float64 else 1e-6)
    assert all(c.grad is None for c in constants)  # constants of the loss: no gradient


def test_torch_module_compiles_fullgraph_and_runs_on_meta():
    import losskit.torch as lt

    hidden, classifier, bias, target, old, advantages, ref = _fused_data(12, np.float64, True, 1.0)
    module = lt.LinearGRPOLoss(beta=0.04, importance="sequence", normalization="bnpo", chunk_size=5)
    expected, expected_grads = _naive_fused((hidden, classifier, bias, target, old, advantages, ref), 1.0,
                                            {"beta": 0.04, "epsilon_low": 0.2, "epsilon_high": 0.2,
                                             "importance": "sequence", "normalization": "bnpo"})
    constants = {"old_logps": torch.tensor(old), "advantages": torch.tensor(advantages), "ref_logps": torch.tensor(ref)}

    def step(h, c, b, y):
        return 2 * module(h @ torch.eye(D, dtype=h.dtype), c, y, bias=b, **constants)

    for run in (step, torch.compile(step, fullgraph=True)):
        leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
        out = run(*leaves, torch.tensor(target))
        out.backward()
        assert out.item() == pytest.approx(2 * expected, rel=1e-10)
        for leaf, reference in zip(leaves, expected_grads, strict=True):
            _close(leaf.grad.numpy(), 2 * reference, 1e-10)
    # the function form too: its options were checked inside the traced code, which Dynamo could not trace
    options = {"beta": 0.04, "importance": "sequence", "normalization": "bnpo", "chunk_size": 5}
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
    out, aux = torch.compile(lambda h, c, b, y: lt.linear_grpo_loss(h, c, y, bias=b, aux=True, **constants, **options),
                             fullgraph=True)(*leaves, torch.tensor(target))
    out.backward()
    assert out.item() == pytest.approx(expected, rel=1e-10) and "kl" in aux
    for leaf, reference in zip(leaves, expected_grads, strict=True):
        _close(leaf.grad.numpy(), reference, 1e-10)
    meta = [torch.zeros(a.shape, device="meta", requires_grad=True) for a in (hidden, classifier, bias)]
    out = module(meta[0], meta[1], torch.tensor(target).to("meta"), bias=meta[2],
                 **{k: v.to(device="meta", dtype=torch.float32) for k, v in constants.items()})
    out.backward()
    assert out.shape == () and [m.grad.shape for m in meta] == [m.shape for m in meta]


def test_torch_module_checks_its_options_once_and_shows_them():
    import losskit.torch as lt

    for kwargs, name in (({"beta": -1.0}, "beta"), ({"epsilon_high": -0.1}, "epsilon_high"),
                         ({"importance": "tok"}, "importance"), ({"normalization": "x"}, "normalization"),
                         ({"max_length": 0}, "max_length"), ({"temperature": -1.0}, "temperature"),
                         ({"chunk_size": 0}, "chunk_size")):
        with pytest.raises(LossInputError, match=f"^{name}: expected"):
            lt.LinearGRPOLoss(**kwargs)
    text = repr(lt.LinearGRPOLoss(beta=0.04, importance="sequence"))
    assert "beta=0.04" in text and "importance='sequence'" in text
    with pytest.raises(LossInputError, match="^ref_logps: expected"):
        lt.LinearGRPOLoss(beta=0.1)(torch.zeros(1, 2, 3), torch.zeros(4, 3), torch.zeros(1, 2, dtype=torch.long),
                                    old_logps=torch.zeros(1, 2), advantages=torch.ones(1))


@pytest.mark.parametrize(("importance", "normalization", "beta"), TORCH_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jax_jit_grad_matches_the_materialised_logits_and_numpy(importance, normalization, beta, dtype):
    import jax
    import jax.numpy as jnp

    import losskit.jax as lj

    data = _fused_data(13, dtype, True, 0.8)
    hidden, classifier, bias, target, old, advantages, ref = data
    options = _layer_options(importance, normalization, beta)
    expected, expected_grads = _naive_fused(data, 0.8, {**options, "max_length": None})
    core_value, core_grads = lk.linear_grpo_loss_value_and_grad(
        hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref, bias=bias, **options)

    def loss(h, c, b):
        return 3 * lj.linear_grpo_loss(h, c, target, old_logps=jnp.asarray(old), advantages=jnp.asarray(advantages),
                                       ref_logps=jnp.asarray(ref), bias=b, **options)

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*map(jnp.asarray, (hidden, classifier, bias)))
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert value.dtype == dtype
    _close(float(value), 3 * expected, tol)
    assert float(value) == pytest.approx(3 * float(core_value), rel=1e-12 if dtype == np.float64 else 1e-6)
    for grad, reference, core in zip(grads, expected_grads, core_grads, strict=True):
        _close(np.asarray(grad), 3 * reference, tol)
        _close(np.asarray(grad), 3 * core, 1e-12 if dtype == np.float64 else 1e-6)


def test_torch_policy_doctests():
    """losskit.torch's doctests are run by their own test modules (test_package skips the framework layers)."""
    import doctest

    import losskit.torch.policy as module

    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_modules_with_other_float_options_compile_one_after_another():
    """torch.compile marks a float attribute that changed between two instances as symbolic; the
    modules hand the custom op their options encoded at construction, so each compiles and gives
    its own value (the clipped surrogate at ratio 1.5 depends on epsilon_high)."""
    import torch

    import losskit.torch as lt

    hidden = torch.zeros(1, 2, 3, requires_grad=True)
    classifier = torch.zeros(4, 3)  # uniform: log p = -log 4
    target = torch.tensor([[0, 3]])
    old = torch.full((1, 2), -float(np.log(4.0)) - float(np.log(1.5)))  # ratio r = 1.5 on both tokens
    for epsilon_high in (0.2, 0.3, 0.25):
        loss = torch.compile(lt.LinearGRPOLoss(epsilon_high=epsilon_high), fullgraph=True)(
            hidden, classifier, target, old_logps=old, advantages=torch.tensor([1.0]))
        assert loss.item() == pytest.approx(-(1 + epsilon_high), rel=1e-6)  # -min(r A, clip(r) A), A = 1


def reference_metrics(logp, mask, old, advantages, ref, *, beta, epsilon_low, epsilon_high, importance):
    """TRL's GRPOTrainer logged metrics, written from its definitions: ``masked_batch_mean`` is the mean
    over the batch's kept tokens, or over the sequences where the ratio is one per sequence (GSPO)."""
    log_weights = logp - old
    if importance == "sequence":
        log_weights = ((log_weights * mask).sum(-1) / mask.sum(-1))[:, None]
    coef_1 = np.exp(log_weights)

    def masked_batch_mean(x):
        return x.mean() if x.shape[1] == 1 else (x * mask).sum() / max(mask.sum(), 1.0)

    low = (coef_1 < 1 - epsilon_low) & (advantages[:, None] < 0)
    high = (coef_1 > 1 + epsilon_high) & (advantages[:, None] > 0)
    out = {"clip_ratio/low_mean": masked_batch_mean(low * 1.0), "clip_ratio/high_mean": masked_batch_mean(high * 1.0),
           "clip_ratio/region_mean": masked_batch_mean((low | high) * 1.0)}
    if beta:
        out["kl"] = masked_batch_mean(np.exp(ref - logp) - (ref - logp) - 1)
    return out


@pytest.mark.parametrize(("importance", "beta"), [("token", 0.04), ("sequence", 0.04), ("token", 0.0)])
def test_aux_is_trls_logged_metrics(importance, beta):
    data = _fused_data(11, np.float64, True, 1.0)
    hidden, classifier, bias, target, old, advantages, ref = data
    # sequences pushed past the clip bounds on the side their advantage clips (GSPO's mean ratios too)
    old = old - 0.5 * np.sign(advantages)[:, None]
    data = (hidden, classifier, bias, target, old, advantages, ref)
    options = {"beta": beta, "epsilon_low": 0.2, "epsilon_high": 0.28, "importance": importance, "normalization": "bnpo"}
    logp = _naive_logps(*(torch.from_numpy(a) for a in (hidden, classifier, bias)), target, 1.0).numpy()
    mask = (target != IGNORE) * 1.0
    expected = reference_metrics(logp, mask, np.where(mask > 0, old, 0.0), advantages, np.where(mask > 0, ref, 0.0),
                                 beta=beta, epsilon_low=0.2, epsilon_high=0.28, importance=importance)
    assert expected["clip_ratio/low_mean"] > 0 and expected["clip_ratio/high_mean"] > 0  # both sides clip here
    call = {"old_logps": old, "advantages": advantages, "ref_logps": ref, "bias": bias, "ignore_index": IGNORE}
    value, aux = lk.linear_grpo_loss(hidden, classifier, target, aux=True, chunk_size=4, **call, **options)
    _, grads, aux_vg = lk.linear_grpo_loss_value_and_grad(hidden, classifier, target, aux=True, **call, **options)
    assert float(value) == pytest.approx(_naive_fused(data, 1.0, options)[0], rel=1e-10)
    assert set(aux) == set(aux_vg) == set(expected)
    for name, reference in expected.items():
        assert float(aux[name]) == pytest.approx(reference, rel=1e-10, abs=1e-15), name
        assert float(aux_vg[name]) == pytest.approx(reference, rel=1e-10, abs=1e-15), name


def test_aux_on_torch_and_jax_and_its_errors():
    import losskit.torch as lt

    data = _fused_data(11, np.float64, False, 1.0)
    hidden, classifier, _, target, old, advantages, ref = data
    options = {"beta": 0.04, "epsilon_low": 0.2, "epsilon_high": 0.28}
    _, expected = lk.linear_grpo_loss(hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref,
                                      aux=True, **options)
    h = torch.from_numpy(hidden).requires_grad_(True)
    module = lt.LinearGRPOLoss(aux=True, **options)
    loss, aux = module(h, torch.from_numpy(classifier), torch.from_numpy(target), old_logps=torch.from_numpy(old),
                       advantages=torch.from_numpy(advantages), ref_logps=torch.from_numpy(ref))
    loss.backward()
    assert h.grad is not None and set(aux) == set(expected)
    for name in expected:
        assert aux[name].dtype == torch.float64 and not aux[name].requires_grad
        assert float(aux[name]) == pytest.approx(float(expected[name]), rel=1e-12), name
    if backend_available("jax"):
        import jax
        import jax.numpy as jnp

        import losskit.jax as lj

        def run(h):
            return lj.linear_grpo_loss(h, jnp.asarray(classifier), target, old_logps=jnp.asarray(old),
                                       advantages=jnp.asarray(advantages), ref_logps=jnp.asarray(ref), aux=True,
                                       **options)

        (_, jax_aux), grad = jax.jit(jax.value_and_grad(run, has_aux=True))(jnp.asarray(hidden))
        assert grad.shape == hidden.shape
        for name in expected:
            assert float(jax_aux[name]) == pytest.approx(float(expected[name]), rel=1e-12), name
    for bad in ("yes", 1, None):
        with pytest.raises(LossInputError, match=r"^aux: expected True or False, got "):
            lt.LinearGRPOLoss(aux=bad)
        with pytest.raises(LossInputError, match=r"^aux: expected True or False, got "):
            lk.linear_grpo_loss(hidden, classifier, target, old_logps=old, advantages=advantages, aux=bad)


# --- against TRL 1.16's own GRPOTrainer._compute_loss --------------------------------------------------
# TRL's method runs on the logits hidden @ W.T + b in float64 under torch autograd (tests/_trl.py says
# what it stubs); losskit's fused loss on the same hidden states gives the value, the three gradients
# and the logged clip ratios and KL to 1e-10 relative. TRL's loss_type is our normalization ("dapo"
# is "bnpo" on one batch), its importance_sampling_level our importance, its epsilon our epsilon_low.

TRL_B, TRL_T, TRL_D, TRL_V = 4, 5, 4, 11

#: (TRL loss_type, importance_sampling_level, beta, temperature, max_completion_length) -> our normalization
TRL_CASES = [
    ("grpo", "token", 0.0, 1.0, None, "grpo"),
    ("grpo", "token", 0.04, 0.7, None, "grpo"),
    ("bnpo", "token", 0.04, 1.0, None, "bnpo"),
    ("dapo", "token", 0.0, 0.7, None, "bnpo"),
    ("dr_grpo", "token", 0.04, 1.0, 9, "dr_grpo"),
    ("grpo", "sequence", 0.0, 1.0, None, "grpo"),
    ("bnpo", "sequence", 0.04, 0.7, None, "bnpo"),
    ("dr_grpo", "sequence", 0.0, 1.0, 7, "dr_grpo"),
]
TRL_IDS = [f"{case[0]}-{case[1]}-beta{case[2]}-temp{case[3]}" for case in TRL_CASES]
TRL_STATS = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")


@pytest.fixture(scope="module")
def trl_units():
    pytest.importorskip("trl")
    import _trl

    return _trl


def _trl_batch(temperature, seed=23):
    """hidden, classifier, bias, target (padding ignored), old log-probs off the policy's by sequence and
    by token (so that both clip bounds bind, for tokens and for GSPO's sequences), advantages of both
    signs and reference log-probs near the policy's."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(TRL_B, TRL_T, TRL_D))
    classifier = rng.normal(scale=0.6, size=(TRL_V, TRL_D))
    bias = rng.normal(scale=0.5, size=TRL_V)
    target = rng.integers(0, TRL_V, size=(TRL_B, TRL_T))
    target[1, -2:] = IGNORE
    target[3, -1:] = IGNORE
    logp = lk.linear_logprobs(hidden, classifier, target, bias=bias, temperature=temperature)
    # sequence ratios e^0.4 (A > 0: clipped high), e^-0.4 (A < 0: clipped low), e^-0.1 and e^0.1 (inside)
    old = logp + rng.normal(scale=0.3, size=logp.shape) + np.array([[-0.4], [0.4], [0.1], [-0.1]])
    ref = logp + rng.normal(scale=0.5, size=logp.shape)
    advantages = np.array([1.0, -0.5, 0.75, -1.25])
    return hidden, classifier, bias, target, old, advantages, ref


@pytest.mark.parametrize(("loss_type", "level", "beta", "temperature", "max_length", "normalization"), TRL_CASES,
                         ids=TRL_IDS)
def test_value_gradients_and_statistics_equal_trls_trainer(trl_units, loss_type, level, beta, temperature,
                                                           max_length, normalization):
    hidden, classifier, bias, target, old, advantages, ref = _trl_batch(temperature)
    leaves = [trl_units.tensor(a, grad=True) for a in (hidden, classifier, bias)]
    model = trl_units.HiddenStateLM(*leaves, temperature=temperature)
    trl_loss, metrics = trl_units.grpo(
        model, target, old, advantages, loss_type=loss_type, importance_sampling_level=level, epsilon_low=0.2,
        epsilon_high=0.28, beta=beta, ref_logps=ref if beta else None, max_completion_length=max_length)
    trl_loss.backward()
    value, grads, aux = lk.linear_grpo_loss_value_and_grad(
        hidden, classifier, target, old_logps=old, advantages=advantages, ref_logps=ref if beta else None,
        beta=beta, epsilon_low=0.2, epsilon_high=0.28, importance=level, normalization=normalization,
        max_length=max_length, temperature=temperature, bias=bias, chunk_size=7, aux=True)
    np.testing.assert_allclose(value, trl_loss.item(), rtol=1e-10)
    for what, mine, leaf in zip(("hidden", "classifier", "bias"), grads, leaves, strict=True):
        theirs = leaf.grad.numpy()
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max(), err_msg=what)
    for key in TRL_STATS:  # TRL counts the clipped tokens in float32 (``.float()``): a share exact to 6e-8
        np.testing.assert_allclose(float(aux[key]), metrics[key], atol=1e-7, err_msg=key)
    if beta:
        np.testing.assert_allclose(float(aux["kl"]), metrics["kl"], rtol=1e-10, err_msg="kl")
    assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0  # both bounds bind


def test_dr_grpo_max_length_is_checked_against_the_kept_tokens_not_targets_width():
    """A layout that keeps the (ignored) prompt in target is prompt + completion wide: TRL's
    max_completion_length (4 here, T = 8) was refused as 'an int >= 8'. The loss equals the one over the
    completion columns alone (the same B * max_length divisor); a max_length below a sequence's kept tokens
    is still refused, naming the count."""
    rng = np.random.default_rng(4)
    hidden, classifier = rng.normal(size=(3, 8, 5)), rng.normal(size=(11, 5))
    target = rng.integers(0, 11, size=(3, 8))
    target[:, :4] = IGNORE
    target[1, 6:] = IGNORE
    arrays = {"old_logps": rng.normal(size=(3, 8)) - 3, "advantages": np.array([1.0, -0.5, 0.3])}
    loss = lk.linear_grpo_loss(hidden, classifier, target, normalization="dr_grpo", max_length=4,
                               ignore_index=IGNORE, **arrays)
    sliced = lk.linear_grpo_loss(hidden[:, 4:], classifier, target[:, 4:], normalization="dr_grpo", max_length=4,
                                 ignore_index=IGNORE, old_logps=arrays["old_logps"][:, 4:],
                                 advantages=arrays["advantages"])
    assert float(loss) == pytest.approx(float(sliced), rel=1e-13)
    with pytest.raises(LossInputError, match="^max_length: expected an int >= 4 \\(the most tokens a sequence keeps"):
        lk.linear_grpo_loss(hidden, classifier, target, normalization="dr_grpo", max_length=3, ignore_index=IGNORE,
                            **arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_k3_kl_keeps_its_relative_accuracy_for_tiny_differences(dtype):
    """k3 = e^d - 1 - d for d = ref - logp: as expm1(d) - d it kept eps / |d| of itself (6.5e-4 relative in
    float32 at d = 1e-4, 7.4e-9 in float64 at 1e-8); now within 4 eps of mpmath from d = 1e-8 to 1."""
    import mpmath

    d = np.array([1e-8, -1e-6, 1e-4, -1e-2, 0.3, -1.0], dtype=dtype)
    logp = np.full((d.size, 1), -2.0, dtype=dtype)  # one token per sequence: "grpo"'s mean is the token's k3
    ref = (logp + d[:, None]).astype(dtype)
    actual_d = (ref.astype(np.float64) - logp.astype(np.float64))[:, 0]  # d as the dtype rounds it
    options = GRPOOptions(beta=0.04, ignore_index=IGNORE, normalization="grpo")
    objective = grpo_objective(np, np.ones((d.size, 1), dtype=np.int64), logp, old_logps=logp,
                               advantages=np.zeros(d.size, dtype=dtype), ref_logps=ref, options=options)
    _, _, stats = objective.terms(np, logp, np.ones((d.size, 1), dtype=bool), 0, d.size)
    for dj, kl in zip(actual_d, stats["kl"], strict=True):
        with mpmath.workdps(50):
            exact = float(mpmath.expm1(mpmath.mpf(dj)) - mpmath.mpf(dj))
        assert abs(float(kl) - exact) <= 4 * np.finfo(dtype).eps * exact, (dj, kl, exact)


def test_jit_checks_a_known_target_as_the_eager_call_does():
    """Under jax.jit every value the traced sweep derives from the target is a tracer, even from a NumPy
    constant, so its checks read nothing: a sequence with no token kept gave a finite -0.0516 (GRPO), where
    NumPy raises. A target whose values are known before the trace is now checked there."""
    jax = pytest.importorskip("jax")
    import losskit.jax as lj

    rng = np.random.default_rng(0)
    h, w = jax.numpy.asarray(rng.normal(size=(2, 3, 4))), jax.numpy.asarray(rng.normal(size=(7, 4)))
    target = np.array([[1, 2, 3], [IGNORE, IGNORE, IGNORE]])
    step = jax.jit(lambda a: lj.linear_grpo_loss(a, w, target, old_logps=np.zeros((2, 3)), advantages=np.ones(2),
                                                 ignore_index=IGNORE))
    with pytest.raises(LossInputError, match="^target: expected at least one token"):
        step(h)
    outside = np.array([[1, 2, 9], [3, 4, 5]])  # an id past V = 7 (the GRPO form made it a tracer first)
    with pytest.raises(LossInputError, match="^target: expected class indices in \\[0, 7\\)"):
        jax.jit(lambda a: lj.linear_grpo_loss(a, w, outside, old_logps=np.zeros((2, 3)), advantages=np.ones(2)))(h)
