"""Train one small network per task through a losskit head, and score it on held-out data.

The head is chosen from the training targets by :func:`losskit.head_for` (its reason is part
of the result), and the only gradient that enters backpropagation is the head's analytic
``value_and_grad``. Losses are recorded at initialisation (epoch 0) and after every epoch, on
the whole training and held-out parts; the held-out part is never used to train or to stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

import losskit as lk

from ..losses import _compiled
from ..losses.declaration import LOG
from .data import DATASETS, check_int, load
from .mlp import MLP, Adam

TASKS = tuple(DATASETS)


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of one task's run: hidden layer widths, epochs, Adam's step size,
    mini-batch size and decoupled weight decay."""

    hidden: tuple[int, ...]
    epochs: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 0.0


#: the defaults that reach the targets of issue 3 (see docs/cli.md for the measured figures)
DEFAULTS = {
    "binary": Config(hidden=(32,), epochs=60, lr=1e-3, weight_decay=1.0),
    "multiclass": Config(hidden=(64,), epochs=40, lr=2e-3, weight_decay=0.3),
    "multilabel": Config(hidden=(64,), epochs=40, lr=2e-3, weight_decay=0.3),
    "regression": Config(hidden=(16,), epochs=60, lr=2e-3, weight_decay=1.0),
}

#: tasks whose demo fits a temperature (post-hoc calibration) on a split carved from the training data
CALIBRATED = ("binary", "multiclass")
#: the share of the training rows carved out for the calibration split (not trained on)
CALIBRATION_FRACTION = 0.2

#: the metric each task is judged by on held-out data, and its goal
GOALS = {"binary": ("accuracy", 0.95), "multiclass": ("accuracy", 0.95),
         "multilabel": ("per-label accuracy", 0.95), "regression": ("R^2", 0.4)}


@dataclass
class Result:
    """One task's run: what was trained, its loss curves, held-out metrics and wall time."""

    task: str
    dataset: str
    n_train: int
    n_val: int
    n_features: int
    head: str
    units: int
    activation: str
    loss: str
    reason: str
    epochs: int
    seed: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    #: binary and multi-class: the temperature fitted on the calibration split and the held-out NLL and
    #: ECE before and after (see :func:`calibrate_held_out`); None for the other tasks
    calibration: dict | None = None
    #: the held-out predictions and targets as named columns (see :func:`held_out_columns`); not in to_dict
    predictions: dict = field(default_factory=dict, repr=False, compare=False)
    #: the fitted :class:`~losskit.Calibration` (its JSON is written beside the predictions); not in to_dict
    calibrator: object = field(default=None, repr=False, compare=False)

    @property
    def metric(self) -> tuple[str, float]:
        name = GOALS[self.task][0]
        return name, self.metrics[name]

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("predictions")
        out.pop("calibrator")
        return out


def _r2(pred: np.ndarray, target: np.ndarray, reference_mean: float) -> float:
    return float(1 - np.sum((target - pred) ** 2) / np.sum((target - reference_mean) ** 2))


def demo_losses(task: str) -> list[str]:
    """The losses ``losskit demo --loss`` takes for ``task``: every loss of the task's head that
    trains on the data set's own labels (distillation and JSD need a teacher's logits, so they are left out)."""
    return [name for name, cls in lk.heads.TASK_LOSSES[task].items() if getattr(cls, "target", None) != "logits"]


def check_loss(task: str, loss: str | None) -> str | None:
    """``loss`` if ``task``'s demo can train with it, else a LossInputError naming ``loss``."""
    if loss is not None and loss not in demo_losses(task):
        names = ", ".join(demo_losses(task))
        raise lk.LossInputError(f"loss: expected a loss of the {task} task ({names}), got {loss!r}")
    return loss


def _regression_values(head, logits: np.ndarray, y_scale) -> np.ndarray:
    """A regression head's point prediction (``head.point``: the median quantile of a quantile head,
    the mean of a Gaussian head, the mean of a deviance head) in the data set's units."""
    mean, std = y_scale
    return np.asarray(head.point(logits)).reshape(-1) * std + mean


def _scores(task: str, head, logits, y_val, y_train, y_scale) -> tuple[dict, dict]:
    """Held-out metrics of the trained network, and of the trivial predictor that ignores x."""
    pred = np.asarray(head.predict(logits))
    if task in ("binary", "multiclass"):
        majority = np.bincount(y_train).argmax()
        return {"accuracy": float(np.mean(pred == y_val))}, {"accuracy": float(np.mean(y_val == majority))}
    if task == "multilabel":
        majority = (y_train.mean(axis=0) > 0.5).astype(y_val.dtype)
        metrics = {"exact match": float(np.mean(np.all(pred == y_val, axis=1))),
                   "per-label accuracy": float(np.mean(pred == y_val))}
        base = {"exact match": float(np.mean(np.all(majority == y_val, axis=1))),
                "per-label accuracy": float(np.mean(majority == y_val))}
        return metrics, base
    values = _regression_values(head, logits, y_scale)  # back to the data set's units
    # the baseline predicts the training mean for everyone: R^2 a little below 0 held out
    return ({"R^2": _r2(values, y_val, float(y_val.mean()))},
            {"R^2": _r2(np.full_like(y_val, float(y_train.mean())), y_val, float(y_val.mean()))})


