"""docs/examples/dpo_tiny_lm.py: it runs, its reward margin grows, and its fused loss equals DPO
computed from the materialised logits (torch autograd, float32), down to the model's gradients."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "dpo_tiny_lm.py"


def _example():
    spec = importlib.util.spec_from_file_location("dpo_tiny_lm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reward_margin_starts_at_zero_and_grows():
    margins = _example().train(steps=30)
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert margins[-1] > 0.5 and all(b > a for a, b in zip(margins[5:-1], margins[6:], strict=True))


def test_the_fused_loss_and_the_models_gradients_equal_naive_dpo():
    example = _example()
    import losskit.torch as lt

    torch.manual_seed(1)
    policy = example.TinyLM()
    reference = copy.deepcopy(policy)
    with torch.no_grad():  # a reference that differs from the policy
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tokens, target = example.pairs(torch.Generator().manual_seed(2))
    beta = 0.3

    def naive_logps(model):
        logp = torch.log_softmax(model.hidden(tokens) @ model.lm_head.weight.T, dim=-1)
        picked = torch.gather(logp, -1, target.clamp(min=0)[..., None])[..., 0]
        return torch.where(target != -100, picked, 0.0).sum(-1)

    with torch.no_grad():
        ref = naive_logps(reference)
    scores = naive_logps(policy) - ref
    n = example.PAIRS
    naive = -torch.nn.functional.logsigmoid(beta * (scores[:n] - scores[n:])).mean()
    naive.backward()
    expected = {name: p.grad.clone() for name, p in policy.named_parameters()}
    policy.zero_grad()
    fused = lt.LinearPreferenceLoss("dpo", beta=beta)(policy.hidden(tokens), policy.lm_head.weight, target,
                                                     ref_logps=example.sequence_logps(reference, tokens, target))
    fused.backward()
    torch.testing.assert_close(fused, naive, rtol=1e-5, atol=1e-6)
    for name, parameter in policy.named_parameters():
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-4, atol=1e-5 * max(scale, 1e-3))
