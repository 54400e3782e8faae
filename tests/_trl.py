"""TRL's own trainer methods, called on float64 logits ``hidden @ W.T + b`` (issue 17).

The post-training tests hold losskit to TRL 1.16 by running TRL's code, not a re-typing of it. TRL's
losses live inside trainer methods (``DPOTrainer._compute_loss``, ``GRPOTrainer._compute_loss``,
``CPOTrainer.get_batch_loss_metrics``, ``ORPOTrainer.get_batch_loss_metrics``); building a trainer
needs a model download and a dataset, so a trainer is made with ``object.__new__`` and given only
the attributes its method reads (each listed where it is set), and the model is
:class:`HiddenStateLM`, whose backbone output is the test's hidden states.

What is ours here, and why it is not TRL's loss: ``HiddenStateLM`` stands for the model and for
``trl.trainer.utils.add_fused_lm_head``. That patch computes the log-probs with TRL's chunked kernel,
which works in float32 whatever the input (``kernels/chunked_logprob.py``), so it cannot be held to
1e-10; the stub keeps its contract (hidden states shifted by one against the labels, 0 at a label of
-100) and computes the log-probs and entropies with TRL's non-fused units, ``selective_log_softmax``
and ``entropy_from_logits``, in float64 under torch autograd.

Import this module lazily (inside a test, after ``pytest.importorskip("trl")``): importing TRL and
transformers takes seconds, which the rest of each test module should not pay.
"""

from __future__ import annotations

import collections
import contextlib
import os
import types

import numpy as np
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the CPO, ORPO and GKD trainers are in trl.experimental

from trl.experimental.cpo.cpo_trainer import CPOTrainer
from trl.experimental.gkd.gkd_trainer import GKDTrainer
from trl.experimental.orpo.orpo_trainer import ORPOTrainer
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

__all__ = ["GKDTrainer", "HiddenStateLM", "cpo", "dpo", "grpo", "orpo", "tensor"]

IGNORE = -100


def tensor(array, grad=False):
    """A float64 (or integer) torch tensor of ``array``, a leaf that requires grad if asked."""
    array = np.asarray(array)
    out = torch.tensor(array, dtype=torch.float64 if array.dtype.kind == "f" else None)
    return out.requires_grad_(grad)


class _Accelerator:
    """The single-process accelerator TRL's methods read: gathers and reduces are the identity."""

    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True
    is_main_process = True  # read by trl.extras.profiling.profiling_decorator

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x

    def autocast(self):
        return contextlib.nullcontext()

    def unwrap_model(self, model):
        return model


class HiddenStateLM(torch.nn.Module):
    """A causal LM whose last hidden states are ``hidden [N, T, D]`` (a leaf the test differentiates).

    Sequence ``i`` is ``T + 1`` tokens long: a one-token prompt, then the ``T`` tokens that
    ``hidden[i, t]`` predicts. The backbone's output is ``hidden`` with a zero row appended (the last
    position predicts nothing). Called as TRL's trainers call a model:

    * ``model(input_ids, attention_mask=...)`` returns ``.logits = last_hidden @ W.T + b``, ``[N, T + 1, V]``
      (CPO, ORPO);
    * ``model(..., labels=labels, fused_lm_head=True)`` returns what ``add_fused_lm_head`` returns:
      per-token ``log_probs``, ``entropy``, ``mean_logits`` and ``is_top1`` of ``labels[:, 1:]`` from the
      logits at positions ``:-1`` divided by ``temperature``, 0 where the label is -100 (DPO, GRPO).
    """

    def __init__(self, hidden, classifier, bias=None, temperature=1.0):
        super().__init__()
        self.hidden, self.classifier, self.bias, self.temperature = hidden, classifier, bias, temperature

    def forward(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **_):
        last_hidden = torch.cat([self.hidden, self.hidden.new_zeros(self.hidden[:, :1].shape)], dim=1)
        logits = last_hidden @ self.classifier.T + (0 if self.bias is None else self.bias)
        if not fused_lm_head:
            return types.SimpleNamespace(logits=logits)
        logits, labels = logits[:, :-1] / self.temperature, labels[:, 1:]
        mask = labels != IGNORE
        index = labels.clamp(min=0)
        log_probs = selective_log_softmax(logits, index).masked_fill(~mask, 0.0)
        entropy = entropy_from_logits(logits).masked_fill(~mask, 0.0)
        is_top1 = (logits.argmax(-1) == index) & mask
        return types.SimpleNamespace(log_probs=log_probs, entropy=entropy,
                                     mean_logits=logits.mean(-1).masked_fill(~mask, 0.0), is_top1=is_top1)


def _trainer(cls, **attributes):
    """A ``cls`` instance without ``__init__``: only the attributes the called method reads."""
    trainer = object.__new__(cls)
    trainer.accelerator = _Accelerator()
    trainer._metrics = collections.defaultdict(lambda: collections.defaultdict(list))
    trainer.aux_loss_enabled = False
    for name, value in attributes.items():
        setattr(trainer, name, value)
    return trainer