def _column(name: str) -> str:
    return "_".join(name.split())


def held_out_columns(task: str, head, logits: np.ndarray, y_val: np.ndarray, y_scale) -> dict[str, np.ndarray]:
    """The held-out predictions as ``losskit eval`` reads them by default: the network's logits
    (``logit`` or ``logit_<class/label>``) for a classifier, the prediction in the data set's
    units (``pred``) for regression, and the target (``target`` or ``target_<label>``)."""
    from .data import MULTILABEL_NAMES

    if task == "binary":
        return {"logit": logits[:, 0], "target": np.asarray(head.encode(y_val)).astype(np.int64)}
    if task == "multiclass":
        columns = {f"logit_{k}": logits[:, k] for k in range(logits.shape[1])}
        return {**columns, "target": np.asarray(head.encode(y_val)).astype(np.int64)}
    if task == "multilabel":
        names = [_column(n) for n in MULTILABEL_NAMES]
        columns = {f"logit_{n}": logits[:, k] for k, n in enumerate(names)}
        return {**columns, **{f"target_{n}": y_val[:, k].astype(np.int64) for k, n in enumerate(names)}}
    return {"pred": _regression_values(head, logits, y_scale), **_raw_outputs(head, logits, y_scale),
            "target": y_val}


def _raw_outputs(head, logits: np.ndarray, y_scale) -> dict[str, np.ndarray]:
    """The network's outputs as the loss reads them, in the data set's units, where they are not ``pred``
    itself: what ``losskit eval --loss NAME --pred ...`` scores (docs/cli.md). A deviance's log-mean
    (``log_pred``: the target was divided by its training mean), a quantile head's every quantile
    (``quantile_<q>``), a Gaussian head's log-variance beside its mean (``log_variance``)."""
    mean, std = y_scale
    if head.loss_object.link is LOG:
        return {"log_pred": logits[:, 0] + np.log(std)}
    if isinstance(head, lk.QuantileHead):
        return {f"quantile_{q:g}": logits[:, k] * std + mean for k, q in enumerate(head.loss_object.quantiles)}
    if isinstance(head, lk.GaussianHead):
        return {"log_variance": logits[:, 1] + 2 * np.log(std)}
    return {}


def _ece(task: str, logits: np.ndarray, labels: np.ndarray) -> float:
    """The held-out 15-bin ECE of ``losskit eval`` (binary: P(positive); multi-class: top label)."""
    from ..evaluation.metrics import BinaryMetrics, MulticlassMetrics

    if task == "binary":
        metrics = BinaryMetrics("logits")
        metrics.update(logits[:, 0], labels.astype(np.int64))
    else:
        metrics = MulticlassMetrics(logits.shape[1], "logits")
        metrics.update(logits, labels.astype(np.int64))
    return metrics.result()["ece"]


def _nll(task: str, logits: np.ndarray, labels: np.ndarray) -> float:
    """The held-out mean negative log-likelihood of the labels, the task's cross-entropy whatever loss
    trained the network (a hinge's value is no likelihood; the temperature is fitted to this)."""
    if task == "binary":
        return float(lk.BinaryCrossEntropyWithLogits()(logits[:, 0], labels.astype(logits.dtype)))
    return float(lk.SoftmaxCrossEntropy()(logits, labels))


def calibrate_held_out(task: str, calibration_logits, calibration_labels, held_out, labels):
    """Fit a temperature on the calibration split's logits (:func:`losskit.calibrate`) and score the
    held-out logits before and after it: ``(summary dict, Calibration or None)``. Where no temperature
    exists (a calibration split the network separates perfectly: T -> 0), the dict says why."""
    before = {"nll_before": _nll(task, held_out, labels), "ece_before": _ece(task, held_out, labels)}
    try:
        fitted = lk.calibrate(calibration_logits, calibration_labels)
    except lk.LossInputError as error:
        return {**before, "temperature": None, "reason": str(error),
                "n_calibration": len(calibration_logits)}, None
    calibrated = np.asarray(fitted.apply(held_out))
    return {"temperature": fitted.params["temperature"], "n_calibration": len(calibration_logits),
            "passes": fitted.passes, **before, "nll_after": _nll(task, calibrated, labels),
            "ece_after": _ece(task, calibrated, labels)}, fitted


