r"""The one reduction rule that every loss and every gradient follows.

With per-example losses :math:`l_i` and effective weights :math:`w_i` (``weight`` times
``class_weight[target]``, 0 for ignored examples, 1 when nothing is given):

* ``"none"``: :math:`w_i l_i`, one value per example;
* ``"sum"``:  :math:`\sum_i w_i l_i`;
* ``"mean"``: :math:`\sum_i w_i l_i / D` with :math:`D = \sum_i w_i`, or ``normalizer`` when given.

So ``mean == sum(none) / sum(w)`` always. When every weight is 0 (a batch of ignored labels)
``"mean"`` is defined as 0 with gradient 0, where PyTorch returns NaN. The gradient of the
reduced value is the per-example derivative times :func:`scale`; for ``"none"`` it is the
gradient of ``sum(none)``, i.e. each example's own weighted gradient.
"""

from __future__ import annotations

from . import _checks
from ._array import device as _device

__all__ = ["reduce"]


def reduce(xp, loss, weight, reduction: str, normalizer=None):
    """Return ``(value, scale)``: the reduced loss, and ``d value / d l_i`` per example.

    ``loss`` has the batch shape; ``weight`` is ``None`` (all ones) or of the batch shape.
    ``scale`` is a batch-shaped array, or a 0-d one when every example scales alike.
    """
    _checks.reduction(reduction)
    # where, not a bare product: an ignored example (weight 0) with an infinite loss adds 0
    weighted = loss if weight is None else weight * xp.where(weight == 0, xp.zeros_like(loss), loss)
    one = xp.ones((), dtype=loss.dtype, device=_device(loss))
    if reduction == "none":
        return weighted, (one if weight is None else weight)
    total = xp.sum(weighted)
    if reduction == "sum":
        return total, (one if weight is None else weight)
    if normalizer is not None:
        denominator = xp.astype(xp.asarray(normalizer, device=_device(loss)), loss.dtype)
    elif weight is None:
        denominator = xp.asarray(_size(loss.shape), dtype=loss.dtype, device=_device(loss))
    else:
        denominator = xp.sum(weight)
    # an empty or all-ignored batch: 0 / 0 is defined as 0, not NaN
    denominator = xp.where(denominator == 0, one, denominator)
    return total / denominator, (one if weight is None else weight) / denominator


def _size(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return max(n, 1)  # numerator of an empty batch is 0 anyway

