r"""Categorical cross-entropy, from logits (softmax CE) and from probabilities.

Per example, with smoothed target :math:`y' = (1 - a) y + a / K` over K classes:

.. math:: l = -\sum_k y'_k \log p_k, \qquad p = \mathrm{softmax}(z) \text{ or the given probs}

Targets are integer class indices (shape without the class axis) or class probabilities
(one-hot or soft, the logits' shape), told apart by dtype and shape, never by value.

Design note: the logits form takes ``log p`` from :func:`log_softmax_xp`, which is finite for
finite rows and exact for rows with +-inf, and multiplies by ``y'`` only where ``y' > 0``
(``0 * -inf`` would be NaN). Its gradient is ``p * sum(y') - y'``, which is ``p - y'`` for
a target row that sums to 1 and stays the exact derivative if it sums to 1 only to rounding.
With ``class_weight``, the whole (smoothed) loss of example i is scaled by
``class_weight[y_i]`` (for probability targets ``sum_k class_weight_k y_k``); PyTorch scales
each smoothing term by its own class's weight instead: see docs/semantics.md.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .. import _array, _checks
from ..activations import log_softmax_xp
from ..plan import Target
from . import _compiled
from .base import Loss, Terms, same_loss_on_logits_and_probabilities
from .binary import PROB_EPS, floored_log
from .declaration import SOFTMAX, Hessian, Task
from .options import CategoricalOptions
from .registry import function_of

_PROBS_HINT = ("probs must be a distribution over the class axis; for raw scores use "
               "softmax_cross_entropy")


class _CategoricalBase(Loss):
    reduces_last_axis = True
    over_classes = True
    Options = CategoricalOptions

    def __init__(self, *, axis: int = -1, class_weight=None, ignore_index=None,
                 label_smoothing: float = 0.0, reduction: str = "mean", impl: str = "auto"):
        super().__init__(axis=axis, class_weight=class_weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, impl=impl)

    # the class axis is moved last on the way in and back on the way out
    def _canonical(self, xp, input, target):
        if input.ndim == 0:
            raise _checks.fail(self.input_name, "an array with a class axis", "a 0-d array")
        axis = _checks.axis(self.axis, input.ndim)
        if axis == input.ndim - 1:
            return input, target, None
        is_dense = target.ndim == input.ndim and not _array.isdtype(xp, target.dtype, "integral")
        # ``restore`` moves a gradient in its own library: the compiled path restores its NumPy result
        # before handing it to torch (the columns kernel's is then the caller's contiguous layout)
        return (xp.moveaxis(input, axis, -1),
                xp.moveaxis(target, axis, -1) if is_dense else target,
                lambda grad: array_namespace(grad).moveaxis(grad, -1, axis))

    def _prepare(self, xp, input, target) -> Target:
        n_classes = input.shape[-1]
        batch = tuple(input.shape[:-1])
        if n_classes == 0:
            raise _checks.fail(self.input_name, "at least one class along the class axis",
                               f"shape {tuple(input.shape)} (K = 0)")
        if _array.isdtype(xp, target.dtype, "integral"):
            if tuple(target.shape) != batch:
                raise self._shape_error(target, input)
            # int64 first: every integer dtype is a label dtype, but some backends compare or gather
            # only some of them (torch has no >= for uint16)
            target = _array.as_index(xp, target)
            read = _checks.labels_in_range(xp, target, n_classes, self.ignore_index)
            return label_target(xp, target, self._class_weight_array(xp, input), self.ignore_index,
                                input.dtype, None if read else n_classes)
        if target.dtype == xp.bool or _array.isdtype(xp, target.dtype, "real floating"):
            if tuple(target.shape) != tuple(input.shape):
                raise self._shape_error(target, input)
            if self.ignore_index is not None:
                raise _checks.fail("ignore_index", "None with probability targets (it masks "
                                   "integer labels; give those examples weight 0 instead)",
                                   repr(self.ignore_index))
            # the values are checked where they are read (_checked_probabilities), as BCE's are: the compiled
            # KL kernel in its own pass (three NumPy passes over the target were half of a soft-target call)
            # a half-precision target's values each carry a rounding of eps/2: their row sums, up to eps
            slack = float(xp.finfo(target.dtype).eps) if target.dtype != xp.bool and \
                xp.finfo(target.dtype).bits < 32 else 0.0
            target = _array.as_dtype(xp, target, input.dtype)
            cw = self._class_weight_array(xp, input)
            return Target(dense=target, weight=None if cw is None else xp.sum(target * cw, axis=-1), slack=slack)
        raise _checks.fail("target", "integer class indices or float class probabilities",
                           f"dtype {target.dtype}")

    def _shape_error(self, target, input):
        axis = self.axis
        shape = tuple(input.shape)  # canonical: class axis last
        batch = shape[:-1]
        dense = list(batch)
        dense.insert(_checks.axis(axis, len(shape)), shape[-1])
        return _checks.fail(
            "target", f"integer class indices of shape {batch} or probabilities of shape "
            f"{tuple(dense)} (axis={axis})", f"shape {tuple(target.shape)} and dtype {target.dtype}")

    def _class_weight_array(self, xp, input):
        """``class_weight`` as a checked ``[K]`` array of the input's namespace, or None."""
        if self.class_weight is None:
            return None
        cw = _array.option_array(xp, self.class_weight, "class_weight", input)
        if cw.ndim != 1 or cw.shape[0] != input.shape[-1]:
            raise _checks.fail("class_weight", f"shape ({input.shape[-1]},), one per class",
                               f"shape {tuple(cw.shape)}")
        return _checks.non_negative(xp, cw, "class_weight")

    @staticmethod
    def _checked_probabilities(xp, target, slack: float = 0.0):
        """A probability target's values checked (in [0, 1], rows summing to 1; the precise error), by each
        formula that reads one (the reference a flagged kernel row falls back to) and by losskit.jax's
        sweep; a traced or lazy one comes back with NaN in a row outside the domain
        (:func:`~losskit._checks.probability_rows`)."""
        return _checks.probability_rows(xp, target, "target", slack=slack)

    def _dense_target(self, xp, input, target, mask):
        """The smoothed target ``y'`` as a dense array of the input's shape."""
        a = self.label_smoothing
        n_classes = input.shape[-1]
        if mask is not None:
            high, low = 1 - a + a / n_classes, a / n_classes
            return xp.where(mask, xp.full_like(input, high), xp.full_like(input, low))
        return target if a == 0 else (1 - a) * target + a / n_classes


