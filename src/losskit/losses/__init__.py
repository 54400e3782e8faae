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
from .deviance import (
    GammaDeviance,
    PoissonDeviance,
    TweedieDeviance,
    gamma_deviance,
    poisson_deviance,
    tweedie_deviance,
)
from .distribution import (
    DistillationLoss,
    GaussianNLL,
    KLDivergence,
    QuantileLoss,
    distillation_loss,
    gaussian_nll_loss,
    kl_divergence,
    quantile_loss,
)
from .focal import (
    MultilabelSigmoidFocalLoss,
    PolyCrossEntropy,
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
    multilabel_sigmoid_focal_loss,
    poly_cross_entropy,
    sigmoid_focal_loss,
    softmax_focal_loss,
)
from .hinge import (
    HingeLoss,
    MulticlassHingeLoss,
    MultilabelHingeLoss,
    MultilabelSquaredHingeLoss,
    SquaredHingeLoss,
    hinge_loss,
    multiclass_hinge_loss,
    multilabel_hinge_loss,
    multilabel_squared_hinge_loss,
    squared_hinge_loss,
)
from .multilabel import MultilabelCrossEntropy, multilabel_cross_entropy
from .regression import MeanSquaredError, mean_squared_error
from .robust import (
    AbsoluteError,
    HuberLoss,
    LogCoshLoss,
    PseudoHuberLoss,
    SmoothL1Loss,
    absolute_error,
    huber_loss,
    log_cosh_loss,
    pseudo_huber_loss,
    smooth_l1_loss,
)

#: every loss, by its function's name: (Loss class, function). A new loss is one entry here.
REGISTRY = {
    "binary_cross_entropy": (BinaryCrossEntropy, binary_cross_entropy),
    "binary_cross_entropy_with_logits": (BinaryCrossEntropyWithLogits,
                                         binary_cross_entropy_with_logits),
    "categorical_cross_entropy": (CategoricalCrossEntropy, categorical_cross_entropy),
    "softmax_cross_entropy": (SoftmaxCrossEntropy, softmax_cross_entropy),
    "multilabel_cross_entropy": (MultilabelCrossEntropy, multilabel_cross_entropy),
    "mean_squared_error": (MeanSquaredError, mean_squared_error),
    # binary and multi-label, from logits
    "sigmoid_focal_loss": (SigmoidFocalLoss, sigmoid_focal_loss),
    "hinge_loss": (HingeLoss, hinge_loss),
    "squared_hinge_loss": (SquaredHingeLoss, squared_hinge_loss),
    "multilabel_sigmoid_focal_loss": (MultilabelSigmoidFocalLoss, multilabel_sigmoid_focal_loss),
    "multilabel_hinge_loss": (MultilabelHingeLoss, multilabel_hinge_loss),
    "multilabel_squared_hinge_loss": (MultilabelSquaredHingeLoss, multilabel_squared_hinge_loss),
    # multi-class, from logits
    "softmax_focal_loss": (SoftmaxFocalLoss, softmax_focal_loss),
    "poly_cross_entropy": (PolyCrossEntropy, poly_cross_entropy),
    "multiclass_hinge_loss": (MulticlassHingeLoss, multiclass_hinge_loss),
    "kl_divergence": (KLDivergence, kl_divergence),
    "distillation_loss": (DistillationLoss, distillation_loss),
    # regression
    "absolute_error": (AbsoluteError, absolute_error),
    "huber_loss": (HuberLoss, huber_loss),
    "smooth_l1_loss": (SmoothL1Loss, smooth_l1_loss),
    "pseudo_huber_loss": (PseudoHuberLoss, pseudo_huber_loss),
    "log_cosh_loss": (LogCoshLoss, log_cosh_loss),
    "quantile_loss": (QuantileLoss, quantile_loss),
    "poisson_deviance": (PoissonDeviance, poisson_deviance),
    "gamma_deviance": (GammaDeviance, gamma_deviance),
    "tweedie_deviance": (TweedieDeviance, tweedie_deviance),
    "gaussian_nll_loss": (GaussianNLL, gaussian_nll_loss),
}

#: the classes and functions added by issue 8, for the exports
NEW_NAMES = [name for pair in list(REGISTRY.values())[6:] for name in (pair[0].__name__, pair[1].__name__)]

__all__ = [
    "REGISTRY", "Loss", "Terms",
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "MultilabelCrossEntropy", "MeanSquaredError",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
    "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error", *NEW_NAMES,
]
