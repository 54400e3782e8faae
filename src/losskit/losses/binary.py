r"""Binary cross-entropy, from logits and from probabilities.

Per element, with target :math:`y \in [0, 1]` smoothed to :math:`y' = (1 - a) y + a/2` and
positive weight :math:`w_+`:

.. math:: l = -\left(w_+ y' \log s + (1 - y') \log(1 - s)\right)

where :math:`s = \sigma(z)` (logits form) or the given probability (probability form).

Design note: the logits form never builds ``s`` for the loss: ``log s = log_sigmoid(z)`` and
``log(1 - s) = log_sigmoid(-z)``, so no ``log(0)`` and no cancellation for any finite z. Its
gradient is written ``-w_+ y' sigmoid(-z) + (1 - y') sigmoid(z)`` rather than
``s (w_+ y' + 1 - y') - w_+ y'``: the latter loses all relative precision for |z| > 20.
The probability form follows PyTorch at the edges: each log is floored at -100, and the
denominators of the gradient at 1e-12, so p = 0 or 1 gives a finite loss and gradient.
"""

from __future__ import annotations

from .. import _array, _checks
from ..plan import Target
from . import _compiled
from ._shared import times
from .base import Loss, Terms, same_loss_on_logits_and_probabilities
from .declaration import LOGIT, Task
from .elementwise import IN_DOMAIN
from .options import BinaryOptions
from .registry import function_of

LOG_FLOOR = -100.0
PROB_EPS = 1e-12


def floored_log(xp, p):
    """``max(log p, -100)`` (PyTorch's floor) without evaluating log(0)."""
    positive = p > 0
    log_p = xp.log(xp.where(positive, p, xp.ones_like(p)))
    return xp.maximum(xp.where(positive, log_p, xp.full_like(p, LOG_FLOOR)), xp.full_like(p, LOG_FLOOR))

_PROBS_HINT = "probabilities must lie in [0, 1]; for raw scores use binary_cross_entropy_with_logits"


def smoothed_targets(y, a):
    """``(y', 1 - y')`` of label smoothing ``a``: ``y' = (1 - a) y + a / 2`` and its complement formed as
    ``(1 - a)(1 - y) + a / 2``, not ``1 - y'`` (which rounds: 0.04999999999999993 for y = 1, a = 0.1,
    and the gradient's ``(1 - y') p - y' (1 - p)`` then cancels to 120 eps at z = 3)."""
    if a == 0:
        return y, 1 - y
    return (1 - a) * y + a / 2, (1 - a) * (1 - y) + a / 2


def bce_logits_terms(xp, z, y, pos_weight, order, *, finite: bool = False, neg=None):
    """Elementwise BCE-with-logits loss and derivatives in z (``pos_weight`` may be None).

    The one formula of every path that runs array code: the reference (any library), the torch-native
    kernel and the XLA path call it with their namespace. One ``exp`` and one ``log1p`` serve the
    loss and both sigmoids. ``finite=True`` says the caller has checked that z is finite (the
    torch-native kernel): the products then need no guard for ``0 * inf`` (in eager torch each guard
    is a pass over memory); otherwise a zero coefficient times an infinite term is the exact 0. ``neg``
    is ``1 - y`` unless given (:func:`smoothed_targets`)."""
    pos = y if pos_weight is None else pos_weight * y
    neg = 1 - y if neg is None else neg
    e = xp.exp(-xp.abs(z))  # in (0, 1]: never overflows
    soft = xp.log1p(e)
    zero = xp.zeros_like(z)
    # -log sigmoid(z) = max(-z, 0) + log1p(e); -log sigmoid(-z) = max(z, 0) + log1p(e): no cancellation
    minus_log_s, minus_log_q = xp.maximum(-z, zero) + soft, xp.maximum(z, zero) + soft
    if finite:
        loss = pos * minus_log_s + neg * minus_log_q
    else:
        loss = times(xp, pos, minus_log_s) + times(xp, neg, minus_log_q)
    grad = hess = None
    if order >= 1:
        inv = 1 / (1 + e)
        nonneg = z >= 0
        s_pos = xp.where(nonneg, inv, e * inv)  # sigmoid(z) and sigmoid(-z) = 1 - s, each to full precision
        s_neg = xp.where(nonneg, e * inv, inv)
        if order == 1:
            grad = neg * s_pos - pos * s_neg
        else:
            hess = (pos + neg) * s_pos * s_neg
    return loss, grad, hess