def label_target(xp, target, class_weight, ignore_index, dtype, unread_classes: int | None = None) -> Target:
    """The meaning of integer labels with ``class_weight [K]`` and ``ignore_index``, for every
    loss that takes them (softmax CE, the linear CE): safe labels, keep mask, example weight.
    ``unread_classes``: K when the labels' range could not be checked (traced or lazy arrays): an
    example with a label outside it then weighs NaN (a NaN loss, not another class's)."""
    labels, keep = target, None
    if ignore_index is not None:
        keep = target != ignore_index
        labels = xp.where(keep, target, xp.zeros_like(target))
    if unread_classes is not None:
        # a label out of range reads class 0 (its NaN weight below makes the value and the gradient NaN): JAX's
        # gather gave it a NaN value and dropped its cotangent, so jax.grad of the core loss was finite with
        # the bad example silently left out (found in review)
        labels = xp.where(_checks.valid_labels(target, unread_classes, ignore_index), labels, xp.zeros_like(labels))
    weight = None
    if class_weight is not None:
        weight = _array.take_per_label(xp, class_weight, labels)
    if keep is not None:
        keep_w = xp.astype(keep, dtype)
        weight = keep_w if weight is None else weight * keep_w
    if unread_classes is not None:
        weight = _checks.bad_labels_nan(xp, target, unread_classes, ignore_index, weight, dtype)
    return Target(labels=labels, weight=weight)


def _weighted_sum(xp, coef, log_p):
    """``-sum_k coef_k log_p_k`` over the class axis, with 0 where ``coef`` is 0 and ``log_p`` is
    -inf (0 * log 0 = 0). A finite ``log_p`` is kept where ``coef`` is 0, so that autodiff gives
    d/d coef_k = -log_p_k there (a one-hot target's true cotangent, not a silent 0)."""
    return -xp.sum(coef * xp.where((coef == 0) & ~xp.isfinite(log_p), xp.zeros_like(log_p), log_p), axis=-1)


