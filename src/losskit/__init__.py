"""losskit: loss functions, output heads and analytic gradients for any array library.

The core needs only NumPy and array-api-compat; inputs may be NumPy, PyTorch, JAX, CuPy, Dask
or array-api-strict arrays (or Python lists, read as NumPy), and results come back in the
input's library, dtype and device. Framework layers (``losskit.torch``, ``losskit.jax``) are
imported only when asked for.
"""

from ._errors import LossInputError
from .activations import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax
from .heads import BinaryHead, MulticlassHead, MultilabelHead, RegressionHead, head, head_for
from .losses import (
    REGISTRY,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CategoricalCrossEntropy,
    Loss,
    MeanSquaredError,
    MultilabelCrossEntropy,
    SoftmaxCrossEntropy,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    categorical_cross_entropy,
    mean_squared_error,
    multilabel_cross_entropy,
    softmax_cross_entropy,
)
from .losses.linear import linear_binary_cross_entropy, linear_cross_entropy
from .targets import type_of_target

__version__ = "0.1.0"

__all__ = [
    "LossInputError", "Loss", "REGISTRY",
    "sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
    "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error",
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "MultilabelCrossEntropy", "MeanSquaredError",
    "head", "head_for", "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead",
    "type_of_target", "linear_cross_entropy", "linear_binary_cross_entropy",
]