class _BinaryBase(Loss):
    Options = BinaryOptions

    def __init__(self, *, pos_weight=None, label_smoothing: float = 0.0, reduction: str = "mean",
                 impl: str = "auto"):
        super().__init__(pos_weight=pos_weight, label_smoothing=label_smoothing, reduction=reduction,
                         impl=impl)

    def _prepare(self, xp, input, target) -> Target:
        _checks.same_shape("target", target, self.input_name, tuple(input.shape))
        if not _array.isdtype(xp, target.dtype, ("real floating", "integral", "bool")):
            raise _checks.fail("target", "a real or integer array of 0/1 or probabilities",
                               f"dtype {target.dtype}")
        # the values are checked where they are read, as ElementwiseLoss's are: by _smoothed (every
        # formula's one reader) and, in the pass that computes the loss, by the compiled kernel, which
        # flags a row holding a value outside [0, 1] so that the reference raises (a min and a max over
        # the target took 23 ms of a 57 ms call at 50000 x 1000 float32)
        return Target(dense=_array.as_dtype(xp, target, input.dtype), pos_weight=self._pos_weight(xp, input))

    @staticmethod
    def _smoothed(plan):
        """The smoothed target ``y'`` the formulas read and ``1 - y'`` (:func:`smoothed_targets`), its values
        checked first (the precise error)."""
        xp, y = plan.xp, plan.target.dense
        if not _checks.in_unit_interval(xp, y, "target"):  # traced or lazy: NaN outside [0, 1]
            y = _checks.nan_where(xp, y, ~IN_DOMAIN["binary"](y))
        return smoothed_targets(y, plan.smoothing)

    def _pos_weight(self, xp, input):
        if self.pos_weight is None:
            return None
        pw = _array.option_array(xp, self.pos_weight, "pos_weight", input)
        if pw.ndim > 1 or (pw.ndim == 1 and (input.ndim == 0 or pw.shape[0] != input.shape[-1])):
            last = input.shape[-1] if input.ndim else "none"
            raise _checks.fail("pos_weight", f"a number or shape ({last},) (the last axis)",
                               f"shape {tuple(pw.shape)}")
        return _checks.non_negative(xp, pw, "pos_weight")


class BinaryCrossEntropyWithLogits(_BinaryBase):
    r"""Binary cross-entropy from logits: :math:`l = -(w_+ y' \log\sigma(z) + (1-y')\log\sigma(-z))`.

    Shapes: ``logits [...]``, ``target [...]`` (same shape; 0/1 labels or probabilities, any
    real or integer dtype), ``weight [...]``; ``pos_weight`` a number or ``[last axis]``.
    Result: ``[...]`` for ``"none"``, else a 0-d array.
    Gradient: :math:`\sigma(z)(w_+ y' + 1 - y') - w_+ y'` (``sigmoid(z) - y`` when ``w_+=1``).
    Edges: finite for every finite z; at z = +-inf the exact limit (0 or +inf loss).
    """

    name = "binary_cross_entropy_with_logits"
    task = Task.BINARY
    aliases = ("bce",)
    link = LOGIT
    _kernel = staticmethod(_compiled.bce_logits)

    @property
    def mean_matching(self) -> bool:
        """The gradient in a constant, ``sigmoid(c) - mean``: without pos_weight or smoothing (which move it)."""
        return self.pos_weight is None and not self.label_smoothing

    def gbdt_builtin(self, library):
        if self.pos_weight is not None or self.label_smoothing:
            return None
        # LightGBM's "binary" reads every label > 0 as 1; its "cross_entropy" takes probabilities, as this loss does
        return {"xgboost": ("binary:logistic", {}), "lightgbm": ("cross_entropy", {})}[library]

    def _terms(self, plan, order):
        y, neg = self._smoothed(plan)
        loss, grad, hess = bce_logits_terms(plan.xp, plan.input, y, plan.target.pos_weight, order, neg=neg)
        return Terms(loss, grad, hess)


