r"""Newton's method where one evaluation of the objective is one pass over the data.

``evaluate(theta)`` returns the merged :class:`~.objectives.Sums` of a whole pass: the weighted
NLL, its gradient and Hessian. Convergence is declared at the first evaluated point where every
parameter's *relative gradient* ``|sum_i w_i g_ij| / sum_i w_i |g_ij|`` is at most ``tol`` (1e-10
by default): the gradient against the size of its own terms, which is what float64 sums can
resolve (``sum w |g|`` zero means every term is zero: converged). The parameters returned are
that point plus one last Newton step from the same pass's sums (free: no further pass), so they
sit closer to the minimiser than the tolerance alone promises; the NLL and ECE reported are those
of the evaluated point, which differ from the stepped one's by second-order amounts (below 1e-18).
A Newton step below ``STEP_TOL`` (1e-13) of its parameter also ends a fit: where the targets are
fitted exactly (soft targets equal to the calibrated probabilities) every gradient term is about 0
and their relative sum is rounding over rounding.

* **Separable objectives** (temperature, one per label or shared; the variance factor): each
  parameter is a 1-D problem whose derivative changes sign once. Newton steps, clipped to
  ``MAX_STEP``; once the derivative has had both signs, the last points on either side bracket the
  minimiser and a step leaving the bracket bisects it instead; where the second derivative is not
  positive (temperature far above its optimum), a unit step goes downhill. A parameter past
  ``LIMIT`` (T outside ``[1e-12, 1e12]``) means no minimiser exists; the error says which way.
* **Joint objectives** (Platt, vector scaling; convex): Levenberg-Marquardt damped Newton. The
  step solves ``(H + lambda I) d = -g``, scaled to a unit diagonal (``_eigen``), on the Hessian's
  positive eigenvalues (a flat direction, like shifting every offset of vector scaling, gets no
  step); a trial that raises the NLL is
  rejected (its pass counts) and the damping grows tenfold; an accepted one shrinks it. Where a
  parameter's gradient terms all have one sign at the identity map (scores far from logits: shifted by
  50, or scaled by 1e5, saturate every prediction), Newton's step from there is astronomically long
  and the fit was refused as separable, and scores merely far from logits (shifted by 3) took 17
  passes of rejected trials. Where that is so, or where the identity's NLL is above the neutral
  map's (``a = 0``: every prediction the same, never saturated; ``log K`` per unit of weight), the fit
  also evaluates the neutral map and goes on from whichever has the lower NLL.

Alternatives rejected: Brent's method (scipy's ``minimize_scalar``, what scikit-learn uses) took
22 to 25 evaluations on the benchmark's logits and L-BFGS 57 to 429 on the tests' Platt and
vector objectives, where Newton with exact second derivatives took 2 to 14 (docs/calibration.md);
each evaluation here is a pass over a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..._errors import LossInputError

__all__ = ["Fit", "minimise", "relative_gradient"]

MAX_STEP = 4.0
LIMIT = float(np.log(1e12))
TOL = 1e-10
#: a Newton step this small relative to its parameter (or to 1) also ends a fit: see _step_vanishes
STEP_TOL = 1e-13
#: passes in a row with a one-signed gradient term after which a joint fit is declared to have no minimiser
ONE_SIDED_PASSES = 20


@dataclass
class Fit:
    theta: np.ndarray
    before: object  # Sums at the start (the identity map)
    after: object  # Sums at the last evaluated point
    passes: int
    history: list = field(default_factory=list)  # (theta, nll, relative gradient) per pass


def relative_gradient(sums) -> np.ndarray:
    g, s = np.abs(sums.grad), sums.scale
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, g / np.where(s > 0, s, 1.0), np.where(g > 0, np.inf, 0.0))


def minimise(objective, evaluate: Callable[[np.ndarray], object], *, max_passes: int = 100, tol: float = TOL,
             what: str = "method") -> Fit:
    """Minimise ``objective``'s NLL from ``objective.start()``; each ``evaluate`` is one pass."""
    theta = objective.start()
    sums = evaluate(theta)
    if not (np.isfinite(sums.weight) and np.isfinite(sums.loss)):
        # float64 sums that overflow (weights near 1e308, log-variances of -800) gave a NaN parameter, or
        # an NLL of 0 and a parameter fitted to nothing, without a word
        raise LossInputError(f"{what}: {objective.method} cannot be fitted: the weighted NLL at the start "
                             f"overflows float64 (sum of weights {sums.weight:.3g}, of weighted losses "
                             f"{sums.loss:.3g}): weights too large, predictions out of range, or an "
                             f"{_l2(what)} penalty too large")
    before = sums
    history = [(theta.copy(), sums.nll, float(relative_gradient(sums).max(initial=0.0)))]
    step = _separable if objective.separable else _joint
    return step(objective, evaluate, theta, sums, before, history, max_passes, tol, what)


