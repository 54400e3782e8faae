"""Generalised JSD distillation (GKD, Agarwal et al. 2024; TRL's ``generalized_jsd_loss``): the catalogue's
``JSDivergence`` and the fused ``linear_jsd_loss``.

References, none of them losskit's own: 50-digit mpmath from the paper's definition (the mixture taken
in probability space), hand-derived closed forms (TRL's documented edge-case example), torch's
``F.kl_div`` and scipy's ``rel_entr`` for the two KL endpoints, central finite differences, and for
the fused loss a naive computation that materialises both logits in float64 with the gradient by
torch autograd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit import LossInputError
from losskit.losses import linear_jsd

torch = pytest.importorskip("torch")
F = torch.nn.functional

BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]


def _mp_jsd_row(z, t, beta, temperature):
    """One row's generalised JSD in 50-digit arithmetic, written from eq. (1) of the GKD paper with
    TRL's endpoints: P = teacher, Q = student, M = beta P + (1 - beta) Q."""
    import mpmath

    with mpmath.workdps(50):
        def softmax(row):
            e = [mpmath.exp(mpmath.mpf(float(v)) / mpmath.mpf(temperature)) for v in row]
            total = mpmath.fsum(e)
            return [x / total for x in e]

        p, q = softmax(z), softmax(t)  # student, teacher
        b = mpmath.mpf(beta)

        def kl(a, c):
            return mpmath.fsum(x * mpmath.log(x / y) for x, y in zip(a, c, strict=True) if x != 0)

        if beta == 0.0:
            return kl(q, p)
        if beta == 1.0:
            return kl(p, q)
        m = [b * y + (1 - b) * x for x, y in zip(p, q, strict=True)]
        return b * kl(q, m) + (1 - b) * kl(p, m)


@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.6])
@pytest.mark.parametrize("beta", BETAS)
def test_value_equals_mpmath_from_the_paper(beta, temperature):
    rng = np.random.default_rng(1)
    z, t = rng.normal(scale=2.0, size=(4, 6)), rng.normal(scale=2.0, size=(4, 6))
    expected = [float(_mp_jsd_row(z[i], t[i], beta, temperature)) for i in range(4)]
    loss = lk.JSDivergence(beta=beta, temperature=temperature, reduction="none")
    np.testing.assert_allclose(loss(z, t), expected, rtol=1e-13, atol=1e-16)
    # "mean" is TRL's batchmean: the sum over rows divided by their number
    mean = lk.js_divergence(z, t, beta=beta, temperature=temperature)
    np.testing.assert_allclose(mean, sum(expected) / 4, rtol=1e-13)


@pytest.mark.parametrize("beta", BETAS)
def test_gradient_equals_central_finite_differences(beta):
    rng = np.random.default_rng(2)
    z, t = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    loss = lk.JSDivergence(beta=beta, temperature=1.3, reduction="sum")
    _, grad = loss.value_and_grad(z, t)
    step, fd = 1e-6, np.zeros_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        fd[index] = (float(_mp_jsd_sum(up, t, beta, 1.3)) - float(_mp_jsd_sum(down, t, beta, 1.3))) / (2 * step)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def _mp_jsd_sum(z, t, beta, temperature):
    return sum(_mp_jsd_row(z[i], t[i], beta, temperature) for i in range(z.shape[0]))


