"""The four bundled data sets of ``losskit demo``, split and standardised.

All come with scikit-learn (no download; its files are read without importing it, which takes
longer than training a task): breast cancer (binary), digits (10 classes), four labels derived
from each digit (multi-label), diabetes (regression). The split is a seeded random permutation;
features are standardised with the training part's mean and standard deviation only, so nothing
of the held-out part leaks into training.
"""

from __future__ import annotations

import gzip
import importlib.util
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


class MissingExtra(RuntimeError):
    """A package of the ``[cli]`` extra is missing; the message names the pip command."""


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


def _data_file(name: str) -> Path:
    """The path of scikit-learn's bundled data file ``name``, found without importing scikit-learn
    (its import takes longer than training a demo task)."""
    spec = importlib.util.find_spec("sklearn")
    path = None if spec is None or not spec.submodule_search_locations else \
        Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if path is None or not path.is_file():
        raise MissingExtra("the demo data sets need scikit-learn: pip install 'losskit[cli]'")
    return path


def _table(name: str, delimiter: str | None = ",") -> np.ndarray:
    """A numeric table of scikit-learn's data folder (``.csv`` or ``.csv.gz``) as float64."""
    path = _data_file(name)
    with (gzip.open(path, "rt") if name.endswith(".gz") else path.open()) as file:
        return np.loadtxt(file, delimiter=delimiter, ndmin=2)


def _features_and_target(task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as scikit-learn's loaders give them (``load_breast_cancer``, ``load_digits``,
    ``load_diabetes(scaled=False)``): the same files, read the same way."""
    if task == "binary":  # a first line of counts and class names, then 30 features and the class
        table = np.loadtxt(_data_file("breast_cancer.csv"), delimiter=",", skiprows=1, ndmin=2)
        return table[:, :-1], table[:, -1].astype(int)
    if task in ("multiclass", "multilabel"):  # 64 pixels and the digit
        table = _table("digits.csv.gz")
        return table[:, :-1], table[:, -1].astype(int)
    return _table("diabetes_data_raw.csv.gz", None), _table("diabetes_target.csv.gz", None)[:, 0]


def load(task: str, seed: int = 0, val_fraction: float = 0.25) -> Split:
    """Load ``task``'s data set and split it ``1 - val_fraction`` / ``val_fraction``, seeded
    (``seed`` an int >= 0; a bad ``task`` or ``seed`` raises a LossInputError naming it)."""
    if task not in DATASETS:
        raise LossInputError(f"task: expected one of {', '.join(DATASETS)}, got {task!r}")
    seed = check_int(seed, "seed", 0)
    x, y = _features_and_target(task)
    label_names: tuple[str, ...] = ()
    if task == "multilabel":
        y = digit_labels(y)
        label_names = MULTILABEL_NAMES
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels of the digits: leave them at 0
    x = (x - mean) / std
    return Split(task, DATASETS[task][0], x[train], y[train], x[val], y[val], label_names)
