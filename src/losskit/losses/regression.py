r"""Mean squared error.

.. math:: l_i = \frac{1}{D} \sum_{j=1}^{D} (\hat y_{ij} - y_{ij})^2

A 1-D input holds one value per example (D = 1); an input of 2 or more dimensions holds D
values per example along its last axis, averaged as Keras and scikit-learn do, so that with
``"mean"`` the result equals PyTorch's ``mse_loss`` (mean over all elements).
"""

from __future__ import annotations

import numpy as np

from .. import _array, _checks
from ..plan import Target
from . import _compiled
from .base import Loss, Terms
from .declaration import Task
from .registry import function_of


class MeanSquaredError(Loss):
    r"""Squared error averaged over the values of each example.

    Shapes: ``predictions [N]`` or ``[..., D]``; ``target`` the same shape (any real dtype);
    ``weight`` one per example (``[N]`` or ``[...]``). Gradient :math:`2(\hat y - y)/D`,
    Hessian diagonal :math:`2/D`. Edges: finite for finite input; inf when |error| overflows. A
    float32 row whose squares fit but whose sum passes float32's largest has a finite mean on NumPy and
    in the compiled kernel, inf under JAX, torch on other devices and Dask (their mean sums first).
    """

    name = "mean_squared_error"
    task = Task.REGRESSION
    aliases = ("mse",)
    of_error = True
    arithmetic_value = True
    mean_matching = True
    input_name = "predictions"
    _kernel = staticmethod(_compiled.squared_error)

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        super().__init__(reduction=reduction, impl=impl)

    def gbdt_builtin(self, library):  # half the squared error: the same minimiser and trees
        return {"xgboost": ("reg:squarederror", {}), "lightgbm": ("regression", {})}[library]

    def _spans_last_axis(self, ndim: int) -> bool:
        return ndim >= 2  # a 1-D input is N examples of one value each

    def _prepare(self, xp, input, target):
        if input.ndim >= 2 and input.shape[-1] == 0:  # a mean over no values has no value
            raise _checks.fail(self.input_name, "at least one value per example along the last axis",
                               f"shape {tuple(input.shape)}")
        _checks.same_shape("target", target, self.input_name, tuple(input.shape))
        if not _array.isdtype(xp, target.dtype, ("real floating", "integral")):
            raise _checks.fail("target", "a real-valued array", f"dtype {target.dtype}")
        # NaN is looked for where the target is read (a max over it was a third of a 50000 x 1000 float32
        # call): by _terms, and by the compiled kernel in the pass that computes the loss (it flags the row)
        return Target(dense=_array.as_dtype(xp, target, input.dtype))

    def _terms(self, plan, order):
        _checks.no_nan(plan.xp, plan.target.dense, "target")
        return Terms(*squared_error_terms(plan.xp, plan.input, plan.target.dense, order))


def squared_error_terms(xp, predictions, target, order):
    """``(loss, grad, hess)`` of the squared error averaged over the last axis of a 2-D or larger
    input (each element an example in 1-D): the one formula of the reference, the torch-native
    kernel and the XLA path, each calling it with its namespace."""
    error = predictions - target
    size = predictions.shape[-1] if predictions.ndim >= 2 else 1
    loss = error * error
    if predictions.ndim >= 2:
        mean = xp.mean(loss, axis=-1)
        # finite squares whose sum passes the dtype's largest (float32 errors near 1.5e19): their mean is finite,
        # and so is the compiled kernel's (found in review); each square divided first then, not the sum. On
        # NumPy only (the compiled path's reference): under XLA the select cost the MSE 4x (5.5 -> 23 ms), and
        # reading a device tensor's values would wait for the device on every call
        if isinstance(mean, (np.ndarray, np.generic)) and np.any(np.isinf(mean)):
            mean = xp.where(xp.isinf(mean) & xp.all(xp.isfinite(loss), axis=-1), xp.sum(loss / size, axis=-1), mean)
        loss = mean
    grad = (2 / size) * error if order == 1 else None
    hess = xp.full_like(predictions, 2 / size) if order == 2 else None
    return loss, grad, hess


@function_of(MeanSquaredError)
def mean_squared_error(predictions, target, *, weight=None, reduction="mean", normalizer=None, impl="auto"):
    r"""Mean squared error: :math:`l_i = \mathrm{mean}_j (\hat y_{ij} - y_{ij})^2`.

    Shapes: ``predictions [N]`` (one value per example) or ``[..., D]`` (D values per example,
    averaged); ``target`` the same shape; ``weight`` per example. Returns ``[...]`` for
    ``"none"``, else 0-d; ``"mean"`` is ``sum(w_i l_i) / sum(w_i)``.

    >>> import numpy as np, losskit as lk
    >>> float(lk.mean_squared_error(np.array([1.0, 3.0]), np.array([0.0, 0.0])))
    5.0
    """
    return MeanSquaredError(reduction=reduction, impl=impl)(predictions, target, weight=weight,
                                                 normalizer=normalizer)
