"""Valid inputs for every registered loss, with the option sets the common tests sweep.

Adding a loss to ``losskit.REGISTRY`` means adding one ``Case`` maker here; every common test
(gradients, Hessians, reductions, weights, backends, dtypes, peers) then covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import losskit
import own_losses  # noqa: F401 - registers a user's own losses, which every common test then covers

N, K = 6, 4


@dataclass
class Case:
    input: np.ndarray
    target: np.ndarray
    options: dict = field(default_factory=dict)
    #: shape of one weight per example
    batch_shape: tuple = ()
    #: effective per-example weight from the options alone (class weights, ignored labels)
    option_weight: np.ndarray | None = None
    #: probability inputs must stay inside their domain under finite-difference steps
    probability_input: bool = False


def _probs(rng, shape):
    p = rng.uniform(0.05, 0.95, size=shape)
    return p


def _simplex(rng, shape):
    e = np.exp(rng.normal(size=shape))
    return e / e.sum(axis=-1, keepdims=True)


def binary_cases(rng, probability_input):
    def make_input(shape):
        return _probs(rng, shape) if probability_input else rng.normal(scale=2.0, size=shape)

    y01 = (rng.uniform(size=(N,)) > 0.5).astype(np.int64)
    soft = rng.uniform(size=(N, K))
    return {
        "plain": Case(make_input((N,)), y01, {}, (N,)),
        "soft_2d": Case(make_input((N, K)), soft, {}, (N, K)),
        "pos_weight": Case(make_input((N,)), y01.astype(np.float64), {"pos_weight": 2.5}, (N,)),
        "pos_weight_vec": Case(make_input((N, K)), soft, {"pos_weight": [0.5, 1.0, 2.0, 3.0]}, (N, K)),
        "smoothing": Case(make_input((N,)), y01, {"label_smoothing": 0.2}, (N,)),
        "all": Case(make_input((N, K)), (soft > 0.5).astype(np.float32),
                    {"pos_weight": [0.5, 1.0, 2.0, 3.0], "label_smoothing": 0.1}, (N, K)),
    }


def categorical_cases(rng, probability_input):
    def make_input(shape):
        return _simplex(rng, shape) * 0.9 + 0.1 / shape[-1] if probability_input \
            else rng.normal(scale=2.0, size=shape)

    labels = rng.integers(0, K, size=(N,))
    labels[:K] = np.arange(K)  # every class present
    class_weight = np.array([0.5, 1.0, 2.0, 3.0])
    ignored = labels.copy()
    ignored[[1, 4]] = -100
    keep = (ignored != -100).astype(float)
    soft = _simplex(rng, (N, K))
    labels_3d = rng.integers(0, K, size=(2, 3))
    return {
        "labels": Case(make_input((N, K)), labels, {}, (N,)),
        "soft": Case(make_input((N, K)), soft, {}, (N,)),
        "one_hot": Case(make_input((N, K)), np.eye(K)[labels], {}, (N,)),
        "class_weight": Case(make_input((N, K)), labels, {"class_weight": class_weight}, (N,),
                             option_weight=class_weight[labels]),
        "class_weight_soft": Case(make_input((N, K)), soft, {"class_weight": class_weight}, (N,),
                                  option_weight=soft @ class_weight),
        "ignore": Case(make_input((N, K)), ignored, {"ignore_index": -100}, (N,), option_weight=keep),
        "smoothing": Case(make_input((N, K)), labels, {"label_smoothing": 0.2}, (N,)),
        "smoothing_soft": Case(make_input((N, K)), soft, {"label_smoothing": 0.3}, (N,)),
        "all": Case(make_input((N, K)), ignored,
                    {"class_weight": class_weight, "ignore_index": -100, "label_smoothing": 0.1}, (N,),
                    option_weight=class_weight[np.where(ignored == -100, 0, ignored)] * keep),
        "axis1": Case(np.moveaxis(make_input((2, 3, K)), -1, 1), labels_3d, {"axis": 1}, (2, 3)),
    }


def multilabel_cases(rng):
    target = (rng.uniform(size=(N, K)) > 0.5).astype(np.int64)
    return {
        "plain": Case(rng.normal(scale=2.0, size=(N, K)), target, {}, (N,)),
        "pos_weight": Case(rng.normal(size=(N, K)), target, {"pos_weight": [1.0, 2.0, 0.5, 4.0]}, (N,)),
        "smoothing": Case(rng.normal(size=(N, K)), target.astype(float), {"label_smoothing": 0.1}, (N,)),
        "3d": Case(rng.normal(size=(2, 3, K)), rng.uniform(size=(2, 3, K)), {}, (2, 3)),
    }


def regression_cases(rng):
    return {
        "1d": Case(rng.normal(size=(N,)), rng.normal(size=(N,)), {}, (N,)),
        "2d": Case(rng.normal(size=(N, 3)), rng.normal(size=(N, 3)), {}, (N,)),
        "int_target": Case(rng.normal(size=(N, 2)), rng.integers(-3, 3, size=(N, 2)), {}, (N,)),
    }


def sigmoid_focal_cases(rng):
    y01 = (rng.uniform(size=(N,)) > 0.5).astype(np.int64)
    soft = rng.uniform(size=(N, K))
    return {
        "plain": Case(rng.normal(scale=2.0, size=(N,)), y01, {}, (N,)),
        "soft_2d": Case(rng.normal(scale=2.0, size=(N, K)), soft, {"gamma": 1.5}, (N, K)),
        "alpha_gamma_below_one": Case(rng.normal(scale=2.0, size=(N,)), y01.astype(float),
                                      {"gamma": 0.5, "alpha": 0.25}, (N,)),
        "gamma_zero": Case(rng.normal(scale=2.0, size=(N,)), y01, {"gamma": 0.0, "alpha": 0.75}, (N,)),
        "smoothing": Case(rng.normal(scale=2.0, size=(N, K)), (soft > 0.5).astype(np.float32),
                          {"gamma": 3.0, "label_smoothing": 0.2}, (N, K)),
    }


def hinge_cases(rng):
    y01 = (rng.uniform(size=(N,)) > 0.5).astype(np.int64)
    signs = np.where(rng.uniform(size=(N, K)) > 0.5, 1.0, -1.0)
    return {
        "zero_one": Case(rng.normal(scale=2.0, size=(N,)), y01, {}, (N,)),
        "plus_minus_2d": Case(rng.normal(scale=2.0, size=(N, K)), signs, {}, (N, K)),
    }


def multilabel_margin_cases(rng, options):
    target = (rng.uniform(size=(N, K)) > 0.5).astype(np.int64)
    return {
        "plain": Case(rng.normal(scale=2.0, size=(N, K)), target, dict(options), (N,)),
        "3d": Case(rng.normal(scale=2.0, size=(2, 3, K)), (rng.uniform(size=(2, 3, K)) > 0.5).astype(float),
                   dict(options), (2, 3)),
    }


def softmax_variant_cases(rng, options, *, soft=True, smoothing=True):
    """Categorical cases (labels, class weights, ignored labels, axis) for a loss with ``options``."""
    every = categorical_cases(rng, False)
    keep = ["labels", "class_weight", "ignore", "axis1"]
    if soft:
        keep += ["soft", "class_weight_soft"]
    if smoothing:
        keep += ["smoothing", "all"] + (["smoothing_soft"] if soft else [])
    made = {name: every[name] for name in keep}
    for case in made.values():
        case.options = {**options, **case.options}
    return made


def distillation_cases(rng):
    return {
        "t1": Case(rng.normal(scale=2.0, size=(N, K)), rng.normal(scale=2.0, size=(N, K)), {}, (N,)),
        "t4": Case(rng.normal(scale=2.0, size=(N, K)), rng.normal(scale=3.0, size=(N, K)),
                   {"temperature": 4.0}, (N,)),
        "axis0": Case(rng.normal(size=(K, N)), rng.normal(size=(K, N)), {"temperature": 0.5, "axis": 0}, (N,)),
    }


def jsd_cases(rng):
    """Every branch of the generalised JSD: the two KL endpoints and the mixture, tempered, on axis 0."""
    def logits(shape, scale=2.0):
        return rng.normal(scale=scale, size=shape)

    return {
        "mixture": Case(logits((N, K)), logits((N, K)), {}, (N,)),
        "beta03_t2": Case(logits((N, K)), logits((N, K), 3.0), {"beta": 0.3, "temperature": 2.0}, (N,)),
        "forward_kl": Case(logits((N, K)), logits((N, K)), {"beta": 0.0, "temperature": 1.5}, (N,)),
        "reverse_kl": Case(logits((N, K)), logits((N, K)), {"beta": 1.0, "temperature": 0.7}, (N,)),
        "axis0": Case(logits((K, N), 1.0), logits((K, N), 1.0), {"beta": 0.8, "axis": 0}, (N,)),
    }


def value_cases(rng, options=None, target=None):
    """Regression cases; ``target(shape)`` draws targets in the loss's domain."""
    options = options or {}
    target = target or (lambda shape: rng.normal(size=shape))
    return {
        "1d": Case(rng.normal(size=(N,)), target((N,)), dict(options), (N,)),
        "2d": Case(rng.normal(size=(N, 3)), target((N, 3)), dict(options), (N,)),
    }


