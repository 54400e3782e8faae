"""``nn.Module`` form of the fused preference losses (:mod:`losskit.losses.preference`).

The module checks its options once, at construction, and runs the core's one sweep through the
generic fused-linear custom op (:func:`losskit.torch.linear.fused_linear`): the forward computes
the loss and the three gradients, backward scales them; ``torch.compile(fullgraph=True)`` sees
one opaque op.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .. import _checks
from ..losses.declaration import number
from ..losses.preference import linear_preference_loss, linear_preference_loss_value_and_grad, pair_loss
from .linear import encode_options, fused_linear

__all__ = ["LinearPreferenceLoss"]


class LinearPreferenceLoss(nn.Module):
    """:func:`losskit.linear_preference_loss` as an ``nn.Module``, with autograd into ``hidden``,
    ``classifier`` and ``bias``.

    ``LinearPreferenceLoss(loss="dpo", *, beta=None, ignore_index=-100, temperature=1.0,
    chunk_size=None, aux=False, **options)``: the options of the core function, checked here.
    ``forward(hidden, classifier, target, ref_logps=None, bias=None)``. Shapes: ``hidden [2B, T,
    D]`` (chosen rows first, then the rejected ones), ``classifier [V, D]`` (the ``lm_head``
    weight), ``target [2B, T]``, ``ref_logps [2B]`` (the reference model's summed log-probs, no
    gradient; None for ``"simpo"``, ``"orpo"``, ``"cpo"``), ``bias [V]``. Returns the 0-d loss or,
    with ``aux=True``, ``(loss, aux)``: TRL's logged statistics as 0-d float64 tensors without
    gradient (see the core function).
    """

    def __init__(self, loss: str = "dpo", *, beta: float | None = None, ignore_index: int = -100,
                 temperature: float = 1.0, chunk_size: int | None = None, aux: bool = False, **options: Any):
        super().__init__()
        self.objective = pair_loss(loss, **({} if beta is None else {"beta": beta}), **options)
        _checks.flag(aux, "aux")
        temperature = number(temperature, "temperature", low=0.0, low_open=True)
        if chunk_size is not None:
            _checks.int_at_least(chunk_size, "chunk_size", 1, "None or a positive int (tokens per chunk)")
        # plain Python values only: the custom op takes them as a JSON string
        self._options = {"loss": loss, "ignore_index": _checks.ignore_index(ignore_index),
                         "temperature": float(temperature), "chunk_size": chunk_size, **self.objective.options()}
        self._encoded = encode_options(self._options)  # constants of a compiled graph (see encode_options)
        self._aux = self.objective.aux_names() if aux else ()

    def forward(self, hidden: Tensor, classifier: Tensor, target: Tensor, ref_logps: Tensor | None = None,
                bias: Tensor | None = None):
        result = fused_linear(linear_preference_loss_value_and_grad, hidden, classifier, target, bias=bias,
                              extras={"ref_logps": ref_logps}, aux=self._aux, encoded_options=self._encoded,
                              value_function=linear_preference_loss)
        return result

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self._options.items())