def test_trl_documented_edge_cases_by_hand():
    """TRL's tests/test_gkd_trainer.py: student log[0.1, 0.9], teacher log[0.9, 0.1]. Both KLs are
    0.9 ln 9 - 0.1 ln 9 = 0.8 ln 9; at beta = 0.5 the mixture is uniform: 0.9 ln 1.8 + 0.1 ln 0.2."""
    student, teacher = np.log([[0.1, 0.9]]), np.log([[0.9, 0.1]])
    for beta in (0.0, 1.0):
        assert float(lk.js_divergence(student, teacher, beta=beta)) == pytest.approx(0.8 * math.log(9), rel=1e-14)
    half = 0.9 * math.log(1.8) + 0.1 * math.log(0.2)
    assert float(lk.js_divergence(student, teacher, beta=0.5)) == pytest.approx(half, rel=1e-14)
    # TRL's other documented facts: 0 for identical (here uniform) inputs, symmetric at beta = 0.5 only
    assert float(lk.js_divergence(np.ones((1, 5)), np.ones((1, 5)))) == 0.0
    rng = np.random.default_rng(3)
    z, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    np.testing.assert_allclose(lk.js_divergence(z, t, beta=0.5), lk.js_divergence(t, z, beta=0.5), rtol=1e-14)
    assert abs(float(lk.js_divergence(z, t, beta=0.1)) - float(lk.js_divergence(t, z, beta=0.1))) > 1e-3


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_endpoints_are_the_two_kls_of_torch_and_scipy(temperature):
    from scipy.special import rel_entr

    rng = np.random.default_rng(4)
    z, t = rng.normal(scale=2.0, size=(7, 9)), rng.normal(scale=2.0, size=(7, 9))
    log_p = F.log_softmax(torch.from_numpy(z) / temperature, dim=-1)
    log_q = F.log_softmax(torch.from_numpy(t) / temperature, dim=-1)
    # F.kl_div(input, target) is KL(target || input): teacher || student is beta = 0
    forward = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
    assert float(lk.js_divergence(z, t, beta=0.0, temperature=temperature)) == pytest.approx(float(forward),
                                                                                           rel=1e-13)
    p, q = np.exp(log_p.numpy()), np.exp(log_q.numpy())
    reverse = rel_entr(p, q).sum(axis=-1).mean()
    assert float(lk.js_divergence(z, t, beta=1.0, temperature=temperature)) == pytest.approx(reverse, rel=1e-12)


def test_mixture_over_beta_tends_to_the_forward_kl():
    """The paper's limit: JSD(beta) / beta -> KL(teacher || student) as beta -> 0 (and the mixture's
    value itself -> 0, which is why beta = 0 is set apart)."""
    rng = np.random.default_rng(5)
    z, t = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    forward = float(lk.js_divergence(z, t, beta=0.0))
    small = 1e-6
    assert float(lk.js_divergence(z, t, beta=small)) / small == pytest.approx(forward, rel=1e-5)


def test_teacher_probability_zero_costs_nothing():
    """A teacher logit of -inf is a class of probability 0: no cost in KL(q || p) or the mixture
    (m > 0 wherever p > 0); the reverse KL is +inf there, as KL(p || q) with q_k = 0 < p_k is."""
    z = np.array([[0.3, -1.0, 2.0]])
    teacher = np.array([[1.0, -np.inf, 0.5]])
    assert float(lk.js_divergence(z, teacher, beta=1.0)) == np.inf
    for beta in BETAS[:-1]:
        value, grad = lk.JSDivergence(beta=beta).value_and_grad(z, teacher)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert float(value) == pytest.approx(float(_mp_jsd_row(z[0], teacher[0], beta, 1.0)), rel=1e-13)
        if beta == 0.0:  # KL(q || p) with q_1 = 0: the two other classes only
            q = np.exp(teacher[0] - np.logaddexp(1.0, 0.5))
            lp = z[0] - np.log(np.exp(z[0]).sum())
            assert float(value) == pytest.approx(q[0] * (np.log(q[0]) - lp[0]) + q[2] * (np.log(q[2]) - lp[2]))


def test_weight_is_trls_labels_mask():
    """TRL's labels != -100 mask divides by the kept tokens: our weight 0/1 with "mean"."""
    rng = np.random.default_rng(6)
    z, t = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    labels = np.array([[1, -100, 2], [-100, 0, 4]])
    keep = (labels != -100).astype(float)
    rows = [float(_mp_jsd_row(z[i, j], t[i, j], 0.5, 1.0)) for i in range(2) for j in range(3) if keep[i, j]]
    assert float(lk.js_divergence(z, t, weight=keep)) == pytest.approx(sum(rows) / len(rows), rel=1e-13)


# -- the fused loss -------------------------------------------------------------------------------------

N, D, D_TEACHER, V = 13, 6, 4, 11


def _layers(seed, dtype=np.float64, batch=None):
    rng = np.random.default_rng(seed)
    lead = (N,) if batch is None else batch
    arrays = {
        "student_hidden": rng.normal(size=(*lead, D)),
        "student_classifier": rng.normal(size=(V, D)),
        "teacher_hidden": rng.normal(size=(*lead, D_TEACHER)),
        "teacher_classifier": rng.normal(scale=1.5, size=(V, D_TEACHER)),
        "student_bias": rng.normal(size=V),
        "teacher_bias": rng.normal(size=V),
    }
    target = rng.integers(0, V, size=lead)
    target.reshape(-1)[[1, 4, 5]] = -100
    return {k: v.astype(dtype) for k, v in arrays.items()}, target


