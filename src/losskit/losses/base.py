"""The ``Loss`` object: one call path for value, gradient and Hessian diagonal.

Design note: a subclass supplies only what is particular to it: how the target is checked and
cast (``_prepare``), and the per-example loss with its derivative and second derivative with
respect to each input element (``_terms``). Weights, the reduction rule, dtype handling
(half precision computed in float32) and the scaling of the gradient live here, once, so the
gradient is always that of the reduced value. The alternative of letting each loss reduce
itself was rejected: it is how "mean" comes to mean different things in one library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from .. import _array, _checks
from ..reduction import reduce


@dataclass
class Terms:
    """Per-example pieces a loss computes in the working dtype.

    ``loss`` has the batch shape; ``grad`` / ``hess`` the (canonical) input shape, derivatives
    of each example's own loss; ``weight`` is the loss's own batch-shaped weight (class
    weights, 0 for ignored examples) or ``None``.
    """

    loss: Any
    grad: Any = None
    hess: Any = None
    weight: Any = None


class Loss(ABC):
    """Base of every losskit loss. Options are set once; data is given per call.

    Call forms, each taking ``(input, target, *, weight=None, normalizer=None)``:

    * ``loss(input, target)`` -> the reduced value;
    * ``loss.value_and_grad(input, target)`` -> ``(value, d value / d input)``;
    * ``loss.grad(input, target)`` -> ``d value / d input``;
    * ``loss.hessian_diag(input, target)`` -> the diagonal of ``d^2 value / d input^2``.

    ``weight`` is one non-negative number per example (the batch shape); ``normalizer``
    replaces the denominator of ``"mean"``. See :mod:`losskit.reduction` for the rule.
    """

    #: name of the first argument in messages: "logits", "probs" or "predictions"
    input_name = "logits"
    #: True when one example spans the last axis of the (canonical) input
    reduces_last_axis = False

    def _spans_last_axis(self, ndim: int) -> bool:
        return self.reduces_last_axis

    def example_axis(self, ndim: int) -> int | None:
        """The input axis one example spans (the class or value axis) for an ``ndim``-D input,
        in the caller's layout; None when each element is an example. A framework layer uses it
        to spread a per-example upstream gradient over that axis."""
        if hasattr(self, "axis"):
            return self.axis % ndim
        return ndim - 1 if ndim >= 1 and self._spans_last_axis(ndim) else None

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        self.reduction = _checks.reduction(reduction)
        self.impl = _checks.impl(impl)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"

    # -- the public call forms -------------------------------------------------------------
    def __call__(self, input, target, *, weight=None, normalizer=None):
        return self._run(input, target, weight, normalizer, order=0)[0]

    def value_and_grad(self, input, target, *, weight=None, normalizer=None):
        value, grad, _ = self._run(input, target, weight, normalizer, order=1)
        return value, grad

    def grad(self, input, target, *, weight=None, normalizer=None):
        return self._run(input, target, weight, normalizer, order=1)[1]

    def hessian_diag(self, input, target, *, weight=None, normalizer=None):
        return self._run(input, target, weight, normalizer, order=2)[2]

    # -- what a subclass supplies ------------------------------------------------------------
    @abstractmethod
    def _prepare(self, xp, input, target):
        """Check ``target`` against ``input`` (canonical layout); return the target to use."""

    @abstractmethod
    def _terms(self, xp, input, target, order: int) -> Terms:
        """Per-example loss and, up to ``order``, its elementwise derivatives."""

    def _check_input(self, xp, input, source_dtype) -> None:  # noqa: B027 - optional hook
        """Check the input's values (probabilities...); ``input`` is already in the working dtype.
        Logits need no value check, so the default does nothing."""

    def _canonical(self, xp, input, target):
        """Move axes so the class axis (if any) is last. Returns ``(input, target, restore)``
        with ``restore`` mapping a gradient back to the caller's layout (None: identity)."""
        return input, target, None

    # -- the one call path -----------------------------------------------------------------
    def _run(self, input, target, weight, normalizer, order):
        name = self.input_name
        xp, arrays = _array.namespace(**{name: input, "target": target, "weight": weight})
        input, target, weight = arrays[name], arrays["target"], arrays["weight"]
        _checks.floating(xp, input, name)
        normalizer = _checks.normalizer(normalizer)
        if self.impl != "xp":
            fast = _fast_path(self, xp, input, target, weight, normalizer, order)
            if fast is not None:
                return fast
        original_dtype = input.dtype
        terms, weight, spans, restore = self._per_example(xp, input, target, weight, order)
        value, scale = reduce(xp, terms.loss, weight, self.reduction, normalizer)
        value = xp.astype(value, original_dtype)
        if order == 0:
            return value, None, None
        if spans and scale.ndim:
            scale = scale[..., None]
        derivative = terms.grad if order == 1 else terms.hess
        if weight is not None:  # a weight-0 example contributes 0 even where its terms are inf
            derivative = xp.where(scale == 0, xp.zeros_like(derivative), derivative)
        scaled = scale * derivative
        if restore is not None:
            scaled = restore(scaled)
        out = xp.astype(scaled, original_dtype)
        return (value, out, None) if order == 1 else (value, None, out)

    def _per_example(self, xp, input, target, weight, order):
        """Checked, canonical per-example terms and the full example weight (or None)."""
        source_dtype = input.dtype
        work = _array.compute_dtype(xp, input.dtype)
        if work != input.dtype:
            input = xp.astype(input, work)
        input, target, restore = self._canonical(xp, input, target)
        self._check_input(xp, input, source_dtype)
        target = self._prepare(xp, input, target)
        spans = self._spans_last_axis(input.ndim)
        batch_shape = tuple(input.shape[:-1]) if spans else tuple(input.shape)
        weight = self._example_weight(xp, weight, batch_shape, work)
        terms = self._terms(xp, input, target, order)
        if terms.weight is not None:
            weight = terms.weight if weight is None else weight * terms.weight
        return terms, weight, spans, restore

    def sum_and_weight(self, input, target, *, weight=None):
        r"""``(sum_i w_i l_i, sum_i w_i)``: the two parts of ``"mean"``, for combining partial results.

        Means of several batches (files, chunks, workers) combine exactly as
        ``sum(totals) / sum(weights)``, which a mean of means does not. ``w_i`` is the full
        example weight (``weight`` times ``class_weight[y_i]``, 0 for ignored labels). Both are
        0-d arrays of the input's library and dtype; lazy for Dask input.

        >>> import numpy as np, losskit as lk
        >>> total, w = lk.SoftmaxCrossEntropy().sum_and_weight(np.zeros((2, 2)), np.array([0, 1]))
        >>> round(float(total / w), 6)
        0.693147
        """
        xp, arrays = _array.namespace(**{self.input_name: input, "target": target, "weight": weight})
        input = arrays[self.input_name]
        _checks.floating(xp, input, self.input_name)
        terms, weight, _, _ = self._per_example(xp, input, arrays["target"], arrays["weight"], 0)
        total, _ = reduce(xp, terms.loss, weight, "sum")
        count = xp.sum(weight) if weight is not None else \
            xp.asarray(float(_array.size(terms.loss)), dtype=terms.loss.dtype, device=_array.device(input))
        return xp.astype(total, input.dtype), xp.astype(count, input.dtype)

    @staticmethod
    def _example_weight(xp, weight, batch_shape, work):
        if weight is None:
            return None
        if not xp.isdtype(weight.dtype, ("real floating", "integral")):
            raise _checks.fail("weight", "a real-valued array", f"dtype {weight.dtype}")
        _checks.same_shape("weight", weight, "one value per example", batch_shape)
        weight = xp.astype(weight, work)
        _checks.non_negative(xp, weight, "weight")
        return weight


def _fast_path(loss, xp, input, target, weight, normalizer, order):
    """The compiled kernels of :mod:`losskit.fused` for NumPy float32/float64 input, or None.

    None means "not handled here": another library, another dtype, an option the kernels do
    not cover, or no compiler installed; the array-API path then runs. ``impl="fused"``
    turns the last case into an error instead of a silent fallback.
    """
    from .. import fused

    return fused.fast_path(loss, xp, input, target, weight, normalizer, order)
