"""A few DPO steps on a tiny causal language model, on the CPU, with losskit's fused loss.

    python docs/examples/dpo_tiny_lm.py

The model is a one-layer causal transformer over 32 tokens. Each pair shares a prompt of 4 random
tokens; the chosen answer repeats the prompt, the rejected one is random. The policy starts as a
copy of the reference model, so the first reward margin is 0; DPO then raises the chosen answers'
log-probs relative to the rejected ones', and the margin grows. The loss reads the model's last
hidden states and its ``lm_head`` weight: the [2B, T, V] logits are never formed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

import losskit.torch as lt

VOCAB, WIDTH, PROMPT, LENGTH, PAIRS = 32, 16, 4, 8, 8


class TinyLM(nn.Module):
    """Token and position embeddings, one causal transformer layer, a final norm: ``hidden [N, T, D]``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.zeros(PROMPT + LENGTH, WIDTH))
        self.layer = nn.TransformerEncoderLayer(WIDTH, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(WIDTH)
        self.lm_head = nn.Linear(WIDTH, VOCAB, bias=False)

    def hidden(self, tokens):
        n = tokens.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(n)
        return self.norm(self.layer(self.embed(tokens) + self.position[:n], src_mask=causal, is_causal=True))


def pairs(generator):
    """``tokens [2B, P + L]`` (chosen rows first, then rejected) and ``target``: the next token of
    each answer position, the prompt's positions ignored (-100)."""
    prompt = torch.randint(0, VOCAB, (PAIRS, PROMPT), generator=generator)
    chosen = torch.cat([prompt, prompt, prompt[:, : LENGTH - PROMPT]], dim=1)
    rejected = torch.cat([prompt, torch.randint(0, VOCAB, (PAIRS, LENGTH), generator=generator)], dim=1)
    tokens = torch.cat([chosen, rejected])
    target = torch.full_like(tokens, -100)
    target[:, PROMPT - 1:-1] = tokens[:, PROMPT:]  # position t predicts token t + 1
    return tokens, target


def sequence_logps(model, tokens, target):
    """The summed log-probs of each sequence's answer: ``log pi(y | x)``, [2B]."""
    return lt.linear_logprobs(model.hidden(tokens), model.lm_head.weight, target).sum(-1)


def train(steps=30, beta=0.1, seed=0):
    """DPO steps; returns the reward margin TRL logs (``beta`` times the log-ratio margin) per step."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    policy = TinyLM()
    reference = copy.deepcopy(policy).requires_grad_(False)
    loss_fn = lt.LinearPreferenceLoss("dpo", beta=beta, aux=True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    tokens, target = pairs(generator)
    with torch.no_grad():
        ref_logps = sequence_logps(reference, tokens, target)
    margins = []
    for _ in range(steps):
        loss, aux = loss_fn(policy.hidden(tokens), policy.lm_head.weight, target, ref_logps=ref_logps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        margins.append(float(aux["reward_margins"]))
    return margins


if __name__ == "__main__":
    margins = train()
    print(f"reward margin: step 1 {margins[0]:.4f}, step {len(margins)} {margins[-1]:.4f}")