def _naive(arrays, target, beta, temperature, ignore_index=-100, biases=True):
    """Both logits materialised in float64, log_softmax, the formula; gradients by torch autograd."""
    t64 = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=k.startswith("student"))
           for k, v in arrays.items()}
    h, c = t64["student_hidden"], t64["student_classifier"]
    z = h.reshape(-1, h.shape[-1]) @ c.T
    u = t64["teacher_hidden"].reshape(-1, t64["teacher_hidden"].shape[-1]) @ t64["teacher_classifier"].T
    if biases:
        z, u = z + t64["student_bias"], u + t64["teacher_bias"]
    s, t = F.log_softmax(z / temperature, dim=-1), F.log_softmax(u / temperature, dim=-1)
    p, q = s.exp(), t.exp()
    if beta == 0.0:
        per_row = (q * (t - s)).sum(-1)
    elif beta == 1.0:
        per_row = (p * (s - t)).sum(-1)
    else:
        m = torch.log(beta * q + (1 - beta) * p)
        per_row = beta * (q * (t - m)).sum(-1) + (1 - beta) * (p * (s - m)).sum(-1)
    keep = torch.ones(per_row.shape[0], dtype=torch.float64) if target is None else \
        torch.from_numpy((target.reshape(-1) != ignore_index).astype(np.float64))
    value = (per_row * keep).sum() / keep.sum().clamp(min=1)
    value.backward()
    grads = (h.grad.numpy(), c.grad.numpy(), t64["student_bias"].grad.numpy() if biases else None)
    return value.item(), grads


def _fused(arrays, target, biases=True, **options):
    args = {k: v for k, v in arrays.items() if biases or not k.endswith("bias")}
    return lk.linear_jsd_loss_value_and_grad(args.pop("student_hidden"), args.pop("student_classifier"),
                                             args.pop("teacher_hidden"), args.pop("teacher_classifier"), target,
                                             **args, **options)


def _assert_close(result, reference, tol):
    value, grads = result
    ref_value, ref_grads = reference
    assert float(value) == pytest.approx(ref_value, rel=tol)
    for grad, ref in zip(grads, ref_grads, strict=True):
        if ref is None:
            assert grad is None
            continue
        grad = np.asarray(grad.detach() if hasattr(grad, "detach") else grad, dtype=np.float64)
        assert grad.shape == ref.shape
        np.testing.assert_allclose(grad, ref, rtol=tol, atol=tol * np.max(np.abs(ref)))


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 13])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_fused_equals_the_naive_computation(beta, chunk_size, dtype, tol):
    arrays, target = _layers(7, dtype)
    result = _fused(arrays, target, beta=beta, temperature=1.7, chunk_size=chunk_size)
    assert result[0].dtype == dtype and all(g.dtype == dtype for g in result[1])
    _assert_close(result, _naive(arrays, target, beta, 1.7), tol)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_fused_array_api_path_equals_the_naive_computation(beta, monkeypatch):
    """The reference sweep (non-NumPy arrays, flagged rows): forced on NumPy, and on torch tensors."""
    arrays, target = _layers(8)
    reference = _naive(arrays, target, beta, 0.8)
    monkeypatch.setattr(linear_jsd, "_host", lambda *args: None)
    _assert_close(_fused(arrays, target, beta=beta, temperature=0.8, chunk_size=5), reference, 1e-10)
    monkeypatch.undo()
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    result = _fused(tensors, torch.from_numpy(target), beta=beta, temperature=0.8, chunk_size=5)
    assert isinstance(result[0], torch.Tensor) and isinstance(result[1][0], torch.Tensor)
    _assert_close(result, reference, 1e-10)


def test_fused_on_numpy_runs_the_compiled_kernel(monkeypatch):
    from losskit.losses import distribution

    def refuse(*args, **kwargs):
        raise AssertionError("the array-API reference ran")

    monkeypatch.setattr(linear_jsd, "generalized_jsd_terms", refuse)
    arrays, target = _layers(9)
    _assert_close(_fused(arrays, target, beta=0.3), _naive(arrays, target, 0.3, 1.0), 1e-10)
    assert distribution.generalized_jsd_terms is not refuse