def mean_surprisal(xp, z, log_p):
    """``-mean_k log_p_k``, finite whenever it is: a row whose logits span more than the dtype's
    range makes ``z - max`` overflow to -inf, so such rows are taken as ``lse - mean_k z_k``
    with the mean summed from ``z_k / K`` (no intermediate overflows). A row with a +inf logit has
    probability 0 elsewhere: +inf, its limit (``lse - mean`` would be inf - inf)."""
    plain = -xp.mean(log_p, axis=-1)
    row_max = xp.max(z, axis=-1)
    lse = row_max - xp.max(log_p, axis=-1)  # the max entry's log_p is -log_normalizer
    top = xp.isinf(row_max)  # a +inf logit, or every logit -inf: `plain` is the limit (or finite) there
    # such a row's logits read as 0 here (its `safe` is not taken): inf - inf would warn of an invalid value
    finite_rows = xp.where(top[..., None], xp.zeros_like(z), z)
    safe = lse - xp.sum(finite_rows / z.shape[-1], axis=-1)
    return xp.where(xp.isfinite(plain) | top, plain, safe)


class SoftmaxCrossEntropy(_CategoricalBase):
    r"""Softmax cross-entropy from logits: :math:`l = -\sum_k y'_k \log\mathrm{softmax}(z)_k`.

    Shapes: ``logits [..., K]`` (class axis ``axis``); ``target`` integer ``[...]`` or
    probabilities ``[..., K]``; ``weight [...]``; ``class_weight [K]``.
    Gradient :math:`\mathrm{softmax}(z) - y'`; Hessian diagonal :math:`p_k (1 - p_k)`.
    Edges: finite for finite logits; a row with +inf logits gives the limit; an ignored label
    (``ignore_index``) gives weight 0, so loss 0 and gradient 0 for that example.
    """

    name = "softmax_cross_entropy"
    #: its Hessian per row is c t (diag(p) - p p^T): the torch layer forms H v in closed form
    softmax_hessian = True
    task = Task.MULTICLASS
    aliases = ("cross_entropy",)
    link = SOFTMAX
    hessian = Hessian.ROW
    _kernel = staticmethod(_compiled.softmax_ce)

    def gbdt_builtin(self, library):
        if self.class_weight is not None or self.label_smoothing or self.ignore_index is not None:
            return None
        return {"xgboost": ("multi:softprob", {}), "lightgbm": ("multiclass", {})}[library]

    def _terms(self, plan, order):
        xp, input, labels, target = plan.xp, plan.input, plan.target.labels, plan.target.dense
        mask = None if labels is None else _array.one_hot(xp, labels, input.shape[-1], xp.bool)
        if mask is None:
            target = self._checked_probabilities(xp, target, plan.target.slack)
        log_p = log_softmax_xp(xp, input)
        a = plan.smoothing
        if mask is None:
            loss = _weighted_sum(xp, self._dense_target(xp, input, target, mask), log_p)
        else:
            loss = -_array.take_class(xp, log_p, labels)
            if a > 0:  # y' = (1 - a) one_hot + a/K, without building it
                loss = (1 - a) * loss + a * mean_surprisal(xp, input, log_p)
        grad = hess = None
        if order >= 1:
            p = xp.exp(log_p)
            if mask is None:
                y = self._dense_target(xp, input, target, mask)
                total = xp.sum(y, axis=-1, keepdims=True)
                grad = p * total - y if order == 1 else None
                hess = total * p * -xp.expm1(log_p) if order == 2 else None  # 1 - p exact where p is near 1
            elif order == 1:
                n_classes = input.shape[-1]
                zero = xp.zeros_like(p)
                # at the label p_y - 1 = -sum_{k != y} p_k: exact even when p_y rounds to 1
                rest = xp.sum(xp.where(mask, zero, p), axis=-1, keepdims=True)
                grad = xp.where(mask, a * (1 - 1 / n_classes) - rest, p - a / n_classes)
            else:
                hess = p * -xp.expm1(log_p)  # 1 - p from log p: 8.5e-18 at a sure row's top class, not 0
        return Terms(loss, grad, hess)


