"""The README's Python examples run as written, and say what they claim.

Each block runs as written; then the check of the same index asserts what the block's comments
say, against a reference that is not losskit's own output (a hand-written formula, torch, optax).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _per_task(block):
    """One example per task: the comments' gradients and predictions, by hand. The block's sections
    (split at blank lines) run one by one, each checked before the next reuses its names."""
    sections = block.strip().split("\n\n")
    assert [section.splitlines()[0].split(":")[0] for section in sections[1:]] == \
        ["# binary", "# multi-class", "# multi-label", "# regression"]
    # the comments this test checks, word for word: editing one means editing its check here
    for section, comment in ((1, "# grad = (sigmoid(z) - y) / 3"), (2, "# (softmax(z) - y') / 2"),
                             (3, "BCE summed over the labels, mean over examples"),
                             (4, "# grad = 2 (yhat - y) / y.size")):
        assert comment in sections[section], comment
    ns: dict = {}
    exec(sections[0], ns)

    def run(section):
        exec(sections[section], ns)
        return ns.get("z"), ns["y"], ns["loss"], ns["grad"]

    z, y, loss, grad = run(1)  # "grad = (sigmoid(z) - y) / 3"
    s = _sigmoid(z)
    np.testing.assert_allclose(grad, (s - y) / 3, rtol=1e-12)
    np.testing.assert_allclose(loss, np.mean(-(y * np.log(s) + (1 - y) * np.log(1 - s))), rtol=1e-12)
    np.testing.assert_array_equal(ns["pred"], z > 0)
    z, y, loss, grad = run(2)  # "(softmax(z) - y') / 2", y' = 0.9 one_hot(y) + 0.1 / 3
    smoothed = 0.9 * np.eye(3)[y] + 0.1 / 3
    np.testing.assert_allclose(grad, (_softmax(z) - smoothed) / 2, rtol=1e-12)
    np.testing.assert_allclose(loss, np.mean(-np.sum(smoothed * np.log(_softmax(z)), -1)), rtol=1e-12)
    np.testing.assert_array_equal(ns["pred"], [0, 1])
    # "BCE summed over the labels, mean over examples", pos_weight on the positive term
    z, y, loss, grad = run(3)
    pw, s = np.array([1.0, 3.0, 1.0]), _sigmoid(z)
    np.testing.assert_allclose(loss, np.sum(-(pw * y * np.log(s) + (1 - y) * np.log(1 - s))) / len(z), rtol=1e-12)
    np.testing.assert_allclose(grad, ((1 - y) * s - pw * y * (1 - s)) / len(z), rtol=1e-12)
    np.testing.assert_array_equal(ns["pred"], z > 0)
    run(4)  # "grad = 2 (yhat - y) / y.size"
    yhat, y = ns["yhat"], ns["y"]
    np.testing.assert_allclose(ns["grad"], 2 * (yhat - y) / y.size, rtol=1e-15)
    np.testing.assert_allclose(ns["loss"], np.mean((yhat - y) ** 2), rtol=1e-15)


def _torch_arrays(ns):
    """"torch tensors": the same value and gradient as torch's own cross-entropy."""
    import torch

    value, grad, logits, labels = ns["value"], ns["grad"], ns["logits"], ns["labels"]
    assert isinstance(value, torch.Tensor) and isinstance(grad, torch.Tensor) and grad.dtype == torch.float64
    x = logits.clone().requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(x, labels, ignore_index=-100)
    expected.backward()
    torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, x.grad, rtol=1e-10, atol=1e-15)


def _heads(ns):
    import losskit as lk

    for comment in ("# MulticlassHead with 3 units", "# array([1, 2, 0, 2])", "# grad = (softmax(z) - one_hot(y)) / 4",
                    "# argmax, back to the labels"):
        assert comment in BLOCKS[3], comment

    head, logits = ns["head"], ns["logits"]
    assert isinstance(head, lk.MulticlassHead) and head.units == 3  # "MulticlassHead with 3 units"
    assert head.reason
    np.testing.assert_array_equal(ns["target"], [1, 2, 0, 2])  # "array([1, 2, 0, 2])"
    np.testing.assert_allclose(ns["grad"], (_softmax(logits) - np.eye(3)[ns["target"]]) / 4, rtol=1e-12)
    np.testing.assert_allclose(ns["loss"], np.log(3), rtol=1e-12)
    # "argmax, back to the labels": every row ties at 0, so the first class, "bird"
    np.testing.assert_array_equal(ns["labels"], ["bird"] * 4)


def _own_loss(ns):
    """"Your own loss": the head takes it by name, with its formula's value, and a compiled kernel."""
    import losskit as lk

    assert "# or loss=ExpMarginLoss(); compiled kernel included" in BLOCKS[2]
    head, cls = ns["head"], ns["ExpMarginLoss"]
    assert isinstance(head.loss_object, cls) and cls.kernel_name() == "formula"
    z, y = np.array([[0.5], [-1.0], [2.0]]), np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(float(head.loss(z, y)), np.mean(np.exp(-(2 * y - 1) * z[:, 0])), rtol=1e-14)
    fused = cls(impl="fused").value_and_grad(z[:, 0], y)[1]
    np.testing.assert_allclose(fused, -(2 * y - 1) * np.exp(-(2 * y - 1) * z[:, 0]) / 3, rtol=1e-14)
    lk.losses.registry.REGISTRY.pop("exp_margin_loss", None)  # the README's class, defined here only
    import own_losses

    lk.losses.registry.register(own_losses.ExpMarginLoss)


