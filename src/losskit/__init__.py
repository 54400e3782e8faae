"""losskit: loss functions, output heads and analytic gradients for any array library.

The core needs only NumPy and array-api-compat; inputs may be NumPy, PyTorch, JAX, CuPy, Dask
or array-api-strict arrays (or Python lists, read as NumPy), and results come back in the
input's library, dtype and device. Framework layers (``losskit.torch``, ``losskit.jax``) are
imported only when asked for.
"""

from ._errors import LossInputError
from ._version import __version__ as __version__
from .activations import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax
from .heads import (
    BinaryHead,
    GaussianHead,
    MulticlassHead,
    MultilabelHead,
    QuantileHead,
    RegressionHead,
    head,
    head_for,
)
from .losses import *  # noqa: F403 - every catalogue loss, class and function, read from the registry
from .losses import __all__ as _LOSSES
from .losses.linear import linear_binary_cross_entropy, linear_cross_entropy
from .losses.linear_jsd import linear_jsd_loss, linear_jsd_loss_value_and_grad
from .losses.logprobs import TokenLogProbs, linear_logprobs, linear_logprobs_vjp
from .losses.policy import linear_grpo_loss, linear_grpo_loss_value_and_grad
from .losses.preference import linear_preference_loss, linear_preference_loss_value_and_grad
from .targets import type_of_target
from .tasks import Task


def __getattr__(name: str):
    # losskit.evaluate (files, pyarrow, Dask) is imported on first use: ``import losskit`` stays light
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    if name in ("calibrate", "Calibration"):  # the same: fitted on first use
        from .evaluation import calibration

        return getattr(calibration, name)
    from .losses.registry import REGISTRY

    if name in REGISTRY:  # a user's own loss, registered after import: its function form (docs/own-loss.md)
        return REGISTRY[name][1]
    raise AttributeError(f"module 'losskit' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too (tab completion lists dir()): evaluate, calibrate, Calibration, users' registered losses
    from .losses.registry import REGISTRY

    return sorted(set(globals()) | set(__all__) | set(REGISTRY))


__all__ = [
    "LossInputError", "sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp",
    "head", "head_for", "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "QuantileHead",
    "GaussianHead", "Task", "type_of_target", "linear_cross_entropy", "linear_binary_cross_entropy",
    "linear_jsd_loss", "linear_jsd_loss_value_and_grad",
    "evaluate", "calibrate", "Calibration",  # noqa: F405 - lazy (module __getattr__)
    "linear_logprobs", "linear_logprobs_vjp", "TokenLogProbs",
    "linear_grpo_loss", "linear_grpo_loss_value_and_grad",
    "linear_preference_loss", "linear_preference_loss_value_and_grad",
    *_LOSSES,
]
