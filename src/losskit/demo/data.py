"""The four bundled data sets of ``losskit demo``, split and standardised.

All ship inside losskit (``datasets/*.npz``, scikit-learn's arrays as its loaders give them,
written by ``tools/demo_data.py``; sources and licences in ``datasets/README.md``): breast cancer
(binary), digits (10 classes), four labels derived from each digit (multi-label), diabetes
(regression). No download and no scikit-learn, whose import (and the SciPy it brings, which
numba then imports too) costs more than training a task. The split is a seeded random permutation;
features are standardised with the training part's mean and standard deviation only, so nothing
of the held-out part leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losskit import LossInputError
from losskit._checks import int_at_least

#: task -> (data set, what the target is)
DATASETS = {
    "binary": ("breast cancer", "malignant or benign (569 tumours, 30 features)"),
    "multiclass": ("digits", "which digit 0-9 (1797 8x8 images, 64 features)"),
    "multilabel": ("digits, 4 labels", "even, greater than 4, prime, has a closed loop (0 6 8 9)"),
    "regression": ("diabetes", "disease progression after one year (442 patients, 10 features)"),
}

#: the derived labels of the multi-label task, as functions of the digit
MULTILABEL_NAMES = ("even", "greater than 4", "prime", "closed loop")
_PRIME = (2, 3, 5, 7)
_LOOP = (0, 6, 8, 9)


@dataclass
class Split:
    """Training and held-out parts of one task's data (features standardised on the train part)."""

    task: str
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    label_names: tuple[str, ...] = ()


def digit_labels(digits: np.ndarray) -> np.ndarray:
    """``[N]`` digits -> ``[N, 4]`` 0/1 labels: even, > 4, prime, closed loop."""
    d = np.asarray(digits)
    return np.stack([d % 2 == 0, d > 4, np.isin(d, _PRIME), np.isin(d, _LOOP)], axis=1).astype(np.int64)


check_int = int_at_least  # ``value`` if an int >= ``low``, else a LossInputError naming ``name``


#: the folder of the bundled data sets
_DATASETS = Path(__file__).resolve().parent / "datasets"
#: task -> its file in :data:`_DATASETS`
_FILES = {"binary": "breast_cancer.npz", "multiclass": "digits.npz", "multilabel": "digits.npz",
          "regression": "diabetes.npz"}


def _features_and_target(task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as scikit-learn's loaders give them (``load_breast_cancer``, ``load_digits``,
    ``load_diabetes(scaled=False)``): features as float64, classes as int, the regression target float64."""
    with np.load(_DATASETS / _FILES[task]) as data:
        x, y = data["x"].astype(np.float64), data["y"]
    return x, (y if task == "regression" else y.astype(int))


def load(task: str, seed: int = 0, val_fraction: float = 0.25) -> Split:
    """Load ``task``'s data set and split it ``1 - val_fraction`` / ``val_fraction``, seeded
    (``seed`` an int >= 0; a bad ``task`` or ``seed`` raises a LossInputError naming it)."""
    if task not in DATASETS:
        raise LossInputError(f"task: expected one of {', '.join(DATASETS)}, got {task!r}")
    seed = check_int(seed, "seed", 0)
    if not (isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
            and 0 <= val_fraction < 1):  # (a negative one turned the split round, 1 left no training rows)
        raise LossInputError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    x, y = _features_and_target(task)
    label_names: tuple[str, ...] = ()
    if task == "multilabel":
        y = digit_labels(y)
        label_names = MULTILABEL_NAMES
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    if n_val >= len(x):
        raise LossInputError(f"val_fraction: expected a fraction that leaves training rows ({len(x)} rows), "
                             f"got {val_fraction!r} ({n_val} held out)")
    val, train = order[:n_val], order[n_val:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels of the digits: leave them at 0
    x = (x - mean) / std
    return Split(task, DATASETS[task][0], x[train], y[train], x[val], y[val], label_names)