def _calibrate(ns):
    """"the minimiser of the NLL of logits / T": against an independent bounded 1-D minimisation."""
    from scipy.optimize import minimize_scalar

    logits, labels, cal = ns["logits"], ns["labels"], ns["cal"]

    def nll(t):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(labels)), labels]))

    best = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded", options={"xatol": 1e-12}).x
    np.testing.assert_allclose(cal.params["temperature"], best, rtol=1e-7)
    assert ns["calibrated"].dtype == np.float32  # "float32 in, float32 out"
    np.testing.assert_allclose(ns["calibrated"], logits.astype(np.float32) / cal.params["temperature"], rtol=1e-6)
    assert ns["restored"].params == cal.params


def _torch_module(ns):
    """The drop-in nn.CrossEntropyLoss: the same loss and parameter gradient as torch's."""
    import torch

    model, x, y = ns["model"], ns["x"], ns["y"]
    weight = model.weight.detach().clone().requires_grad_(True)
    bias = model.bias.detach().clone().requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, label_smoothing=0.1, ignore_index=-100)
    expected.backward()
    torch.testing.assert_close(ns["loss"].detach(), expected.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model.weight.grad, weight.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model.bias.grad, bias.grad, rtol=1e-5, atol=1e-7)


def _jax(ns):
    """jit(grad) of the custom_vjp loss equals jax.grad through optax with the same smoothing."""
    import jax
    import jax.numpy as jnp
    optax = pytest.importorskip("optax")

    x, y, w = ns["x"], ns["y"], ns["w"]
    smoothed = optax.smooth_labels(jax.nn.one_hot(y, 5), 0.1)
    expected = jax.grad(lambda w: jnp.mean(optax.softmax_cross_entropy(x @ w, smoothed)))(w)
    np.testing.assert_allclose(ns["grad"], expected, rtol=1e-6, atol=1e-9)


def _dask(ns):
    """score returns the weighted mean with its numerator and denominator, by hand in NumPy."""
    mean, total, weight = ns["mean"], ns["total"], ns["weight"]
    z, y = np.asarray(ns["logits"].compute()), np.asarray(ns["labels"].compute())
    m = z.max(-1)
    per_example = m + np.log(np.exp(z - m[:, None]).sum(-1)) - z[np.arange(len(y)), y]
    assert float(weight) == len(y)
    np.testing.assert_allclose(float(total), per_example.sum(), rtol=1e-10)
    np.testing.assert_allclose(float(mean), per_example.mean(), rtol=1e-10)
    assert float(mean) == pytest.approx(float(total) / float(weight), rel=1e-15)


def _linear(ns):
    """The linear loss (z_loss, smoothing) by hand in float64; "in place": the gradient is the logits'
    own memory."""
    hidden, classifier, labels = (ns[k].astype(np.float64) if k != "labels" else ns[k]
                                  for k in ("hidden", "classifier", "labels"))
    logits = hidden @ classifier.T
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    smoothed = 0.9 * np.eye(classifier.shape[0])[labels] + 0.1 / classifier.shape[0]
    per_example = lse - (smoothed * logits).sum(-1) + 1e-4 * lse ** 2
    np.testing.assert_allclose(ns["loss"], per_example.mean(), rtol=1e-5)
    d_logits = (_softmax(logits) * (1 + 2e-4 * lse[:, None]) - smoothed) / len(labels)
    np.testing.assert_allclose(ns["d_hidden"], d_logits @ classifier, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(ns["d_classifier"], d_logits.T @ hidden, rtol=1e-3, atol=1e-6)
    assert ns["grad"] is ns["logits"]  # "in place"
    plain = _softmax(hidden @ classifier.T)
    plain[np.arange(len(labels)), labels] -= 1
    np.testing.assert_allclose(ns["grad"], plain / len(labels), rtol=1e-3, atol=1e-8)


def _dpo(ns):
    """DPO from the materialised logits (torch float32 autograd): the loss, its gradients, the margin."""
    import torch

    hidden = ns["hidden"].detach().clone().requires_grad_()
    lm_head = ns["lm_head"].detach().clone().requires_grad_()
    target = ns["target"]
    logp = torch.log_softmax(hidden @ lm_head.T, dim=-1)
    picked = torch.where(target != -100, torch.gather(logp, -1, target.clamp(min=0)[..., None])[..., 0], 0.0)
    scores = picked.sum(-1) - ns["ref_logps"]
    margin = scores[:2] - scores[2:]
    loss = -torch.nn.functional.logsigmoid(0.1 * margin).mean()
    loss.backward()
    torch.testing.assert_close(ns["loss"], loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ns["hidden"].grad, hidden.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(ns["lm_head"].grad, lm_head.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(ns["aux"]["reward_margins"].float(), (0.1 * margin).mean().detach(), rtol=1e-5,
                               atol=1e-6)


CHECKS = [_per_task, _torch_arrays, _own_loss, _heads, _calibrate, _torch_module, _jax, _dask, _dpo, _linear]


def test_every_block_has_its_check():
    assert len(BLOCKS) == len(CHECKS), "a README block was added or removed: give it a check here"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_and_says_what_it_claims(index):
    if "import torch" in BLOCKS[index]:
        pytest.importorskip("torch")
    if "import jax" in BLOCKS[index]:
        pytest.importorskip("jax")
    if "dask" in BLOCKS[index]:
        pytest.importorskip("dask.array")
    if index == 0:
        _per_task(BLOCKS[0])
        return
    namespace: dict = {}
    if CHECKS[index] is _own_loss:  # the README's ExpMarginLoss takes the name tests/own_losses.py's holds
        import losskit as lk

        lk.losses.registry.REGISTRY.pop("exp_margin_loss", None)
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    CHECKS[index](namespace)


def test_readme_gives_the_two_setup_commands_that_ci_runs():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
