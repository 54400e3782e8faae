r"""Output heads: a task's activation, loss, analytic gradient and decode rule, as one object.

=================  =====  ================  ===============================  ==================
head               units  activation        loss per example                 ``predict``
=================  =====  ================  ===============================  ==================
BinaryHead         1      sigmoid           BCE from logits                  p > threshold
MulticlassHead     K      softmax           softmax cross-entropy            argmax
MultilabelHead     K      sigmoid per unit  BCE summed over the K labels     p_k > threshold_k
RegressionHead     D      identity          squared error, mean over the D   the value
=================  =====  ================  ===============================  ==================

A head holds a core :class:`~losskit.Loss` (``head.loss_object``) rather than being one: the
options (``pos_weight``, ``class_weight``, ``ignore_index``, ``label_smoothing``,
``reduction``) mean exactly what they mean for the core losses, and ``head.loss``,
``head.value_and_grad``, ``head.grad`` and ``head.hessian_diag`` return the core's numbers.
What a head adds is the task around the loss: the number of output units (checked against the
logits), the activation, the decode rule, and the mapping between a user's class labels
("cat", -1/1) and the indices the loss takes (``head.encode`` / ``head.decode``).

Each head takes any loss of its task (``loss="focal"``, a function name, or a Loss object; the
loss's own options by name: ``lk.head("regression", loss="huber", delta=2.0)``); see
:data:`TASK_LOSSES`. The quantile and Gaussian NLL losses have heads of their own units
(:class:`QuantileHead`, :class:`GaussianHead`), and a deviance's head predicts ``exp`` of its
output (a log link).

:func:`head` builds a head by task name; :func:`head_for` picks one from training targets with
:func:`losskit.targets.type_of_target` and keeps its explanation in ``head.reason``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _array, _checks
from ._checks import LossInputError, fail
from ._errors import argument_renamed
from .activations import sigmoid_xp, softmax_xp
from .losses import REGISTRY, GaussianNLL, Loss, QuantileLoss
from .losses.declaration import HALF_LOGIT, IDENTITY
from .losses.registry import name_of, unregistered
from .targets import TargetType, decode_labels, encode_labels, to_host, type_of_target
from .tasks import Task

__all__ = ["Head", "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "QuantileHead",
           "GaussianHead", "TASK_LOSSES", "head", "head_for"]

#: the default loss of each task's head
_DEFAULTS = {Task.BINARY: "binary_cross_entropy_with_logits", Task.MULTICLASS: "softmax_cross_entropy",
             Task.MULTILABEL: "multilabel_cross_entropy", Task.REGRESSION: "mean_squared_error"}


def _required(**arrays):
    """:func:`losskit._array.namespace` of arguments that must be given (:func:`losskit._checks.given`)."""
    _checks.given(**arrays)
    return _array.namespace(**arrays)


class _TaskLosses(Mapping):
    """The losses each task's head takes, by short name (a class's ``aliases``, else its registered
    name), read from the registry at each look-up, so that a user's own loss of a task is there
    too. The first is the task's default. Registry names and Loss objects are accepted as well."""

    def __getitem__(self, kind: Task | str) -> dict:
        try:
            kind = Task.parse(kind)
        except LossInputError:
            raise KeyError(kind) from None
        default = REGISTRY[_DEFAULTS[kind]][0]
        classes = [default] + [cls for cls, _ in REGISTRY.values() if cls.task == kind and cls is not default]
        table: dict = {}
        for cls in classes:
            for alias in cls.aliases or (cls.name,):
                table.setdefault(alias, cls)
        return table

    def __iter__(self):
        return iter(_DEFAULTS)

    def __len__(self) -> int:
        return len(_DEFAULTS)


TASK_LOSSES = _TaskLosses()


def loss_class(kind: Task, loss) -> type:
    """The Loss class a head of ``kind`` builds for ``loss`` (None: the task's default, a short
    name, a registry name, or a Loss object); a loss of another task raises, naming ``loss``."""
    table = TASK_LOSSES[kind]
    names = ", ".join(repr(n) for n in table)
    task = Task.parse(kind)
    # every registered loss of the task by its name: a subclass that inherits its parent's alias ("focal") is
    # not in the table under it, which keeps the parent
    by_function = {name: cls for name, (cls, _) in REGISTRY.items() if cls.task == task}
    if loss is None:
        return next(iter(table.values()))
    if isinstance(loss, Loss):
        cls = type(loss)
        if cls.task != task:
            raise fail("loss", f"a loss of the {task} task ({names})",
                       f"{cls.__name__}, a loss of the {cls.task} task" if cls.task else cls.__name__)
        if name_of(cls) is None:
            raise fail("loss", "a registered Loss: its class declares a name (class attribute `name = \"...\"`)",
                       unregistered(cls))
        return cls
    if isinstance(loss, str):
        if loss in table:
            return table[loss]
        if loss in by_function:
            return by_function[loss]
    raise fail("loss", f"one of {names} (or their function names, or a Loss object) for a {task} head",
               repr(loss))


def build_loss(kind: Task, loss, options: dict) -> Loss:
    """The head's Loss: ``loss`` itself when it is a Loss object (then no option may be given), else
    the class :func:`loss_class` names, built with ``options`` (each checked by name)."""
    cls = loss_class(kind, loss)
    if isinstance(loss, Loss):
        defaults = {"reduction": "mean", "impl": "auto"}
        given = {k: v for k, v in options.items() if k not in defaults or v != defaults[k]}
        if given:
            name = next(iter(given))
            raise fail(name, f"no loss option beside a Loss object ({type(loss).__name__})", repr(given[name]),
                       "set it on the object instead")
        return loss
    _checks.known_options(options, _parameters(cls), cls.__name__)
    return cls(**options)


def _parameters(cls) -> list[str]:
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