def _separable(objective, evaluate, theta, sums, before, history, max_passes, tol, what) -> Fit:
    low = np.full(theta.shape, -np.inf)
    high = np.full(theta.shape, np.inf)
    last = np.zeros(theta.shape)
    for passes in range(1, max_passes + 1):
        g, h = sums.grad, sums.hess
        done = (relative_gradient(sums) <= tol) | _step_vanishes(g, h, theta)
        # every term underflowed on the way out: no minimiser. (Not a parameter whose terms were 0 from the
        # start and which never moved: a label whose logits are all 0 has a flat NLL in its T, and was refused
        # as "falling as T -> infinity", found in review; it stays at T = 1.)
        vanished = (sums.scale == 0) & (passes > 1) & (last != 0)
        if vanished.any():
            raise _no_minimiser(objective, theta + np.where(vanished, np.sign(last) * 2 * LIMIT, 0.0), what)
        if done.all():
            final = theta - np.where(h > 0, g / np.where(h > 0, h, 1.0), 0.0)
            return Fit(final, before, sums, passes, history)
        low = np.where(g < 0, theta, low)
        high = np.where(g > 0, theta, high)
        newton = np.where(h > 0, -g / np.where(h > 0, h, 1.0), -np.sign(g))
        # every term of the gradient has one sign (e.g. separated classes, where the NLL falls as T -> 0
        # and Newton's steps shrink): double the step on each such pass, towards a bracket or the limit
        # (not once the derivative has had both signs: the minimiser is bracketed, and targets the map fits
        # exactly keep every term one-signed on either side of it, where doubling cost 15 passes of bisection)
        one_sided = (relative_gradient(sums) >= 1 - 1e-9) & (np.sign(newton) == np.sign(last)) \
            & ~(np.isfinite(low) & np.isfinite(high))
        newton = np.where(one_sided, np.sign(newton) * np.maximum(np.abs(newton), 2 * np.abs(last)), newton)
        last = np.clip(newton, -MAX_STEP, MAX_STEP)
        trial = theta + last
        outside = (trial <= low) | (trial >= high)
        with np.errstate(invalid="ignore"):  # (inf - inf where no bracket: not taken)
            trial = np.where(outside, 0.5 * (low + high), trial)  # outside implies a bracket on both sides
        trial = np.where(done, theta, trial)
        if np.any(np.abs(trial) > LIMIT):
            raise _no_minimiser(objective, trial, what)
        theta = trial
        sums = evaluate(theta)
        history.append((theta.copy(), sums.nll, float(relative_gradient(sums).max(initial=0.0))))
    raise _not_converged(objective, sums, max_passes, what)


def _joint(objective, evaluate, theta, sums, before, history, max_passes, tol, what) -> Fit:
    damping = 0.0
    best = sums
    one_sided = 0
    start = 1
    # the neutral map's NLL is log K per unit of weight (rows whose target has mass 1)
    worse_than_neutral = sums.loss > sums.weight * np.log(max(objective.n_outputs, 2))
    if (worse_than_neutral or np.any(relative_gradient(sums) >= 1 - 1e-9)) and max_passes > 1:
        neutral = objective.neutral()
        at_neutral = evaluate(neutral)
        history.append((neutral.copy(), at_neutral.nll, float(relative_gradient(at_neutral).max(initial=0.0))))
        start = 2
        if at_neutral.loss < best.loss:
            theta, best = neutral, at_neutral
    for passes in range(start, max_passes + 1):
        if not (np.all(np.isfinite(best.hess)) and np.all(np.isfinite(best.grad))):
            raise LossInputError(f"{what}: {objective.method}'s NLL has a gradient or Hessian that overflows "
                                 f"float64 at these parameters (logits, or an {_l2(what)} penalty, too large to fit)")
        relative = relative_gradient(best)
        # a parameter every term pushes the same way, pass after pass: the NLL has no minimum that way
        one_sided = one_sided + 1 if np.any(relative >= 1 - 1e-9) or (passes > 1 and not best.scale.any()) else 0
        if one_sided >= ONE_SIDED_PASSES:
            raise _no_minimiser(objective, theta, what)
        eigen = _eigen(best.hess)
        newton = _newton_step(eigen, best.grad, 0.0)
        # (the undamped step, from the same eigenvectors: after a rejected trial the damping decays tenfold a
        # pass, and a fit already at its minimiser sat there for ten passes)
        if (relative <= tol).all():
            return Fit(theta + newton, before, best, passes, history)
        if np.all(_negligible(newton, theta)):  # see _step_vanishes
            # where the gradient's terms have vanished (the map fits the targets exactly); not where they are
            # as large as at the start and their sum does not vanish: the step is negligible because the
            # Hessian is too ill-conditioned to resolve its direction, and the point is no minimiser
            if np.all(best.scale <= 1e-6 * before.scale):
                return Fit(theta + newton, before, best, passes, history)
            raise _ill_conditioned(objective, best, what)
        trial = theta + (newton if damping == 0 else _newton_step(eigen, best.grad, damping))
        if not np.all(np.isfinite(trial)) or np.max(np.abs(trial)) > 1e12:
            raise _no_minimiser(objective, trial, what)
        sums = evaluate(trial)
        history.append((trial.copy(), sums.nll, float(relative_gradient(sums).max(initial=0.0))))
        # accept an NLL equal to the last within float64 rounding of its sum: near the minimiser the
        # decrease (about g^2 / h) falls below what the sum can show, while the gradient still shrinks
        if sums.loss <= best.loss + 1e-13 * abs(best.loss):
            theta, best = trial, sums
            damping = damping / 10 if damping > 1e-12 else 0.0
        else:
            damping = max(10 * damping, 1e-6)  # (the scaled Hessian's diagonal is 1: see _eigen)
    raise _not_converged(objective, best, max_passes, what)


