"""``torch`` forms of the GRPO family (:mod:`losskit.losses.policy`): ``LinearGRPOLoss`` and
``linear_grpo_loss``, on the generic fused-linear custom op of :mod:`losskit.torch.linear`.

The forward runs the core's one chunked sweep (the compiled kernels on CPU tensors, the array-API
expressions on other devices) and keeps the gradients of hidden, classifier and bias; backward
scales them by the upstream gradient. ``old_logps``, ``advantages`` and ``ref_logps`` are
constants of the loss: they get no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from ..losses.policy import GRPOOptions, linear_grpo_loss_value_and_grad
from ..losses.policy import linear_grpo_loss as core_linear_grpo_loss
from .linear import encode_options, fused_linear

__all__ = ["LinearGRPOLoss", "linear_grpo_loss"]


def _apply(encoded: str, hidden, classifier, target, old_logps, advantages, ref_logps, bias, aux=()):
    extras = {"old_logps": old_logps, "advantages": advantages, "ref_logps": ref_logps}
    return fused_linear(linear_grpo_loss_value_and_grad, hidden, classifier, target, bias=bias, extras=extras,
                        aux=aux, encoded_options=encoded, required=("old_logps", "advantages"),
                        value_function=core_linear_grpo_loss)


def linear_grpo_loss(hidden: Tensor, classifier: Tensor, target: Tensor, *, old_logps: Tensor, advantages: Tensor,
                     ref_logps: Tensor | None = None, bias: Tensor | None = None, aux: bool = False, **options):
    """:func:`losskit.linear_grpo_loss` with autograd into ``hidden [B, T, D]``, ``classifier [V, D]``
    and ``bias [V]``; shapes and options (``beta``, ``epsilon_low``, ``epsilon_high``, ``importance``,
    ``normalization``, ``max_length``, ``temperature``, ``ignore_index``, ``chunk_size``) as there;
    with ``aux=True``, ``(loss, aux)``: TRL's logged statistics as 0-d float64 tensors, no gradient.
    Under ``torch.compile(fullgraph=True)`` its options are constants of the graph: one that changes
    between calls (an annealed ``beta``) turns symbolic and cannot be; give it to :class:`LinearGRPOLoss`
    instances, which encode their options once."""
    encoded, aux_names = _constants(options).split("\n")
    return _apply(encoded, hidden, classifier, target, old_logps, advantages, ref_logps, bias,
                  tuple(aux_names.split(",")) if _checks.flag(aux, "aux") else ())


@torch.compiler.assume_constant_result
def _constants(options: dict) -> str:
    """The checked options as the custom op's string, and the names of their logged statistics (a line
    each): computed when ``torch.compile`` traces, a constant of the graph (Dynamo cannot trace the
    options' dataclass)."""
    checked = GRPOOptions.of(options)
    return encode_options(checked.as_dict()) + "\n" + ",".join(checked.aux_names())


class LinearGRPOLoss(nn.Module):
    """The GRPO family's loss (GRPO, DAPO, Dr. GRPO, GSPO) fused with the output layer, as an
    ``nn.Module``: options at construction, checked once (as :func:`losskit.linear_grpo_loss`);
    ``forward(hidden [B, T, D], classifier [V, D], target [B, T], *, old_logps [B, T],
    advantages [B], ref_logps [B, T] = None, bias [V] = None)`` returns the 0-d loss, with the
    analytic backward into hidden, classifier and bias. Works under ``torch.compile(fullgraph=True)``.
    With ``aux=True`` it returns ``(loss, aux)``, TRL's logged statistics (see
    :func:`losskit.linear_grpo_loss`) as 0-d float64 tensors without gradient.

    >>> import torch, losskit.torch as lt
    >>> h, c = torch.ones(1, 2, 3, requires_grad=True), torch.zeros(4, 3)  # uniform: log p = -log 4
    >>> old = torch.full((1, 2), -torch.log(torch.tensor(4.0)).item())
    >>> loss = lt.LinearGRPOLoss()(h, c, torch.tensor([[0, 3]]), old_logps=old, advantages=torch.tensor([0.5]))
    >>> loss.item()
    -0.5
    """

    def __init__(self, *, beta: float = 0.0, epsilon_low: float = 0.2, epsilon_high: float = 0.2,
                 importance: str = "token", normalization: str = "grpo", max_length: int | None = None,
                 temperature: float = 1.0, ignore_index: int | None = -100, chunk_size: int | None = None,
                 aux: bool = False):
        super().__init__()
        self.options = GRPOOptions(beta=beta, epsilon_low=epsilon_low, epsilon_high=epsilon_high,
                                   importance=importance, normalization=normalization, max_length=max_length,
                                   temperature=temperature, ignore_index=ignore_index, chunk_size=chunk_size)
        self._encoded = encode_options(self.options.as_dict())  # constants of a compiled graph (see there)
        self._aux = self.options.aux_names() if _checks.flag(aux, "aux") else ()

    def forward(self, hidden: Tensor, classifier: Tensor, target: Tensor, *, old_logps: Tensor, advantages: Tensor,
                ref_logps: Tensor | None = None, bias: Tensor | None = None):
        return _apply(self._encoded, hidden, classifier, target, old_logps, advantages, ref_logps, bias, self._aux)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.as_dict().items())