def test_fused_without_biases_or_target_and_with_three_dim_hidden():
    arrays, target = _layers(10, batch=(3, 5))
    result = _fused(arrays, None, biases=False, beta=0.5, chunk_size=4)
    assert result[1][0].shape == (3, 5, D) and result[1][2] is None
    _assert_close(result, _naive(arrays, None, 0.5, 1.0, biases=False), 1e-10)
    result = _fused(arrays, target, beta=0.2, temperature=3.0, chunk_size=2)
    _assert_close(result, _naive(arrays, target, 0.2, 3.0), 1e-10)


def test_fused_ignore_index_is_an_option():
    arrays, target = _layers(11)
    target = np.where(target == -100, 7, target)
    target[[0, 3]] = -1
    _assert_close(_fused(arrays, target, beta=0.5, ignore_index=-1), _naive(arrays, target, 0.5, 1.0, -1), 1e-10)


def test_fused_equals_the_catalogue_loss_on_the_materialised_logits():
    arrays, target = _layers(12)
    z = arrays["student_hidden"] @ arrays["student_classifier"].T + arrays["student_bias"]
    u = arrays["teacher_hidden"] @ arrays["teacher_classifier"].T + arrays["teacher_bias"]
    keep = (target != -100).astype(float)
    expected = lk.js_divergence(z, u, weight=keep, beta=0.4, temperature=2.0)
    assert float(_fused(arrays, target, beta=0.4, temperature=2.0)[0]) == pytest.approx(float(expected), rel=1e-12)


def test_fused_ignored_rows_never_reach_the_gemms_on_numpy():
    """docs/post-training.md: on NumPy an ignored row's student and teacher hidden states are never
    read: NaN there gives the naive computation's result on the clean arrays."""
    arrays, target = _layers(14)
    reference = _naive(arrays, target, 0.5, 1.3)
    ignored = target.reshape(-1) == -100
    for name in ("student_hidden", "teacher_hidden"):
        arrays[name] = arrays[name].copy()
        arrays[name][ignored] = np.nan
    result = _fused(arrays, target, beta=0.5, temperature=1.3, chunk_size=2)
    _assert_close(result, reference, 1e-10)
    assert not result[1][0][ignored].any()


def test_fused_every_row_ignored_gives_zero():
    arrays, _ = _layers(13)
    value, grads = _fused(arrays, np.full(N, -100), beta=0.5)
    assert float(value) == 0.0 and all(np.all(g == 0) for g in grads)


def test_fused_infinite_teacher_logit_takes_the_exact_limit():
    """A teacher bias of -inf rules a class out (q = 0): the kernel flags the row, the reference sweep
    gives the value without that class, finite."""
    arrays, target = _layers(14)
    arrays["teacher_bias"][2] = -np.inf
    value, grads = _fused(arrays, target, beta=0.5)
    z = arrays["student_hidden"] @ arrays["student_classifier"].T + arrays["student_bias"]
    u = arrays["teacher_hidden"] @ arrays["teacher_classifier"].T + arrays["teacher_bias"]
    kept = target != -100
    expected = np.mean([float(_mp_jsd_row(z[i], u[i], 0.5, 1.0)) for i in np.flatnonzero(kept)])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_fused_never_writes_its_inputs():
    arrays, target = _layers(15)
    for array in arrays.values():
        array.flags.writeable = False
    _fused(arrays, target, beta=0.5, chunk_size=3)


# -- bad input ------------------------------------------------------------------------------------------

def _raises(argument):
    return pytest.raises(LossInputError, match=f"^{argument}:")


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan"), "0.5"])
def test_beta_outside_zero_one_is_refused(beta):
    with _raises("beta"):
        lk.JSDivergence(beta=beta)
    arrays, target = _layers(16)
    with _raises("beta"):
        _fused(arrays, target, beta=beta)


def test_bad_temperature_and_chunk_size():
    arrays, target = _layers(17)
    with _raises("temperature"):
        _fused(arrays, target, temperature=0.0)
    with _raises("temperature"):
        lk.js_divergence(np.zeros((1, 2)), np.zeros((1, 2)), temperature=-1.0)
    with _raises("chunk_size"):
        _fused(arrays, target, chunk_size=0)