class BinaryCrossEntropy(_BinaryBase):
    r"""Binary cross-entropy from probabilities: :math:`l = -(w_+ y' \log p + (1-y')\log(1-p))`.

    Shapes as :class:`BinaryCrossEntropyWithLogits`, with ``probs`` in [0, 1] (checked: values
    outside raise and point to the logits form). Each log is floored at -100 and each gradient
    denominator at 1e-12, as in PyTorch, so p = 0 or 1 gives a finite loss (at most 100 per
    unit target) and gradient. Prefer the logits form: it is exact where this one floors.
    """

    name = "binary_cross_entropy"
    input_name = "probs"

    def _check_input(self, xp, input, source_dtype):
        _checks.in_unit_interval(xp, input, "probs", _PROBS_HINT)

    def _terms(self, plan, order):
        xp, input, pw = plan.xp, plan.input, plan.target.pos_weight
        y, neg = self._smoothed(plan)
        pos = y if pw is None else pw * y
        log_p = floored_log(xp, input)
        # log(1 - p) through log1p: exact for small p; p = 1 gives the floor
        below_one = input < 1
        log_q = xp.log1p(-xp.where(below_one, input, xp.zeros_like(input)))
        log_q = xp.maximum(xp.where(below_one, log_q, xp.full_like(input, LOG_FLOOR)),
                           xp.full_like(input, LOG_FLOOR))
        loss = -(pos * log_p + neg * log_q)
        grad = hess = None
        if order >= 1:
            p = xp.maximum(input, xp.asarray(PROB_EPS, dtype=input.dtype, device=_array.device(input)))
            q = xp.maximum(1 - input, xp.asarray(PROB_EPS, dtype=input.dtype,
                                                 device=_array.device(input)))
            if order == 1:
                grad = neg / q - pos / p
            else:
                hess = pos / (p * p) + neg / (q * q)
        return Terms(loss, grad, hess)


same_loss_on_logits_and_probabilities(BinaryCrossEntropyWithLogits, BinaryCrossEntropy)


@function_of(BinaryCrossEntropyWithLogits)
def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     label_smoothing=0.0, reduction="mean", normalizer=None, impl="auto"):
    r"""Binary cross-entropy computed from logits, stable for every finite input.

    .. math:: l_i = -\left(w_+ y'_i \log\sigma(z_i) + (1 - y'_i)\log\sigma(-z_i)\right),
              \quad y' = (1 - a) y + a / 2

    Shapes: ``logits [...]`` float; ``target [...]`` (same shape, values in [0, 1]);
    ``weight [...]`` per element; ``pos_weight`` number or ``[logits.shape[-1]]``.
    Returns ``[...]`` for ``reduction="none"`` else a 0-d array (``"mean"`` divides by
    ``sum(weight)`` or ``normalizer``). Edges: finite for finite logits; +-inf give the limit.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.binary_cross_entropy_with_logits(np.array([0.0]), np.array([1.0]))), 6)
    0.693147
    """
    return BinaryCrossEntropyWithLogits(pos_weight=pos_weight, label_smoothing=label_smoothing,
                                        reduction=reduction, impl=impl)(logits, target, weight=weight,
                                                             normalizer=normalizer)


@function_of(BinaryCrossEntropy)
def binary_cross_entropy(probs, target, *, weight=None, pos_weight=None, label_smoothing=0.0,
                         reduction="mean", normalizer=None, impl="auto"):
    r"""Binary cross-entropy from probabilities: :math:`-(w_+ y'\log p + (1 - y')\log(1 - p))`.

    Shapes and options as :func:`binary_cross_entropy_with_logits`; ``probs`` must lie in
    [0, 1] (else :class:`LossInputError`). ``log`` is floored at -100 (PyTorch's rule), so
    BCE(p=0, y=1) = 100, not inf. For y = 1 the loss is -log(p); for y = 0, -log(1 - p).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.binary_cross_entropy(np.array([0.9, 0.2]), np.array([1, 0]),
    ...                                     reduction="sum")), 6)  # -log 0.9 - log 0.8
    0.328504
    """
    return BinaryCrossEntropy(pos_weight=pos_weight, label_smoothing=label_smoothing,
                              reduction=reduction, impl=impl)(probs, target, weight=weight,
                                                   normalizer=normalizer)
