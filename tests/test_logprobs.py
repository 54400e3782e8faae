"""linear_logprobs, its VJP and the sequence sweep, against naive references that materialise the
logits in float64 (log_softmax, gather; gradients by torch autograd), on NumPy, torch and JAX."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.losses.logprobs import linear_arrays, sequence_sweep

B, T, D, V = 3, 5, 4, 11
TEMPERATURE = 1.3


def _data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(2 * B, T, D)).astype(dtype)
    c = rng.normal(size=(V, D)).astype(dtype)
    b = rng.normal(size=V).astype(dtype)
    y = rng.integers(0, V, size=(2 * B, T))
    y[0, :2] = -100  # a prompt
    y[4, 3:] = -100  # padding
    return h, c, b, y


def _naive(h, c, b, y, temperature=TEMPERATURE):
    """float64 torch: logits, log_softmax, gather; the tensors keep their graph for autograd."""
    import torch

    z = (h @ c.T + (0 if b is None else b)) / temperature
    logp = torch.log_softmax(z, dim=-1)
    y_t = torch.as_tensor(y)
    picked = torch.gather(logp, -1, y_t.clamp(min=0)[..., None])[..., 0]
    keep = y_t != -100
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    correct = torch.gather(z, -1, y_t.clamp(min=0)[..., None])[..., 0] >= z.max(-1).values
    return torch.where(keep, picked, 0.0), torch.where(keep, entropy, 0.0), correct & keep


def _leaves(*arrays):
    import torch

    return [None if a is None else torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("with_bias", [True, False])
def test_logprobs_entropy_accuracy_match_the_naive_reference(chunk_size, with_bias):
    h, c, b, y = _data()
    b = b if with_bias else None
    got = lk.linear_logprobs(h, c, y, bias=b, temperature=TEMPERATURE, entropy=True, accuracy=True,
                             chunk_size=chunk_size)
    ht, ct, bt = _leaves(h, c, b)
    logp, entropy, correct = _naive(ht, ct, bt, y)
    np.testing.assert_allclose(got.logps, logp.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got.entropy, entropy.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(got.accuracy, correct.numpy())
    assert got.logps.shape == y.shape and got.logps[0, 0] == 0.0 and got.entropy[4, 4] == 0.0


def test_accuracy_counts_a_tie_with_the_max_as_correct():
    h = np.ones((1, 2))
    c = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # classes 0 and 1 tie for the max
    got = lk.linear_logprobs(h, c, np.array([1]), accuracy=True)
    assert got.accuracy.tolist() == [True] and got.entropy is None
    np.testing.assert_allclose(got.logps, [1 - np.log(2 * np.e + 1)], rtol=1e-15)


def test_float32_within_1e_5_of_the_float64_reference():
    h, c, b, y = _data(1)
    got = lk.linear_logprobs(h.astype(np.float32), c.astype(np.float32), y, bias=b.astype(np.float32),
                             temperature=TEMPERATURE, entropy=True)
    logp, entropy, _ = _naive(*_leaves(h, c, b), y)
    assert got.logps.dtype == np.float32
    np.testing.assert_allclose(got.logps, logp.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.entropy, entropy.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_float32_rows_of_a_large_vocabulary_keep_float32_precision():
    """Rows of 128,256 float32 logits (the layer's identity hidden states: the logits are exact): each token's
    log-prob and entropy within an eps of the float64 values. The kernel summed a row's terms in float32 over
    the whole row (entropy 2.6 eps off here); now by chunks, added in float64."""
    rng = np.random.default_rng(0)
    n, vocab = 16, 128_256
    z = (rng.normal(size=(n, vocab)) * 2).astype(np.float32)
    target = rng.integers(0, vocab, n)
    got = lk.linear_logprobs(np.eye(n, dtype=np.float32), np.ascontiguousarray(z.T), target, entropy=True)
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(1))
    logp = shifted[np.arange(n), target] - log_norm
    p = np.exp(shifted - log_norm[:, None])
    entropy = -(p * (shifted - log_norm[:, None])).sum(1)
    eps = np.finfo(np.float32).eps
    for name, value, exact in (("log p", got.logps, logp), ("entropy", got.entropy, entropy)):
        assert value.dtype == np.float32
        worst = np.max(np.abs(value - exact) / np.abs(exact)) / eps
        assert worst <= 1.0, f"{name}: {worst:.2f} eps"


def test_a_sure_token_keeps_its_tiny_log_prob():
    # log p = -log(1 + 2 e^-60): -2 e^-60 = -1.75e-26, which lse - z_y rounds to 0
    h = np.array([[1.0]])
    c = np.array([[60.0], [0.0], [0.0]])
    got = lk.linear_logprobs(h, c, np.array([0]))
    np.testing.assert_allclose(got, [-np.log1p(2 * np.exp(-60.0))], rtol=1e-14)
    assert got[0] != 0.0


@pytest.mark.parametrize("dtype,tolerance", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("chunk_size", [None, 3])
def test_vjp_matches_autograd_of_the_naive_reference(dtype, tolerance, chunk_size):
    h, c, b, y = _data(2)
    upstream = np.random.default_rng(3).normal(size=y.shape)
    got = lk.linear_logprobs_vjp(h.astype(dtype), c.astype(dtype), y, upstream, bias=b.astype(dtype),
                                 temperature=TEMPERATURE, chunk_size=chunk_size)
    leaves = _leaves(h, c, b)
    logp, _, _ = _naive(*leaves, y)
    (logp * _leaves(upstream)[0].detach()).sum().backward()
    for mine, leaf in zip(got, leaves, strict=True):
        assert mine.dtype == dtype
        expected = leaf.grad.numpy()
        np.testing.assert_allclose(mine, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())
    assert not got[0][0, :2].any()  # an ignored token passes no gradient to its hidden state


class _SquaredMargin:
    """A pair objective written here, as a loss module would be: ``mean_pairs (sum logp_c - sum
    logp_r)^2``, chosen rows first; its derivative is worked by hand."""

    def __init__(self, n_pairs):
        self.n_units = n_pairs

    def rows(self, start, stop):
        return list(range(start, stop)) + list(range(self.n_units + start, self.n_units + stop))

    def terms(self, xp, logp, mask, start, stop):
        u = stop - start
        margin = xp.sum(logp[:u, ...], axis=1) - xp.sum(logp[u:, ...], axis=1)
        pairs = max(self.n_units, 1)  # an empty batch's terms are asked for too (no pair: a loss of 0)
        d = 2 * margin / pairs
        dlogp = xp.concat([xp.broadcast_to(d[:, None], (u, logp.shape[1])),
                           -xp.broadcast_to(d[:, None], (u, logp.shape[1]))])
        return xp.sum(margin * margin) / pairs, dlogp, {"margin": margin}


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("chunk_size", [None, 2 * T, 4 * T, 3])  # all pairs; one pair; two; a split pair
def test_sequence_sweep_loss_and_gradients_match_autograd(library, chunk_size):
    import torch

    h, c, b, y = _data(4)
    arrays = (h, c, y, b) if library == "numpy" else tuple(torch.as_tensor(a) for a in (h, c, y, b))
    xp, hidden, classifier, target, bias = linear_arrays(*arrays, sequences=True)
    sweep = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=TEMPERATURE,
                           objective=_SquaredMargin(B), chunk_size=chunk_size, accuracy=True)
    leaves = _leaves(h, c, b)
    logp, _, correct = _naive(*leaves, y)
    margin = logp[:B].sum(1) - logp[B:].sum(1)
    loss = (margin ** 2).mean()
    loss.backward()
    np.testing.assert_allclose(float(sweep.loss), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(sweep.logps), logp.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(np.asarray(sweep.accuracy), correct.numpy())
    np.testing.assert_allclose(np.asarray(sweep.stats["margin"]), margin.detach().numpy(), rtol=1e-12)
    for mine, leaf in zip(sweep.grads, leaves, strict=True):
        np.testing.assert_allclose(np.asarray(mine), leaf.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_ignored_tokens_never_reach_the_gemm_on_numpy():
    """docs/post-training.md: on NumPy an ignored token's hidden state is never read (its logits are
    not computed): NaN there changes nothing, where the array-API path (torch) carries it into the
    classifier's gradient."""
    import torch

    h, c, b, y = _data(4)
    poisoned = h.copy()
    poisoned[y == -100] = np.nan
    results = []
    for hidden_in in (h, poisoned):
        xp, hidden, classifier, target, bias = linear_arrays(hidden_in, c, y, b, sequences=True)
        results.append(sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=TEMPERATURE,
                                      objective=_SquaredMargin(B), entropy=True, accuracy=True))
    clean, dirty = results
    assert np.isfinite(float(dirty.loss)) and float(dirty.loss) == float(clean.loss)
    for mine, reference in zip((dirty.logps, dirty.entropy, *dirty.grads), (clean.logps, clean.entropy, *clean.grads),
                               strict=True):
        np.testing.assert_array_equal(mine, reference)
    assert np.all(dirty.grads[0][y == -100] == 0)
    np.testing.assert_array_equal(dirty.accuracy, clean.accuracy)
    # the array-API path (torch) computes the ignored tokens' logits, from a hidden state taken as 0: the NaN
    # reached the classifier's gradient there (found in review)
    others = []
    for hidden_in in (h, poisoned):
        xp, hidden, classifier, target, bias = linear_arrays(*(torch.as_tensor(a) for a in (hidden_in, c, y, b)),
                                                             sequences=True)
        others.append(sequence_sweep(xp, hidden, classifier, target, bias=bias, objective=_SquaredMargin(B)))
    for mine, reference in zip(others[1].grads, others[0].grads, strict=True):
        np.testing.assert_array_equal(mine.numpy(), reference.numpy())