def robust_cases(rng, options_list):
    made = {"int_target": Case(rng.normal(scale=2.0, size=(N, 2)), rng.integers(-3, 3, size=(N, 2)),
                               dict(options_list[0]), (N,))}
    for i, options in enumerate(options_list):
        for key, case in value_cases(rng, options, lambda shape: rng.normal(scale=2.0, size=shape)).items():
            made[f"{key}_{i}"] = case
    return made


def quantile_cases(rng):
    return {
        "three": Case(rng.normal(size=(N, 3)), rng.normal(size=(N,)), {"quantiles": [0.1, 0.5, 0.9]}, (N,)),
        "one": Case(rng.normal(size=(N, 1)), rng.normal(size=(N,)), {"quantiles": 0.3}, (N,)),
        "3d": Case(rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 3)), {"quantiles": [0.25, 0.75]}, (2, 3)),
    }


def gaussian_cases(rng):
    return {
        "values": Case(np.stack([rng.normal(size=N), rng.normal(scale=0.5, size=N)], axis=-1),
                       rng.normal(size=(N,)), {}, (N,)),
        "3d": Case(rng.normal(scale=0.5, size=(2, 3, 2)), rng.normal(size=(2, 3)), {}, (2, 3)),
    }


def counts(rng):
    return lambda shape: rng.poisson(1.5, size=shape).astype(np.int64)