_CALL_DOC = """
    Call forms (the core :class:`~losskit.Loss` options and reduction rule apply unchanged):
    ``loss(logits, target, *, weight=None, normalizer=None)`` -> reduced value;
    ``value_and_grad(...)`` -> ``(value, d value / d logits)``; ``grad(...)``;
    ``hessian_diag(...)`` -> diagonal of ``d^2 value / d logits^2``. Gradients and Hessians
    have the logits' shape; ``reduction="none"`` gives one value per example.
"""


_int_option = _checks.int_at_least


def _threshold(value, name: str = "threshold"):
    """A probability in (0, 1), or a list of them; returned as the logit(s) it corresponds to."""
    if isinstance(value, bool) or not (isinstance(value, (int, float, list, tuple))
                                       or _array.is_array(value)):
        raise fail(name, "a probability in (0, 1) or a list of them", repr(value))
    try:
        host = to_host(value, name).astype(float)
    except (TypeError, ValueError):
        raise fail(name, "a probability in (0, 1) or a list of them", repr(value)) from None
    if host.ndim > 1:  # one per label, never a nested list read flat
        raise fail(name, "a probability in (0, 1) or a 1-D list of them", f"shape {host.shape}")
    values = [float(v) for v in host.reshape(-1)]
    for v in values:
        if not 0.0 < v < 1.0:
            raise fail(name, "probabilities in (0, 1)", repr(v))
    # p > t  <=>  z > log(t / (1 - t)): compare logits, so z = 1e-20 still reads as positive
    logits = [_logit(v) for v in values]
    return logits if host.ndim else logits[0]


def _cut_in(cut, dtype):
    """``cut`` (a float or a list) as the largest value of ``dtype`` at or below it, as Python floats: for a
    logit z of that dtype, ``z > that`` is exactly ``z > cut``. The comparison rounded the cut to the dtype's
    nearest, so where that rounded up the one value between was read on the wrong side (float32, t = 0.3:
    z = -0.84729785 predicted 0 where sigmoid(z) > 0.3). Unchanged for float64 and for a dtype NumPy does not
    name (one without ml_dtypes' bfloat16)."""
    host = _host_float_dtype(str(dtype).rpartition(".")[2])
    if host is None or host == np.float64:
        return cut
    return _cuts_below(tuple(cut), host) if isinstance(cut, list) else _cuts_below((cut,), host)[0]


@functools.lru_cache(maxsize=64)
def _cuts_below(cuts: tuple, host) -> list:
    out = []
    for cut in cuts:
        value = np.asarray(cut, dtype=host)
        if float(value) > cut:
            value = np.nextafter(value, np.asarray(-np.inf, dtype=host))
        out.append(float(value))
    return out


@functools.lru_cache(maxsize=16)
def _host_float_dtype(name: str):
    """The NumPy dtype of a floating dtype's name ("float32", "bfloat16" through ml_dtypes), or None."""
    if name in ("float16", "float32", "float64"):
        return np.dtype(name).type
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            return None
        return ml_dtypes.bfloat16
    return None


def _logit(t: float) -> float:
    """``log(t / (1 - t))`` to a few ulps: ``log(t) - log1p(-t)`` cancels near t = 1/2 (4,900 ulps off at t =
    0.50002), where ``1 - t`` (t >= 1/2) and ``1 - 2t`` (1/4 <= t < 1/2) are exact and ``log1p`` takes the rest."""
    if t >= 0.5:
        return math.log1p((2 * t - 1) / (1 - t))
    if t >= 0.25:
        return -math.log1p((1 - 2 * t) / t)
    return math.log(t) - math.log1p(-t)


def _default_int(xp):
    try:
        return xp.__array_namespace_info__().default_dtypes()["integral"]
    except (AttributeError, KeyError, TypeError):
        return xp.int64