@pytest.mark.parametrize(("argument", "change"), [
    ("teacher_hidden", lambda a: a.update(teacher_hidden=a["teacher_hidden"][:-1])),
    ("teacher_hidden", lambda a: a.update(teacher_hidden=a["teacher_hidden"].astype(np.float32))),
    ("teacher_classifier", lambda a: a.update(teacher_classifier=a["teacher_classifier"][:-1])),
    ("teacher_classifier", lambda a: a.update(teacher_classifier=a["teacher_classifier"][:, :-1])),
    ("student_classifier", lambda a: a.update(student_classifier=a["student_classifier"][:, :-1])),
    ("student_classifier", lambda a: a.update(student_classifier=a["student_classifier"].astype(np.float32))),
    ("student_bias", lambda a: a.update(student_bias=a["student_bias"][:-1])),
    ("teacher_bias", lambda a: a.update(teacher_bias=a["teacher_bias"].astype(np.float32))),
    ("student_hidden", lambda a: a.update(student_hidden=a["student_hidden"][0])),
    ("student_hidden", lambda a: a.update(student_hidden=a["student_hidden"].astype(np.int64))),
])
def test_shapes_and_dtypes_that_disagree_name_the_argument(argument, change):
    arrays, target = _layers(18)
    change(arrays)
    with _raises(argument):
        _fused(arrays, target)


def test_bad_targets_name_the_target():
    arrays, target = _layers(19)
    with _raises("target"):
        _fused(arrays, target[:-1])
    with _raises("target"):
        _fused(arrays, target.astype(np.float64))
    with _raises("target"):
        lk.js_divergence(np.zeros((2, 3)), np.zeros((2, 4)))
    with _raises("target"):
        lk.js_divergence(np.zeros((2, 3)), np.array([0, 1]))
    # token ids outside the vocabulary (only the ignore mask is read: they were taken as kept rows)
    vocab = arrays["student_classifier"].shape[0]
    for bad in (vocab, -1):
        wrong = target.copy()
        wrong[3] = bad
        with pytest.raises(LossInputError, match=rf"^target: expected class indices in \[0, {vocab}\) or "
                                                 rf"ignore_index=-100, got label {bad}"):
            _fused(arrays, wrong)


def test_fused_identical_student_and_teacher_give_zero():
    arrays, target = _layers(20)
    arrays["teacher_hidden"], arrays["teacher_classifier"] = arrays["student_hidden"], arrays["student_classifier"]
    arrays["teacher_bias"] = arrays["student_bias"]
    for beta in BETAS:
        value, grads = _fused(arrays, target, beta=beta, chunk_size=5)
        assert abs(float(value)) < 1e-15 and all(np.max(np.abs(g)) < 1e-15 for g in grads)


def test_fused_on_jax_arrays_equals_the_naive_computation():
    jnp = pytest.importorskip("jax.numpy")
    arrays, target = _layers(21, np.float32)
    result = _fused({k: jnp.asarray(v) for k, v in arrays.items()}, jnp.asarray(target), beta=0.3, chunk_size=4)
    value, grads = result
    assert type(value).__module__.startswith("jax")
    _assert_close((np.asarray(value), tuple(np.asarray(g) for g in grads)), _naive(arrays, target, 0.3, 1.0), 1e-5)


# -- torch and JAX forms --------------------------------------------------------------------------------

def _torch_layers(seed, dtype=np.float64):
    arrays, target = _layers(seed, dtype, batch=(3, 4))
    tensors = {k: torch.tensor(v, requires_grad=k.startswith("student")) for k, v in arrays.items()}
    return arrays, target, tensors


def _module_call(module, tensors, target):
    return module(tensors["student_hidden"], tensors["student_classifier"], tensors["teacher_hidden"],
                  tensors["teacher_classifier"], target, tensors["student_bias"], tensors["teacher_bias"])


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("beta", [0.0, 0.6, 1.0])
def test_torch_module_gradients_equal_the_naive_computation(beta, dtype, tol):
    import losskit.torch as lt

    arrays, target, tensors = _torch_layers(30, dtype)
    tensors["teacher_hidden"].requires_grad_(True)  # a teacher in a graph: GKD still gives it nothing
    value = _module_call(lt.LinearJSDLoss(beta=beta, temperature=1.3, chunk_size=5), tensors,
                         torch.from_numpy(target))
    (2.0 * value).backward()
    assert value.dtype == tensors["student_hidden"].dtype and value.shape == ()
    assert tensors["teacher_hidden"].grad is None
    ref_value, ref_grads = _naive(arrays, target, beta, 1.3)
    grads = tuple(tensors[k].grad / 2.0 for k in ("student_hidden", "student_classifier", "student_bias"))
    _assert_close((value.detach(), grads), (ref_value, ref_grads), tol)


