r"""What kind of target is this? Task detection with reasons, and class-label encoding.

:func:`type_of_target` reads a training target and says which head it needs (a :class:`~losskit.Task`:
binary, multiclass, multilabel or regression), how many output units, which class
labels, and *why*, in a sentence. Where the data cannot tell (one distinct value, a float column
of a few whole numbers, integer codes with as many values as examples) it refuses with a
:class:`~losskit.LossInputError` that says how to decide (``task=...`` or a cast).

Design note: detection reads every value, so it runs on the host, once, at set-up time (like
scikit-learn's ``type_of_target``), never on a training step. The target is copied to NumPy
through DLPack (or computed, for Dask) and nothing is written back. The rules follow the
DESIGN's principle that dtype and shape carry intent: integer, boolean and string targets are
class labels; float targets are values unless they are all 0/1 (labels) or rows of
probabilities. The alternative, scikit-learn's "every integer-valued float is a class", was
rejected: diabetes progression scores (214 distinct whole numbers) are not 214 classes.

:func:`encode_labels` / :func:`decode_labels` map arbitrary class labels (strings, ints, -1/1)
to indices ``0..K-1`` and back, in sorted order as scikit-learn's ``LabelEncoder`` does.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from . import _array, _checks
from ._checks import fail
from .tasks import Task

__all__ = ["TargetType", "type_of_target", "encode_labels", "decode_labels", "to_host"]

#: a float column of at most this many distinct whole numbers is ambiguous (classes or counts?)
FEW_VALUES = 20
#: integer labels with more distinct values than this, and than half the examples, are refused
MANY_CLASSES = 20


@dataclass(frozen=True)
class TargetType:
    """The result of :func:`type_of_target`.

    Attributes: ``kind`` (the :class:`~losskit.Task` the target needs); ``reason`` (one sentence: what was seen and
    what was decided); ``n_outputs`` (output units a head needs: 1 for binary and a single
    value, K for K classes / labels / values); ``classes`` (sorted distinct labels as a NumPy
    array for class-label targets, else ``None``); ``encoding`` (``"labels"``, ``"one-hot"``,
    ``"probabilities"``, ``"indicator"`` or ``"values"``).
    """

    kind: Task
    reason: str
    n_outputs: int
    classes: Any = field(default=None, compare=False)
    encoding: str = "labels"

    def __str__(self) -> str:
        return self.kind.value


def _kind(cls: type) -> str:
    if issubclass(cls, (bool, np.bool_)):  # before Number: bool is an int subclass
        return "bools"
    if issubclass(cls, numbers.Number):  # Python and NumPy ints and floats
        return "numbers"
    if issubclass(cls, (str, bytes)):
        return "strings"
    return cls.__name__


def _item(value):
    return value.item() if isinstance(value, np.generic) else value  # np.True_ -> True


def _one_kind(values: np.ndarray, name: str) -> None:
    """Refuse an object array mixing numbers, strings and bools: NumPy would read ``[1, "a"]``
    as the strings ``'1', 'a'`` and ``[True, 2]`` as ``1, 2``, changing the labels silently."""
    if len({_kind(t) for t in set(map(type, values.flat))}) < 2:
        return
    first: dict[str, Any] = {}
    for value in values.flat:  # one example of each kind, for the message
        first.setdefault(_kind(type(value)), value)
    found = " and ".join(f"{kind} ({_item(value)!r})" for kind, value in first.items())
    raise fail(name, "labels or values of one kind (all numbers, all strings or all bools)",
               f"a mix of {found}", "convert them to one type first")


def to_host(target, name: str = "target") -> np.ndarray:
    """A NumPy copy (or view) of ``target``: lists, NumPy, Dask (computed) or any DLPack array.

    A list (or object array) that mixes numbers, strings and bools raises
    :class:`~losskit.LossInputError` naming ``name``, rather than being coerced to one type.
    """
    if isinstance(target, np.ma.MaskedArray):  # (its masked entries were counted as a class, found in review)
        raise fail(name, "an array without a mask (losskit reads no NumPy mask: drop the masked examples, or "
                   "fill them and give them weight 0)", "a numpy.ma.MaskedArray")
    if isinstance(target, np.ndarray):
        host = target
    elif not _array.is_array(target):
        try:
            host = np.asarray(target, dtype=object)  # the Python objects, before any coercion
        except (TypeError, ValueError):
            host = None  # ragged: np.asarray below says so
        if host is not None:
            _one_kind(host, name)
        try:
            return np.asarray(target)
        except (TypeError, ValueError):
            raise fail(name, "an array or a list of labels or values", type(target).__name__) from None
    else:
        if array_api_compat.is_dask_array(target):
            target = target.compute()  # detection must read every value; done once at set-up
        if callable(getattr(target, "detach", None)):  # a tensor in an autograd graph: its values (no export else)
            target = target.detach()
        try:
            host = target if isinstance(target, np.ndarray) else np.from_dlpack(
                array_api_compat.to_device(target, "cpu"))
        except Exception:  # a library without DLPack or a cpu device, a dtype NumPy lacks: its __array__, if any
            xp = array_api_compat.array_namespace(target)
            if xp.isdtype(target.dtype, "real floating") and xp.finfo(target.dtype).bits < 32:
                target = xp.astype(target, xp.float32)  # bfloat16: NumPy has none; float32 holds every value
            try:
                host = np.asarray(target)
            except Exception:  # a traced array (under jax.jit, vmap or grad): no values to read (JAX's own error
                # named no argument)
                raise fail(name, "values that can be read on the host (labels are read outside jit, vmap and grad)",
                           f"a {type(target).__name__}, whose values are not known yet") from None
    if host.dtype == object:
        _one_kind(host, name)
    return host


def _show(values, limit: int = 6) -> str:
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def _is_label_dtype(array) -> bool:
    return array.dtype.kind in "biuUSO"  # bool, ints, strings, objects (e.g. a list of str)


def type_of_target(target, *, task: Task | str | None = None) -> TargetType:
    r"""Say which kind of head a training target needs, and why.

    Rules, in order (N examples; shapes ``[N]`` and ``[N, 1]`` are read alike):

    * bool, integer or string ``[N]`` -> class labels: 2 distinct -> ``"binary"``, more ->
      ``"multiclass"`` (refused when there are more than 20 distinct integers and more than
      N/2: "most classes would have one example");
    * float ``[N]``: all 0/1 -> ``"binary"``; whole numbers with more than 20 distinct values
      -> ``"regression"``; whole numbers with 2 to 20 distinct values -> refused (classes or
      counts?); anything else -> ``"regression"``;
    * ``[N, K]`` with K > 1: all 0/1 with exactly one 1 per row -> ``"multiclass"`` (one-hot);
      all 0/1 otherwise -> ``"multilabel"``; float rows in [0, 1] summing to 1 ->
      ``"multiclass"`` (probabilities); other floats -> ``"regression"`` (K values); other
      integers or strings -> refused;
    * one distinct value, NaN or inf, an empty target or more than 2 dimensions -> refused;
    * a list (or object array) mixing numbers, strings and bools -> refused, where NumPy would
      silently turn ``[1, "a"]`` into the strings ``'1', 'a'`` and ``[True, 2]`` into ``1, 2``.

    ``task`` (a :class:`~losskit.Task` or its name) overrides the guess where
    the data allow that reading (e.g. ``task="multiclass"`` for whole-number floats, or
    ``"regression"`` for integers), and raises where they do not.

    Shapes: ``target [N]`` or ``[N, K]``, any array library or a list (read on the host).
    Returns a :class:`TargetType`; raises :class:`~losskit.LossInputError` when refused.

    >>> import numpy as np
    >>> from losskit.targets import type_of_target
    >>> t = type_of_target(np.array([0.0, 1.0, 1.0, 0.0]))
    >>> t.kind, t.n_outputs
    (<Task.BINARY: 'binary'>, 1)
    >>> t.reason
    'float values that are all 0 or 1 in one column: binary labels'
    >>> type_of_target(["cat", "dog", "bird"]).classes.tolist()
    ['bird', 'cat', 'dog']
    """
    wanted = None if task is None else Task.parse(task)
    y = to_host(target)
    if y.dtype == object:  # one kind of object (to_host checked): their own dtype, e.g. str
        with contextlib.suppress(ValueError):  # ragged rows stay objects, refused below
            y = np.asarray(y.tolist())
    if y.size == 0:
        raise fail("target", "at least one example", f"an empty array of shape {y.shape}")
    if y.ndim == 0 or y.ndim > 2:
        raise fail("target", "shape [N] or [N, K]", f"shape {y.shape}")
    if y.dtype.kind not in "biufUSO":  # complex, dates, durations, raw bytes: no labels or values of a loss
        raise fail("target", "real labels or values (bool, integer, float or string)", f"dtype {y.dtype}")
    if y.ndim == 2 and y.shape[1] == 1:
        column = y[:, 0]
    elif y.ndim == 1:
        column = y
    else:
        column = None
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise fail("target", "finite values", "NaN or inf",
                   "drop or impute those examples (or give them weight 0) before choosing a head")
    if column is not None:
        return _one_column(column, wanted)
    return _many_columns(y, wanted, _half_eps(target))


def _half_eps(target) -> float:
    """The eps of a half-precision target's own dtype (bfloat16 reaches NumPy as float32), else 0: its values
    each carry a rounding, and the losses let its rows' sums be off by that much more."""
    if not _array.is_array(target) or isinstance(target, np.ndarray) and target.dtype != np.float16:
        return 0.0
    try:
        xp = array_api_compat.array_namespace(target)
        if xp.isdtype(target.dtype, "real floating") and xp.finfo(target.dtype).bits < 32:
            return float(xp.finfo(target.dtype).eps)
    except Exception:  # (a library without the standard's dtype functions: no slack)
        return 0.0
    return 0.0