@pytest.mark.parametrize("chunk_size", [None, 3])  # one chunk; a chunk of no token, then a split pair
def test_pairs_whose_tokens_are_all_ignored(chunk_size):
    """A pair with no kept token: log-probs 0, no gradient, and the other pairs as autograd says,
    also where the pair fills a chunk of its own (no token reaches that chunk's gemm)."""
    h, c, b, y = _data(5)
    y[[0, B]] = -100  # pair 0: chosen and rejected all ignored
    xp, hidden, classifier, target, bias = linear_arrays(h, c, y, b, sequences=True)
    sweep = sequence_sweep(xp, hidden, classifier, target, bias=bias, temperature=TEMPERATURE,
                           objective=_SquaredMargin(B), chunk_size=chunk_size, entropy=True, accuracy=True)
    leaves = _leaves(h, c, b)
    logp, entropy, correct = _naive(*leaves, y)
    margin = logp[:B].sum(1) - logp[B:].sum(1)
    (margin ** 2).mean().backward()
    np.testing.assert_allclose(float(sweep.loss), (margin ** 2).mean().item(), rtol=1e-12)
    np.testing.assert_allclose(sweep.logps, logp.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sweep.entropy, entropy.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(sweep.accuracy, correct.numpy())
    for mine, leaf in zip(sweep.grads, leaves, strict=True):
        np.testing.assert_allclose(mine, leaf.grad.numpy(), rtol=1e-10, atol=1e-12)
    everything_ignored = np.full_like(y, -100)
    got = lk.linear_logprobs(h, c, everything_ignored, entropy=True, accuracy=True)
    assert not got.logps.any() and not got.entropy.any() and not got.accuracy.any()
    grads = lk.linear_logprobs_vjp(h, c, everything_ignored, np.ones(y.shape), bias=b)
    assert not any(g.any() for g in grads)


def test_an_empty_batch_gives_zeros():
    h = np.zeros((0, T, D))
    xp, hidden, classifier, target, bias = linear_arrays(h, np.ones((V, D)), np.zeros((0, T), dtype=np.int64), None,
                                                          sequences=True)
    sweep = sequence_sweep(xp, hidden, classifier, target, objective=_SquaredMargin(0))
    assert sweep.logps.shape == (0, T) and float(sweep.loss) == 0.0 and not sweep.grads[1].any()


def test_hidden_states_of_no_feature_give_the_bias_log_softmax():
    """D = 0: the logits are the bias, so log p = b - log sum e^b on every row, and the VJP of a sum
    is count(target = k) - N softmax(b)_k into the bias (empty gradients for hidden and classifier).
    NumPy's "cannot reshape array of size 0" came out of the sweep."""
    bias = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    target = np.array([[0, 1], [2, 2]])
    hidden, classifier = np.zeros((2, 2, 0)), np.zeros((5, 0))
    log_p = bias - np.log(np.sum(np.exp(bias)))
    got = lk.linear_logprobs(hidden, classifier, target, bias=bias, entropy=True)
    np.testing.assert_allclose(got.logps, log_p[target], rtol=1e-15)
    np.testing.assert_allclose(got.entropy, np.full((2, 2), -np.sum(np.exp(log_p) * log_p)), rtol=1e-14)
    g_hidden, g_classifier, g_bias = lk.linear_logprobs_vjp(hidden, classifier, target, np.ones((2, 2)), bias=bias)
    assert g_hidden.shape == (2, 2, 0) and g_classifier.shape == (5, 0)
    np.testing.assert_allclose(g_bias, np.bincount(target.ravel(), minlength=5) - 4 * np.exp(log_p), rtol=1e-14)


@pytest.mark.parametrize("call,argument,expected", [
    (lambda h, c, y: lk.linear_logprobs(h[..., :3], c, y), "classifier", "shape (V, 3)"),
    (lambda h, c, y: lk.linear_logprobs(h, c.astype(np.float32), y), "classifier", "dtype float64"),
    (lambda h, c, y: lk.linear_logprobs(h, c, y[:, :2]), "target", "integer token ids of shape (6, 5)"),
    (lambda h, c, y: lk.linear_logprobs(h, c, y.astype(float)), "target", "integer token ids"),
    (lambda h, c, y: lk.linear_logprobs(h, c, np.full_like(y, V)), "target", f"class indices in [0, {V})"),
    (lambda h, c, y: lk.linear_logprobs(h, c, y, temperature=0), "temperature", "a finite number > 0"),
    (lambda h, c, y: lk.linear_logprobs(h, c, y, chunk_size=0), "chunk_size", "a positive int"),
    (lambda h, c, y: lk.linear_logprobs(h, c, y, bias=np.ones(V + 1)), "bias", f"shape ({V},)"),
    (lambda h, c, y: lk.linear_logprobs_vjp(h, c, y, np.ones(3)), "upstream", "shape (6, 5)"),
])
def test_bad_input_names_the_argument(call, argument, expected):
    h, c, _, y = _data()
    with pytest.raises(lk.LossInputError, match=rf"^{argument}: expected .*{expected}".replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        call(h, c, y)


def test_torch_autograd_compile_and_meta():
    import torch

    import losskit.torch as lt

    h, c, b, y = _data(5)
    upstream = torch.as_tensor(np.random.default_rng(6).normal(size=y.shape))
    leaves = _leaves(h, c, b)
    logp, entropy, correct = _naive(*leaves, y)
    (logp * upstream).sum().backward()
    expected = [leaf.grad.clone() for leaf in leaves]
    mine = _leaves(h, c, b)
    target = torch.as_tensor(y)

    def step(h, c, b):
        return (lt.linear_logprobs(h, c, target, bias=b, temperature=TEMPERATURE, chunk_size=4) * upstream).sum()

    for run in (step, torch.compile(step, fullgraph=True)):
        for leaf in mine:
            leaf.grad = None
        value = run(*mine)
        value.backward()
        torch.testing.assert_close(value, (logp * upstream).sum(), rtol=1e-12, atol=1e-12)
        for leaf, grad in zip(mine, expected, strict=True):
            torch.testing.assert_close(leaf.grad, grad, rtol=1e-10, atol=1e-12)
    stats = lt.linear_logprobs(*mine[:2], target, bias=mine[2], temperature=TEMPERATURE, entropy=True, accuracy=True)
    torch.testing.assert_close(stats.entropy, entropy.detach(), rtol=1e-12, atol=1e-12)
    assert torch.equal(stats.accuracy, correct) and not stats.entropy.requires_grad
    meta = [torch.zeros(a.shape, device="meta", requires_grad=True) for a in (h, c)]
    out = lt.linear_logprobs(*meta, target.to("meta"))
    out.sum().backward()
    assert out.shape == y.shape and meta[0].grad.shape == h.shape and meta[1].grad.shape == c.shape


def test_jax_jit_grad_matches_autograd():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    h, c, b, y = _data(7, np.float32)
    upstream = np.random.default_rng(8).normal(size=y.shape).astype(np.float32)
    leaves = _leaves(h, c, b)
    logp, entropy, _ = _naive(*leaves, y)
    (logp * _leaves(upstream)[0].detach()).sum().backward()

    def f(h, c, b):
        return jnp.sum(lj.linear_logprobs(h, c, jnp.asarray(y), bias=b, temperature=TEMPERATURE, chunk_size=4)
                       * upstream)

    grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(jnp.asarray(h), jnp.asarray(c), jnp.asarray(b))
    for mine, leaf in zip(grads, leaves, strict=True):
        expected = leaf.grad.numpy()
        np.testing.assert_allclose(np.asarray(mine), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    stats = jax.jit(lambda h: lj.linear_logprobs(h, jnp.asarray(c), jnp.asarray(y), bias=jnp.asarray(b),
                                                 temperature=TEMPERATURE, entropy=True))(jnp.asarray(h))
    np.testing.assert_allclose(np.asarray(stats.entropy), entropy.detach().numpy(), rtol=1e-5, atol=1e-5)


def _linear_ce_reference(h, c, y):
    import torch

    leaves = _leaves(h, c)
    loss = torch.nn.functional.cross_entropy(leaves[0] @ leaves[1].T, torch.as_tensor(y), ignore_index=-100)
    loss.backward()
    return loss.item(), [leaf.grad.numpy() for leaf in leaves]


def test_fused_linear_wrappers_carry_a_core_sweep_into_torch_and_jax():
    """The generic wrappers take any core ``..._value_and_grad``: here the linear cross-entropy's."""
    import jax
    import jax.numpy as jnp
    import torch

    import losskit.jax as lj
    from losskit.losses.linear import linear_cross_entropy_value_and_grad
    from losskit.torch.linear import fused_linear

    h, c, _, y = _data(9)
    h, y = h.reshape(-1, D), y.reshape(-1)
    value, grads = _linear_ce_reference(h, c, y)
    mine = _leaves(h, c)
    target = torch.as_tensor(y)
    for run in (fused_linear, torch.compile(fused_linear, fullgraph=True)):
        for leaf in mine:
            leaf.grad = None
        out = run(linear_cross_entropy_value_and_grad, *mine, target, ignore_index=-100, chunk_size=4)
        (2 * out).backward()
        assert out.item() == pytest.approx(value, rel=1e-12)
        for leaf, grad in zip(mine, grads, strict=True):
            np.testing.assert_allclose(leaf.grad.numpy(), 2 * grad, rtol=1e-10, atol=1e-13)
    assert jax.config.jax_enable_x64  # conftest turns it on for the whole run: float64 stays float64
    f = jax.jit(jax.value_and_grad(lambda h, c: 2 * lj.fused_linear(
        linear_cross_entropy_value_and_grad, h, c, jnp.asarray(y), ignore_index=-100, chunk_size=4),
        argnums=(0, 1)))
    out, jax_grads = f(jnp.asarray(h), jnp.asarray(c))
    assert float(out) == pytest.approx(2 * value, rel=1e-12)
    for mine_grad, grad in zip(jax_grads, grads, strict=True):
        np.testing.assert_allclose(np.asarray(mine_grad), 2 * grad, rtol=1e-10, atol=1e-13)
    # reduction="none" (found in review): the backward scaled the gradients of the sum by an [N] upstream, a
    # broadcasting error for N != D and a wrong gradient for N == D; refused by name on both
    with pytest.raises(lk.LossInputError, match='^reduction: expected "mean" or "sum"'):
        lj.fused_linear(linear_cross_entropy_value_and_grad, jnp.asarray(h), jnp.asarray(c), jnp.asarray(y),
                        reduction="none")
    with pytest.raises(lk.LossInputError, match='^reduction: expected "mean" or "sum"'):
        fused_linear(linear_cross_entropy_value_and_grad, *mine, target, reduction="none")


def test_the_fused_ops_gradient_outputs_carry_no_gradient():
    """losskit.torch.linear: the custom op's outputs beside the value (the gradients it computed) are
    constants to autograd, marked non-differentiable (they carried the op's graph: a gradient returned
    from them required grad); backward scales only the value's."""
    import torch

    from losskit.losses.linear import linear_cross_entropy_value_and_grad
    from losskit.torch.linear import _linear_value_and_grad, _path, encode_options

    h, c, _, y = _data(10)
    hidden, classifier = _leaves(h.reshape(-1, D), c)
    outputs = _linear_value_and_grad(_path(linear_cross_entropy_value_and_grad), encode_options({}), hidden,
                                     classifier, torch.as_tensor(y.reshape(-1).clip(0)), None, [], "", "", None)
    assert outputs[0].requires_grad and not any(o.requires_grad for o in outputs[1:])
    expected = [o.detach().clone() for o in outputs[1:3]]
    (2 * outputs[0] + outputs[2].sum()).backward()  # the gradient output adds a constant: no gradient of its own
    torch.testing.assert_close(hidden.grad, 2 * expected[0], rtol=0, atol=0)
    torch.testing.assert_close(classifier.grad, 2 * expected[1], rtol=0, atol=0)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_logits_near_the_float32_limit_give_the_limits(library):
    # float32 logits of 3e38 and -3e38 at T = 0.5: z / T overflows, (z - max) / T does not; log p is
    # 0 for the top class and -1.2e39 (-inf in float32) for the other
    h = np.array([[1.0], [1.0]], dtype=np.float32)
    c = np.array([[3e38], [-3e38]], dtype=np.float32)
    y = np.array([0, 1])
    if library == "torch":
        import torch

        h, c, y = torch.as_tensor(h), torch.as_tensor(c), torch.as_tensor(y)
    with np.errstate(over="ignore", invalid="ignore"):
        got = lk.linear_logprobs(h, c, y, temperature=0.5, entropy=True)
    assert float(got.logps[0]) == 0.0 and float(got.logps[1]) == -np.inf and float(got.entropy[0]) == 0.0


@pytest.mark.parametrize("chunk_size,logit_gemms", [(None, B), (2 * T, B), (T, 4 * B)])
def test_a_unit_within_4x_the_default_budget_is_swept_in_one_pass(monkeypatch, chunk_size, logit_gemms):
    """Default budget 5 tokens here (55 logits / V = 11), a pair is 2T = 10 tokens: one chunk per
    pair, one logits gemm each. An explicit chunk_size of T splits each pair: two passes over two
    sub-chunks, 4 logits gemms per pair. The results are the same."""
    import losskit.losses.logprobs as logprobs

    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", 5 * V)
    calls = []
    original = logprobs._Tokens.logits
    monkeypatch.setattr(logprobs._Tokens, "logits", lambda self, h: calls.append(h.shape[0]) or original(self, h))
    h, c, b, y = _data(4)
    xp, hidden, classifier, target, bias = linear_arrays(h, c, y, b, sequences=True)
    sweep = sequence_sweep(xp, hidden, classifier, target, bias=bias, objective=_SquaredMargin(B),
                           chunk_size=chunk_size)
    assert len(calls) == logit_gemms
    reference = sequence_sweep(xp, hidden, classifier, target, bias=bias, objective=_SquaredMargin(B),
                               chunk_size=1000)
    np.testing.assert_allclose(sweep.grads[1], reference.grads[1], rtol=1e-12, atol=1e-14)


def test_the_docs_block_runs_and_says_what_it_claims():
    """docs/post-training.md, "Per-token log-probs, entropy and accuracy": run as written, then each
    commented claim against the materialised float64 logits (torch autograd for the gradients)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "post-training.md").read_text()
    section = text.split("## Per-token log-probs, entropy and accuracy")[1].split("\n## ")[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    ns: dict = {}
    exec(compile(block, "docs/post-training.md (log-probs)", "exec"), ns)
    leaves = _leaves(ns["hidden"], ns["classifier"])
    target = ns["target"]
    logp, entropy, correct = _naive(*leaves, None, target, temperature=1.0)
    np.testing.assert_allclose(ns["out"].logps, logp.detach().numpy(), rtol=1e-12, atol=1e-13)
    assert ns["out"].logps.shape == (2, 6) and not ns["out"].logps[:, :2].any()  # 0 at ignored tokens
    np.testing.assert_allclose(ns["out"].entropy, entropy.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(ns["out"].accuracy, correct.numpy())
    logp.sum().backward()  # "d sum(logps)"
    for mine, leaf in zip(ns["grads"][:2], leaves, strict=True):
        np.testing.assert_allclose(mine, leaf.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert ns["grads"][2] is None  # no bias, no bias gradient


# --- against TRL 1.16's own log-prob units -------------------------------------------------------------
# TRL's non-fused units (trl.trainer.utils.selective_log_softmax and entropy_from_logits, which its
# trainers' reference paths and tests/_trl.py use) on float64 logits with torch autograd, to 1e-12 /
# 1e-10; and its fused kernel (trl.kernels.ChunkedLogProbFunction, what add_fused_lm_head runs), which
# works in float32 whatever the input, to float32's tolerance.

TRL_N, TRL_D, TRL_V = 9, 5, 13


def _trl_layer(seed=41):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(TRL_N, TRL_D))
    classifier = rng.normal(scale=0.8, size=(TRL_V, TRL_D))
    bias = rng.normal(scale=0.5, size=TRL_V)
    target = rng.integers(0, TRL_V, size=TRL_N)
    upstream = rng.normal(size=TRL_N)
    return hidden, classifier, bias, target, upstream


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_entropy_and_vjp_equal_trls_selective_log_softmax(temperature):
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    hidden, classifier, bias, target, upstream = _trl_layer()
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
    logits = leaves[0] @ leaves[1].T + leaves[2]
    logps = selective_log_softmax(logits, torch.tensor(target), temperature=temperature)
    (logps * torch.tensor(upstream)).sum().backward()
    entropy = entropy_from_logits(logits.detach() / temperature)
    out = lk.linear_logprobs(hidden, classifier, target, bias=bias, temperature=temperature, entropy=True,
                             chunk_size=4)
    np.testing.assert_allclose(out.logps, logps.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(out.entropy, entropy.numpy(), rtol=1e-12)
    grads = lk.linear_logprobs_vjp(hidden, classifier, target, upstream, bias=bias, temperature=temperature,
                                   chunk_size=4)
    for what, mine, leaf in zip(("hidden", "classifier", "bias"), grads, leaves, strict=True):
        theirs = leaf.grad.numpy()
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max(), err_msg=what)


def test_logprobs_entropy_accuracy_and_vjp_equal_trls_fused_kernel():
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from trl.kernels import ChunkedLogProbFunction

    hidden, classifier, bias, target, upstream = _trl_layer()
    hidden, classifier, bias = (a.astype(np.float32) for a in (hidden, classifier, bias))
    leaves = [torch.tensor(a, requires_grad=True) for a in (hidden, classifier, bias)]
    logps, entropy, _, _, is_top1 = ChunkedLogProbFunction.apply(
        *leaves, torch.tensor(target), 0.7, 8, None, 1.0, ("entropy", "is_top1"))
    (logps * torch.tensor(upstream, dtype=torch.float32)).sum().backward()
    out = lk.linear_logprobs(hidden, classifier, target, bias=bias, temperature=0.7, entropy=True, accuracy=True)
    np.testing.assert_allclose(out.logps, logps.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.entropy, entropy.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.accuracy, is_top1.numpy())
    assert 0 < out.accuracy.sum() < TRL_N  # the accuracy is tested both ways
    grads = lk.linear_logprobs_vjp(hidden, classifier, target, upstream.astype(np.float32), bias=bias,
                                   temperature=0.7)
    for what, mine, leaf in zip(("hidden", "classifier", "bias"), grads, leaves, strict=True):
        theirs = leaf.grad.numpy()
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max(), err_msg=what)


@pytest.mark.parametrize("n_vocab", [200, 256])
def test_token_ids_of_a_small_integer_dtype_are_read_as_their_values_on_jax(n_vocab):
    """uint8 ids compared with -100 and V in uint8 (found in review): at V = 200 id 156 (-100 wrapped) was
    taken as ignored (log-prob 0), at V = 256 a valid 199 was refused eagerly and NaN under jit. Against
    jax.nn.log_softmax of the logits, gathered."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 8)).astype(np.float32)
    c = rng.normal(size=(n_vocab, 8)).astype(np.float32)
    y = np.array([156, 10, 199], np.uint8)
    want = np.asarray(jax.nn.log_softmax(jnp.asarray(h) @ jnp.asarray(c).T))[np.arange(3), y.astype(int)]
    eager = lj.linear_logprobs(jnp.asarray(h), jnp.asarray(c), jnp.asarray(y))
    jitted = jax.jit(lambda a: lj.linear_logprobs(a, jnp.asarray(c), jnp.asarray(y)))(jnp.asarray(h))
    for got in (eager, jitted, lk.linear_logprobs(h, c, y)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    full = float(jax.jit(lambda a: lk.linear_cross_entropy(a, jnp.asarray(c), jnp.asarray(y)))(jnp.asarray(h)))
    np.testing.assert_allclose(full, -want.mean(), rtol=1e-5)


def test_an_ignored_tokens_nan_hidden_state_reaches_no_gradient_on_jax():
    """losskit.jax's fused forms and jax.grad through lk.linear_cross_entropy on JAX arrays: the ignored token's
    NaN hidden state made every classifier gradient entry NaN (found in review); the gradients equal those
    with that hidden state zeroed (it reaches no output)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    rng = np.random.default_rng(0)
    h = rng.normal(size=(4, 3)).astype(np.float32)
    c = rng.normal(size=(5, 3)).astype(np.float32)
    y = jnp.asarray([0, -100, 2, 3])
    clean = h.copy()
    clean[1] = 0.0
    poisoned = h.copy()
    poisoned[1] = np.nan

    def core(hh, cc):
        return lk.linear_cross_entropy(hh, cc, y, ignore_index=-100)

    def fused(hh, cc):
        return jnp.sum(lj.linear_logprobs(hh, cc, y))

    for f in (core, fused):
        for grad in (jax.grad(f, argnums=(0, 1)), jax.jit(jax.grad(f, argnums=(0, 1)))):
            got = grad(jnp.asarray(poisoned), jnp.asarray(c))
            want = grad(jnp.asarray(clean), jnp.asarray(c))
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_an_infinite_logit_at_the_target_gives_the_limits_not_nan():
    """Finite hidden states whose float32 logits overflow to +inf (or a bias of +inf): the compiled rows flag
    the chunk and the array-API expression took (z - max z) = inf - inf = NaN; now the +inf logits share the
    mass (log p = 0 at the target, -inf elsewhere) as linear_cross_entropy's limit (0) says, on NumPy and JAX."""
    h = np.array([[3e38]], dtype=np.float32)
    w = np.array([[10.0], [1.0], [0.0]], dtype=np.float32)  # logits (inf, 3e38, 0)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(lk.linear_logprobs(h, w, np.array([0])), [0.0])
        np.testing.assert_array_equal(lk.linear_logprobs(h, w, np.array([2])), [-np.inf])
    bias = np.array([np.inf, 0.0, 0.0])
    np.testing.assert_array_equal(lk.linear_logprobs(np.ones((1, 1)), np.ones((3, 1)), np.array([0]), bias=bias), [0.0])
    jax = pytest.importorskip("jax")
    import losskit.jax as lj

    np.testing.assert_array_equal(lj.linear_logprobs(jax.numpy.ones((1, 1)), jax.numpy.ones((3, 1)), np.array([0]),
                                                     bias=jax.numpy.asarray(bias)), [0.0])


def test_temperatures_and_biases_follow_one_rule_across_the_fused_losses():
    """A float32 temperature below 1 / FLT_MAX (2.9e-39) was taken and gave log-probs of +inf (its reciprocal
    overflows): refused, as the JSD refused it. The JSD refused T = 2e19 in float32 for its square, which it
    does not compute (distillation's T^2 does): taken now. A bias in another floating dtype than hidden's was
    cast silently by the log-probs and refused by linear CE, an integer bias the reverse (and the JSD refused
    both, saying 'or an integer array'): one rule, hidden's dtype or an integer array."""
    rng = np.random.default_rng(6)
    h, w, y = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32), np.array([1, 4])
    with pytest.raises(lk.LossInputError, match="^temperature: expected a temperature whose reciprocal fits float32"):
        lk.linear_logprobs(h, w, y, temperature=1e-40)
    value = lk.linear_jsd_loss(h, w, h, 2 * w, y, temperature=2e19)
    assert np.isfinite(value) and value >= 0
    with pytest.raises(lk.LossInputError, match="^temperature: .*square and reciprocal"):
        lk.distillation_loss(np.ones((1, 2), np.float32), np.ones((1, 2), np.float32), temperature=2e19)
    for call in (lambda b: lk.linear_logprobs(h, w, y, bias=b), lambda b: lk.linear_cross_entropy(h, w, y, bias=b),
                 lambda b: lk.linear_jsd_loss(h, w, h, w, y, student_bias=b)):
        with pytest.raises(lk.LossInputError, match="^(student_)?bias: expected dtype float32 .* or an integer array, "
                                                    "got dtype float64"):
            call(np.zeros(5))
        np.testing.assert_array_equal(call(np.arange(5)), call(np.arange(5, dtype=np.float32)))


def test_the_torch_forms_refuse_a_layer_of_another_dtype_a_missing_extra_and_a_temperature_asking_for_grad():
    """Found in review (the torch forms of the fused linear losses): a float32 classifier beside bfloat16 or
    float16 hidden states was taken on the CPU (both widened to float32 before the core's dtype check) and its
    gradient rounded to hidden's dtype (float16: -inf where the float64 one is -1.05e5); a float32 student
    beside a bfloat16 teacher too, where the core refuses both; GRPO without old_logps and JSD without a teacher
    gave Python's raw TypeError; a temperature tensor that requires grad was read as a number, its grad None."""
    import torch

    import losskit.torch as lt

    hidden, classifier, target = torch.randn(4, 3, dtype=torch.bfloat16), torch.randn(5, 3), torch.tensor([0, 1, 2, 3])
    for half in (torch.bfloat16, torch.float16):
        h = hidden.to(half).requires_grad_(True)
        with pytest.raises(lk.LossInputError, match=rf"^classifier: expected dtype {half} \(hidden's\)"):
            lt.linear_cross_entropy(h, classifier.requires_grad_(True), target)
        with pytest.raises(lk.LossInputError, match=rf"^classifier: expected dtype {half}"):
            lt.linear_logprobs(h, classifier, target)
    pairs = torch.randint(0, 5, (2, 3))
    with pytest.raises(lk.LossInputError, match=r"^classifier: expected dtype torch.bfloat16"):
        lt.LinearPreferenceLoss(loss="simpo")(hidden.reshape(2, 2, 3), classifier, pairs[:, :2])
    with pytest.raises(lk.LossInputError, match=r"^teacher_classifier: expected dtype torch.float32"):
        lt.LinearJSDLoss()(torch.randn(4, 3), classifier, torch.randn(4, 3), classifier.bfloat16(), target)
    with pytest.raises(lk.LossInputError, match=r"^teacher_hidden: expected a torch.Tensor, got None"):
        lt.LinearJSDLoss()(torch.randn(4, 3), classifier, None, classifier, target)
    grpo = {"old_logps": torch.zeros(2, 2), "advantages": torch.ones(2)}
    for missing in grpo:
        with pytest.raises(lk.LossInputError, match=rf"^{missing}: expected a torch.Tensor, got None"):
            lt.linear_grpo_loss(torch.randn(2, 2, 3), classifier, pairs[:, :2], **{**grpo, missing: None})
    with pytest.raises(lk.LossInputError, match=r"^temperature: expected a tensor that does not require grad"):
        lt.linear_logprobs(torch.randn(4, 3), classifier, target, temperature=torch.tensor(2.0, requires_grad=True))
    value = lt.linear_logprobs(torch.randn(4, 3, dtype=torch.float64), classifier.double(), target,
                               temperature=torch.tensor(2.0))  # a tensor that does not ask for grad: read
    assert value.shape == (4,)