def test_torch_module_under_torch_compile_fullgraph_and_on_meta():
    import losskit.torch as lt

    arrays, target, tensors = _torch_layers(31)
    module = lt.LinearJSDLoss(beta=0.4, chunk_size=3)
    eager = _module_call(module, tensors, None)
    compiled = _module_call(torch.compile(module, fullgraph=True), tensors, None)
    assert float(compiled.detach()) == float(eager.detach()) == pytest.approx(_naive(arrays, None, 0.4, 1.0)[0], rel=1e-10)
    meta = {k: v.detach().to("meta").requires_grad_(k.startswith("student")) for k, v in tensors.items()}
    value = _module_call(module, meta, torch.from_numpy(target).to("meta"))
    value.backward()
    assert value.device.type == "meta" and meta["student_classifier"].grad.shape == (V, D)


def test_torch_module_checks_its_options():
    import losskit.torch as lt

    with _raises("beta"):
        lt.LinearJSDLoss(beta=2.0)
    with _raises("temperature"):
        lt.LinearJSDLoss(temperature=0.0)
    with _raises("chunk_size"):
        lt.LinearJSDLoss(chunk_size=-1)


def test_jax_function_under_jit_grad_equals_numpy():
    jax = pytest.importorskip("jax")
    lj = pytest.importorskip("losskit.jax")
    jnp = jax.numpy

    arrays, target = _layers(32, np.float32, batch=(2, 5))
    j = {k: jnp.asarray(v) for k, v in arrays.items()}

    def loss(hidden, classifier, bias):
        return 3.0 * lj.linear_jsd_loss(hidden, classifier, j["teacher_hidden"], j["teacher_classifier"],
                                        jnp.asarray(target), beta=0.7, temperature=2.0, student_bias=bias,
                                        teacher_bias=j["teacher_bias"], chunk_size=4)

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
        j["student_hidden"], j["student_classifier"], j["student_bias"])
    ref_value, ref_grads = _fused(arrays, target, beta=0.7, temperature=2.0, chunk_size=4)
    assert float(value) == pytest.approx(3.0 * float(ref_value), rel=1e-5)
    for grad, ref in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(np.asarray(grad), 3.0 * ref, rtol=1e-5, atol=1e-5 * np.max(np.abs(ref)))
    # without a target (every row counts), as its signature allows: it raised jnp.asarray(None)'s error
    value, grads = jax.value_and_grad(lambda h: lj.linear_jsd_loss(h, j["student_classifier"], j["teacher_hidden"],
                                                                   j["teacher_classifier"], beta=0.7))(j["student_hidden"])
    ref_value, ref_grads = _fused(arrays, None, biases=False, beta=0.7)
    assert float(value) == pytest.approx(float(ref_value), rel=1e-5)
    np.testing.assert_allclose(np.asarray(grads), ref_grads[0], rtol=1e-5, atol=1e-5 * np.max(np.abs(ref_grads[0])))