class Head:
    """Base of the four heads: a task's output layer (units, activation, loss, decode rule).

    Attributes: ``task`` (a :class:`~losskit.Task`), ``units``
    (output units the logits must have on their last axis), ``loss_object`` (the core
    :class:`~losskit.Loss`), ``classes`` (class labels for ``encode``/``decode``, or
    ``None``), ``reason`` (why this head: given by name, or :func:`head_for`'s explanation).
    """

    task: Task
    activation_name = ""
    #: the name errors give the network's output: the core loss's own name for it, so that every
    #: message from one head agrees (``predictions`` for RegressionHead, ``logits`` elsewhere)
    input_name = "logits"

    def __init__(self, loss_object: Loss, units: int, *, classes=None, reason: str = ""):
        self.loss_object = loss_object
        self.units = units
        if classes is not None:
            host = to_host(classes, "classes")
            if len(set(host.tolist())) != len(host):  # encode would refuse at its first call: here, at once
                raise fail("classes", "distinct labels", f"repeated labels in {host.tolist()!r}")
        self.classes = classes
        self.reason = reason or f"task='{self.task}' given"

    def __repr__(self) -> str:
        extra = "" if self.classes is None else f", classes={to_host(self.classes).tolist()!r}"
        return f"{type(self).__name__}(units={self.units}, loss={self.loss_object!r}{extra})"

    # -- shapes --------------------------------------------------------------------------
    def _align(self, xp, logits, target):
        """Check the units; return ``(logits, target, restore)`` in the core loss's layout."""
        self._check_units(logits)
        return logits, target, None

    def _check_units(self, logits, axis: int = -1):
        if logits.ndim == 0 or logits.shape[axis] != self.units:
            got = "a 0-d array" if logits.ndim == 0 else f"shape {tuple(logits.shape)}"
            raise fail(self.input_name, f"{self.units} output unit(s) on axis {axis} for a "
                       f"{type(self).__name__} (units={self.units})", got)

    def _run(self, logits, target, weight, normalizer, order):
        xp, arrays = _required(logits=logits, target=target)
        logits, target, restore = self._align(xp, arrays["logits"], arrays["target"])
        call = self.loss_object
        if order == 0:
            return call(logits, target, weight=weight, normalizer=normalizer)
        if order == 1:
            value, grad = call.value_and_grad(logits, target, weight=weight, normalizer=normalizer)
            return value, (grad if restore is None else restore(grad))
        hess = call.hessian_diag(logits, target, weight=weight, normalizer=normalizer)
        return hess if restore is None else restore(hess)

    # -- the call forms --------------------------------------------------------------------
    def loss(self, logits, target, *, weight=None, normalizer=None):
        """The reduced loss of ``logits`` against ``target`` (see the head's class docstring)."""
        return self._run(logits, target, weight, normalizer, 0)

    def value_and_grad(self, logits, target, *, weight=None, normalizer=None):
        """``(loss, d loss / d logits)``; the gradient has the logits' shape."""
        return self._run(logits, target, weight, normalizer, 1)

    def grad(self, logits, target, *, weight=None, normalizer=None):
        """``d loss / d logits``, of the logits' shape."""
        return self._run(logits, target, weight, normalizer, 1)[1]

    def hessian_diag(self, logits, target, *, weight=None, normalizer=None):
        """Diagonal of ``d^2 loss / d logits^2``, of the logits' shape."""
        return self._run(logits, target, weight, normalizer, 2)

    def _check_output(self, logits):
        """The unit check on the head's unit axis (the loss's ``axis`` for MulticlassHead)."""
        axis = getattr(self.loss_object, "axis", -1)
        self._check_units(logits, _checks.axis(axis, logits.ndim) - logits.ndim if logits.ndim else -1)

    def activation(self, logits):
        """The output activation applied to ``logits`` (same library, dtype, device); logits
        with the wrong number of units raise, as in ``loss``."""
        xp, arrays = _required(logits=logits)
        logits = arrays["logits"]
        _checks.floating(xp, logits, self.input_name)
        self._check_output(logits)
        work = _array.compute_dtype(xp, logits.dtype)
        out = self._activation_xp(xp, xp.astype(logits, work) if work != logits.dtype else logits)
        return xp.astype(out, logits.dtype) if out.dtype != logits.dtype else out

    def _activation_xp(self, xp, logits):
        return logits

    def predict(self, logits):
        """The decoded prediction (see the head's class docstring for the rule and shape)."""
        xp, arrays = _required(logits=logits)
        logits = arrays["logits"]
        _checks.floating(xp, logits, self.input_name)
        self._check_output(logits)
        return self._predict_xp(xp, logits)

    def _predict_xp(self, xp, logits):
        return logits

    def point(self, logits):
        """One predicted value per target value: ``predict``, except for the heads whose units are
        parameters of one value (the median quantile of a :class:`QuantileHead`, the mean of a
        :class:`GaussianHead`). Shapes: as ``predict``'s, those two without their unit axis."""
        return self.predict(logits)

    def encode(self, target):
        """The target as the loss takes it (see the head's class docstring)."""
        return target

    def decode(self, prediction):
        """``predict``'s indices as the user's class labels (``classes[prediction]``, NumPy);
        the prediction unchanged when the head has no ``classes``."""
        if self.classes is None:
            return prediction
        with argument_renamed(indices="prediction"):  # this method's word for the argument
            return decode_labels(prediction, self.classes)


class _ClassifierHead(Head):
    def predict_proba(self, logits):
        """Class probabilities: the activation of ``logits`` (see the class docstring)."""
        return self.activation(logits)


def _squeeze_last(xp, array):
    return xp.reshape(array, tuple(array.shape[:-1]))


class _SingleUnitMixin:
    """Logits ``[N]`` or ``[..., 1]`` and target ``[...]`` or ``[..., 1]``, read alike.

    A 2-D or higher array whose last axis is not 1 is refused: ``[N, 2]`` could be two units
    (a K = 2 head) or 2N examples, and reading it as the second would be silently wrong.
    """

    #: what to use instead of ``[N, K]`` logits, for the error message
    many_units_hint = ""

    def _align(self, xp, logits, target):
        _checks.given(target=target)  # (the torch and JAX forms align before any other check)
        self._check_units(logits)
        if logits.ndim >= 2 and logits.shape[-1] == 1:
            shape = tuple(logits.shape)
            logits = _squeeze_last(xp, logits)
            restore = lambda grad: xp.reshape(grad, shape)  # noqa: E731
        else:
            restore = None
        if target.ndim >= 2 and target.shape[-1] == 1 and target.ndim == logits.ndim + 1:
            target = _squeeze_last(xp, target)
        return logits, target, restore

    def _check_units(self, logits, axis: int = -1):
        if logits.ndim >= 2 and logits.shape[-1] != 1:
            raise fail(self.input_name, f"shape [N] or [N, 1] for a {type(self).__name__} with "
                       "one output unit", f"shape {tuple(logits.shape)}",
                       f"{self.many_units_hint}, or give one unit per example as [N] or [N, 1]")


