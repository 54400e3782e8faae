"""docs/losses.md "Precision", every catalogue loss: within 4 eps (value) and 8 eps (gradient) of 50-digit
mpmath, in float64 and float32, on the array-API path (``impl="xp"``) and the compiled kernel on NumPy
(``impl="fused"``, where the loss has one; a row the kernel flags is the reference's, as in any call).

Each case is a loss with fixed options, a grid of extreme but valid inputs for it (logits and errors
|z| from 1e-8 to 1e4, targets at the edges of their domain: 0 counts, tiny positives, labels,
probabilities with zeros) and its reference in tests/mp_catalogue.py, written from the loss's
definition. The inputs are rounded to the dtype first and the reference is computed from the rounded
values, so only losskit's arithmetic is measured; a point whose exact value or gradient overflows the
dtype is left out (no finite result exists). ``reduction="none"`` and ``value_and_grad``, so the
gradient is that of the sum of the per-example losses.

The conventions of tests/test_precision_paths.py: a value is judged relative to the exact one, an
exact value below the dtype's smallest normal number in absolute terms (at most 4 units of the
smallest subnormal); an elementwise gradient relative to the exact one (the same subnormal rule);
a gradient entry of a class-axis row against max(|exact|, eps).

A case that misses a bound where the fix belongs to a file this suite does not edit is marked
``xfail(strict=True)`` with the cause, so it fails (XPASS) once fixed. ``python benchmarks/accuracy.py
--catalogue`` prints the measured maxima.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

import losskit as lk
import mp_catalogue as mc
import mp_reference as mr

#: the grids reach where an intermediate exp(|z|) overflows while the result is finite (exp(z) times a zero
#: target weight; a branch that a where drops): NumPy's overflow warnings there are expected
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")

VALUE_EPS, GRAD_EPS, SUBNORMALS = 4.0, 8.0, 4.0
DTYPES = [np.float64, np.float32]

MAGNITUDES = [0.0] + [s * 10.0**e for e in range(-8, 5) for s in (1, 3)]
LOGITS = sorted({sign * m for m in MAGNITUDES for sign in (-1.0, 1.0) if m <= 1e4})
PROBS = [0.0, 1e-300, 1e-40, 1e-12, 1e-8, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-8, 1.0]
BINARY_TARGETS = [0.0, 0.3, 1.0]
SIGN_TARGETS = [0.0, 1.0, -1.0]
VALUE_TARGETS = [0.0, 0.3, 1.0, -3000.0]
COUNT_TARGETS = [0.0, 1e-30, 0.3, 1.0, 3.0, 1000.0]
POSITIVE_TARGETS = [1e-30, 0.3, 1.0, 3.0, 1000.0]
LABEL_PAIRS = [(1.0, 0.0), (0.0, 1.0), (0.3, 1.0)]
PROB_TARGET = (0.2, 0.8, 0.0)


@dataclass(frozen=True)
class Case:
    """A loss with its options, the examples of its grid and its mpmath reference per example."""

    name: str
    loss: lk.Loss
    examples: Callable  # dtype -> groups (one call each) of (input of an example, its target), rounded
    reference: Callable  # (input floats, target) -> (value, [d value / d input entry])
    row: bool = False  # gradient entries judged against max(|exact|, eps)
    known: tuple = ()  # the Known misses: points held apart and expected to fail (xfail strict)


@dataclass(frozen=True)
class Known:
    """Points of a case's grid that miss a bound, for a cause in a file this suite does not edit."""

    reason: str
    where: Callable = lambda x, t: True  # (input of an example as floats, target) -> bool
    paths: tuple = ("xp", "fused")
    dtypes: tuple = ("float64", "float32")
    #: what misses there: the value, the gradient or both (the others are judged at those points too)
    parts: tuple = ("value", "grad")
    #: False where the miss depends on the CPU: NumPy's float32 exp / log / log1p are other code with
    #: AVX-512 than with AVX2 only, so a point a few eps over the bound on one is under it on the other
    #: (the xfail then reports XPASS without failing)
    strict: bool = True

    def applies(self, path, dtype) -> bool:
        return path in self.paths and np.dtype(dtype).name in self.dtypes


def _rounded(dtype, values):
    return [float(v) for v in np.asarray(values, dtype=dtype)]


def _elementwise(targets, grid=LOGITS):
    def examples(dtype):
        return [[(z, t) for t in _rounded(dtype, targets) for z in _rounded(dtype, grid)]]
    return examples


def _label_rows(labels, pairs=LABEL_PAIRS):
    """Rows of two labels: the logit grid against the grid reversed, for each target pair."""
    def examples(dtype):
        z = _rounded(dtype, LOGITS)
        return [[((a, b), tuple(_rounded(dtype, pair))) for pair in pairs for a, b in zip(z, z[::-1], strict=True)]]
    return examples


def softmax_rows(dtype):
    """The grid of softmax rows of benchmarks/accuracy.py: extreme spans, near-ties, 20 random rows."""
    rng = np.random.default_rng(0)
    rows = [[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2], [0.0, 1e-8, -1e-8], [700, -700, 0], [30, 30, -5]]
    rows += (rng.normal(size=(20, 3)) * 10.0 ** rng.integers(-3, 4, size=(20, 1))).tolist()
    return [tuple(_rounded(dtype, r)) for r in rows]


def _class_rows(targets=(0, 1, 2, PROB_TARGET)):
    """The rows against each label (one call), and against a probability row with a zero (another)."""
    def examples(dtype):
        labels = [(row, t) for t in targets if isinstance(t, int) for row in softmax_rows(dtype)]
        probs = [(row, tuple(_rounded(dtype, t))) for t in targets if not isinstance(t, int)
                 for row in softmax_rows(dtype)]
        return [group for group in (labels, probs) if group]
    return examples


def _untied_rows(dtype):
    """The rows against each label, without those whose two largest shifted scores z_k + 1 - [k = y] lie
    within the rounding of z_k + 1: there the subgradient's choice of maximiser is the rounding's."""
    eps, kept = float(np.finfo(dtype).eps), []
    for row, label in _class_rows((0, 1, 2))(dtype)[0]:
        shifted = sorted((v + (k != label) for k, v in enumerate(row)), reverse=True)
        if shifted[0] - shifted[1] > 4 * eps * max(abs(shifted[0]), 1.0):
            kept.append((row, label))
    return [kept]


def _teacher_rows(dtype):
    """Student rows against teacher rows (the grid rolled by one, one teacher logit of -inf)."""
    rows = softmax_rows(dtype)
    teachers = rows[1:] + rows[:1]
    teachers[2] = (teachers[2][0], -math.inf, teachers[2][2])
    # and 12 pairs of moderate rows (logits of scale 3: neither distribution flat nor one-hot)
    moderate = np.random.default_rng(1).normal(size=(24, 3)) * 3
    rows += [tuple(_rounded(dtype, r)) for r in moderate[:12]]
    teachers += [tuple(_rounded(dtype, r)) for r in moderate[12:]]
    return [list(zip(rows, teachers, strict=True))]