def test_docs_post_training_example_runs_and_equals_the_naive_computation():
    """docs/post-training.md, "Distillation (generalised JSD)": its example, run as written."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[1] / "docs" / "post-training.md").read_text()
    section = text[text.index("## Distillation (generalised JSD)"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(block, "docs/post-training.md (distillation)", "exec"), namespace)
    arrays = {k: namespace[k] for k in ("student_hidden", "student_classifier", "teacher_hidden",
                                        "teacher_classifier")}
    zero_bias = {"student_bias": np.zeros(50), "teacher_bias": np.zeros(50)}
    ref_value, ref_grads = _naive({**arrays, **zero_bias}, namespace["target"], 0.5, 1.0)
    _assert_close((namespace["value"], (namespace["d_hidden"], namespace["d_classifier"])),
                  (ref_value, ref_grads[:2]), 1e-10)
    assert namespace["d_bias"] is None


def test_benchmark_smoke_run_checks_and_prints_every_implementation():
    import subprocess
    import sys

    root = __import__("pathlib").Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-m", "benchmarks.posttraining", "--smoke", "--case",
                          "generalised JSD distillation (beta 0.5; teacher of the same size), fwd + bwd"], cwd=root,
                         capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(root / "src")})
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "seconds" not in line
            and "---" not in line]
    assert [row.split(" | ")[0][2:] for row in rows] == ["torch naive", "losskit linear_jsd_loss_value_and_grad",
                                                       "losskit.torch LinearJSDLoss"] * 2  # the case, the report


def test_a_teacher_logits_target_is_declared_so_gbdt_and_the_demo_refuse_it():
    """JSDivergence, like DistillationLoss, declares target = "logits": GBDT labels and the demo's data
    sets cannot supply a teacher, and both read that from the class (no list of names)."""
    from losskit import _gbdt
    from losskit.demo.train import demo_losses

    assert lk.JSDivergence.target == lk.DistillationLoss.target == "logits"
    assert lk.heads.TASK_LOSSES["multiclass"]["jsd"] is lk.JSDivergence
    assert "jsd" not in demo_losses("multiclass") and "distillation" not in demo_losses("multiclass")
    assert "kl" in demo_losses("multiclass")
    with pytest.raises(lk.LossInputError, match="^loss: expected a loss whose target is a GBDT label, got "
                                                "js_divergence, whose target is a teacher's logits"):
        _gbdt.resolve(lk.JSDivergence())


# -- against TRL 1.16's own GKDTrainer.generalized_jsd_loss ---------------------------------------------
# TRL's static method on the logits hidden @ W.T + b (student) and the teacher's, in float64, its
# gradient by torch autograd; losskit's fused and catalogue forms on the same inputs agree to 1e-10.

TRL_B, TRL_T = 3, 4


@pytest.fixture(scope="module")
def trl_jsd():
    pytest.importorskip("trl")
    import _trl

    return _trl.GKDTrainer.generalized_jsd_loss


def _trl_distillation_batch(seed=31):
    rng = np.random.default_rng(seed)
    arrays = {
        "student_hidden": rng.normal(size=(TRL_B, TRL_T, D)),
        "student_classifier": rng.normal(size=(V, D)),
        "teacher_hidden": rng.normal(size=(TRL_B, TRL_T, D_TEACHER)),
        "teacher_classifier": rng.normal(size=(V, D_TEACHER)),
        "student_bias": rng.normal(scale=0.5, size=V),
        "teacher_bias": rng.normal(scale=0.5, size=V),
    }
    target = rng.integers(0, V, size=(TRL_B, TRL_T))
    target[0, :2] = -100
    target[2, -1] = -100
    return arrays, target


def _trl_value_and_grads(trl_jsd, arrays, labels, beta, temperature):
    """TRL's loss and its autograd gradients in the student's hidden states, classifier and bias."""
    student = [torch.tensor(arrays[k], requires_grad=True)
               for k in ("student_hidden", "student_classifier", "student_bias")]
    student_logits = student[0] @ student[1].T + student[2]
    teacher_logits = torch.tensor(arrays["teacher_hidden"] @ arrays["teacher_classifier"].T + arrays["teacher_bias"])
    loss = trl_jsd(student_logits, teacher_logits, labels=None if labels is None else torch.tensor(labels),
                   beta=beta, temperature=temperature)
    loss.backward()
    return loss.item(), [leaf.grad.numpy() for leaf in student]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 0.1])
def test_fused_equals_trls_generalized_jsd_loss(trl_jsd, beta, temperature):
    arrays, target = _trl_distillation_batch()
    trl_value, trl_grads = _trl_value_and_grads(trl_jsd, arrays, target, beta, temperature)
    value, grads = lk.linear_jsd_loss_value_and_grad(**arrays, target=target, beta=beta, temperature=temperature,
                                                     chunk_size=5)
    np.testing.assert_allclose(value, trl_value, rtol=1e-10)
    for what, mine, theirs in zip(("hidden", "classifier", "bias"), grads, trl_grads, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-10 * np.abs(theirs).max(), err_msg=what)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_catalogue_form_equals_trls_generalized_jsd_loss(trl_jsd, beta):
    """``lk.JSDivergence`` on materialised logits, TRL's labels mask as the 0/1 weight with "mean"."""
    rng = np.random.default_rng(32)
    z, u = rng.normal(scale=2.0, size=(TRL_B, TRL_T, V)), rng.normal(scale=2.0, size=(TRL_B, TRL_T, V))
    labels = np.where(rng.random((TRL_B, TRL_T)) < 0.3, -100, 1)
    student = torch.tensor(z, requires_grad=True)
    expected = trl_jsd(student, torch.tensor(u), labels=torch.tensor(labels), beta=beta, temperature=0.7)
    expected.backward()
    value, grad = lk.JSDivergence(beta=beta, temperature=0.7).value_and_grad(z, u, weight=(labels != -100) * 1.0)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-10)
    np.testing.assert_allclose(grad, student.grad.numpy(), rtol=1e-10, atol=1e-10 * np.abs(grad).max())


