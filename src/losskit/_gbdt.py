r"""What the XGBoost and LightGBM objectives share: a loss's per-row gradient and Hessian in a
gradient-boosting library's layout, its metric, and its best constant margin.

Design note: a GBDT library does its own reduction (sums over a leaf's rows) and regularisation
(``lambda``, ``min_child_weight``), so an objective returns, per row, ``w_i dl_i/dz`` and
``w_i d^2 l_i/dz^2`` with no 1/N: the core loss with ``reduction="sum"`` and the library's sample
weights as ``weight``. Two things a Newton step needs that a loss may not give:

* a positive Hessian. Where it is 0 because the loss is piecewise linear in a residual ``r``
  (a loss that declares ``gbdt_curvature = "majorize"``: absolute error, quantile) the objective
  hands over the curvature of the majorise-minimise (IRLS) quadratic that touches the loss at the current residual:
  ``|r| <= r^2 / (2 |r0|) + |r0| / 2``, so a unit whose slope jumps by ``k`` at its kink
  (``2 w / D`` for the absolute error, ``w`` for the pinball loss, slopes ``-q w`` and
  ``(1 - q) w``) gets ``k / (2 max(|r|, eps))`` (:func:`mm_hessian`), the gradient unchanged. A
  leaf's value ``-sum g / (sum h + lambda)`` is then (``lambda`` = 0) one MM step from the current
  margin towards the weighted median (quantile) of the leaf's residuals: an average of residuals
  weighted by ``1 / max(|r|, eps)``, in the target's units, where a constant Hessian gives a mean of
  signs (at most 1) whatever the target's scale. ``eps`` is ``MM_FLOOR`` times the weighted median
  of ``|r|`` over the rows, per output column: within ``eps`` of the kink the curvature is that of
  the loss smoothed to a parabola there (Hunter and Lange's perturbed MM uses
  ``1 / (eps + |r|)``), so that a row at its target (``r = 0``, infinite curvature) does not
  freeze its leaf for good. The whole is scale-equivariant: targets times c give margins times c
  when ``lambda`` and ``min_child_weight`` are 0; they act on a Hessian in 1/target units. Where
  the Hessian of a loss is 0 otherwise (``Hessian.ZERO``: hinge losses) the row's weight (its class weight
  included, 0 for an ignored row) stands in, as in XGBoost's
  ``binary:hinge`` on its active side: a margin's scale is set by the kink at 1, not by the data,
  so a bounded step is on that scale. Where the Hessian can be negative (focal losses are not
  convex far on the wrong side: ``gbdt_curvature = "bounded"``) it is held at ``|g| / BOUNDED_STEP`` at
  least, so that a row's Newton step is at most four margin units there and where the curvature nears 0
  on the way (a floor of ``HESS_FLOOR`` times the weight alone let a LightGBM leaf of rare positives step
  by 10^4: ``lambda`` is 0 there by default); where the curvature is larger, the true one; every Hessian
  is then floored at ``HESS_FLOOR`` times the weight, so that a leaf never divides by 0;
* a starting margin. Under a custom objective both libraries start from a constant margin that
  they do not fit (XGBoost's ``base_score`` is then read as a margin, default 0.5; LightGBM starts
  at 0): :func:`base_margin` gives the loss's best constant.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import heads as _heads
from ._errors import argument_renamed
from ._stats import weighted_quantile
from .losses import REGISTRY, Loss
from .losses.base import require_loss_object
from .losses.declaration import IDENTITY, LOG, LOGIT, SOFTMAX, Hessian
from .losses.registry import name_of as _registered_name

#: the floor of every Hessian handed to a library, per unit of weight
HESS_FLOOR = 1e-6
#: the largest Newton step of one row, in margin units, where a loss declares ``gbdt_curvature = "bounded"``
#: (its Hessian held at ``|g| / BOUNDED_STEP`` at least): where its curvature is at least that, the true one
BOUNDED_STEP = 4.0
#: the floor of ``|r|`` in the majorise-minimise curvature, per unit of the weighted median of ``|r|``
MM_FLOOR = 0.1


def resolve(loss_or_head) -> Loss:
    """A Loss from a Loss, a head, or a name (a registry name, ``"huber_loss"``, or a head's short name,
    ``"huber"``), refused where a GBDT cannot train it: a loss on probabilities (the trees add up
    margins), one whose target is not a label (a teacher's logits), a class axis other than the last
    (the libraries' margins are ``[N, K]``)."""
    if isinstance(loss_or_head, _heads.Head):
        loss = loss_or_head.loss_object
    elif isinstance(loss_or_head, Loss):
        loss = loss_or_head
    elif isinstance(loss_or_head, str):
        loss = _by_name(loss_or_head)()
    else:
        if isinstance(loss_or_head, type) and issubclass(loss_or_head, Loss):  # a class for its instance: says so
            require_loss_object(loss_or_head)
        raise _checks.fail("loss", "a losskit Loss object, a head or a loss name", repr(loss_or_head))
    _check_trainable(loss)
    return loss


def _by_name(name: str) -> type:
    """The loss class a name stands for: a registry name, or the one class with that short name."""
    if name in REGISTRY:
        return REGISTRY[name][0]
    classes = [cls for cls, _ in REGISTRY.values() if name in cls.aliases]
    if len(classes) == 1:
        return classes[0]
    if classes:
        raise _checks.fail("loss", f"one loss: {name!r} is the short name of "
                           f"{', '.join(repr(c.name) for c in classes)}", repr(name), "give its registry name")
    raise _checks.fail("loss", "a registry name (losskit.catalogue(): 'huber_loss', 'softmax_cross_entropy', ...) "
                       "or a head's short name ('huber', 'mae', ...)", repr(name))


def _check_trainable(loss: Loss) -> None:
    name = name_of(loss)
    if loss.input_name == "probs":
        logits_form = type(loss).__dict__.get("logits_form")
        raise _checks.fail("loss", "a loss on margins (a GBDT's trees add up margins, not probabilities)",
                           f"{name}, a loss on probabilities",
                           f"use {logits_form.name!r}" if logits_form else "use its form on logits")
    if getattr(loss, "target", None) == "logits":  # distillation, JSD: declared on the class
        raise _checks.fail("loss", "a loss whose target is a GBDT label", f"{name}, whose target is a teacher's "
                           "logits")
    axis = getattr(loss.options, "axis", -1)
    if loss.over_classes and axis not in (-1, 1):
        raise _checks.fail("loss", "a loss over the last axis (a GBDT's margins are [N, K])",
                           f"{name} with axis={axis}", "build it with axis=-1")


class Callback:
    """The base of losskit.xgboost's and losskit.lightgbm's objective and metric callables: classes, not
    closures, so that they pickle. ``units``: a head's (checked against the margins); ``builtin``: a metric
    given a built-in's transformed predictions (:func:`margins_of` takes them back to margins)."""

    units = None  # (one pickled before it held a head's units has none)
    builtin = False

    def __init__(self, loss: Loss, units: int | None = None, builtin: bool = False):
        self.loss, self.units, self.builtin, self.__name__ = loss, units, builtin, name_of(loss)


def name_of(loss: Loss) -> str:
    return _registered_name(loss) or type(loss).__name__


def is_multiclass(loss: Loss) -> bool:
    """Whether ``loss`` is a loss over ``[N, K]`` margins with class labels: its class declares that an
    example is a row over a class axis (a user's own such loss too, not only the catalogue's classes)."""
    return bool(loss.over_classes)


def units_of(loss_or_head) -> int | None:
    """A head's output units (the margins' last axis a GBDT must give it), None for a loss."""
    return loss_or_head.units if isinstance(loss_or_head, _heads.Head) else None


def _margins(margin, size: int, shape, loss: Loss, units=None) -> np.ndarray:
    """``margin`` (NumPy float64) in ``shape``, refused by name where its size is not ``size``."""
    margin = np.asarray(margin, dtype=np.float64)
    outputs = loss.units_per_value
    if margin.size != size:
        if outputs:
            hint = (f"with lightgbm, num_class={outputs} (losskit.lightgbm.params gives it); with xgboost, the "
                    f"label as {outputs} columns (XGBoost makes one margin per label column: "
                    f"np.repeat(y[:, None], {outputs}, axis=1))")
        elif is_multiclass(loss):
            hint = "num_class=K for K classes"
        else:
            hint = "one margin per label value (no num_class for this loss)"
        raise _checks.fail("margins", f"{size} margins for these labels", f"{margin.size} ({margin.shape})", hint)
    margin = margin.reshape(shape)
    width = margin.shape[-1] if margin.ndim > 1 else 1
    if units is not None and width != units:
        hint = ("XGBClassifier trains two classes as one binary margin: use a binary head, or xgb.train with "
                "num_class=2" if units == 2 and width == 1 else f"num_class={units}")
        raise _checks.fail("margins", f"{units} per row (the head's units)", f"{width} per row", hint)
    return margin


def layout(loss: Loss, margin, label, units=None):
    """``(input, target)`` for ``loss`` from a library's margins and labels (NumPy float64); ``units``: the
    head's, which the margins per row must equal."""
    label = np.asarray(label)
    n = label.shape[0]
    if n == 0 and np.size(margin):  # margins for labels of no row: the margins' count was blamed
        raise _checks.fail("label", "one label per row of the training data", "none (the data has no label)")
    if is_multiclass(loss):  # [N, K] margins; class indices as labels
        size = np.size(margin)
        if n and size == n and label.ndim == 1 and units is None:  # one margin a row: no num_class (a head's units
            # are checked below, with their own hint)
            raise _checks.fail("num_class", "the number of classes, for a multi-class loss (K margins per row)",
                               "one value per row (num_class unset or 1, or class predictions)",
                               "pass num_class=K (losskit.xgboost.params / losskit.lightgbm.params give it); "
                               "XGBoost's multi:softmax predicts class indices: use multi:softprob; a scikit-learn "
                               "classifier of two classes trains one binary margin: use a binary loss")
        z = _margins(margin, size if n and size % n == 0 else n, (n, -1), loss, units)
        if label.ndim == 1:
            if not np.all(label == np.rint(label)):
                bad = label[label != np.rint(label)][0]
                raise _checks.fail("label", "class indices (whole numbers)", f"{bad!r}")
            return z, np.rint(label).astype(np.int64)
        return z, label.astype(np.float64)
    outputs = loss.units_per_value
    if outputs:  # the units of one value
        z = _margins(margin, n * outputs, (n, outputs), loss, units)
        return z, (label if label.ndim == 1 else label[:, 0]).astype(np.float64)
    z = _margins(margin, label.size, label.shape if loss.reduces_last_axis or label.ndim > 1 else (n,), loss, units)
    return z, label.astype(np.float64)


#: the loss's errors about its target say ``label``, the word of XGBoost's and LightGBM's APIs (``target: expected
#: non-negative values`` met by the objective named no argument a GBDT user passed)
_labels_named = argument_renamed(target="label")


@_labels_named
def grad_hess(loss: Loss, margin, label, weight=None, units=None):
    """Per-row (per-unit) gradient and positive Hessian of ``loss``, in ``margin``'s shape (``units``: a
    head's, checked against the margins)."""
    z, y = layout(loss, margin, label, units)
    w = row_weight(loss, weight, z)
    summed = loss.replace(reduction="sum")
    grad = np.asarray(summed.grad(z, y, weight=w))
    unit = _per_unit(w, z)
    if loss.gbdt_curvature == "majorize":
        hess = mm_hessian(loss, z, y, unit)
    elif loss.hessian is Hessian.ZERO:
        # the documented substitute: one unit of the example's weight per row, its class weight included
        # (0 for an ignored row), as the gradient's
        hess = np.array(_per_unit(summed.plan(z, y, weight=w).scale, z), dtype=np.float64)
    else:
        hess = np.asarray(summed.hessian_diag(z, y, weight=w))
        if loss.gbdt_curvature == "irls":
            hess = irls_hessian(grad, hess, z, y)
        elif loss.gbdt_curvature == "bounded":  # a row's step at most BOUNDED_STEP margin units (module note)
            hess = np.maximum(hess, np.abs(grad) / BOUNDED_STEP)
        hess = np.maximum(hess, HESS_FLOOR * unit)
    shape = np.shape(margin)
    return grad.reshape(shape), hess.reshape(shape)


def row_weight(loss: Loss, weight, z):
    """The library's weight of a row (``[N]``, None or empty: none) as ``loss`` takes it at inputs ``z``: per
    element where each element is an example (an elementwise loss on ``[N, L]`` labels: BCE, focal, the
    hinge), else per row. Passed as it came, a row's weight met "expected shape (N, L)" there."""
    if weight is None or np.size(weight) == 0:
        return None
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim == 1 and z.ndim > 1 and loss.example_axis(z.ndim) is None:
        return np.ascontiguousarray(_per_unit(weight, z))
    return weight


def _per_unit(weight, z):
    """A weight per example (or None: 1; or 0-d) in ``z``'s shape."""
    if weight is None:
        return np.ones_like(z)
    weight = np.asarray(weight, dtype=np.float64)
    return np.broadcast_to(weight.reshape(weight.shape + (1,) * (z.ndim - weight.ndim)), z.shape)


def irls_hessian(grad, hess, z, y):
    r"""``g / e`` per unit, ``e = z - y``: for a loss of the error that is a concave function of ``e^2``
    (Huber, pseudo-Huber, log-cosh), ``l(e) <= l(e0) + l'(e0) / (2 e0) (e^2 - e0^2)`` (equality at ``e0``),
    so the quadratic through the current point with the loss's slope that lies above it has curvature
    ``l'(e0) / e0 >= l''(e0)``: the iteratively reweighted least-squares weight (``min(1, delta / |e|)`` for
    Huber). A leaf's Newton step is then a weighted mean of its residuals; the true Hessian, 0 (Huber) or
    ``~ 1 / |e|^3`` (pseudo-Huber) far from the target, made steps of thousands of residuals' size. Where
    ``e`` is 0 (or too small to divide by) the two agree: the true Hessian there."""
    e = np.asarray(z, dtype=np.float64) - np.asarray(y, dtype=np.float64).reshape(
        np.shape(y) + (1,) * (np.ndim(z) - np.ndim(y)))
    safe = np.abs(e) > np.sqrt(np.finfo(np.float64).tiny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(safe, grad / np.where(safe, e, 1.0), hess)


def mm_hessian(loss: Loss, z, y, unit):
    r"""The majorise-minimise curvature of a loss piecewise linear in the residual ``r``, per unit.

    A unit ``a max(r, 0) + b max(-r, 0)`` is ``(a + b)/2 |r| + (a - b)/2 r``, and ``|r| <= r^2 / (2 |r0|)
    + |r0| / 2`` with equality at ``r0``: the quadratic through the current point with the same slope
    that lies above the loss has curvature ``k / (2 |r0|)``, ``k = a + b`` the jump of the slope at
    the kink. ``|r0|`` is floored at ``MM_FLOOR`` times the weighted median of ``|r|`` in the unit's
    output column (its weighted mean where that median is 0, the unit's own rounding-size floor where every
    residual is 0). ``z``, ``y`` and ``unit`` (the weights, in ``z``'s shape) are :func:`layout`'s.
    """
    z = np.asarray(z, dtype=np.float64)
    target = np.asarray(y, dtype=np.float64)
    y = target.reshape(target.shape + (1,) * (z.ndim - target.ndim))  # one target a row for several units
    # the jump of the slope at the kink, per unit and unweighted, read from the loss's own gradient either side
    # of it (quantile q: -q and 1 - q, k = 1; the absolute error's mean over D values: k = 2 / D; a user's
    # c |r|: 2 c). A constant k of 2 / D gave a user's pinball loss twice the quantile loss's curvature and
    # a user's 3 |r| steps of 3 residuals, which diverged (found in review)
    at = np.broadcast_to(y, z.shape)
    step = 1.0 + np.abs(at)  # past the kink on either side, and not lost to the target's rounding
    summed = loss.replace(reduction="sum")
    k = np.abs(np.asarray(summed.grad(at + step, target)) - np.asarray(summed.grad(at - step, target)))
    r = np.abs(y - z)
    eps = MM_FLOOR * _robust_scale(r, unit)
    # a residual's rounding, per unit: a floor from the largest target raised every row's (one label of 1e17
    # gave every row a curvature 300 times too small, found in review)
    tiny = np.finfo(np.float64).eps * (1.0 + np.abs(y))
    return unit * k / (2.0 * np.maximum(r, np.maximum(eps, tiny)))


def _robust_scale(a, weight):
    """The weighted median of ``a`` over the rows (axis 0), per column; the weighted mean where it is 0."""
    if a.shape[0] == 0 or a.size == 0:
        return np.zeros(a.shape[1:])
    flat, w = a.reshape(a.shape[0], -1), np.broadcast_to(weight, a.shape).reshape(a.shape[0], -1)
    total = np.sum(w, axis=0)
    median = np.array([weighted_quantile(flat[:, j], 0.5, w[:, j]) for j in range(flat.shape[1])])
    mean = np.sum(w * flat, axis=0) / np.maximum(total, np.finfo(np.float64).tiny)
    return np.where(median > 0, median, mean).reshape(a.shape[1:])


@_labels_named
def metric_value(loss: Loss, margin, label, weight=None, units=None) -> float:
    """The loss's weighted mean over the rows (``sum w_i l_i / sum w_i``) at the margins."""
    z, y = layout(loss, margin, label, units)
    return float(loss.replace(reduction="mean")(z, y, weight=row_weight(loss, weight, z)))


def base_margin(loss_or_head, label, weight=None) -> float:
    """The constant margin that minimises the weighted loss of one-output ``loss`` over ``label``
    (for example ``logit(mean y)`` for BCE, ``log(mean y)`` for the deviances, the weighted median
    for the absolute error): a starting point for a custom objective (XGBoost's ``base_score``,
    LightGBM's ``init_score``). The absolute error (one value per row) and a one-quantile
    ``QuantileLoss`` get their exact minimiser, the lower weighted median or quantile (an order
    statistic of ``label``: the built-ins interpolate instead). Multi-output losses (labels ``[N, K]``,
    ``K > 1``, or a loss over a row's K values) start at 0. ``label`` is checked as the loss checks
    its target (the objective would refuse it at the first round)."""
    loss = resolve(loss_or_head)
    label, w = _start_inputs(label, weight)
    _check_labels(loss, label, w, units_of(loss_or_head))
    if label.ndim > 1:
        return 0.0  # one constant per output has no single value
    return loss.best_constant(label, w)


def _start_inputs(label, weight):
    """``label`` and ``weight`` as float64 (a column ``[N, 1]`` as ``[N]``), checked as the loss checks
    them (a best constant needs at least one row of positive weight, and finite labels)."""
    try:
        label = np.asarray(label, dtype=np.float64)
    except (TypeError, ValueError):
        raise _checks.fail("label", "numbers", f"values of dtype {np.asarray(label).dtype}") from None
    if label.ndim == 0 or label.shape[0] == 0:
        raise _checks.fail("label", "at least one row", f"shape {label.shape}")
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if not np.all(np.isfinite(label)):
        raise _checks.fail("label", "finite numbers", "NaN or inf")
    if weight is None or np.size(weight) == 0:
        return label, None
    w = np.asarray(weight, dtype=np.float64)
    _checks.same_shape("weight", w, "one value per row of label", label.shape[:1])
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise _checks.fail("weight", "finite numbers >= 0", "a negative, NaN or inf weight")
    if not np.any(w > 0):
        raise _checks.fail("weight", "at least one weight > 0", "all 0")
    return label, w


@_labels_named
def _check_labels(loss: Loss, label, weight, units=None) -> None:
    """The loss's own checks of ``label`` as a target (0/1, +-1, y > 0...), at margins of 0; ``units``: a
    head's (a multi-class head's classes, which the labels need not all hold)."""
    n = label.shape[0]
    if is_multiclass(loss):
        # as many classes as the labels, the head and the class weights say (a training set without the top
        # class was refused for a class_weight of K entries)
        classes = label.shape[1] if label.ndim > 1 else int(np.max(np.rint(label), initial=0)) + 1
        class_weight = getattr(loss.options, "class_weight", None)
        classes = max(classes, units or 0, 0 if class_weight is None else len(class_weight))
        shape = (n, max(classes, 2))  # (two at least: one margin a row is a missing num_class, refused in layout)
    else:
        outputs = loss.units_per_value
        shape = (n, outputs) if outputs else label.shape
    z, y = layout(loss, np.zeros(shape), label)
    # (an elementwise loss checks its target's values where its formula reads them)
    loss(z, y, weight=row_weight(loss, weight, z))


def builtin_params(loss_or_head, library: str, num_class=None):
    """``({"objective": ..., **params}, extra)`` for ``library``'s built-in objective when it is ``loss``
    (the loss's ``gbdt_builtin`` declaration), else ``(None, extra)``; ``extra`` holds ``num_class`` for
    a multi-class loss (given, or a multi-class head's ``n_classes``). A built-in also fits its own
    starting margin and, for the absolute error and quantiles, refits leaves to the exact
    median/quantile (a custom objective cannot)."""
    loss = resolve(loss_or_head)
    outputs = loss.units_per_value
    if is_multiclass(loss):
        extra = {"num_class": _num_class(loss_or_head, loss, num_class)}
    elif outputs and outputs > 1 and library == "lightgbm":  # LightGBM makes K margins per row for num_class=K
        extra = {"num_class": outputs}
        if num_class is not None and num_class != outputs:
            raise _checks.fail("num_class", f"{outputs} (the margins per row of {name_of(loss)})", repr(num_class))
    else:
        extra = {}
        if num_class is not None:
            raise _checks.fail("num_class", f"None for {name_of(loss)} (num_class is for a multi-class loss)",
                               repr(num_class))
    builtin = loss.gbdt_builtin(library)
    if builtin is None:
        return None, extra
    objective, params = builtin
    return {"objective": objective, **params, **extra}, extra


def _num_class(loss_or_head, loss, num_class) -> int:
    """A multi-class loss's ``num_class``: the one given, or the head's ``n_classes`` (both, when given, agree)."""
    known = getattr(loss_or_head, "n_classes", None) if isinstance(loss_or_head, _heads.Head) else None
    if num_class is None and known is None:
        raise _checks.fail("num_class", f"the number of classes, an int >= 2, for the multi-class loss "
                           f"{name_of(loss)}", "None", "or pass a multi-class head, which knows its n_classes")
    if num_class is None:
        return known
    num_class = _checks.int_at_least(num_class, "num_class", 2)
    if known is not None and num_class != known:
        raise _checks.fail("num_class", f"{known} (the head's n_classes)", repr(num_class))
    return num_class


def margins_of(loss: Loss, predictions):
    """The margins (the loss's input) behind a built-in objective's predictions: the loss's link
    applied to them (:meth:`~losskit.losses.declaration.Link.of_means`). A probability of exactly 0
    or 1 gives an infinite margin, whose loss is the prediction's own (0 or inf); but a float32
    prediction (XGBoost's) of 0 or 1 is a rounding of one inside: it is taken as the nearest float32
    inside the link's range (a logit of 16.6 for 1; it was inf, a held-out log-loss of inf where
    XGBoost's own was 0.291)."""
    predictions = np.asarray(predictions)
    if predictions.dtype == np.float32 and loss.link in (LOGIT, LOG, SOFTMAX):
        low = np.finfo(np.float32).smallest_subnormal
        high = np.nextafter(np.float32(1), np.float32(0)) if loss.link is LOGIT else np.inf
        predictions = np.clip(predictions, low, high)
    return loss.link.of_means(predictions.astype(np.float64))


def builtin_metric(loss: Loss, builtin) -> bool:
    """``builtin`` (a metric's flag: the predictions are a built-in objective's), refused for a loss whose
    link no built-in objective of the libraries has (there is no such prediction to take back)."""
    if _checks.flag(builtin, "builtin") and loss.link not in (IDENTITY, LOGIT, LOG, SOFTMAX):
        raise _checks.fail("builtin", f"False for {name_of(loss)} (no built-in objective of the libraries has "
                           f"its {loss.link.name} link)", "True")
    return builtin
