"""JAX form of the fused preference losses (:mod:`losskit.losses.preference`): a ``jax.custom_vjp``
function over the core's one sweep, through :func:`losskit.jax.linear.fused_linear`.

Imported by :mod:`losskit.jax`; ``import losskit`` never imports JAX. The options are checked when
the function is called (before any tracing); the data checks that need values (a sequence with
no token left, a missing chosen token) run on a target whose values are known (NumPy, or closed over
by the jitted function) and are skipped for a traced one.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..losses.preference import linear_preference_loss_value_and_grad, pair_loss, preference_objective
from .linear import fused_linear, host_target

__all__ = ["linear_preference_loss"]


def linear_preference_loss(hidden, classifier, target, *, loss="dpo", ref_logps=None, beta=None, bias=None,
                           ignore_index=-100, temperature=1.0, chunk_size=None, aux=False, **options):
    """:func:`losskit.linear_preference_loss` as a differentiable JAX function of ``hidden``,
    ``classifier`` and ``bias`` (under ``jit`` and ``grad``); ``target`` gets a zero cotangent, and ``jax.grad``
    of ``ref_logps`` (a constant) raises a :class:`~losskit.LossInputError` naming it. Shapes, options and
    ``aux`` (``(loss, aux)``, no gradient through ``aux``) as the core function's."""
    checked = pair_loss(loss, **({} if beta is None else {"beta": beta}), **options)
    names = checked.aux_names() if _checks.flag(aux, "aux") else ()
    host = host_target(target)
    if host is not None and host.ndim == 2:  # the data checks of a known target, before the trace (host_target)
        preference_objective(np, checked, host, _checks.ignore_index(ignore_index),
                             None if ref_logps is None else np.zeros(host.shape[0]), np.float64)
    return fused_linear(linear_preference_loss_value_and_grad, hidden, classifier, target, one_program=True,
                        bias=bias,
                        extras={"ref_logps": ref_logps}, aux=names, loss=loss,
                        ignore_index=ignore_index, temperature=temperature, chunk_size=chunk_size,
                        **checked.options())