def _one_column(y: np.ndarray, wanted: Task | None) -> TargetType:
    labels_dtype = _is_label_dtype(y)
    try:
        classes = np.unique(y)
    except TypeError:
        raise fail("target", "labels of one comparable type", "a mix of types") from None
    n = len(classes)
    numeric = y.dtype.kind in "biuf"
    if wanted is Task.MULTILABEL:
        raise fail("task", "a task of one column (binary, multiclass or regression)",
                   f"\"multilabel\" for a target of one column of {'labels' if labels_dtype else 'values'}",
                   "multi-label targets are rows of K > 1 label columns, [N, K]")
    if wanted is Task.REGRESSION:
        if not numeric:
            raise fail("task", "a task that reads string labels (binary or multiclass)", '"regression"')
        if y.dtype.kind == "b":  # the regression losses take no bools: refused here, not by the head's loss
            raise fail("task", "binary (or multiclass) for a boolean target", '"regression"',
                       "cast it to float for a quantity")
        return TargetType(Task.REGRESSION, f"task='regression' given: {n} distinct values read as "
                          "quantities", 1, None, "values")
    if wanted in (Task.BINARY, Task.MULTICLASS):
        return _told_classes(y, classes, wanted)

    if n == 1:
        raise fail("target", "at least 2 distinct labels or values",
                   f"one value for every example ({_show(classes)})",
                   "a head cannot learn from a constant target")
    if labels_dtype:
        kind_word = {"b": "boolean", "i": "integer", "u": "integer"}.get(y.dtype.kind, "string")
        if n == 2:
            return TargetType(Task.BINARY, f"{kind_word} labels with 2 distinct values "
                              f"({_show(classes)}): binary, positive class {classes[1].item()!r}",
                              1, classes, "labels")
        if y.dtype.kind in "iu" and n > MANY_CLASSES and n > len(y) / 2:
            raise fail("target", "class labels with several examples per class, or a quantity",
                       f"{n} distinct integers in {len(y)} examples",
                       "ambiguous: pass task='regression' (or cast to float) for a quantity, "
                       "task='multiclass' for classes")
        return TargetType(Task.MULTICLASS, f"{kind_word} labels with {n} distinct values "
                          f"({_show(classes)}): {n} classes", n, classes, "labels")

    # float, one column
    if n == 2 and classes[0] == 0 and classes[1] == 1:
        return TargetType(Task.BINARY, "float values that are all 0 or 1 in one column: binary labels",
                          1, classes, "labels")
    whole = bool(np.all(classes == np.round(classes)))
    if whole and n <= FEW_VALUES:
        raise fail("target", "labels or quantities, told apart by dtype",
                   f"a float column of {n} distinct whole numbers ({_show(classes)})",
                   "ambiguous: cast to int (or pass task='multiclass') for classes, "
                   "or pass task='regression' for a quantity")
    if whole:
        return TargetType(Task.REGRESSION, f"float whole numbers with {n} distinct values (more than "
                          f"{FEW_VALUES}): a quantity, regression; pass task='multiclass' for classes",
                          1, None, "values")
    hint = SOFT_LABELS_HINT if np.all((y >= 0) & (y <= 1)) else ""
    return TargetType(Task.REGRESSION, f"float values with {n} distinct values, not all whole "
                      f"numbers: regression{hint}", 1, None, "values")


