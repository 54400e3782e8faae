"""The losses, as functions and as :class:`Loss` objects, and the registry the tests iterate."""

from .base import Loss, Terms
from .binary import (
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
)
from .categorical import (
    CategoricalCrossEntropy,
    SoftmaxCrossEntropy,
    categorical_cross_entropy,
    softmax_cross_entropy,
)
from .multilabel import MultilabelCrossEntropy, multilabel_cross_entropy
from .regression import MeanSquaredError, mean_squared_error

#: every loss, by its function's name: (Loss class, function). A new loss is one entry here.
REGISTRY = {
    "binary_cross_entropy": (BinaryCrossEntropy, binary_cross_entropy),
    "binary_cross_entropy_with_logits": (BinaryCrossEntropyWithLogits,
                                         binary_cross_entropy_with_logits),
    "categorical_cross_entropy": (CategoricalCrossEntropy, categorical_cross_entropy),
    "softmax_cross_entropy": (SoftmaxCrossEntropy, softmax_cross_entropy),
    "multilabel_cross_entropy": (MultilabelCrossEntropy, multilabel_cross_entropy),
    "mean_squared_error": (MeanSquaredError, mean_squared_error),
}

__all__ = [
    "REGISTRY", "Loss", "Terms",
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "MultilabelCrossEntropy", "MeanSquaredError",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
    "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error",
]