def positive(rng):
    return lambda shape: rng.gamma(2.0, 1.0, size=shape)


def tweedie_cases(rng):
    made = {}
    for power, draw in ((1.5, lambda shape: np.where(rng.uniform(size=shape) < 0.3, 0.0, rng.gamma(2.0, 1.0, shape))),
                        (3.0, positive(rng)), (0.0, lambda shape: rng.normal(size=shape)),
                        (-1.0, lambda shape: rng.normal(size=shape))):
        for key, case in value_cases(rng, {"power": power}, draw).items():
            case.input = case.input * 0.5
            made[f"{key}_p{power:g}"] = case
    return made


def cases_for(name: str, seed: int = 0) -> dict[str, Case]:
    rng = np.random.default_rng(seed)
    made = {
        "binary_cross_entropy": lambda: binary_cases(rng, True),
        "binary_cross_entropy_with_logits": lambda: binary_cases(rng, False),
        "categorical_cross_entropy": lambda: categorical_cases(rng, True),
        "softmax_cross_entropy": lambda: categorical_cases(rng, False),
        "multilabel_cross_entropy": lambda: multilabel_cases(rng),
        "mean_squared_error": lambda: regression_cases(rng),
        "sigmoid_focal_loss": lambda: sigmoid_focal_cases(rng),
        "hinge_loss": lambda: hinge_cases(rng),
        "squared_hinge_loss": lambda: hinge_cases(rng),
        "multilabel_sigmoid_focal_loss": lambda: multilabel_margin_cases(rng, {"gamma": 2.0, "alpha": 0.25}),
        "multilabel_hinge_loss": lambda: multilabel_margin_cases(rng, {}),
        "multilabel_squared_hinge_loss": lambda: multilabel_margin_cases(rng, {}),
        "softmax_focal_loss": lambda: {
            **softmax_variant_cases(rng, {"gamma": 2.0}),
            **{f"{k}_g05": c for k, c in softmax_variant_cases(
                rng, {"gamma": 0.5, "alpha": [0.25, 0.5, 1.0, 2.0]}, smoothing=False).items()}},
        "poly_cross_entropy": lambda: {
            **softmax_variant_cases(rng, {"epsilon": 1.0}),
            **{f"{k}_neg": c for k, c in softmax_variant_cases(rng, {"epsilon": -0.5}, smoothing=False).items()}},
        "multiclass_hinge_loss": lambda: softmax_variant_cases(rng, {}, soft=False, smoothing=False),
        "kl_divergence": lambda: softmax_variant_cases(rng, {}),
        "distillation_loss": lambda: distillation_cases(rng),
        "js_divergence": lambda: jsd_cases(rng),
        "absolute_error": lambda: robust_cases(rng, [{}]),
        "huber_loss": lambda: robust_cases(rng, [{}, {"delta": 0.5}]),
        "smooth_l1_loss": lambda: robust_cases(rng, [{}, {"beta": 0.5}, {"beta": 0.0}]),
        "pseudo_huber_loss": lambda: robust_cases(rng, [{}, {"delta": 0.3}]),
        "log_cosh_loss": lambda: robust_cases(rng, [{}]),
        "quantile_loss": lambda: quantile_cases(rng),
        "poisson_deviance": lambda: value_cases(rng, {}, counts(rng)),
        "gamma_deviance": lambda: value_cases(rng, {}, positive(rng)),
        "tweedie_deviance": lambda: tweedie_cases(rng),
        "gaussian_nll_loss": lambda: gaussian_cases(rng),
        "exponential_loss": lambda: {k: c for k, c in binary_cases(rng, False).items() if not c.options},
        "asymmetric_loss": lambda: {
            **multilabel_margin_cases(rng, {}),
            **{f"{k}_soft": c for k, c in multilabel_margin_cases(rng, {"gamma_pos": 0.5, "gamma_neg": 2.0,
                                                                       "clip": 0.0}).items()}},
        # a user's own losses (tests/own_losses.py), covered as the catalogue is
        "exp_margin_loss": lambda: {k: c for k, c in binary_cases(rng, False).items()
                                    if not c.options and k != "soft_2d"},
        "scaled_cauchy_loss": lambda: robust_cases(rng, [{}, {"scale": 0.5}]),
    }[name]()
    for case in made.values():
        case.probability_input = name in ("binary_cross_entropy", "categorical_cross_entropy")
    return made