#: probability rows that sum to 1 in both dtypes (to within the check's slack), zeros included
PROB_ROWS = [(0.5, 0.25, 0.25), (0.75, 0.25, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0),
             (0.5, 0.5 - 2.0**-30, 2.0**-30), (0.5, 0.5, 1e-300), (1 - 2.0**-20, 2.0**-21, 2.0**-21)]


def _prob_rows(dtype):
    rows = [tuple(_rounded(dtype, r)) for r in PROB_ROWS]
    return [[(r, t) for t in (0, 1, 2) for r in rows], [(r, tuple(_rounded(dtype, PROB_TARGET))) for r in rows]]


def _gaussian(dtype):
    return [[((m, s), y) for y in _rounded(dtype, BINARY_TARGETS) for s in _rounded(dtype, [-20, -1, 0, 1e-8, 3, 30])
             for m in _rounded(dtype, LOGITS)]]


QUANTILES = (0.1, 0.5, 0.9)


def _quantile(dtype):
    z = _rounded(dtype, LOGITS)
    return [[((a, b, -a), y) for y in _rounded(dtype, VALUE_TARGETS) for a, b in zip(z, z[::-1], strict=True)]]


def _summed(ref):
    """A multi-label reference: the elementwise one summed over the row's labels."""
    def reference(x, t):
        parts = [ref(xi, ti) for xi, ti in zip(x, t, strict=True)]
        return mpmath_sum(v for v, _ in parts), [g for _, g in parts]
    return reference


def mpmath_sum(values):
    import mpmath

    return mpmath.fsum(values)


def _bce_logits(z, y):
    return mr.bce_logits(z, y, 1.5), mr.bce_logits_grad(z, y, 1.5)


def _near_optimum(z, y):
    return y > 0 and y != 1 and abs(z - math.log(y)) < 1


_NEAR_CAUSE = ("deviance.py: near the optimum, for a target other than 1, the deviance is ill-conditioned in y "
               "(relative condition 2 / |t|, t = eta - log y) and the value is formed from t, so the rounding of "
               "log y is magnified; exact would need log y to twice the working precision: ")
DEVIANCE_NEAR = Known(_NEAR_CAUSE + "8.85 eps at eta = 1, y = 3 (t = -0.099), Poisson", _near_optimum,
                      dtypes=("float64",))
#: in float32 the worst of these points is 4.0-5.2 eps: a CPU's other float32 log could bring one under the bound
DEVIANCE_NEAR32 = Known(_NEAR_CAUSE + "4.0 (Poisson) to 5.2 eps (power 3) at eta = -1, y = 0.3 and eta = 1, y = 3",
                        _near_optimum, dtypes=("float32",), strict=False)
DEVIANCE = (DEVIANCE_NEAR, DEVIANCE_NEAR32)


def _soft(t):
    return any(0 < v < 1 for v in np.ravel(t))


GAUSSIAN_NEAR = Known("distribution.py (and fused/pairs.py, the same formula): d l / d s = (1 - r^2)/2, r = (y - m) e^(-s/2), cancels where r^2 is "
                      "near 1: at m = -1e-8, s = 0, y = 1 the exact -1e-8 is lost to the rounding of y - m "
                      "(5e7 eps)", lambda x, y: abs((y - x[0]) ** 2 * math.exp(-x[1]) - 1) < 0.5)
FOCAL_SOFT_KERNEL = Known("the sigmoid-focal kernel (focal.py's formula compiled): a_t q^gamma BCE for a soft target "
                          "accumulates about five roundings: 4.9 eps at z = -0.03, y = 0.3 in float64 (the array-API "
                          "path: 3.6)", lambda z, y: _soft(y), paths=("fused",), dtypes=("float64",))
FOCAL_SOFT_GRAD = Known("focal.py: for a soft target the gradient a_t q^gamma (gamma (1 - 2y) r BCE + sigmoid(z) - y) "
                        "sums terms of opposite sign: 9.1 eps at z = -1, y = 0.3, gamma 0.5, float32 array-API path "
                        "(an AVX-512 machine; within the bound on an AVX2 one)",
                        lambda z, y: _soft(y), paths=("xp",), dtypes=("float32",), strict=False)
ASL_SOFT = Known("asymmetric.py: for a soft target the gradient y l+' + (1 - y) l-' sums terms of opposite sign, "
                 "each exact to a few eps: 26 eps (float64) and 38 eps (float32) at z = 0.3, y = 0.3, where the "
                 "terms are 25 times their sum", lambda x, y: _soft(y))
ASL_SUBNORMAL = Known("asymmetric.py: in float32 the negative label's gradient p_m^g (g rho u + u/v) at z = 100 "
                      "multiplies subnormal intermediates (u = p (1 - p) = 3.7e-44): 13 units of the smallest "
                      "subnormal off", lambda x, y: max(abs(v) for v in x) >= 88, dtypes=("float32",))
ASL0_SOFT = Known("asymmetric.py: for a soft target the gradient y l+' + (1 - y) l-' sums terms of opposite sign: "
                  "11.9 eps at z = 0.1, y = 0.3 (clip 0) on the float32 array-API path (an AVX-512 machine; within "
                  "the bound on an AVX2 one)", lambda x, y: _soft(y), paths=("xp",), dtypes=("float32",), strict=False)
DISTILLATION = Known("distribution.py, fused/rows.py, jax/rows.py: a class whose p_j and q_j are near in a row whose "
                     "KL is not small: T (p - q) subtracts rounded probabilities, each carrying the rounding of its "
                     "shifted logit (z - max z) / T magnified in exp, and a near row's -T p expm1(u - w) subtracts "
                     "u_j and w of a size with the row's KL: 31.8 eps in float64 at z = (-2.35, -0.77, 0.02), t = "
                     "(2.64, -3.22, 2.74) (KL 0.47), 90.8 in float32 on rows of moderate logits; exact would need "
                     "log(S_t / S_s) to more than the dtype's precision. Where p nears q over the whole row "
                     "(large temperatures, a student near its teacher) the near rows' form is exact to a few eps "
                     "of the row's largest entry (test_distillation_gradient_between_near_rows)",
                     parts=("grad",), paths=("xp", "fused", "xla"))


