"""JAX form of the GRPO family (:mod:`losskit.losses.policy`): ``losskit.jax.linear_grpo_loss``, a
``custom_vjp`` function over the core's chunked sweep (see :mod:`losskit.jax.linear`), usable under
``jit`` and ``grad``. ``old_logps``, ``advantages`` and ``ref_logps`` are constants: ``jax.grad`` of one raises a
:class:`~losskit.LossInputError` naming it (hold it with ``jax.lax.stop_gradient``)."""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..losses.policy import GRPOOptions, grpo_objective, linear_grpo_loss_value_and_grad
from .linear import fused_linear, host_target

__all__ = ["linear_grpo_loss"]


def linear_grpo_loss(hidden, classifier, target, *, old_logps, advantages, ref_logps=None, bias=None, aux=False,
                     **options):
    """:func:`losskit.linear_grpo_loss` as a differentiable JAX function of ``hidden [B, T, D]``,
    ``classifier [V, D]`` and ``bias [V]``; shapes, options and ``aux`` (``(loss, aux)``, no gradient
    through ``aux``) as there, checked once per call (at trace time under ``jit``)."""
    checked = GRPOOptions.of(options)
    names = checked.aux_names() if _checks.flag(aux, "aux") else ()
    options = checked.as_dict()
    extras = {"old_logps": old_logps, "advantages": advantages, "ref_logps": ref_logps}
    host = host_target(target)
    if host is not None and host.ndim == 2:  # the data checks of a known target, before the trace (host_target)
        grpo_objective(np, host, np.zeros(()), old_logps=np.zeros(host.shape), advantages=np.zeros(host.shape[0]),
                       ref_logps=None if ref_logps is None else np.zeros(host.shape), options=checked)
    # (a NumPy target closed over by a jitted function stays NumPy until fused_linear: there its ids are checked
    # before it is made a JAX array, which under jit is a tracer)
    return fused_linear(linear_grpo_loss_value_and_grad, hidden, classifier, target, one_program=True, bias=bias,
                        extras=extras, aux=names, **options)