def run(task: str, *, epochs: int | None = None, seed: int = 0, loss: str | None = None,
        on_epoch: Callable[[int, float, float], None] | None = None) -> Result:
    """Train ``task``'s network for ``epochs`` (default: its :data:`DEFAULTS`) and score it.

    ``loss`` names any loss of the task's head (:func:`demo_losses`; default: the task's own,
    cross-entropy or squared error). A deviance trains on the target divided by its training
    mean (positive, as its domain needs), the other regression losses on the standardised target.

    ``on_epoch(epoch, train_loss, val_loss)`` is called after each epoch (for progress bars).
    Seeded: the same ``task``, ``epochs`` and ``seed`` give the same numbers. A bad ``task``,
    ``epochs`` (an int >= 1) or ``seed`` (an int >= 0) raises :class:`~losskit.LossInputError`
    naming it, before any data are loaded.
    """
    if task not in DEFAULTS:
        raise lk.LossInputError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    config = DEFAULTS[task]
    epochs = config.epochs if epochs is None else check_int(epochs, "epochs", 1)
    seed = check_int(seed, "seed", 0)
    check_loss(task, loss)
    # compile_here: a small call whose kernel is not ready waits for it, where it would be answered by the
    # array-API path (equal to the kernel's only to the last bits) while the kernel compiles in the background,
    # and the same seed gave other numbers run to run. A warm-up of each call's kind missed a kind (the
    # training set's loss, over 256 units in one row, takes another kernel than the batches')
    with one_blas_thread(), _compiled.compile_here():
        return _train(task, config, epochs, seed, loss, on_epoch)


def one_blas_thread():
    """One BLAS thread while a demo network trains (restored after). Its gemms, at most 1,078 x 64 by
    64, are too small for BLAS's threads to pay, and a threaded gemm stalls whenever another thread
    holds a core (numba loading a kernel in the background, another process): with one core busy,
    the multi-class task's forward passes took 0.97 s with OpenBLAS's two threads and 0.10 s with
    one. threadpoolctl comes with the ``[cli]`` extra; without it BLAS keeps its own."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _train(task: str, config: Config, epochs: int, seed: int, loss: str | None,
           on_epoch: Callable[[int, float, float], None] | None) -> Result:
    start = time.perf_counter()
    split = load(task, seed)
    # task detection: the head is read off the targets; the loss, if given, is the user's
    head = lk.head_for(split.y_train) if loss is None else lk.head_for(split.y_train, loss=loss)
    if task == "regression" and isinstance(head.loss_object, (lk.PoissonDeviance, lk.GammaDeviance,
                                                               lk.TweedieDeviance)):
        # a deviance needs y >= 0 (or > 0): scale by the training mean only, so exp(0) = 1 is the mean
        y_scale = (0.0, float(split.y_train.mean()))
        t_train, t_val = split.y_train / y_scale[1], split.y_val / y_scale[1]
    elif task == "regression":
        # train on a standardised target so Adam's step size suits it; R^2 is scale-free
        y_scale = (float(split.y_train.mean()), float(split.y_train.std()))
        t_train = (split.y_train - y_scale[0]) / y_scale[1]
        t_val = (split.y_val - y_scale[0]) / y_scale[1]
    else:
        y_scale = (0.0, 1.0)
        t_train, t_val = head.encode(split.y_train), head.encode(split.y_val)

    calibration_rows = None
    if task in CALIBRATED:  # a calibration split carved from the training rows, never trained on
        order = np.random.default_rng(seed + 1).permutation(len(split.x_train))
        cut = int(round(CALIBRATION_FRACTION * len(order)))
        calibration_rows, kept = order[:cut], order[cut:]
        calibration_x, calibration_y = split.x_train[calibration_rows], split.y_train[calibration_rows]
        split = dataclasses.replace(split, x_train=split.x_train[kept], y_train=split.y_train[kept])
        t_train = t_train[kept]

    rng = np.random.default_rng(seed)
    model = MLP([split.x_train.shape[1], *config.hidden, head.units], rng)
    optimiser = Adam(model.params, lr=config.lr, weight_decay=config.weight_decay)
    result = Result(task=task, dataset=split.name, n_train=len(split.x_train), n_val=len(split.x_val),
                    n_features=split.x_train.shape[1], head=type(head).__name__, units=head.units,
                    activation=head.activation_name, loss=type(head.loss_object).__name__,
                    reason=head.reason, epochs=epochs, seed=seed)

    def record(epoch: int) -> None:
        train_loss = float(head.loss(model.forward(split.x_train), t_train))
        val_loss = float(head.loss(model.forward(split.x_val), t_val))
        result.train_loss.append(train_loss)
        result.val_loss.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)

    record(0)
    n = len(split.x_train)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for begin in range(0, n, config.batch_size):
            batch = order[begin:begin + config.batch_size]
            logits = model.forward(split.x_train[batch])
            _, grad = head.value_and_grad(logits, t_train[batch])
            optimiser.step(model.backward(grad))
        record(epoch)

    held_out = model.forward(split.x_val)
    result.metrics, result.baseline = _scores(task, head, held_out, split.y_val, split.y_train, y_scale)
    result.predictions = held_out_columns(task, head, held_out, split.y_val, y_scale)
    if calibration_rows is not None:
        def labels(y):
            return np.asarray(head.encode(y)).astype(np.int64).reshape(-1)

        result.calibration, result.calibrator = calibrate_held_out(
            task, model.forward(calibration_x), labels(calibration_y), held_out, labels(split.y_val))
    result.seconds = time.perf_counter() - start
    return result