def _sequences(target):
    """``input_ids`` and the mask of the ``T`` predicted tokens, ``[N, T + 1]``, for ``target [N, T]``."""
    target = np.asarray(target)
    keep = target != IGNORE
    ids = np.concatenate([np.zeros((target.shape[0], 1), np.int64), np.where(keep, target, 0)], axis=1)
    mask = np.concatenate([np.zeros((target.shape[0], 1), np.int64), keep.astype(np.int64)], axis=1)
    return torch.tensor(ids), torch.tensor(mask)


def _metrics(trainer):
    return {key: values[-1] for key, values in trainer._metrics["train"].items()}


def dpo(model, target, ref_logps, *, loss_type, beta=0.1, label_smoothing=0.0, loss_weights=None):
    """``DPOTrainer._compute_loss`` with precomputed reference log-probs: ``(loss, logged metrics)``.

    ``hidden`` holds the B chosen sequences, then the B rejected ones; ``ref_logps [2B]`` likewise.
    """
    loss_types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    trainer = _trainer(
        DPOTrainer, model=model.train(), beta=beta, label_smoothing=label_smoothing, loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types), precompute_ref_logps=True, ld_alpha=None,
        f_divergence_type="reverse_kl", use_weighting=False, _total_train_tokens=0, _tp_size=1,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None))
    input_ids, completion_mask = _sequences(target)
    ref_chosen, ref_rejected = torch.as_tensor(np.asarray(ref_logps, dtype=np.float64)).chunk(2)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, _metrics(trainer)


def _pair_batch(target, prompt_in_attention=False):
    """The CPO/ORPO batch for ``target [2B, T]``: ``{chosen,rejected}_{input_ids,attention_mask,labels}``.

    The labels are -100 on the prompt and padding. The attention mask is 1 on the first token and the
    kept tokens, or, with ``prompt_in_attention``, also on the ignored tokens before the first kept
    one of each row (a prompt the model attends to; ORPO's NLL reads it).
    """
    input_ids, keep = _sequences(target)
    labels = input_ids.masked_fill(keep == 0, IGNORE)
    attention = keep.clone()
    attention[:, 0] = 1
    if prompt_in_attention:
        attention = attention | (keep.cumsum(1) == 0).long()
    n = input_ids.shape[0] // 2
    batch = {}
    for part, rows in (("chosen", slice(None, n)), ("rejected", slice(n, None))):
        batch |= {f"{part}_input_ids": input_ids[rows], f"{part}_attention_mask": attention[rows],
                  f"{part}_labels": labels[rows]}
    return batch


def cpo(model, target, *, loss_type, beta=0.1, label_smoothing=0.0, cpo_alpha=1.0, simpo_gamma=0.5):
    """``CPOTrainer.get_batch_loss_metrics``: ``(loss, metrics)``."""
    trainer = _trainer(CPOTrainer, loss_type=loss_type, beta=beta, label_smoothing=label_smoothing,
                       cpo_alpha=cpo_alpha, simpo_gamma=simpo_gamma, alpha=0.0, is_encoder_decoder=False,
                       pad_token_id=0)
    return CPOTrainer.get_batch_loss_metrics(trainer, model, _pair_batch(target))


def orpo(model, target, *, beta=0.1, prompt_in_attention=False):
    """``ORPOTrainer.get_batch_loss_metrics`` (``beta`` is the paper's lambda): ``(loss, metrics)``."""
    trainer = _trainer(ORPOTrainer, beta=beta, is_encoder_decoder=False, padding_value=0)
    return ORPOTrainer.get_batch_loss_metrics(trainer, model, _pair_batch(target, prompt_in_attention))


def grpo(model, target, old_logps, advantages, *, loss_type="grpo", importance_sampling_level="token",
         epsilon_low=0.2, epsilon_high=0.2, beta=0.0, ref_logps=None, max_completion_length=None):
    """``GRPOTrainer._compute_loss`` (one process, no gradient accumulation): ``(loss, metrics)``.

    ``old_logps`` and ``ref_logps`` are ``[B, T]``; the temperature is the model's.
    """
    target = np.asarray(target)
    input_ids, keep = _sequences(target)
    trainer = _trainer(
        GRPOTrainer, model=model.train(), loss_type=loss_type, importance_sampling_level=importance_sampling_level,
        epsilon_low=epsilon_low, epsilon_high=epsilon_high, beta=beta,
        max_completion_length=max_completion_length or target.shape[1], top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, use_vllm=False, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1))
    inputs = {"prompt_ids": input_ids[:, :1], "prompt_mask": torch.ones_like(input_ids[:, :1]),
              "completion_ids": input_ids[:, 1:], "completion_mask": keep[:, 1:],
              "old_per_token_logps": tensor(old_logps), "advantages": tensor(advantages),
              "num_items_in_batch": keep.sum()}
    if ref_logps is not None:
        inputs["ref_per_token_logps"] = tensor(ref_logps)
    loss = GRPOTrainer._compute_loss(trainer, model, inputs)
    return loss, _metrics(trainer)
