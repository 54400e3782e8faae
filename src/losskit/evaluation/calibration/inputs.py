"""In-memory inputs of :func:`~losskit.calibrate`: checked once, held as host blocks (NumPy) or as
Dask chunks, and swept once per Newton step by :func:`passes`.

The checks are the ones a user can act on: an empty input, a non-finite logit, probabilities
where logits are needed (the common pitfall of temperature scaling: fitted on ``softmax`` output,
a temperature means nothing), a target outside the task's values, a target with one class only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..._errors import LossInputError, fail

__all__ = ["Data", "prepare", "passes", "check_classes", "check_not_probabilities"]

_PITFALL = ("temperature scaling and its kin rescale logits (pre-activation scores); fitted on probabilities "
            "they fit a meaningless map (gpleiss/temperature_scaling#29): pass the model's raw outputs, or "
            "log(p) for softmax probabilities / log(p) - log(1 - p) for sigmoid ones")


@dataclass
class Data:
    task: str
    n_outputs: int
    blocks: list  # [(logits [n, K], target, weight [n] or None)] on the host, or Dask delayed triples
    dask: bool = False


def _is_dask(value) -> bool:
    return type(value).__module__.split(".")[0] == "dask"


def _host(array, name: str):
    if array is None:
        return None
    from ... import _array
    from ...losses._compiled import host

    if _array.is_array(array) and not isinstance(array, np.ndarray):
        xp = _array.array_namespace(array)
        if getattr(array, "requires_grad", False):  # a model's output: its values, not its graph
            array = array.detach()
        if _array.isdtype(xp, array.dtype, "real floating") and xp.finfo(array.dtype).bits < 32:
            array = xp.astype(array, xp.float32)  # bfloat16 has no NumPy dtype: widened in its own library
    out = host(array)
    if out is None:
        out = np.asarray(array.cpu() if hasattr(array, "cpu") else array)  # device memory: copied to the host
    if out.dtype.kind == "f" and out.dtype.itemsize < 4:
        out = out.astype(np.float32)  # float16 / bfloat16: widened
    if out.dtype.kind not in "biuf":
        raise fail(name, "numbers", f"an array of dtype {out.dtype}")
    return out


def prepare(logits, target, weight, *, method: str, task: str | None) -> Data:
    """Settle the task and shapes, check the data, and hold them as blocks for :func:`passes`."""
    if isinstance(logits, list | tuple):
        logits = np.asarray(logits, dtype=np.float64)
    if isinstance(target, list | tuple):
        target = np.asarray(target)
    if _is_dask(logits):
        return _prepare_dask(logits, target, weight, method, task)
    z, y, w = _host(logits, "logits"), _host(target, "target"), _host(weight, "weight")
    task, z, y = _shapes(z, y, method, task)
    _check_weight(w, len(z))
    check_block(task, z, y, 0)
    check_not_probabilities(task, z, "logits")
    return Data(task, z.shape[1] if task != "regression" else 2, [(z, y, w)])


def _shapes(z, y, method: str, task: str | None, start: int = 0):
    """The task, logits as ``[n, K]`` and the target as the objectives take it (``start``: the block's
    first row in the whole input, for the rows errors name)."""
    if z.ndim == 0 or z.shape[0] == 0 or z.size == 0:
        raise fail("logits", "at least one row of logits", f"an empty array of shape {z.shape}")
    if y is None or y.ndim == 0 or y.shape[0] != z.shape[0]:
        raise fail("target", f"one target per row of logits ({z.shape[0]} rows)",
                   f"shape {None if y is None else y.shape}")
    if task is None:
        task = _detect(z, y, method)
    if task == "regression":
        if z.ndim != 2 or z.shape[1] != 2:
            raise fail("logits", "predictions [N, 2] of (mean, log-variance) for method='variance'", f"shape {z.shape}")
        return task, z, y.reshape(len(y), -1)[:, 0] if y.ndim > 1 and y.shape[1] == 1 else y
    z2 = z.reshape(len(z), 1) if z.ndim == 1 else z
    if z2.ndim != 2:
        raise fail("logits", "[N] or [N, K]", f"shape {z.shape}")
    k = z2.shape[1]
    if task == "binary":
        if k != 1:
            raise fail("logits", "one logit per row for a binary task ([N] or [N, 1])", f"shape {z.shape}",
                       "K columns of class scores are a multiclass task: give task='multiclass'")
        y = y.reshape(len(y), 1) if y.ndim == 1 else y
        if y.shape != (len(z2), 1):
            raise fail("target", f"shape ({len(z2)},) or ({len(z2)}, 1)", f"shape {y.shape}")
    elif task == "multiclass":
        if k < 2:
            raise fail("logits", "K >= 2 logits per row for a multiclass task", f"shape {z.shape}")
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
            y = y.reshape(-1)
            if y.dtype.kind == "f":
                if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                    raise fail("target", "integer class labels", "non-integer values")
                y = y.astype(np.intp)
            y = y.astype(np.intp, copy=False)
            bad = (y < 0) | (y >= k)
            if bad.any():
                i = int(np.argmax(bad))
                raise fail("target", f"class labels in 0..{k - 1}", f"{int(y[i])} at row {start + i}")
        elif y.shape != z2.shape:
            raise fail("target", f"labels ({len(z2)},) or class probabilities {z2.shape}", f"shape {y.shape}")
    elif task == "multilabel":
        if y.shape != z2.shape:
            raise fail("target", f"0/1 labels of the logits' shape {z2.shape}", f"shape {y.shape}")
    else:
        raise fail("task", "binary, multiclass, multilabel or regression", repr(task))
    if task in ("binary", "multilabel"):
        values = y.astype(np.float64) if y.dtype.kind != "b" else y
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            raise fail("target", "labels 0 or 1 (or probabilities in [0, 1])",
                       f"{float(y.reshape(-1)[i])!r} at row {start + i // y.shape[1]}")
    return task, z2, y


def _detect(z, y, method: str) -> str:
    if method == "variance":
        return "regression"
    if z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1):  # (not from the method: platt on [N, K] is refused
        return "binary"                                      # as a method of another task, naming those that fit)
    if method == "vector":
        return "multiclass"
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        return "multiclass"
    from ...targets import type_of_target

    kind = type_of_target(y[:100_000]).kind
    return "multilabel" if kind == "multilabel" or method == "temperature_per_label" else "multiclass"


def _check_weight(w, n: int, start: int = 0) -> None:
    if w is None:
        return
    if w.shape != (n,):
        raise fail("weight", f"shape ({n},), one per row", f"shape {w.shape}")
    bad = ~(np.isfinite(w) & (w >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise fail("weight", "finite weights >= 0", f"{float(w[i])!r} at row {start + i}")


def check_block(task: str, z, y, start: int) -> None:
    """Every logit finite (the first that is not, by row)."""
    if not np.isfinite(z.sum()):
        bad = ~np.isfinite(z)
        if bad.any():
            i = int(np.argmax(bad.reshape(-1)))
            raise fail("logits", "finite logits", f"{float(z.reshape(-1)[i])!r} at row {start + i // z.shape[1]}")
    if task == "regression" and not np.isfinite(np.sum(y, dtype=np.float64)):
        raise fail("target", "finite values", "NaN or inf")


def check_not_probabilities(task: str, z, name: str) -> None:
    """Refuse logits that every sign says are probabilities: all in [0, 1] (multi-class: rows summing to 1)."""
    if task == "regression" or len(z) < 2:
        return
    sample = np.asarray(z[:100_000], dtype=np.float64)
    if sample.min() < 0 or sample.max() > 1:
        return
    if task == "multiclass":
        if not np.allclose(sample.sum(axis=1), 1.0, atol=1e-4):
            return
        what = "rows of values in [0, 1] summing to 1, as softmax probabilities are"
    else:
        what = "values that all lie in [0, 1], as sigmoid probabilities do"
    raise LossInputError(f"{name}: expected logits, got {what}; {_PITFALL}")


def check_classes(task: str, method: str, mass: np.ndarray, weight_sum: float = 1.0,
                  weight_name: str = "weight", l2: float = 0.0, l2_name: str = "l2") -> None:
    """Some weight, and at least two classes in the target (per label for ``temperature_per_label``; every
    class for vector scaling without ``l2``)."""
    if not weight_sum > 0:  # every weight 0: no class has any mass, which read as "only one class"
        raise fail(weight_name, "some weight > 0", "only weights of 0", "a calibration fits the weighted rows")
    if task == "regression":
        return
    if task == "multiclass":
        present = int(np.count_nonzero(mass > 0))
        if present < 2:
            raise fail("target", "at least two classes", f"only class {int(np.argmax(mass))}",
                       "a calibration cannot be fitted on one class")
        missing = np.flatnonzero(mass <= 0)
        if method == "vector" and not l2 > 0 and missing.size:
            # that class's offset runs to -inf: it was reported as "the scores separate the classes"
            shown = ", ".join(str(int(c)) for c in missing[:10]) + (", ..." if missing.size > 10 else "")
            raise fail("target", f"every class for vector scaling without {l2_name} (a class of no weight has no "
                       "finite offset)", f"no weight on class {shown}",
                       f"calibrate on data holding every class, give {l2_name} > 0, or use temperature scaling")
        return
    negatives, positives = mass
    if method == "temperature_per_label":
        bad = (negatives <= 0) | (positives <= 0)
        if bad.any():
            j = int(np.argmax(bad))
            raise fail("target", "both 0 and 1 in every label (method='temperature_per_label')",
                       f"label {j} with only {'1' if negatives[j] <= 0 else '0'}s")
    elif negatives.sum() <= 0 or positives.sum() <= 0:
        raise fail("target", "both classes 0 and 1", f"only {'1' if negatives.sum() <= 0 else '0'}s",
                   "a calibration cannot be fitted on one class")


def _prepare_dask(logits, target, weight, method, task) -> Data:
    import dask
    import dask.array as da

    from ..._array import without_empty_blocks
    from ..._checks import known_shapes
    from ...targets import to_host

    # sizes unknown after a filter: the core's words, not "expected (nan rows), got (nan,)" (found in review)
    known_shapes(logits=logits, target=target, weight=weight)
    if logits.ndim == 2:
        logits = logits.rechunk({1: -1})
    logits = without_empty_blocks(logits)  # (a block of no rows was refused as "at least one row")
    rows = logits.chunks[0]
    # a NumPy (or torch, JAX...) target or weight beside Dask logits is chunked as the logits are
    target, weight = ((None if a is None else a if isinstance(a, da.Array) else da.asarray(to_host(a, name)))
                      for a, name in ((target, "target"), (weight, "weight")))
    if target is None or target.ndim == 0 or target.shape[0] != logits.shape[0]:
        raise fail("target", f"one target per row of logits ({logits.shape[0]} rows)",
                   f"{getattr(target, 'shape', None)}")
    if weight is not None and tuple(weight.shape) != (logits.shape[0],):
        raise fail("weight", f"shape ({logits.shape[0]},), one per row", f"shape {tuple(weight.shape)}")
    target = target.rechunk((rows,) + ((-1,) if target.ndim == 2 else ()))
    weight = None if weight is None else weight.rechunk((rows,))
    # the first rows, across blocks, as the NumPy path reads them (the first block alone could decide otherwise)
    head = min(logits.shape[0], 100_000)
    first = tuple(map(np.asarray, dask.compute(logits[:head], target[:head])))
    if logits.shape[0] == 0:
        raise fail("logits", "at least one row of logits", f"an empty array of shape {logits.shape}")
    task, z0, _ = _shapes(first[0], first[1], method, task)
    check_not_probabilities(task, z0, "logits")
    z_parts = logits.to_delayed().reshape(-1)
    y_parts = target.to_delayed().reshape(-1)
    w_parts = [None] * len(z_parts) if weight is None else list(weight.to_delayed().reshape(-1))
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).tolist()
    blocks = [dask.delayed(_block)(z, y, w, method, task, start)
              for z, y, w, start in zip(z_parts, y_parts, w_parts, starts, strict=True)]
    return Data(task, z0.shape[1] if task != "regression" else 2, blocks, dask=True)


def _block(z, y, w, method, task, start):
    """One Dask chunk as a checked host block (runs on the worker)."""
    z, y, w = np.asarray(z), np.asarray(y), None if w is None else np.asarray(w)
    _, z, y = _shapes(z, y, method, task, start)
    _check_weight(w, len(z), start)
    check_block(task, z, y, start)
    return z, y, w


def _block_sums(objective, theta, block, first: bool):
    z, y, w = block
    return objective.sums(theta, z, y, w, first)


def passes(objective, data: Data) -> Callable[[np.ndarray], object]:
    """``evaluate(theta)``: the merged sums of one pass over ``data`` (the first also checks the classes)."""
    count = [0]

    def evaluate(theta):
        first = count[0] == 0
        count[0] += 1
        if data.dask:
            import dask
            from dask import delayed

            parts = dask.compute(*[delayed(_block_sums)(objective, theta, b, first) for b in data.blocks])
        else:
            parts = [objective.sums(theta, z, y, w, first) for z, y, w in data.blocks]
        total = parts[0]
        for part in parts[1:]:
            total.merge(part)
        if first:
            check_classes(data.task, objective.method, total.mass, total.weight, l2=getattr(objective, "l2", 0.0))
        return total

    return evaluate