JSD_GRAD = Known("distribution.py / fused/jsd.py: the gradient c p_j (d_j - K) (beta > 0; (p - q) / T = -p expm1(r) / T "
                 "for beta = 0) carries the rounding of the shifted logits (z - max z) / T magnified in exp, as "
                 "distillation's: 13.7 eps in float64 at z = (6.35, -3.34, -1.13), t = (0.71, 2.28, -4.95), beta 0; "
                 "8.6 at z = (30, 30, -5), beta 0.5; and for beta = 1 with teacher logits of +-1e4, d_j - K "
                 "subtracts numbers of that size (210 eps in float64, 853 / 956 in float32, at z = (7e-4, -1.2e-3, "
                 "-6.6e-4), t = (1e4, 0, -1e4)). The value is judged on the whole grid (a sum of terms >= 0: "
                 "centred_jsd)", parts=("grad",), paths=("xp", "fused", "xla"))


def _far_class_carries(x, t):
    """A class 10 to 40 below the student's max (its p from exp of a shifted logit rounded by about
    10 eps of float64 relative to the value it carries)."""
    return any(10 < max(x) - v < 40 for v in x)


JSD_FAR_CLASS = Known("distribution.py / fused/jsd.py: at z = (13.66, -6.65, 3.52), T = 1, where q is one-hot on the "
                      "student's max, the value is carried by p_1, p_2 = exp(z_k - max z) / S: the rounding of the "
                      "shifted logits (-20.3, -10.15) is magnified in exp (4.5 eps in float64 for beta 0.5, 4.68 "
                      "for beta 0, 3.91 for beta 1); exact would need z_k - max z to more than the dtype's "
                      "precision", _far_class_carries, dtypes=("float64",), parts=("value",),
                      paths=("xp", "fused", "xla"))
JSD = (JSD_GRAD, JSD_FAR_CLASS)
#: beta < 1: the gradient is within the bound on the float32 grid on the array-API path (the grid's -inf teacher
#: row sends the fused calls there too; the compiled rows themselves, not judged by the grid, are 15.3 eps off
#: at z = (-0.83, 3.88, 3.02), t = (-0.06, -3.75, -0.94), beta 0, float32: p = e^ds * (1 / S) rounds twice).
#: Under XLA, whose float32 exp rounds otherwise, 23.8 eps at z = (-2.21, -0.49, -1.45), t = (1.78, 2.67, 0.96),
#: beta 0: the log-ratio r = (d - c) - w of a row whose forward KL is 0.11 subtracts c = 0.128 and w = -0.110
#: to -0.0175
JSD_FORWARD = (dataclasses.replace(JSD_GRAD, dtypes=("float64",), paths=("xp", "fused")),
               dataclasses.replace(JSD_GRAD, paths=("xla",)), JSD_FAR_CLASS)


def _label_on_top(x, t):
    return isinstance(t, int) and max(range(len(x)), key=x.__getitem__) == t


SOFTMAX_FOCAL_TOP = Known("focal.py, fused/rows.py and losskit.jax's sweep (jax/rows.py): where the label's p_y is "
                          "near 1, the value (1 - p_y)^gamma "
                          "log p_y and the gradient's u_y (1 - p_y) carry (gamma + 1) times the rounding of log p_y, "
                          "itself the rounding of z_k - z_y magnified in exp (float64 at z = (13.66, -6.65, 3.52), y = 0: "
                          "value 13 eps, gradient 13 eps on the array-API path, 14 and 15 compiled, value 14.3 on the "
                          "XLA path; float32: value 5-7 eps); exact arithmetic would need z_k - z_y to more than the "
                          "dtype's precision", _label_on_top, paths=("xp", "fused", "xla"))
SOFTMAX_FOCAL_SOFT32 = Known("focal.py on NumPy's float32 maths: with a soft target the gradient sums u_j - p_j sum_k "
                             "u_k over terms of both signs: 8.07 eps at z = (-0.12, -4.5e-4, 0.066), y = (0.2, 0.8, "
                             "0) on an AVX2 machine (within the bound on an AVX-512 one)",
                             lambda z, t: not isinstance(t, int), paths=("xp",), dtypes=("float32",), strict=False)
POLY_TOP_VALUE = Known("focal.py, fused/rows.py and losskit.jax's sweep (jax/rows.py): Poly-1's value at a sure "
                       "row, -log p_y + epsilon (1 - p_y), both terms carrying log-softmax's rounding of log p_y "
                       "(4.7 eps in float64 at z = (13.66, -6.65, 3.52), y = 0, on the array-API and compiled "
                       "paths; 4.68 on the XLA path)", _label_on_top, paths=("xp", "fused", "xla"),
                       dtypes=("float64",))