#: the advice a regression reading of floats in [0, 1] carries (a head trains on soft labels; ``losskit eval``,
#: whose binary metrics need 0/1 labels, leaves it out)
SOFT_LABELS_HINT = "; pass task='binary' for soft labels"


def _told_classes(y: np.ndarray, classes: np.ndarray, wanted: Task) -> TargetType:
    """``task="binary"`` or ``"multiclass"`` given for one column: check the data allow it."""
    n = len(classes)
    if n < 2:
        raise fail("target", f"at least 2 distinct labels for task='{wanted}'",
                   f"one value for every example ({_show(classes)})")
    zero_one = n == 2 and classes[0] == 0 and classes[1] == 1
    if y.dtype.kind == "f" and wanted is Task.BINARY and not zero_one and np.all((y >= 0) & (y <= 1)):
        return TargetType(Task.BINARY, "task='binary' given: float values in [0, 1] read as soft "
                          "labels (probabilities of the positive class)", 1, None, "probabilities")
    if wanted is Task.BINARY and n != 2:
        raise fail("target", "exactly 2 distinct labels for task='binary'",
                   f"{n}: {_show(classes)}", "use task='multiclass'")
    if y.dtype.kind == "f" and np.any(classes != np.round(classes)):
        raise fail("target", f"class labels for task='{wanted}' (ints, strings or whole-number floats)",
                   f"fractional values such as {_show(classes[classes != np.round(classes)])}")
    units = 1 if wanted is Task.BINARY else n
    return TargetType(wanted, f"task='{wanted}' given: {n} distinct labels ({_show(classes)})",
                      units, classes, "labels")