class BinaryHead(_SingleUnitMixin, _ClassifierHead):
    __doc__ = r"""Binary classification: 1 unit, sigmoid, binary cross-entropy from logits.

    .. math:: l_i = -\left(w_+ y'_i \log\sigma(z_i) + (1 - y'_i)\log\sigma(-z_i)\right),
              \quad \hat y_i = [\sigma(z_i) > t]

    Options: ``loss`` (default BCE; any binary loss of :data:`TASK_LOSSES`, its options by name),
    ``pos_weight`` (number), ``label_smoothing`` a (y' = (1 - a) y + a/2),
    ``reduction``, ``threshold`` t in (0, 1) (default 0.5), ``classes`` (the two labels; the
    second is the positive class), ``impl``.

    Shapes: ``logits [N]`` or ``[..., 1]`` (one unit; both accepted; a last axis other than 1
    on a 2-D array raises, as ``[N, 2]`` is not 2N examples: use ``MulticlassHead(2)`` for two
    logits per example); ``target [...]`` or ``[..., 1]`` of 0/1 or probabilities (use
    :meth:`encode` for other labels); ``weight [...]``. ``predict`` and ``predict_proba``
    return ``[...]`` (a trailing unit axis is dropped): 0/1 integers and sigmoid probabilities.
    Gradients keep the logits' shape. Edges: ``predict`` compares the logit with
    ``log(t / (1 - t))``, so z = 1e-20 is class 1 at t = 0.5 even though sigmoid(1e-20) rounds
    to 0.5; +-inf logits give 1 / 0.
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> h = lk.BinaryHead()
    >>> h.predict(np.array([[2.0], [-1.0]])).tolist()
    [1, 0]
    >>> round(float(h.loss(np.array([0.0]), np.array([1]))), 6)
    0.693147
    """

    task = Task.BINARY
    activation_name = "sigmoid"
    many_units_hint = "use MulticlassHead(2) (softmax over K = 2 units) for two logits per example"

    def __init__(self, *, loss=None, pos_weight=None, label_smoothing: float = 0.0, reduction: str = "mean",
                 threshold: float = 0.5, classes=None, impl: str = "auto", reason: str = "", **loss_options):
        if getattr(pos_weight, "ndim", None) == 0 and hasattr(pos_weight, "item"):
            pos_weight = pos_weight.item()  # NumPy's scalars and 0-d arrays: their number
        if pos_weight is not None and not _checks.is_number(pos_weight):  # a bool too
            raise fail("pos_weight", "a number (one unit)", repr(pos_weight))
        options = _given(pos_weight=(pos_weight, None), label_smoothing=(label_smoothing, 0.0))
        loss = build_loss(Task.BINARY, loss, {**options, **loss_options, "reduction": reduction, "impl": impl})
        if classes is not None:
            classes = to_host(classes, "classes")
            if classes.shape != (2,):
                raise fail("classes", "the two class labels (negative, positive)",
                           f"shape {classes.shape}")
        super().__init__(loss, 1, classes=classes, reason=reason)
        self.threshold = threshold
        if loss.link is HALF_LOGIT:
            self.activation_name = loss.link.activation

    @property
    def threshold(self) -> float:
        """The probability ``predict`` compares with (``p > threshold``). Settable, e.g. to a cut-off tuned on
        validation data: the new value is checked and ``predict`` takes it (it kept the cut-off made at
        construction)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value) -> None:
        cut = _threshold(value)
        if isinstance(cut, list):
            raise fail("threshold", "one probability in (0, 1) (one unit)", repr(value))
        if self.loss_object.link is HALF_LOGIT:  # p = sigmoid(2 z): the threshold's margin is half its logit
            cut /= 2
        self._threshold, self._threshold_logit = value, cut

    def _activation_xp(self, xp, logits):
        return self.loss_object.link.inverse(xp, logits) if self.loss_object.link is HALF_LOGIT \
            else sigmoid_xp(xp, logits)

    def predict_proba(self, logits):
        """``sigmoid(logits)`` of shape ``[...]`` (a trailing unit axis dropped)."""
        xp, arrays = _required(logits=logits)
        logits = arrays["logits"]
        self._check_units(logits)
        if logits.ndim >= 2:
            logits = _squeeze_last(xp, logits)
        return self.activation(logits)

    def _predict_xp(self, xp, logits):
        if logits.ndim >= 2:  # [..., 1], checked by predict
            logits = _squeeze_last(xp, logits)
        return xp.astype(logits > _cut_in(self._threshold_logit, logits.dtype), _default_int(xp))

    def encode(self, target):
        """Labels -> 0/1 floats (``classes[1]`` is 1), NumPy for string labels, else the
        target's library. Without ``classes`` the target must already be 0/1 or in [0, 1]."""
        if self.classes is None:
            return target
        if _array.is_array(target) and not _is_host_labels(target):
            xp, arrays = _required(target=target)
            target = arrays["target"]
            try:  # the classes in the target's dtype: a string class, or -1 in uint8, has no such value
                negative, positive = (xp.asarray(c.item(), dtype=target.dtype, device=_array.device(target))
                                      for c in self.classes)
            except (ValueError, TypeError, OverflowError):
                raise fail("target", f"labels among classes ({self.classes.tolist()!r})",
                           f"an array of dtype {target.dtype}, which cannot hold them") from None
            known = (target == positive) | (target == negative)
            all_known = _array.concrete_bool(xp.all(known))
            if all_known is False:
                raise fail("target", f"labels among classes ({self.classes.tolist()!r})",
                           "another label")
            dtype = xp.float32 if target.dtype != xp.float64 else xp.float64
            encoded = xp.astype(target == positive, dtype)
            if all_known is None:  # values no check can read (under jit): another label's example gets a NaN
                # target, so its loss is NaN (docs/semantics.md), where it was silently the negative class
                encoded = xp.where(known, encoded, xp.asarray(float("nan"), dtype=dtype, device=_array.device(target)))
            return encoded
        indices, _ = encode_labels(target, self.classes)
        return indices.astype(float)


def _is_host_labels(target) -> bool:
    """A NumPy array of strings or objects: labels no other library can hold."""
    return type(target).__module__ == "numpy" and target.dtype.kind in "USO"


