"""The call plan: everything a call means, settled once, before any loss is computed.

``entry (checks) -> plan -> kernel -> result``. :meth:`losskit.Loss.plan` checks the arguments
and resolves a call into a :class:`Plan`; every implementation consumes it: the array-API path
(the reference), the compiled CPU kernels, the torch-native paths and the chunked linear losses.
None of them re-derives a weight, a label mask or a reduction scale, so an option has one
meaning whichever path runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


class Target(NamedTuple):
    """A checked target, as a loss's ``_prepare`` returns it.

    ``labels``: integer class indices with ignored ones replaced by 0, or None; ``dense``: the
    target in the working dtype (probabilities, 0/1, values), or None; ``weight``: the loss's own
    per-example weight (class weights, 0 for ignored examples), or None; ``pos_weight``: the
    checked positive-class weight (a 0-d or last-axis array), or None; ``slack``: what a probability
    target's row sums may be off by beyond the working dtype's rounding (a half-precision target's eps).
    """

    labels: Any = None
    dense: Any = None
    weight: Any = None
    pos_weight: Any = None
    slack: float = 0.0


@dataclass(frozen=True)
class Plan:
    """One call, resolved.

    ``input`` is canonical (an example's class or value axis last) in the working dtype
    (float16/bfloat16 computed in float32); ``dtype`` is the caller's, for the results.
    ``weight`` is the full per-example weight, ``weight x class_weight[y] x keep`` (None: all
    ones). ``scale`` is the reduction's ``d value / d l_i`` (batch-shaped, or 0-d), so the value
    is ``c_i l_i`` summed (or not, for "none") and the gradient ``c_i dl_i/dz``.
    ``restore`` maps a canonical gradient back to the caller's layout (None: identity).
    """

    xp: Any
    input: Any
    dtype: Any
    target: Target
    weight: Any
    scale: Any
    reduction: str
    smoothing: float
    spans_last_axis: bool
    restore: Callable | None = None

    @property
    def batch_shape(self) -> tuple:
        shape = tuple(self.input.shape)
        return shape[:-1] if self.spans_last_axis else shape

    @property
    def n_examples(self) -> int:
        return math.prod(self.batch_shape)