def _many_columns(y: np.ndarray, wanted: Task | None, slack: float = 0.0) -> TargetType:
    k = y.shape[1]
    if y.dtype.kind not in "biuf":
        raise fail("target", "[N, K] of 0/1 labels, probabilities or values",
                   f"[N, {k}] of dtype {y.dtype}", "one label column per example should be 1-D")
    zero_one = bool(np.all((y == 0) | (y == 1)))
    one_per_row = zero_one and bool(np.all(np.sum(y, axis=1) == 1))
    is_float = y.dtype.kind == "f"
    in_unit = bool(np.all((y >= 0) & (y <= 1)))
    # the losses' own bound (_checks.row_sum_tolerance): probability rows the loss takes are detected as such, and
    # the reverse (allclose's 1.1e-5 read float32 rows saved to 4 decimals as regression values, found in review)
    tolerance = _checks.row_sum_tolerance(y.dtype == np.float64, k, float(np.finfo(y.dtype).eps), slack) \
        if is_float else 0.0
    rows_sum_one = is_float and in_unit and bool(np.all(np.abs(np.sum(y, axis=1, dtype=np.float64) - 1) <= tolerance))
    if wanted is Task.BINARY:
        raise fail("task", f"a task of {k} columns (multilabel, or multiclass for one-hot rows)",
                   f"\"binary\" for a target of {k} columns", "a binary target is one column, [N]")
    if wanted is Task.MULTILABEL:
        if not zero_one and not (is_float and in_unit):
            raise fail("target", "0/1 labels or probabilities in [0, 1] for task='multilabel'",
                       "values outside [0, 1]" if not in_unit else "non-float values")
        return TargetType(Task.MULTILABEL, f"task='multilabel' given: {k} labels per example", k,
                          None, "indicator")
    if wanted is Task.MULTICLASS:
        if one_per_row:
            return TargetType(Task.MULTICLASS, f"task='multiclass' given: one-hot rows over {k} classes",
                              k, None, "one-hot")
        if rows_sum_one:
            return TargetType(Task.MULTICLASS, f"task='multiclass' given: probability rows over {k} "
                              "classes", k, None, "probabilities")
        raise fail("target", "one-hot rows or probability rows summing to 1 for task='multiclass'",
                   f"[N, {k}] rows that are neither")
    if wanted is Task.REGRESSION:
        if not is_float:
            raise fail("target", "float values for task='regression' with K > 1 columns",
                       f"dtype {y.dtype}", "cast to float")
        return TargetType(Task.REGRESSION, f"task='regression' given: {k} values per example", k,
                          None, "values")
    if zero_one and np.all(y == y[0]):
        raise fail("target", "at least 2 distinct label rows", "the same row for every example",
                   "a head cannot learn from a constant target")
    if one_per_row:
        return TargetType(Task.MULTICLASS, f"[N, {k}] of 0/1 with exactly one 1 per row: one-hot "
                          "classes; pass task='multilabel' if the labels are independent", k, None,
                          "one-hot")
    if zero_one:
        return TargetType(Task.MULTILABEL, f"[N, {k}] of 0/1 with any number of 1s per row: "
                          f"{k} independent labels", k, None, "indicator")
    if rows_sum_one:
        return TargetType(Task.MULTICLASS, f"float [N, {k}] rows in [0, 1] that sum to 1: class "
                          "probabilities (soft labels)", k, None, "probabilities")
    if not is_float:
        raise fail("target", "[N, K] integer targets of 0/1 (multi-label)",
                   f"values {_show(np.unique(y))}",
                   "ambiguous: cast to float for K regression outputs")
    return TargetType(Task.REGRESSION, f"float [N, {k}] that are not labels or probabilities: "
                      f"{k} regression outputs", k, None, "values")