class MulticlassHead(_ClassifierHead):
    __doc__ = r"""Multi-class classification: K units, softmax, categorical cross-entropy.

    .. math:: l_i = -\sum_k y'_{ik} \log \mathrm{softmax}(z_i)_k, \quad \hat y_i = \arg\max_k z_{ik}

    Options: ``loss`` (default softmax CE; any multiclass loss of :data:`TASK_LOSSES`),
    ``n_classes`` K (or ``classes``, the K labels, which sets it), ``class_weight
    [K]``, ``ignore_index``, ``label_smoothing`` a (y' = (1 - a) y + a/K), ``reduction``,
    ``axis`` (the class axis, default -1), ``impl``.

    Shapes: ``logits [..., K]``; ``target`` integer ``[...]`` in [0, K) or probabilities
    ``[..., K]`` (use :meth:`encode` for labels or one-hot integers); ``weight [...]``.
    ``predict`` returns integer indices ``[...]`` (the first of tied maxima);
    ``predict_proba`` the softmax ``[..., K]``. Logits whose class axis is not K raise.
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> h = lk.head("multiclass", n_classes=3)
    >>> h.predict(np.array([[0.1, 2.0, -1.0]])).tolist()
    [1]
    """

    task = Task.MULTICLASS
    activation_name = "softmax"

    def __init__(self, n_classes: int | None = None, *, loss=None, class_weight=None, ignore_index=None,
                 label_smoothing: float = 0.0, reduction: str = "mean", axis: int = -1,
                 classes=None, impl: str = "auto", reason: str = "", **loss_options):
        if classes is not None:
            classes = to_host(classes, "classes")
            if classes.ndim != 1 or len(classes) < 2:
                raise fail("classes", "a 1-D list of at least 2 labels", f"shape {classes.shape}")
            if n_classes is not None and n_classes != len(classes):
                raise fail("n_classes", f"{len(classes)} (the number of classes given)", repr(n_classes))
            n_classes = len(classes)
        if n_classes is None:
            raise fail("n_classes", "an int >= 2 (or classes=[...])", "None")
        n_classes = _int_option(n_classes, "n_classes", 2)
        options = _given(axis=(axis, -1), class_weight=(class_weight, None), ignore_index=(ignore_index, None),
                         label_smoothing=(label_smoothing, 0.0))
        loss = build_loss(Task.MULTICLASS, loss, {**options, **loss_options, "reduction": reduction, "impl": impl})
        super().__init__(loss, n_classes, classes=classes, reason=reason)

    @property
    def n_classes(self) -> int:
        return self.units

    def _align(self, xp, logits, target):
        axis = self.loss_object.axis
        if logits.ndim == 0:
            raise fail("logits", "an array with a class axis", "a 0-d array")
        self._check_units(logits, _checks.axis(axis, logits.ndim) - logits.ndim)
        if logits.ndim == 2 and getattr(target, "ndim", 0) == 2 and tuple(target.shape) == (logits.shape[0], 1) \
                and _array.isdtype(xp, target.dtype, "integral"):
            # a label column [N, 1] beside [N, K] logits: read as [N], as head_for reads it ([N, 1, K] logits keep
            # their [N, 1] labels: a batch axis of one)
            target = xp.reshape(target, (-1,))
        return logits, target, None

    def _activation_xp(self, xp, logits):
        return softmax_xp(xp, logits, _checks.axis(self.loss_object.axis, logits.ndim))

    def _predict_xp(self, xp, logits):
        index = xp.argmax(logits, axis=_checks.axis(self.loss_object.axis, logits.ndim))
        return xp.astype(index, _default_int(xp))

    def encode(self, target):
        """Labels -> class indices (through ``classes``: in the target's library and its default integer
        dtype, int64 (int32 on JAX without x64), NumPy int64 for strings and lists); one-hot integer rows ->
        their argmax; probability rows, and integer indices when ``classes`` is None or ``0..K-1``, pass
        through (lists become NumPy)."""
        if not _array.is_array(target):
            target = to_host(target)
        xp = None
        if not _is_host_labels(target):
            xp, arrays = _required(target=target)
            target = arrays["target"]
            if target.ndim == 2 and target.shape[-1] == self.units:
                if _array.isdtype(xp, target.dtype, "real floating"):
                    return target
                if _is_one_hot(xp, target):
                    return xp.argmax(xp.astype(target, xp.int32), axis=-1)
            if self.classes is None or _is_range(self.classes):
                return target
        if self.classes is None:
            raise fail("target", "class indices, or labels with classes=[...] given to the head",
                       f"labels of dtype {target.dtype}")
        indices = encode_labels(target, self.classes)[0]
        # in the target's library: a torch target's indices as NumPy met torch logits in the loss, refused as
        # arrays of two libraries
        return indices if xp is None else xp.asarray(indices, device=_array.device(target))


def _is_range(classes) -> bool:
    return classes.dtype.kind in "iu" and classes.tolist() == list(range(len(classes)))


def _is_one_hot(xp, target) -> bool:
    """Integer rows of 0/1 with one 1 each (else they are a batch of class indices). Values no check can
    read (under ``jit``) cannot tell the two apart: refused, where a guess trained a multi-hot row as
    its argmax."""
    ones = (target == 0) | (target == 1)
    one_each = xp.sum(xp.astype(target, xp.int32), axis=-1) == 1
    one_hot = _array.concrete_bool(xp.all(ones) & xp.all(one_each))
    if one_hot is None:
        raise fail("target", "class indices [N], or one-hot rows [N, K] whose values can be read",
                   f"integer rows of shape {tuple(target.shape)} under a trace (jit) or a lazy graph, which may "
                   "be one-hot rows or a batch of class indices", "encode the target outside jit, or give "
                   "class indices or float one-hot rows")
    return one_hot