CASES = [
    # regression, one value per element
    Case("mean_squared_error", lk.MeanSquaredError(reduction="none"), _elementwise(VALUE_TARGETS), mc.squared_error),
    Case("absolute_error", lk.AbsoluteError(reduction="none"), _elementwise(VALUE_TARGETS), mc.absolute_error),
    Case("huber_loss", lk.HuberLoss(delta=1.0, reduction="none"), _elementwise(VALUE_TARGETS), mc.huber),
    Case("smooth_l1_loss", lk.SmoothL1Loss(beta=1.0, reduction="none"), _elementwise(VALUE_TARGETS), mc.smooth_l1),
    Case("pseudo_huber_loss", lk.PseudoHuberLoss(delta=1.0, reduction="none"), _elementwise(VALUE_TARGETS),
         mc.pseudo_huber),
    Case("log_cosh_loss", lk.LogCoshLoss(reduction="none"), _elementwise(VALUE_TARGETS), mc.log_cosh),
    Case("poisson_deviance", lk.PoissonDeviance(reduction="none"), _elementwise(COUNT_TARGETS),
         lambda z, y: mc.tweedie(z, y, 1.0), known=DEVIANCE),
    Case("gamma_deviance", lk.GammaDeviance(reduction="none"), _elementwise(POSITIVE_TARGETS),
         lambda z, y: mc.tweedie(z, y, 2.0), known=DEVIANCE),
    Case("tweedie_deviance(power=1.5)", lk.TweedieDeviance(power=1.5, reduction="none"), _elementwise(COUNT_TARGETS),
         lambda z, y: mc.tweedie(z, y, 1.5), known=DEVIANCE),
    Case("tweedie_deviance(power=3)", lk.TweedieDeviance(power=3.0, reduction="none"),
         _elementwise(POSITIVE_TARGETS), lambda z, y: mc.tweedie(z, y, 3.0), known=DEVIANCE),
    Case("gaussian_nll_loss", lk.GaussianNLL(reduction="none"), _gaussian, mc.gaussian_nll, known=(GAUSSIAN_NEAR,)),
    Case("quantile_loss", lk.QuantileLoss(quantiles=QUANTILES, reduction="none"), _quantile,
         lambda x, y: mc.quantile(x, y, QUANTILES)),
    # margins and logits, elementwise
    Case("hinge_loss", lk.HingeLoss(reduction="none"), _elementwise(SIGN_TARGETS), mc.hinge),
    Case("squared_hinge_loss", lk.SquaredHingeLoss(reduction="none"), _elementwise(SIGN_TARGETS), mc.squared_hinge),
    Case("exponential_loss", lk.ExponentialLoss(reduction="none"), _elementwise(BINARY_TARGETS), mc.exponential),
    Case("binary_cross_entropy_with_logits", lk.BinaryCrossEntropyWithLogits(pos_weight=1.5, reduction="none"),
         _elementwise(BINARY_TARGETS), _bce_logits),
    Case("binary_cross_entropy", lk.BinaryCrossEntropy(reduction="none"), _elementwise(BINARY_TARGETS, PROBS),
         mc.bce_probs),
    Case("sigmoid_focal_loss", lk.SigmoidFocalLoss(gamma=2.0, alpha=0.25, reduction="none"),
         _elementwise(BINARY_TARGETS), lambda z, y: mc.sigmoid_focal(z, y, 2.0, 0.25), known=(FOCAL_SOFT_KERNEL,)),
    Case("sigmoid_focal_loss(gamma=0.5)", lk.SigmoidFocalLoss(gamma=0.5, reduction="none"),
         _elementwise(BINARY_TARGETS), lambda z, y: mc.sigmoid_focal(z, y, 0.5), known=(FOCAL_SOFT_GRAD,)),
    # multi-label rows: the elementwise formula summed over the labels
    Case("multilabel_cross_entropy", lk.MultilabelCrossEntropy(reduction="none"), _label_rows(BINARY_TARGETS),
         _summed(lambda z, y: (mr.bce_logits(z, y), mr.bce_logits_grad(z, y)))),
    Case("multilabel_sigmoid_focal_loss", lk.MultilabelSigmoidFocalLoss(gamma=2.0, alpha=0.25, reduction="none"),
         _label_rows(BINARY_TARGETS), _summed(lambda z, y: mc.sigmoid_focal(z, y, 2.0, 0.25)), known=(FOCAL_SOFT_KERNEL,)),
    Case("multilabel_hinge_loss", lk.MultilabelHingeLoss(reduction="none"),
         _label_rows(SIGN_TARGETS, [(1.0, 0.0), (0.0, 1.0), (-1.0, 1.0)]), _summed(mc.hinge)),
    Case("multilabel_squared_hinge_loss", lk.MultilabelSquaredHingeLoss(reduction="none"),
         _label_rows(SIGN_TARGETS, [(1.0, 0.0), (0.0, 1.0), (-1.0, 1.0)]), _summed(mc.squared_hinge)),
    Case("asymmetric_loss", lk.AsymmetricLoss(reduction="none"), _label_rows(BINARY_TARGETS),
         _summed(mc.asymmetric), known=(ASL_SOFT, ASL_SUBNORMAL)),
    Case("asymmetric_loss(clip=0)", lk.AsymmetricLoss(clip=0.0, reduction="none"), _label_rows(BINARY_TARGETS),
         _summed(lambda z, y: mc.asymmetric(z, y, clip=0.0)), known=(ASL0_SOFT,)),
    # class-axis rows
    Case("softmax_cross_entropy", lk.SoftmaxCrossEntropy(reduction="none"), _class_rows(), mc.cross_entropy_row,
         row=True),
    Case("categorical_cross_entropy", lk.CategoricalCrossEntropy(reduction="none"), _prob_rows,
         mc.categorical_probs, row=True),
    Case("kl_divergence", lk.KLDivergence(reduction="none"), _class_rows(), mc.kl_divergence, row=True),
    Case("distillation_loss(T=2)", lk.DistillationLoss(temperature=2.0, reduction="none"), _teacher_rows,
         lambda z, t: mc.distillation(z, t, 2.0), row=True, known=(DISTILLATION,)),
    Case("js_divergence(beta=0.5)", lk.JSDivergence(beta=0.5, reduction="none"), _teacher_rows,
         lambda z, t: mc.js_divergence(z, t, 0.5), row=True, known=JSD_FORWARD),
    Case("js_divergence(beta=0)", lk.JSDivergence(beta=0.0, reduction="none"), _teacher_rows,
         lambda z, t: mc.js_divergence(z, t, 0.0), row=True, known=JSD_FORWARD),
    Case("js_divergence(beta=1)", lk.JSDivergence(beta=1.0, reduction="none"), _teacher_rows,
         lambda z, t: mc.js_divergence(z, t, 1.0), row=True, known=JSD),
    Case("softmax_focal_loss", lk.SoftmaxFocalLoss(gamma=2.0, reduction="none"), _class_rows(),
         lambda z, t: mc.softmax_focal(z, t, 2.0), row=True, known=(SOFTMAX_FOCAL_TOP, SOFTMAX_FOCAL_SOFT32)),
    Case("poly_cross_entropy", lk.PolyCrossEntropy(epsilon=1.0, reduction="none"), _class_rows(),
         lambda z, t: mc.poly1(z, t, 1.0), row=True, known=(POLY_TOP_VALUE,)),
    Case("multiclass_hinge_loss", lk.MulticlassHingeLoss(reduction="none"), _untied_rows,
         mc.multiclass_hinge, row=True),
]
CASE_BY_NAME = {case.name: case for case in CASES}


def _finite(value, grad, top):
    return abs(value) <= top and all(abs(g) <= top for g in grad)


@functools.cache
def grid(name, dtype):
    """Per group of a case: ``(input, target, exact values, exact gradient entries)``, the points whose
    exact result overflows the dtype left out."""
    case, top = CASE_BY_NAME[name], float(np.finfo(dtype).max)
    groups = []
    for examples in case.examples(dtype):
        inputs, targets, values, grads = [], [], [], []
        for x, t in examples:
            value, grad = case.reference(x, t)
            grad = list(grad) if isinstance(grad, list | tuple) else [grad]
            if not _finite(value, grad, top):
                continue
            inputs.append(x)
            targets.append(t)
            values.append(value)
            grads += grad
        target_dtype = np.int64 if isinstance(targets[0], int) else dtype
        groups.append((np.array(inputs, dtype=dtype), np.array(targets, dtype=target_dtype), values, grads))
    return groups


@dataclass
class Worst:
    """The largest error of a path on a case's grid, in eps (subnormal units for tiny exact values)."""

    value: float = 0.0
    grad: float = 0.0
    subnormal: float = 0.0
    where: dict = field(default_factory=dict)
    examples: int = 0


