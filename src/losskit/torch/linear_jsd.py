"""``LinearJSDLoss``: the fused linear generalised JSD (GKD distillation) as an ``nn.Module``.

One custom op of :func:`losskit.torch.linear.fused_linear` over the core's
:func:`~losskit.linear_jsd_loss`: its forward is the core's one sweep (the compiled kernel on CPU
tensors, the array-API expressions on other devices), which computes the student's three
gradients, kept for backward. The teacher's tensors are read and never differentiated (they are
the op's ``extras``), so a teacher that requires grad gets none, by design: GKD trains the student.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from ..losses.declaration import number
from ..losses.linear import LinearCEOptions
from ..losses.linear_jsd import student_value_and_grad
from .linear import encode_options, fused_linear

__all__ = ["LinearJSDLoss"]


class LinearJSDLoss(nn.Module):
    r"""Generalised JSD of the student's output layer from the teacher's, fused with both layers
    (:func:`losskit.linear_jsd_loss`: TRL's ``generalized_jsd_loss`` with ``"batchmean"``).

    ``forward(student_hidden, student_classifier, teacher_hidden, teacher_classifier, target=None,
    student_bias=None, teacher_bias=None)``. Shapes: ``student_hidden [N, D]`` or ``[B, T, D]``,
    ``student_classifier [V, D]``, ``teacher_hidden [N, D']`` or ``[B, T, D']``,
    ``teacher_classifier [V, D']``, ``target [N]`` or ``[B, T]`` (token ids; ``ignore_index`` rows
    are left out; None: every row counts), biases ``[V]``; returns a 0-d tensor. Gradients flow
    into the student's hidden states, classifier and bias only. Options: ``beta`` in [0, 1],
    ``temperature`` > 0, ``ignore_index``, ``chunk_size``.
    """

    def __init__(self, *, beta: float = 0.5, temperature: float = 1.0, ignore_index: int = -100,
                 chunk_size: int | None = None):
        super().__init__()
        LinearCEOptions(chunk_size=chunk_size)  # checked now, as the core checks it
        self.options = {"beta": number(beta, "beta", low=0.0, high=1.0),
                        "temperature": number(temperature, "temperature", low=0.0, low_open=True),
                        "ignore_index": _checks.ignore_index(ignore_index), "chunk_size": chunk_size}
        # constants of a compiled graph (see encode_options); without a target nothing is ignored
        self._encoded = encode_options(self.options)
        self._encoded_all_rows = encode_options({**self.options, "ignore_index": None})

    def forward(self, student_hidden: Tensor, student_classifier: Tensor, teacher_hidden: Tensor,
                teacher_classifier: Tensor, target: Tensor | None = None, student_bias: Tensor | None = None,
                teacher_bias: Tensor | None = None) -> Tensor:
        encoded = self._encoded
        if target is None:  # the op takes a tensor: any ids, with nothing ignored, count every row
            target = torch.zeros(student_hidden.shape[:-1], dtype=torch.int64, device=student_hidden.device)
            encoded = self._encoded_all_rows
        teacher = {"teacher_hidden": teacher_hidden, "teacher_classifier": teacher_classifier,
                   "teacher_bias": teacher_bias}
        return fused_linear(student_value_and_grad, student_hidden, student_classifier, target, bias=student_bias,
                            extras=teacher, encoded_options=encoded,
                            argument_names=("student_hidden", "student_classifier", "target", "student_bias"),
                            required=("teacher_hidden", "teacher_classifier"), same_dtype=tuple(teacher))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())