class MultilabelHead(_ClassifierHead):
    __doc__ = r"""Multi-label classification: K units, a sigmoid on each, BCE summed over the labels.

    .. math:: l_i = \sum_k -\left(w_{+,k} y'_{ik}\log\sigma(z_{ik}) + (1 - y'_{ik})\log\sigma(-z_{ik})
              \right), \quad \hat y_{ik} = [\sigma(z_{ik}) > t_k]

    Options: ``loss`` (default BCE; focal and hinges, summed over the labels), ``n_labels`` K,
    ``pos_weight`` (number or ``[K]``), ``label_smoothing`` a
    (y' = (1 - a) y + a/2), ``reduction`` ("mean" averages over rows), ``threshold`` (a
    probability or one per label, default 0.5), ``impl``.

    Shapes: ``logits [..., K]``, ``target [..., K]`` of 0/1 or probabilities, ``weight
    [...]`` (one per row). ``predict`` returns 0/1 integers ``[..., K]``, ``predict_proba``
    the sigmoids ``[..., K]``. Edges: as :class:`BinaryHead`, per label.
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> h = lk.MultilabelHead(3, threshold=[0.5, 0.9, 0.2])
    >>> h.predict(np.array([[0.1, 1.0, -1.0]])).tolist()
    [[1, 0, 1]]
    """

    task = Task.MULTILABEL
    activation_name = "sigmoid per unit"

    def __init__(self, n_labels: int | None = None, *, loss=None, pos_weight=None, label_smoothing: float = 0.0,
                 reduction: str = "mean", threshold=0.5, impl: str = "auto", reason: str = "", **loss_options):
        if n_labels is None:
            raise fail("n_labels", "an int >= 1", "None")
        n_labels = _int_option(n_labels, "n_labels", 1)
        options = _given(pos_weight=(pos_weight, None), label_smoothing=(label_smoothing, 0.0))
        loss = build_loss(Task.MULTILABEL, loss, {**options, **loss_options, "reduction": reduction, "impl": impl})
        super().__init__(loss, n_labels, reason=reason)
        self.threshold = threshold

    @property
    def threshold(self):
        """The probability, or one per label, ``predict`` compares with. Settable, as :attr:`BinaryHead.threshold`."""
        return self._threshold

    @threshold.setter
    def threshold(self, value) -> None:
        cut = _threshold(value)
        if isinstance(cut, list) and len(cut) != self.units:
            raise fail("threshold", f"a probability or {self.units} of them (one per label)", f"{len(cut)} values")
        self._threshold, self._threshold_logit = value, cut

    @property
    def n_labels(self) -> int:
        return self.units

    def _activation_xp(self, xp, logits):
        return sigmoid_xp(xp, logits)

    def _predict_xp(self, xp, logits):
        cut = _cut_in(self._threshold_logit, logits.dtype)
        if isinstance(cut, list):
            cut = xp.asarray(cut, dtype=logits.dtype, device=_array.device(logits))  # (each exact in the dtype)
        return xp.astype(logits > cut, _default_int(xp))

    def encode(self, target):
        """0/1 label rows (bool, int or float) -> floats of the target's library."""
        xp, arrays = _required(target=target)
        target = arrays["target"]
        if not _array.isdtype(xp, target.dtype, ("bool", "integral", "real floating")):
            raise fail("target", "0/1 label rows (bool, int or float)", f"dtype {target.dtype}")
        return target if _array.isdtype(xp, target.dtype, "real floating") else xp.astype(target, xp.float32)


class RegressionHead(_SingleUnitMixin, Head):
    __doc__ = r"""Regression: D units, identity output, squared error.

    .. math:: l_i = \frac{1}{D}\sum_{j=1}^{D} (\hat y_{ij} - y_{ij})^2, \quad \text{prediction} = \hat y

    The loss is :func:`losskit.mean_squared_error` as the core defines it: per example the
    *mean* over its D values (DESIGN's table says "summed over values"; the two differ by the
    constant factor D, and the mean matches PyTorch's ``mse_loss`` and Keras), then the
    reduction over examples. Options: ``n_outputs`` D (default 1), ``reduction``, ``impl``, and
    ``loss`` (any regression loss of :data:`TASK_LOSSES` with its options; a deviance's
    ``activation`` and ``predict`` are ``exp``, a log link).

    Shapes: with D = 1, ``predictions [N]`` or ``[..., 1]`` and ``target [...]`` or
    ``[..., 1]`` (both read as one value per example; ``[N, 2]`` predictions raise, as for
    :class:`BinaryHead`); with D > 1, ``[..., D]`` for both; ``weight [...]``. The call forms
    take the predictions in the ``logits`` position, and errors name them ``predictions``.
    ``predict`` returns the predictions unchanged (same shape); there is no ``predict_proba``.
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.RegressionHead().loss(np.array([[1.0], [3.0]]), np.array([0.0, 0.0])))
    5.0
    """

    task = Task.REGRESSION
    activation_name = "identity"
    # "predictions", not "logits": MeanSquaredError's own messages (target shape, dtype) use
    # that name, and an identity head's outputs are the predictions themselves
    input_name = "predictions"
    many_units_hint = "use RegressionHead(n_outputs=K) for K values per example"

    def __init__(self, n_outputs: int = 1, *, loss=None, reduction: str = "mean", impl: str = "auto",
                 reason: str = "", **loss_options):
        n_outputs = _int_option(n_outputs, "n_outputs", 1)
        units_head = _UNITS_HEADS.get(loss_class(Task.REGRESSION, loss))
        if units_head is not None:
            raise fail("loss", "a loss of one value per unit for RegressionHead", repr(loss),
                       f"use {units_head.__name__} (or lk.head('regression', loss=...)), which knows its units")
        loss = build_loss(Task.REGRESSION, loss, {**loss_options, "reduction": reduction, "impl": impl})
        super().__init__(loss, n_outputs, reason=reason)
        if loss.link is not IDENTITY:
            self.activation_name = loss.link.activation

    def _activation_xp(self, xp, logits):
        return self.loss_object.link.inverse(xp, logits)

    def _predict_xp(self, xp, logits):
        """The predicted value: the mean ``exp(logits)`` for a deviance (log link), else the logits."""
        return self._activation_xp(xp, logits)

    @property
    def n_outputs(self) -> int:
        return self.units

    def _align(self, xp, logits, target):
        if self.units == 1:
            return super()._align(xp, logits, target)
        Head._check_units(self, logits)
        return logits, target, None

    def _check_units(self, logits, axis: int = -1):
        if self.units > 1:
            Head._check_units(self, logits, axis)
        else:
            _SingleUnitMixin._check_units(self, logits, axis)

    def encode(self, target):
        """The target unchanged (values)."""
        return target