def _step_vanishes(g, h, theta) -> np.ndarray:
    """Per parameter: Newton's step ``-g / h`` (h > 0) is below :data:`STEP_TOL` of the parameter. At a
    minimiser that fits the data exactly (soft targets equal to the calibrated probabilities) every
    gradient term is about 0, so the relative gradient is rounding over rounding and never reaches
    ``tol``; the step says the fit is done."""
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(h > 0, g / np.where(h > 0, h, 1.0), np.inf)
    return _negligible(step, theta)


def _negligible(step, theta) -> np.ndarray:
    """Per parameter: ``|step|`` at most :data:`STEP_TOL` of the parameter (or of 1)."""
    return np.abs(step) <= STEP_TOL * np.maximum(1.0, np.abs(theta))


def _l2(what: str) -> str:
    """The penalty's name as the caller knows it: ``--l2`` on the command line (``what`` an option), else ``l2``."""
    return "--l2" if what.startswith("--") else "l2"


def _eigen(hess: np.ndarray):
    """``(eigenvalues, eigenvectors, scale)`` of ``S H S``, ``S = diag(scale)`` the inverse square roots of
    ``H``'s diagonal (1 where it is not positive), for :func:`_newton_step`. Why scaled: scores with a large
    offset (Platt on logits shifted by 3000) make ``H`` in ``(a, b)`` ill-conditioned by ``(spread /
    offset)^2`` (5e-14), and the direction that matters fell below the cut of flat directions: the step
    was negligible and a near-constant map returned as converged. Scaled to a unit diagonal the same
    Hessian's eigenvalues are ``1 -+ rho``, about 2e-7 there (found in review)."""
    hess = 0.5 * (hess + hess.T)
    diagonal = np.diag(hess)
    scale = np.where(diagonal > 0, 1.0 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0)), 1.0)
    values, vectors = np.linalg.eigh(scale[:, None] * hess * scale[None, :])
    return values, vectors, scale


def _newton_step(eigen, grad: np.ndarray, damping: float) -> np.ndarray:
    """``-S (S H S + damping I)^+ S g`` over the positive eigenvalues of the scaled Hessian (``eigen``:
    :func:`_eigen` of ``H``): Marquardt's damping, relative to each parameter's own curvature."""
    values, vectors, scale = eigen
    keep = values > 1e-12 * max(float(values.max(initial=0.0)), 1e-300)
    coef = vectors.T @ (scale * grad)
    step = np.where(keep, coef / np.where(keep, values + damping, 1.0), 0.0)
    return -(scale * (vectors @ step))


def _no_minimiser(objective, trial, what: str) -> LossInputError:
    if objective.method.startswith("temperature"):
        if np.any(trial < -LIMIT):
            why = ("the NLL keeps falling as T -> 0: the logits rank every example's true class first, "
                   "so a sharper softmax/sigmoid always helps (calibrate on held-out data with errors)")
        else:
            why = ("the NLL keeps falling as T -> infinity: the logits predict the targets no better than "
                   "a constant (check that the target column matches the logits)")
    elif objective.method == "variance":
        why = "the variance factor leaves [1e-12, 1e12]: the predicted variances carry no scale of the errors"
    else:
        why = ("the parameters grow without bound: the scores separate the classes, so the NLL has no "
               "minimum (use temperature scaling, or calibrate on held-out data with errors)")
    return LossInputError(f"{what}: {objective.method} has no minimiser on these data; {why}")


def _ill_conditioned(objective, sums, what: str) -> LossInputError:
    worst = float(relative_gradient(sums).max(initial=0.0))
    return LossInputError(f"{what}: {objective.method} cannot converge on these scores (relative gradient "
                          f"{worst:.3g}, goal {TOL:g}, where Newton's step vanishes): its Hessian is too "
                          f"ill-conditioned to resolve, as for scores whose offset is about a million times their "
                          f"spread; subtract their mean (a shift Platt and vector scaling absorb) and fit again")


def _not_converged(objective, sums, max_passes: int, what: str) -> LossInputError:
    worst = float(relative_gradient(sums).max(initial=0.0))
    return LossInputError(f"{what}: {objective.method} did not converge in {max_passes} passes (relative "
                          f"gradient {worst:.3g}, goal {TOL:g}); the NLL may be flat or ill-conditioned")