def encode_labels(target, classes=None):
    """Class labels -> indices ``0..K-1``: returns ``(indices, classes)``.

    ``classes`` defaults to the sorted distinct labels of ``target``; given, every label must
    be among them (else :class:`~losskit.LossInputError` names the unknown label).
    Shapes: ``target [...]`` of any labels (ints, strings, bools; any library, read on the
    host) -> ``indices [...]`` NumPy int64, ``classes [K]`` NumPy.

    >>> from losskit.targets import encode_labels
    >>> idx, classes = encode_labels(["b", "a", "b"])
    >>> idx.tolist(), classes.tolist()
    ([1, 0, 1], ['a', 'b'])
    """
    y = to_host(target)
    if target is None:  # (read as one label, None, of one class)
        raise fail("target", "an array or a list of labels", "None")
    if classes is None:
        classes, indices = np.unique(y, return_inverse=True)
        return indices.reshape(y.shape).astype(np.int64), classes
    classes = _classes_array(classes)
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    if np.any(ordered[1:] == ordered[:-1]):
        raise fail("classes", "distinct labels", f"repeated labels in {_show(ordered)}")
    try:
        pos = np.searchsorted(ordered, y)
    except TypeError:
        raise fail("target", f"labels comparable with classes {_show(classes)}",
                   f"dtype {y.dtype}") from None
    pos = np.clip(pos, 0, len(ordered) - 1)
    known = ordered[pos] == y
    if not np.all(known):
        bad = y[~known].flat[0]
        raise fail("target", f"labels among classes ({_show(classes)})",
                   f"label {bad.item() if hasattr(bad, 'item') else bad!r}")
    return order[pos].astype(np.int64), classes


def _classes_array(classes) -> np.ndarray:
    """``classes`` on the host, checked: a 1-D list of at least one label (a string or a nested list was
    indexed as one and failed deep inside)."""
    if isinstance(classes, (str, bytes)):
        raise fail("classes", "a list of labels", f"the string {classes!r}", f"write [{classes!r}]")
    classes = to_host(classes, "classes")
    if classes.ndim != 1 or classes.size == 0:
        raise fail("classes", "a 1-D list of at least one label", f"shape {classes.shape}")
    return classes


def decode_labels(indices, classes):
    """Indices ``0..K-1`` -> the class labels: ``classes[indices]`` on the host.

    Shapes: ``indices [...]`` integers (any library), ``classes [K]`` -> ``[...]`` NumPy of
    the classes' dtype. Indices outside ``[0, K)`` raise.

    >>> import numpy as np
    >>> from losskit.targets import decode_labels
    >>> decode_labels(np.array([1, 0]), np.array(["neg", "pos"])).tolist()
    ['pos', 'neg']
    """
    idx = to_host(indices, "indices")
    classes = _classes_array(classes)
    if idx.dtype.kind == "b":
        idx = idx.astype(np.int64)
    if idx.dtype.kind not in "iu":
        raise fail("indices", "integer class indices", f"dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(classes)):
        raise fail("indices", f"indices in [0, {len(classes)})",
                   f"values in [{idx.min()}, {idx.max()}]")
    return classes[idx]