class _UnitsHead(Head):
    """A regression head whose units are parameters of one value (quantiles; a mean and a
    log-variance): the last axis holds exactly ``units`` of them, never squeezed."""

    task = Task.REGRESSION
    input_name = "predictions"

    def _align(self, xp, logits, target):
        self._check_units(logits)
        # a value column [N, 1] beside [N, units] (head_for's own target column, which the other heads take): one
        # value per example has one axis fewer than the predictions
        if target is not None and target.ndim >= 2 and target.ndim == logits.ndim and target.shape[-1] == 1:
            target = _squeeze_last(xp, target)
        return logits, target, None

    def encode(self, target):
        """The target unchanged (values, one per example)."""
        return target


class QuantileHead(_UnitsHead):
    __doc__ = r"""Quantile regression: Q units (one per quantile), identity output, pinball loss.

    .. math:: l_i = \sum_j \max(q_j (y_i - \hat y_{ij}), (q_j - 1)(y_i - \hat y_{ij}))

    Options: ``quantiles`` (a number or list in (0, 1), default 0.5), ``reduction``, ``impl``.
    Shapes: ``predictions [..., Q]``, ``target [...]`` (one value per example) or ``[..., 1]`` (a value column),
    ``weight [...]``.
    ``predict`` returns the Q predicted quantiles ``[..., Q]`` (as given: a network can cross them).
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> h = lk.head("regression", loss="quantile", quantiles=[0.1, 0.5, 0.9])
    >>> h.units, type(h).__name__
    (3, 'QuantileHead')
    """

    activation_name = "identity (one unit per quantile)"

    def __init__(self, quantiles=(0.5,), *, loss=None, reduction: str = "mean", impl: str = "auto",
                 reason: str = ""):
        options = {"reduction": reduction, "impl": impl}
        if not isinstance(loss, Loss) or not _is_median(quantiles):  # beside a Loss object, refused (build_loss)
            options["quantiles"] = quantiles
        loss = build_loss(Task.REGRESSION, "quantile" if loss is None else loss, options)
        if not isinstance(loss, QuantileLoss):
            raise fail("loss", "the quantile loss for a QuantileHead", type(loss).__name__)
        super().__init__(loss, loss.units_per_value, reason=reason)

    @property
    def quantiles(self) -> tuple:
        return self.loss_object.quantiles

    def point(self, predictions):
        """The prediction of the quantile nearest 0.5 (the first of two as near), ``[...]``: the head's
        one value per example, e.g. for a metric such as R^2."""
        nearest = min(range(len(self.quantiles)), key=lambda j: abs(self.quantiles[j] - 0.5))
        return self.predict(predictions)[..., nearest]


def _is_median(quantiles) -> bool:
    """Whether ``quantiles`` is the default, the median alone (a tuple, a list or an array)."""
    import numpy as np  # (the heads are written against the array API: NumPy only for this option's value)

    try:
        return np.atleast_1d(np.asarray(quantiles, dtype=float)).tolist() == [0.5]
    except (TypeError, ValueError):
        return False


class GaussianHead(_UnitsHead):
    __doc__ = r"""Regression with uncertainty: 2 units, a mean and a log-variance, Gaussian NLL.

    .. math:: l_i = \tfrac12\left(s_i + (y_i - m_i)^2 e^{-s_i} + \log 2\pi\right)

    Options: ``reduction``, ``impl``. Shapes: ``predictions [..., 2]`` (mean, log-variance),
    ``target [...]`` or ``[..., 1]``, ``weight [...]``. ``predict`` (and ``activation``) return ``[..., 2]``: the
    mean and the standard deviation :math:`e^{s/2}`.
    """ + _CALL_DOC + """
    >>> import numpy as np, losskit as lk
    >>> lk.head("regression", loss="gaussian_nll").predict(np.array([[1.0, np.log(4.0)]])).tolist()
    [[1.0, 2.0]]
    """

    activation_name = "(mean, exp(log-variance / 2))"

    def __init__(self, *, loss=None, reduction: str = "mean", impl: str = "auto", reason: str = ""):
        loss = build_loss(Task.REGRESSION, "gaussian_nll" if loss is None else loss,
                          {"reduction": reduction, "impl": impl})
        if not isinstance(loss, GaussianNLL):
            raise fail("loss", "the Gaussian NLL for a GaussianHead", type(loss).__name__)
        super().__init__(loss, loss.units_per_value, reason=reason)

    def _activation_xp(self, xp, logits):
        return xp.stack([logits[..., 0], xp.exp(0.5 * logits[..., 1])], axis=-1)

    def _predict_xp(self, xp, logits):
        return self._activation_xp(xp, logits)

    def point(self, predictions):
        """The predicted mean ``[...]``: the head's one value per example."""
        return self.predict(predictions)[..., 0]


def _given(**pairs) -> dict:
    """The head options that differ from their defaults (``name=(value, default)``): only these reach
    a loss, so that a loss without e.g. ``label_smoothing`` is refused only when one is asked for."""
    return {name: value for name, (value, default) in pairs.items() if not _is_default(value, default)}