def test_without_labels_trl_divides_by_the_batch_size_and_we_by_the_tokens(trl_jsd):
    """TRL 1.16 called without labels divides the sum by ``jsd.size(0)``, the B of ``[B, T, V]`` logits;
    losskit divides by the B * T tokens (docs/post-training.md): TRL's number is T times ours."""
    arrays, _ = _trl_distillation_batch()
    trl_value, trl_grads = _trl_value_and_grads(trl_jsd, arrays, None, 0.5, 1.0)
    value, grads = lk.linear_jsd_loss_value_and_grad(**arrays, beta=0.5)
    np.testing.assert_allclose(TRL_T * value, trl_value, rtol=1e-10)
    np.testing.assert_allclose(TRL_T * grads[0], trl_grads[0], rtol=1e-10, atol=1e-10 * np.abs(trl_grads[0]).max())


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_fused_equals_trls_distillation_trainer_kernel(beta):
    """``trl.trainer.distillation_trainer._chunked_divergence_loss``, TRL's own fused JSD (hidden states and
    lm_head weights in, the N x V logits never held; DistillationTrainer's loss). Its CPU tiles work in
    float32 whatever the input (``kernels/chunked_divergence.py``), so the tolerance is float32's, against
    our float64 value and gradients."""
    pytest.importorskip("trl")
    from trl.trainer.distillation_trainer import _chunked_divergence_loss

    arrays, target = _trl_distillation_batch()
    student = [torch.tensor(arrays[k], requires_grad=True)
               for k in ("student_hidden", "student_classifier", "student_bias")]
    teacher = [torch.tensor(arrays[k]) for k in ("teacher_hidden", "teacher_classifier", "teacher_bias")]
    loss, _, count = _chunked_divergence_loss(
        student[0], teacher[0], student[1], teacher[1], torch.tensor(target != -100), beta,
        student_lm_head_bias=student[2], teacher_lm_head_bias=teacher[2], temperature=0.7)
    loss.backward()
    value, grads = lk.linear_jsd_loss_value_and_grad(**arrays, target=target, beta=beta, temperature=0.7)
    assert int(count) == np.sum(target != -100)
    np.testing.assert_allclose(value, loss.item(), rtol=2e-6)
    for what, mine, leaf in zip(("hidden", "classifier", "bias"), grads, student, strict=True):
        theirs = leaf.grad.numpy()
        np.testing.assert_allclose(mine, theirs, rtol=2e-5, atol=2e-6 * np.abs(theirs).max(), err_msg=what)


@pytest.mark.parametrize("teacher_dtype", [np.float32, np.float64])
def test_the_compiled_kernel_leaves_the_callers_teacher_alone_across_calls(teacher_dtype):
    """The kernel writes a copy of the teacher, now in recycled memory (a fresh copy a call paid its page faults:
    BENCHMARKS.md): the caller's teacher is unchanged, a second call (which reuses the memory) gives the same
    bits, and the value equals the reference's; a float64 teacher of float32 logits is read as float32."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(64, 300)).astype(np.float32)
    teacher = rng.normal(size=(64, 300)).astype(teacher_dtype)
    kept = teacher.copy()
    loss = lk.JSDivergence(beta=0.3)
    first = loss.value_and_grad(z, teacher)
    second = loss.value_and_grad(z, teacher)
    np.testing.assert_array_equal(teacher, kept)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    reference = loss.replace(impl="xp").value_and_grad(z, teacher.astype(np.float32))
    np.testing.assert_allclose(first[0], reference[0], rtol=1e-5)
    np.testing.assert_allclose(first[1], reference[1], rtol=1e-4, atol=1e-9)
