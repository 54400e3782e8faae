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
from .losses import (
    REGISTRY,
    AbsoluteError,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CategoricalCrossEntropy,
    DistillationLoss,
    GammaDeviance,
    GaussianNLL,
    HingeLoss,
    HuberLoss,
    KLDivergence,
    LogCoshLoss,
    Loss,
    MeanSquaredError,
    MulticlassHingeLoss,
    MultilabelCrossEntropy,
    MultilabelHingeLoss,
    MultilabelSigmoidFocalLoss,
    MultilabelSquaredHingeLoss,
    PoissonDeviance,
    PolyCrossEntropy,
    PseudoHuberLoss,
    QuantileLoss,
    SigmoidFocalLoss,
    SmoothL1Loss,
    SoftmaxCrossEntropy,
    SoftmaxFocalLoss,
    SquaredHingeLoss,
    TweedieDeviance,
    absolute_error,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    categorical_cross_entropy,
    distillation_loss,
    gamma_deviance,
    gaussian_nll_loss,
    hinge_loss,
    huber_loss,
    kl_divergence,
    log_cosh_loss,
    mean_squared_error,
    multiclass_hinge_loss,
    multilabel_cross_entropy,
    multilabel_hinge_loss,
    multilabel_sigmoid_focal_loss,
    multilabel_squared_hinge_loss,
    poisson_deviance,
    poly_cross_entropy,
    pseudo_huber_loss,
    quantile_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
    squared_hinge_loss,
    tweedie_deviance,
)
from .losses.linear import linear_binary_cross_entropy, linear_cross_entropy
from .targets import type_of_target


def __getattr__(name: str):
    # losskit.evaluate (files, pyarrow, Dask) is imported on first use: ``import losskit`` stays light
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    if name in ("calibrate", "Calibration"):  # the same: fitted on first use
        from .evaluation import calibration

        return getattr(calibration, name)
    raise AttributeError(f"module 'losskit' has no attribute {name!r}")

__all__ = [
    "LossInputError", "Loss", "REGISTRY",
    "sigmoid", "log_sigmoid", "softmax", "log_softmax", "logsumexp",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
    "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error",
    "BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "MultilabelCrossEntropy", "MeanSquaredError",
    "head", "head_for", "BinaryHead", "MulticlassHead", "MultilabelHead", "RegressionHead", "QuantileHead",
    "GaussianHead",
    "type_of_target", "linear_cross_entropy", "linear_binary_cross_entropy",
    "sigmoid_focal_loss", "hinge_loss", "squared_hinge_loss", "multilabel_sigmoid_focal_loss",
    "multilabel_hinge_loss", "multilabel_squared_hinge_loss", "softmax_focal_loss", "poly_cross_entropy",
    "multiclass_hinge_loss", "kl_divergence", "distillation_loss", "absolute_error", "huber_loss",
    "smooth_l1_loss", "pseudo_huber_loss", "log_cosh_loss", "quantile_loss", "poisson_deviance",
    "gamma_deviance", "tweedie_deviance", "gaussian_nll_loss",
    "SigmoidFocalLoss", "HingeLoss", "SquaredHingeLoss", "MultilabelSigmoidFocalLoss", "MultilabelHingeLoss",
    "MultilabelSquaredHingeLoss", "SoftmaxFocalLoss", "PolyCrossEntropy", "MulticlassHingeLoss", "KLDivergence",
    "DistillationLoss", "AbsoluteError", "HuberLoss", "SmoothL1Loss", "PseudoHuberLoss", "LogCoshLoss",
    "QuantileLoss", "PoissonDeviance", "GammaDeviance", "TweedieDeviance", "GaussianNLL",
    "evaluate", "calibrate", "Calibration",
]