def _is_default(value, default) -> bool:
    if value is default:
        return True
    if value is None or default is None or not (_checks.is_number(value) or isinstance(value, str)):
        return False  # an array (a per-class option, or one the loss refuses, naming it) is never the default
    return value == default


_HEADS = {Task.BINARY: BinaryHead, Task.MULTICLASS: MulticlassHead, Task.MULTILABEL: MultilabelHead,
          Task.REGRESSION: RegressionHead}


#: the regression heads of the losses of several units per value (``Loss.units_per_value``), by loss class
_UNITS_HEADS = {QuantileLoss: QuantileHead, GaussianNLL: GaussianHead}


def _head_class(kind: Task, loss) -> type:
    """The head for a task and a loss: QuantileHead / GaussianHead for those losses' extra units."""
    if kind is Task.REGRESSION and loss_class(kind, loss) in _UNITS_HEADS:
        return _UNITS_HEADS[loss_class(kind, loss)]
    return _HEADS[kind]


def head(task: Task | str, **options: Any) -> Head:
    """Build the head of a task by name.

    ``task``: "binary", "multiclass" (or "multi-class"), "multilabel" (or "multi-label"),
    "regression" (or "continuous"). ``options`` go to the head: ``n_classes`` /
    ``n_labels`` / ``n_outputs`` for the number of units, then the loss options of the core
    (``pos_weight``, ``class_weight``, ``ignore_index``, ``label_smoothing``, ``reduction``)
    and the decode ``threshold``. Shapes are those of the head built (see each head's class).
    An unknown task or option raises :class:`~losskit.LossInputError` naming it.

    >>> import losskit as lk
    >>> h = lk.head("multiclass", n_classes=10, label_smoothing=0.1)
    >>> h.units, h.activation_name, type(h.loss_object).__name__
    (10, 'softmax', 'SoftmaxCrossEntropy')
    """
    cls = _head_class(Task.parse(task), options.get("loss"))
    _check_options(cls, options)
    return cls(**options)


def _check_options(cls, options: dict, read_off: tuple[str, ...] = (), hint: str = "") -> None:
    """Refuse, by name, an option ``cls`` does not take, or one of ``read_off`` (those
    :func:`head_for` reads off the target), before ``cls(**options)`` can raise a TypeError."""
    allowed = [p for p in _parameters(cls) if p not in read_off]
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
        # the head passes the loss's own options on (``lk.head("regression", loss="huber", delta=2.0)``)
        allowed += [p for p in _parameters(loss_class(cls.task, options.get("loss"))) if p not in allowed]
    for name in options:
        if name in read_off:
            raise fail(name, f"an option of {cls.__name__} ({', '.join(allowed)})",
                       f"{name}, which head_for reads off the target",
                       f"build the head with lk.head('{cls.task}', {name}=...) to set it")
    _checks.known_options(options, allowed, cls.__name__, hint)


def head_for(target, *, task: Task | str | None = None, **options: Any) -> Head:
    """Pick the head that training targets need, and say why in ``head.reason``.

    Detection is :func:`losskit.targets.type_of_target` (see its rules): e.g. float targets
    all 0/1 in one column -> :class:`BinaryHead`; integer labels 0..9 -> ``MulticlassHead(10)``;
    ``[N, K]`` 0/1 rows -> ``MultilabelHead(K)``; floats with many distinct values ->
    :class:`RegressionHead`. Ambiguous targets raise :class:`~losskit.LossInputError` saying
    how to decide; ``task=`` decides. Class labels found (strings, -1/1, 3..7) are kept in
    ``head.classes`` for ``head.encode`` / ``head.decode``. ``options`` go to the head; one it
    does not take, or one read off the target (``classes``, ``n_classes``, ``n_labels``,
    ``n_outputs``), raises :class:`~losskit.LossInputError` naming it, as :func:`head` does.

    Shapes: ``target [N]`` or ``[N, K]``, any array library or a list (read once, on the host).

    >>> import numpy as np, losskit as lk
    >>> h = lk.head_for(np.array(["spam", "ham", "spam"]))
    >>> type(h).__name__, h.classes.tolist()
    ('BinaryHead', ['ham', 'spam'])
    >>> h.reason
    "string labels with 2 distinct values ('ham', 'spam'): binary, positive class 'spam'"
    >>> h.encode(np.array(["spam", "ham"])).tolist()
    [1.0, 0.0]
    """
    info: TargetType = type_of_target(target, task=task)
    try:
        return _head_of(info, options)
    except LossInputError as error:
        if not str(error).startswith("loss:"):
            raise
        # the loss belongs to another task: say which head the data chose, and how to choose another
        raise LossInputError(f"{error}; head_for chose the {info.kind} head ({info.reason}): pass task=... "
                             "for a head that takes this loss") from None


def _head_of(info: TargetType, options: dict) -> Head:
    cls = _head_class(info.kind, options.get("loss"))
    _check_options(cls, options, ("classes", "n_classes", "n_labels", "n_outputs"),
                   f"head_for chose {cls.__name__} ({info.reason})")
    options = dict(options)
    options.setdefault("reason", info.reason)
    if info.kind is Task.BINARY:
        classes = info.classes
        if classes is not None and classes.dtype.kind in "iuf" and classes.tolist() == [0, 1]:
            classes = None  # already the 0/1 the loss takes (bools keep theirs: decode gives bools back)
        return cls(classes=classes, **options)
    if issubclass(cls, _UnitsHead):
        if info.n_outputs != 1:
            raise fail("target", f"one value per example for a {cls.__name__}", f"{info.n_outputs} values")
        return cls(**options)
    if info.kind is Task.MULTICLASS:
        classes = info.classes
        if classes is not None and _is_range(classes):
            classes = None
        if classes is not None:
            return cls(classes=classes, **options)
        return cls(info.n_outputs, **options)
    return cls(info.n_outputs, **options)