class CategoricalCrossEntropy(_CategoricalBase):
    r"""Categorical cross-entropy from probabilities: :math:`l = -\sum_k y'_k \log p_k`.

    Shapes as :class:`SoftmaxCrossEntropy`, with ``probs [..., K]`` in [0, 1] and rows summing
    to 1 (checked; the message points to the logits form). ``log`` is floored at -100 and the
    gradient :math:`-y'_k / p_k` has its denominator floored at 1e-12, as PyTorch does; the
    gradient is with respect to each probability on its own (no simplex projection).
    """

    name = "categorical_cross_entropy"  # the Hessian in the probabilities is diagonal: y'_k / p_k^2

    input_name = "probs"

    def _check_input(self, xp, input, source_dtype):
        if input.ndim and input.shape[-1] == 0:
            return  # no class: _prepare names K = 0 (a row of no terms sums to 0, not 1)
        _checks.in_unit_interval(xp, input, "probs", _PROBS_HINT)
        # half-precision probabilities each carry a rounding of eps/2: their sum, up to eps
        _checks.rows_sum_to_one(xp, input, "probs", _PROBS_HINT, slack=float(xp.finfo(source_dtype).eps))

    def _terms(self, plan, order):
        xp, input, labels, target = plan.xp, plan.input, plan.target.labels, plan.target.dense
        mask = None if labels is None else _array.one_hot(xp, labels, input.shape[-1], xp.bool)
        if mask is None:
            target = self._checked_probabilities(xp, target, plan.target.slack)
        log_p = floored_log(xp, input)  # PyTorch's floor: log(0) -> -100
        y = self._dense_target(xp, input, target, mask)
        loss = _weighted_sum(xp, y, log_p)
        grad = hess = None
        if order >= 1:
            p = xp.maximum(input, xp.asarray(PROB_EPS, dtype=input.dtype,
                                             device=_array.device(input)))
            if order == 1:
                grad = -y / p
            else:
                hess = y / (p * p)
        return Terms(loss, grad, hess)


_DOC_OPTIONS = """
    Options: ``axis`` (class axis, default -1); ``class_weight [K]`` scales the whole loss of
    an example by its class's weight; ``weight [...]`` per example; ``ignore_index`` (integer
    targets only; default None, so no label is silently ignored); ``label_smoothing`` a in
    [0, 1): y' = (1 - a) y + a / K; ``reduction`` "none" / "sum" / "mean" (mean = sum of
    w_i l_i over sum of w_i, or over ``normalizer``).
"""


same_loss_on_logits_and_probabilities(SoftmaxCrossEntropy, CategoricalCrossEntropy)


@function_of(SoftmaxCrossEntropy)
def softmax_cross_entropy(logits, target, *, axis=-1, class_weight=None, weight=None,
                          ignore_index=None, label_smoothing=0.0, reduction="mean",
                          normalizer=None, impl="auto"):
    return SoftmaxCrossEntropy(axis=axis, class_weight=class_weight, ignore_index=ignore_index,
                               label_smoothing=label_smoothing, reduction=reduction, impl=impl)(
        logits, target, weight=weight, normalizer=normalizer)


@function_of(CategoricalCrossEntropy)
def categorical_cross_entropy(probs, target, *, axis=-1, class_weight=None, weight=None,
                              ignore_index=None, label_smoothing=0.0, reduction="mean",
                              normalizer=None, impl="auto"):
    return CategoricalCrossEntropy(axis=axis, class_weight=class_weight,
                                   ignore_index=ignore_index, label_smoothing=label_smoothing,
                                   reduction=reduction, impl=impl)(probs, target, weight=weight,
                                                        normalizer=normalizer)


softmax_cross_entropy.__doc__ = r"""Cross-entropy of a softmax over logits, stable for any finite input.

    .. math:: l_i = -\sum_k y'_{ik} \log \mathrm{softmax}(z_i)_k
              = \mathrm{logsumexp}(z_i) - \sum_k y'_{ik} z_{ik}

    Shapes: ``logits [..., K]`` -> ``[...]`` for ``"none"``, else a 0-d array. ``target`` is
    integer class indices ``[...]`` or probabilities ``[..., K]`` (one-hot or soft).
""" + _DOC_OPTIONS + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([1]))), 6)
    0.693147
"""

categorical_cross_entropy.__doc__ = r"""Cross-entropy from class probabilities (e.g. a softmax output).

    .. math:: l_i = -\sum_k y'_{ik} \log p_{ik}, \quad \log \text{ floored at } -100

    ``probs [..., K]`` must lie in [0, 1] with rows summing to 1, else a
    :class:`LossInputError` points to :func:`softmax_cross_entropy`, which is exact where this
    one floors. Shapes and targets as :func:`softmax_cross_entropy`.
""" + _DOC_OPTIONS + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.categorical_cross_entropy(np.array([[0.25, 0.75]]), np.array([1]))), 6)
    0.287682
"""