def _errors(actual, exact, dtype, floor, worst, kind, inputs):
    eps, tiny, sub = (float(v) for v in (np.finfo(dtype).eps, np.finfo(dtype).tiny,
                                         np.finfo(dtype).smallest_subnormal))
    per_example = max(1, len(exact) // len(inputs))
    for i, (a, e) in enumerate(zip(np.asarray(actual, dtype=np.float64).ravel(), exact, strict=True)):
        e = float(e)
        if not floor and abs(e) < tiny:
            units = abs(a - e) / sub if np.isfinite(a) else math.inf
            if units > worst.subnormal:
                worst.subnormal = units
                worst.where[f"{kind} subnormal"] = (inputs[i // per_example], a, e)
            continue
        scale = max(abs(e), eps) if floor else abs(e)
        err = abs(a - e) / scale / eps if np.isfinite(a) else math.inf
        if err > getattr(worst, kind):
            setattr(worst, kind, err)
            worst.where[kind] = (inputs[i // per_example], a, e)


def _known(case, path, dtype, x, t, part):
    """Per example of a group: whether a Known miss of the case covers its ``part`` ("value" or
    "grad") on this path and dtype."""
    rules = [k for k in case.known if k.applies(path, dtype) and part in k.parts]
    return np.array([any(k.where(xi.tolist(), ti.tolist()) for k in rules) for xi, ti in zip(x, t, strict=True)],
                    dtype=bool)


def _entries(grads, n_examples, keep):
    per_example = len(grads) // n_examples
    return [g for i, g in enumerate(grads) if keep[i // per_example]]


def measure(name, path, dtype, part="all") -> Worst:
    """Run a case on a path (``"xp"`` or ``"fused"``) and return its worst errors over its grid: all of
    it, the points no Known miss covers (``part="regular"``) or only those (``part="known"``)."""
    case, worst = CASE_BY_NAME[name], Worst()
    for x, t, values, grads in grid(name, dtype):
        judged = judged_examples(case, path, dtype, x, t, part)
        keep = judged["value"] | judged["grad"]
        if not keep.any():
            continue
        try:
            value, grad = case.loss.replace(impl=path).value_and_grad(x[keep], t[keep])
        except lk.LossInputError as error:  # a group the compiled kernel does not take (e.g. soft targets)
            if path == "fused" and "impl" in str(error):
                continue
            raise
        value, grad = np.asarray(value), np.asarray(grad)
        worst.examples += int(keep.sum())
        assert value.dtype == grad.dtype == dtype
        assert value.shape == (int(keep.sum()),) and grad.shape == x[keep].shape
        labels = [(xi.tolist(), ti.tolist()) for xi, ti in zip(x, t, strict=True)]
        _judge(value, grad, values, grads, judged, keep, labels, dtype, case.row, worst)
    return worst


def judged_examples(case, path, dtype, x, t, part):
    """Per part ("value", "grad"), the examples of a group it is judged at: all of them, those no Known
    miss of that part covers (``part="regular"``), or only those (``part="known"``)."""
    judged = {}
    for kind in ("value", "grad"):
        known = _known(case, path, dtype, x, t, kind)
        judged[kind] = {"all": np.ones_like(known), "regular": ~known, "known": known}[part]
    return judged


def _judge(value, grad, values, grads, judged, keep, labels, dtype, row, worst):
    """Add to ``worst`` the errors of a call on the examples ``keep`` of a group, each part at the examples
    ``judged`` for it (``values``, ``grads`` and ``labels``: the whole group's)."""
    for kind, actual, exact, floor in (("value", value, values, False), ("grad", grad, grads, row)):
        inside = judged[kind][keep]  # of the examples computed, those judged for this part
        if not inside.any():
            continue
        exact = _entries(exact, len(labels), judged[kind])
        actual = np.asarray(actual).reshape(len(inside), -1)[inside].ravel()
        _errors(actual, exact, dtype, floor, worst, kind, [lab for lab, j in zip(labels, judged[kind], strict=True) if j])


def within(worst) -> bool:
    return worst.value <= VALUE_EPS and worst.grad <= GRAD_EPS and worst.subnormal <= SUBNORMALS


def has_kernel(name) -> bool:
    return type(CASE_BY_NAME[name].loss).kernel_name() is not None


def _ids(name, path, dtype):
    return f"{name}-{path}-{np.dtype(dtype).name}"


def _params(known):
    for case in CASES:
        for path in ("xp", "fused"):
            for dtype in DTYPES:
                rules = [k for k in case.known if k.applies(path, dtype)]
                if not known:
                    yield pytest.param(case.name, path, dtype, id=_ids(case.name, path, dtype))
                elif rules:
                    reason = "; ".join(k.reason for k in rules)
                    yield pytest.param(case.name, path, dtype, id=_ids(case.name, path, dtype),
                                       marks=pytest.mark.xfail(strict=all(k.strict for k in rules), reason=reason))


def _assert_within(worst):
    assert worst.value <= VALUE_EPS, f"value {worst.value:.3g} eps at {worst.where['value']}"
    assert worst.grad <= GRAD_EPS, f"gradient {worst.grad:.3g} eps at {worst.where['grad']}"
    assert worst.subnormal <= SUBNORMALS, f"{worst.subnormal:.3g} subnormal units at {worst.where}"


@pytest.mark.parametrize(("name", "path", "dtype"), list(_params(known=False)))
def test_within_the_documented_bound(name, path, dtype):
    """Every point of the grid but the Known misses (see test_known_misses)."""
    if path == "fused" and not has_kernel(name):
        pytest.skip(f"{name} has no compiled kernel (its default path is the array-API one)")
    _assert_within(measure(name, path, dtype, "regular"))


@pytest.mark.parametrize(("name", "path", "dtype"), list(_params(known=True)))
def test_known_misses(name, path, dtype):
    """The points a Known miss covers, held to the same bounds: xfail(strict), so a fix shows as XPASS
    (then drop the Known entry)."""
    if path == "fused" and not has_kernel(name):
        pytest.skip(f"{name} has no compiled kernel (its default path is the array-API one)")
    _assert_within(measure(name, path, dtype, "known"))


def test_every_catalogue_loss_has_a_case():
    """A loss added to the registry without a case here fails, so the table stays complete."""
    covered = {type(case.loss) for case in CASES}
    # the catalogue's own losses (the registry also holds losses other tests define)
    missing = [name for name, (cls, _) in lk.losses.REGISTRY.items()
               if cls not in covered and cls.__module__.startswith("losskit.")]
    assert not missing, f"no precision case for {missing}"


SURE_ROW = (13.664634705496859, -6.651946734866136, 3.515100700930197)  # label 0: p_0 = 1 - 7.8e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "bound"), [("poly_cross_entropy", GRAD_EPS), ("softmax_focal_loss", 16.0)])
def test_a_sure_rows_gradient_on_the_array_api_path(name, bound, dtype):
    """At a row sure of its label the array-API gradient forms 1 - p_y as -expm1(log p_y) and sums the
    other classes' terms directly (it was 7.3e3 eps for softmax focal in float64, 683 for Poly-1 in
    float32). The focal bound is above GRAD_EPS for the cause its Known miss gives."""
    row = _rounded(dtype, SURE_ROW)
    _, exact = CASE_BY_NAME[name].reference(row, 0)
    _, grad = CASE_BY_NAME[name].loss.replace(impl="xp").value_and_grad(np.array([row], dtype), np.array([0]))
    worst = Worst()
    _errors(grad, exact, dtype, True, worst, "grad", [(row, 0)])
    assert worst.grad <= bound, worst.where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False], ids=["serial", "parallel"])
def test_distillation_compiled_rows_value_within_the_bound(serial, dtype):
    """The compiled distillation rows on the grid's rows that the kernel takes (the row with a teacher
    logit of -inf is flagged, and a flagged row sends the whole call to the reference, so the grid
    above judges the array-API path there): near rows take the centred sums (a pass of their own), the
    rest the per-class terms; within 4 eps of mpmath (the two normalisers' difference was 134 eps in
    float64 and 343 in float32), both the serial twin and the parallel kernel."""
    from losskit.losses import _compiled

    loss = lk.DistillationLoss(temperature=2.0, reduction="none", impl="fused")
    x, t, values, _ = grid("distillation_loss(T=2)", dtype)[0]
    worst = _compiled_rows_value(_compiled.distillation, loss, x, t, values, np.isfinite(t).all(axis=1), serial, dtype)
    assert worst.value <= VALUE_EPS, worst.where


def _compiled_rows_value(kernel, loss, x, t, values, kept, serial, dtype):
    """The :class:`Worst` value of the compiled rows ``kernel`` (a function of losskit.losses._compiled) on the
    grid rows ``kept``, run serially (the twin) or in parallel; it must answer, no row flagged."""
    from losskit import fused

    x, t, values = x[kept], t[kept], [v for v, k in zip(values, kept, strict=True) if k]
    plan = loss.plan(x, t)
    arrays = {"input": x, "labels": None, "dense": t, "scale": plan.scale, "out": None}
    with fused.serial(serial):
        answer = kernel(loss, plan, arrays, with_grad=False)
    assert answer is not None  # no row flagged: the compiled rows answered
    worst = Worst()
    _errors(answer[0], values, dtype, False, worst, "value", [(a.tolist(), b.tolist()) for a, b in zip(x, t, strict=True)])
    return worst


@functools.cache
def _distillation_value(student, teacher, temperature):
    """T^2 KL(softmax(t / T) || softmax(z / T)) in 40-digit mpmath, the value alone (mp_catalogue's
    reference takes the gradient too: 50 s for a row of 2000)."""
    import mpmath

    with mpmath.workdps(40):
        temp = mpmath.mpf(temperature)
        a, b = [mpmath.mpf(v) / temp for v in teacher], [mpmath.mpf(v) / temp for v in student]
        log_sa, log_sb = (mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row)) for row in (a, b))
        kl = mpmath.fsum(mpmath.exp(x - log_sa) * ((x - log_sa) - (y - log_sb)) for x, y in zip(a, b, strict=True))
        return float(temp * temp * kl)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
@pytest.mark.parametrize(("rows", "classes", "noise"), [(24, 20, 1e-3), (3, 2000, 1e-5)])
def test_distillation_value_between_near_rows(rows, classes, noise, path, dtype):
    """Distillation between a student and a teacher that is the student plus noise (logits of scale 2, T
    = 2; KL about 1e-7 and 1e-11): within 4 eps of mpmath. ``sum q (log q - log p)``, the difference of
    two log-normalisers, gave 2.2e7 eps in float64 on the first rows; on the second, the centred sum with
    ``w = log sum p e^u`` taken from the normalisers rather than summed with ``b``'s own ``u`` missed in
    float32 (10.9 eps from ``log1p(sum (e^dt - e^ds) / S_s) - c``: ``w``'s error counts squared)."""
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((rows, classes)) * 2).astype(dtype)
    t = (z + noise * rng.standard_normal(z.shape)).astype(dtype)
    loss = lk.DistillationLoss(temperature=2.0, reduction="none", impl=path)
    if path == "fused":  # the compiled rows answer (a flagged row would send the call to the reference)
        from losskit.losses import _compiled

        assert _compiled.run(loss, loss.plan(z, t), False, None) is not None
    value = loss(z, t)
    worst = Worst()
    exact = [_distillation_value(tuple(a.tolist()), tuple(b.tolist()), 2.0) for a, b in zip(z, t, strict=True)]
    _errors(value, exact, dtype, False, worst, "value", [(a.tolist(), b.tolist()) for a, b in zip(z, t, strict=True)])
    assert worst.value <= VALUE_EPS, worst.where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused", "xla"])
@pytest.mark.parametrize("temperature", [2.0, 100.0, 1e6, 1e10])
def test_distillation_gradient_between_near_rows(temperature, path, dtype):
    """Distillation's gradient between a student and a teacher near it (logits of scale 3, the teacher the
    student plus noise of 0.1; one class ruled out by the teacher), at temperatures up to 1e10: within 4
    eps of each row's largest entry of mpmath's T (p - q). As the rounded probabilities' difference it was
    exactly 0 in float32 at T = 1e10 and up to 1.1e12 eps in float64, up to 12,191 eps at T = 100 (p and q
    round to an eps each while p - q shrinks as 1/T: ``python -m benchmarks.distillation_accuracy
    --temperature T``); a near row now takes -T p expm1(u - w) from its centred sums."""
    rng = np.random.default_rng(9)
    z = (rng.standard_normal((6, 8)) * 3).astype(dtype)
    t = (z + 0.1 * rng.standard_normal(z.shape)).astype(dtype)
    t[2, 5] = -np.inf
    loss = lk.DistillationLoss(temperature=temperature, reduction="sum", impl="auto" if path == "xla" else path)
    if path == "xla":
        jax = pytest.importorskip("jax")
        import losskit.jax as lj

        grad = np.asarray(jax.grad(lj.loss_fn(loss))(jax.numpy.asarray(z), jax.numpy.asarray(t)))
    else:
        grad = loss.grad(z, t)
    assert grad.dtype == dtype
    exact = np.array([[float(v) for v in mc.distillation(a.tolist(), b.tolist(), temperature)[1]]
                      for a, b in zip(z, t, strict=True)])
    errors = np.abs(grad - exact).max(axis=1) / np.abs(exact).max(axis=1) / np.finfo(dtype).eps
    assert errors.max() <= 4, errors


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
def test_distillation_rows_with_infinite_logits_keep_their_limits(path, dtype):
    """Rows whose max is +-inf, or with a logit of -inf, never reach the centred sum (its differences
    of logits would be inf - inf): the first form's limits, worked by hand, to its accuracy (8 eps: the
    all -inf student's uniform limit is 4.8 eps off in float32, as before), with no warning. The
    centred sum as first written (b048f2a) gave NaN for each of the first three."""
    import warnings

    inf, log = math.inf, math.log
    rows = [((5.0, 0.0, 0.0), (inf, 0.0, 0.0), 4 * log(1 + 2 * math.exp(-2.5))),  # q one-hot: -T^2 log p_0
            ((-inf, -inf, -inf), (0.0, 1.0, 2.0),  # a student of all -inf: the uniform limit
             4 * sum(math.exp(v / 2) / sum(math.exp(w / 2) for w in (0, 1, 2)) * (
                 v / 2 - log(sum(math.exp(w / 2) for w in (0, 1, 2))) + log(3)) for v in (0, 1, 2))),
            ((1.0, 2.0, 3.0), (0.0, inf, 0.0), 4 * log(sum(math.exp(v / 2) for v in (1, 2, 3)) / math.exp(1.0))),
            ((0.0, -inf, 2.0), (0.0, 1.0, 2.0), inf)]  # the teacher's mass where the student has none
    loss = lk.DistillationLoss(temperature=2.0, reduction="none", impl=path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for student, teacher, exact in rows:
            value = float(loss(np.array([student], dtype), np.array([teacher], dtype))[0])
            assert value == exact if math.isinf(exact) else \
                abs(value - exact) <= 8 * float(np.finfo(dtype).eps) * exact, (student, teacher, value, exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reverse_kl_value_with_a_teacher_far_from_the_student(dtype):
    """JSD with beta 1 (KL(p || q)) on the compiled path, teacher logits spanning 1600: the value's
    constant at the student's max is formed without cancelling two numbers of the logits' size (it
    was 3e3 eps in float32 here)."""
    case = CASE_BY_NAME["js_divergence(beta=1)"]
    student = _rounded(dtype, (13.664634704589844, -6.651946544647217, 3.5151007175445557))
    teacher = tuple(_rounded(dtype, (903.4701538085938, 94.01229858398438, -743.499267578125)))
    exact, _ = case.reference(student, teacher)
    value = case.loss.replace(impl="fused")(np.array([student], dtype), np.array([teacher], dtype))
    # 8 eps, not 4: p_2 = exp(-10.15 - log S) carries about 10 times its argument's rounding (7.8 eps in float64)
    assert abs(float(value[0]) - float(exact)) <= 8 * np.finfo(dtype).eps * abs(float(exact))


@functools.cache
def _jsd_value(student, teacher, beta):
    """The generalised JSD (T = 1) in 40-digit mpmath, the value alone, from the definition: beta KL(q || m) +
    (1 - beta) KL(p || m), m = beta q + (1 - beta) p (the forward KL at beta 0, the reverse at 1)."""
    import mpmath

    with mpmath.workdps(40):
        def softmax(row):
            exps = [mpmath.exp(mpmath.mpf(v)) for v in row]
            total = mpmath.fsum(exps)
            return [e / total for e in exps]

        p, q = softmax(student), softmax(teacher)
        beta = mpmath.mpf(beta)

        def kl(a, b):
            return mpmath.fsum(ak * mpmath.log(ak / bk) for ak, bk in zip(a, b, strict=True))

        if beta == 0:
            return float(kl(q, p))
        if beta == 1:
            return float(kl(p, q))
        m = [beta * qk + (1 - beta) * pk for pk, qk in zip(p, q, strict=True)]
        return float(beta * kl(q, m) + (1 - beta) * kl(p, m))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 0.9])
@pytest.mark.parametrize(("rows", "classes", "noise"), [(12, 20, 1e-3), (2, 2000, 1e-5)])
def test_jsd_value_between_near_rows(rows, classes, noise, beta, path, dtype):
    """The generalised JSD between a student and a teacher that is the student plus noise (logits of scale 2;
    values about 1e-7 and 1e-11): within 4 eps of mpmath on both NumPy paths, the compiled kernel
    answering. Formed from two log-softmaxes it kept only their difference's accuracy (K = 20, float64, on
    the code before: 1.1e7 eps for beta 0 and 1, 1.2e3 for 0.5 on the array-API path; 2.7e7 to 9.7e7
    compiled; now at most 2.7); centred_jsd sums terms >= 0 of the log-ratios log q - log p, themselves
    centred on the teacher's mean."""
    from losskit.losses import _compiled

    rng = np.random.default_rng(classes)
    student = (rng.normal(size=(rows, classes)) * 2).astype(dtype)
    teacher = (student + rng.normal(size=(rows, classes)) * noise).astype(dtype)
    loss = lk.JSDivergence(beta=beta, reduction="none", impl=path)
    if path == "fused":
        plan = loss.plan(student, teacher)
        arrays = {"input": student, "labels": None, "dense": teacher, "scale": plan.scale, "out": None}
        assert _compiled.jsd(loss, plan, arrays, with_grad=False) is not None  # the kernel answered
    value = loss(student, teacher)
    eps = float(np.finfo(dtype).eps)
    for i in range(rows):
        exact = _jsd_value(tuple(student[i].tolist()), tuple(teacher[i].tolist()), beta)
        assert abs(float(value[i]) - exact) <= 4 * eps * exact, (i, float(value[i]), exact)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False], ids=["serial", "parallel"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_jsd_compiled_rows_value_within_the_bound(beta, serial, dtype):
    """The compiled JSD rows on the grid's rows the kernel takes (the grid's row with a teacher logit of
    -inf is flagged, which sends the whole call to the reference, so the grid above judges the array-API
    path there): within 4 eps of mpmath but at the Known far-class row in float64, both the serial twin
    and the parallel kernel."""
    from losskit.losses import _compiled

    name = f"js_divergence(beta={beta:g})"
    loss = lk.JSDivergence(beta=beta, reduction="none", impl="fused")
    x, t, values, _ = grid(name, dtype)[0]
    kept = np.isfinite(t).all(axis=1) & ~np.array([JSD_FAR_CLASS.applies("fused", dtype)
                                                   and _far_class_carries(r.tolist(), None) for r in x])
    worst = _compiled_rows_value(_compiled.jsd, loss, x, t, values, kept, serial, dtype)
    assert worst.value <= VALUE_EPS, worst.where


#: rows where p is one-hot on the student's max: the exact gradient there is of the size of the other p_k (e^-357
#: to e^-700, or 0 in float32), and c p_j (d_j - K) cancelled to an ulp of K (returned -1.1e-16 and 5.6e-17 where
#: the exact is below 1e-150); the class holding more than half of p takes sum_k p_k (d_j - d_k)
_JSD_SURE_ROWS = [((700.0, -700.0, 0.0), (30.0, 30.0, -5.0)),
                  ((1304.0, 947.08, -703.74), (-0.0127, -0.0062, 4.1e-4))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
@pytest.mark.parametrize(("beta", "student", "teacher"), [
    *((beta, student, teacher) for beta in (0.5, 1.0) for student, teacher in _JSD_SURE_ROWS),
    # beta = 1, three tied maxima (no class holds half of p): d_j - K subtracted numbers of log(S_t / S_s)'s
    # size before the anchor was the teacher's mean logit over the ties (84.5 eps in float64)
    (1.0, (5.932476421801356, 5.932476421801356, -3.0867259689060593, -4.623059955802776, 1.210089354026748,
           -1.205091708066848, 0.6329025407060461, 5.932476421801356),
     (-29.861016105689288, -30.35001020906301, 15.399053402810956, 23.72494153457459, -6.00367386929053,
      6.175242138720826, -4.082270359839283, -30.780831929953823)),
    # beta = 0, both rows' max at class 0: p - q = 1e-8 there, from -p expm1(r) with r off by an ulp of the
    # centre (0.5): the sign lost in float32 (0 returned), 4.9e6 eps in float64
    (0.0, (0.0, -5e7), (0.0, -18.420680743952367)),
])
def test_jsd_gradient_where_it_once_cancelled(beta, student, teacher, path, dtype):
    """Rows where the JSD's gradient cancelled (the sure class's, then those a review found), each within 8
    eps of mpmath (the gradient entry against max(|exact|, eps)) on both NumPy paths, without a warning."""
    x, t = np.array([student], dtype), np.array([teacher], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, grad = lk.JSDivergence(beta=beta, reduction="none", impl=path).value_and_grad(x, t)
    _, exact = mc.js_divergence(_rounded(dtype, student), _rounded(dtype, teacher), beta)
    worst = Worst()
    _errors(grad, exact, dtype, True, worst, "grad", [(student, teacher)])
    assert worst.grad <= GRAD_EPS, worst.where


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
@pytest.mark.parametrize(("beta", "student", "teacher"), [
    (0.999, (2.28, -0.22, 2.99, -7.39, 6.27, -0.39), (-1.68, 0.12, -2.5, 6.87, -5.18, 0.99)),
    (1e-4, (3.82, -5.33, 2.46, 2.41, -7.07, 1.39), (-4.28, 3.88, -1.13, 0.16, 6.25, -2.04)),
])
def test_jsd_value_with_beta_near_its_ends(beta, student, teacher, path, dtype):
    """The mixture's log p/m = -log1p(beta expm1(r)) cancels where its argument nears -1 (beta near 1, q << p;
    the teacher's side near beta 0): 42 and 336 eps in float64 before _log_ratio_to_mixture took the softplus
    form there; within 4 eps of mpmath now."""
    x, t = np.array([student], dtype), np.array([teacher], dtype)
    value = lk.JSDivergence(beta=beta, reduction="none", impl=path)(x, t)
    exact = _jsd_value(tuple(_rounded(dtype, student)), tuple(_rounded(dtype, teacher)), beta)
    assert abs(float(value[0]) - exact) <= VALUE_EPS * float(np.finfo(dtype).eps) * exact


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_jsd_rows_of_huge_finite_logits_keep_the_first_forms(beta):
    """float32 logits of 1e38: their differences overflow. The centred form is not taken there (the array-API
    path's rows of logits above a quarter of the largest number; the kernel flags a row whose sums are not
    finite): the value and gradient of the first forms, finite (a NaN gradient for beta 1 before, from inf *
    0), and no warning but beta 1's (its first form's d - K overflows where p is 0, as before this change)."""
    x = np.array([[1e38, -1e38, 0.0]], np.float32)
    t = np.array([[-1e38, 1e38, 1.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error" if beta < 1 else "ignore")
        for path in ("xp", "fused"):
            value, grad = lk.JSDivergence(beta=beta, reduction="none", impl=path).value_and_grad(x, t)
            assert np.isfinite(grad).all() and np.isfinite(value).all(), (path, value, grad)
            # p = (1, 0, 0), q = (0, 1, 0) to float32: d l / d z is (p - q) or c p (d - K), 0 at p = 0
            assert grad[0, 2] == 0.0 and grad[0, 1] <= 0.0, (path, grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["xp", "fused"])
@pytest.mark.parametrize("delta", [1.0, 0.37])
def test_pseudo_huber_across_its_linear_tail(delta, path, dtype):
    """Pseudo-Huber's value and gradient within the bounds of mpmath at every power of two of
    |e| / delta from 2^-4 to 2^44 (so on both sides of the switch to the linear tail delta (|e| -
    delta) at 2 / sqrt(eps), wherever it is: a switch 8 times lower misses the bounds),
    on both sides of that switch, and up to the dtype's largest errors; the gradient never above
    delta in magnitude (e / h < delta: the rounded formula gave 1 + 2^-52 at 1% of the errors in
    [1, 1e9]); an infinite error gives an infinite loss and the gradient delta sign(e)."""
    big = float(np.finfo(dtype).max) / 4
    switch = 2 / np.sqrt(np.finfo(dtype).eps) * delta
    magnitudes = sorted([2.0 ** k * delta * f for k in range(-4, 45) for f in (1.0, 1.37)]
                        + [switch * (1 - 1e-6), switch * (1 + 1e-6), 1e20, big])
    errors = _rounded(dtype, [s * m for m in magnitudes for s in (-1.0, 1.0)])
    z = np.array(errors, dtype)
    loss = lk.PseudoHuberLoss(delta=delta, reduction="none", impl=path)
    value, grad = loss.value_and_grad(z, np.zeros_like(z))
    exact = [mc.pseudo_huber(e, 0.0, float(np.asarray(delta, dtype))) for e in errors]
    worst = Worst()
    labels = [(e, 0.0) for e in errors]
    _errors(value, [v for v, _ in exact], dtype, False, worst, "value", labels)
    _errors(grad, [g for _, g in exact], dtype, False, worst, "grad", labels)
    _assert_within(worst)
    assert np.all(np.abs(grad) <= np.asarray(delta, dtype)), grad[np.abs(grad) > delta]
    value, grad = loss.value_and_grad(np.array([np.inf, -np.inf], dtype), np.zeros(2, dtype))
    assert np.isposinf(value).all()
    np.testing.assert_array_equal(grad, np.array([delta, -delta], dtype))


def test_a_distillation_subclass_keeps_the_squared_temperature_check():
    """The JSD's temperature needs only its reciprocal to fit the dtype; distillation's square too (its T^2
    factor). The first form of that split read the registered name, so a user's subclass lost the check and
    returned inf for T = 1e20 in float32."""
    class MyDistillation(lk.DistillationLoss):
        name = "my_distillation_for_the_temperature_check"

    z = np.zeros((1, 3), np.float32)
    with pytest.raises(lk.LossInputError, match="^temperature: .*square and reciprocal fit float32"):
        MyDistillation(temperature=1e20)(z, z)
