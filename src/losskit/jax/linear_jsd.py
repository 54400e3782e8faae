"""The fused linear generalised JSD (GKD distillation) as a differentiable JAX function.

Imported by :mod:`losskit.jax`. One :func:`losskit.jax.fused_linear` ``custom_vjp`` over the core's
:func:`~losskit.linear_jsd_loss` sweep, which traces under ``jit``; the teacher's arrays are its
constants (zero cotangents), so only the student's layer is differentiated.
"""

from __future__ import annotations

from ..losses.linear_jsd import student_value_and_grad
from .linear import fused_linear

__all__ = ["linear_jsd_loss"]


def linear_jsd_loss(student_hidden, student_classifier, teacher_hidden, teacher_classifier, target=None, *,
                    beta=0.5, temperature=1.0, ignore_index=-100, student_bias=None, teacher_bias=None,
                    chunk_size=None):
    """:func:`losskit.linear_jsd_loss` (same arguments, shapes and value) as a JAX function whose
    gradient flows into ``student_hidden``, ``student_classifier`` and ``student_bias``, from the one
    sweep of the forward. Works under ``jit(grad(...))``."""
    teacher = {"teacher_hidden": teacher_hidden, "teacher_classifier": teacher_classifier,
               "teacher_bias": teacher_bias}
    return fused_linear(student_value_and_grad, student_hidden, student_classifier, target, one_program=True,
                        bias=student_bias,
                        extras=teacher, held=tuple(teacher), beta=beta, temperature=temperature,
                        ignore_index=None if target is None else ignore_index, chunk_size=chunk_size)
