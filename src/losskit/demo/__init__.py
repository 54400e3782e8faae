"""The networks ``losskit demo`` trains: a NumPy MLP with Adam, one per task, on bundled data.

Every gradient that trains them is a losskit head's analytic ``value_and_grad``; the head is
picked from the training targets by :func:`losskit.head_for`. The data sets ship inside
losskit (``datasets/``): nothing to download, no scikit-learn.

>>> from losskit.demo import run
>>> result = run("binary")                 # doctest: +SKIP
>>> result.metric                          # doctest: +SKIP
('accuracy', 0.9718...)
"""

from .data import DATASETS, MULTILABEL_NAMES, digit_labels, load
from .mlp import MLP, Adam
from .train import DEFAULTS, GOALS, TASKS, Config, Result, check_loss, demo_losses, run

__all__ = ["run", "Result", "Config", "DEFAULTS", "GOALS", "TASKS", "DATASETS", "MULTILABEL_NAMES",
           "digit_labels", "load", "MLP", "Adam", "demo_losses", "check_loss"]