def all_cases(seed: int = 0):
    """``(id, loss name, case name)`` for every registered loss and option set."""
    assert set(losskit.REGISTRY) == {
        "binary_cross_entropy", "binary_cross_entropy_with_logits", "categorical_cross_entropy",
        "softmax_cross_entropy", "multilabel_cross_entropy", "mean_squared_error",
        "sigmoid_focal_loss", "hinge_loss", "squared_hinge_loss", "multilabel_sigmoid_focal_loss",
        "multilabel_hinge_loss", "multilabel_squared_hinge_loss", "softmax_focal_loss", "poly_cross_entropy",
        "multiclass_hinge_loss", "kl_divergence", "distillation_loss", "js_divergence", "absolute_error", "huber_loss",
        "smooth_l1_loss", "pseudo_huber_loss", "log_cosh_loss", "quantile_loss", "poisson_deviance",
        "gamma_deviance", "tweedie_deviance", "gaussian_nll_loss", "exponential_loss", "asymmetric_loss",
        "exp_margin_loss", "scaled_cauchy_loss",
    }, "a new loss needs its cases here"
    return [(f"{name}-{case}", name, case) for name in losskit.REGISTRY for case in cases_for(name, seed)]


def make_loss(name: str, options: dict, reduction: str = "mean", impl: str = "xp"):
    cls, _ = losskit.REGISTRY[name]
    return cls(reduction=reduction, impl=impl, **options)
