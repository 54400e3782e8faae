"""A user's own losses, written as the "Write your own loss" how-to says, outside the package.

Importing this module registers them; ``tests/cases.py`` gives them cases, so every common test
(gradients, Hessians, reductions, weights, backends, dtypes, torch, JAX) covers them as it covers
the catalogue.
"""

import losskit as lk


class ExpMarginLoss(lk.ElementwiseLoss):
    """AdaBoost's exponential loss on a margin: exp(-(2y - 1) z)."""
    name = "exp_margin_loss"
    target = "binary"                      # 0/1 targets, checked as BCE's are
    def value(self, xp, z, y):             return xp.exp(-(2 * y - 1) * z)  # noqa: E704
    def derivative(self, xp, z, y):        return -(2 * y - 1) * xp.exp(-(2 * y - 1) * z)  # noqa: E704
    def second_derivative(self, xp, z, y): return xp.exp(-(2 * y - 1) * z)  # noqa: E704


class ScaledCauchyLoss(lk.ElementwiseLoss):
    """Cauchy (Lorentzian) loss with a declared option: c^2/2 log(1 + (e/c)^2), e = z - y."""

    name = "scaled_cauchy_loss"
    target = "value"
    over_last_axis = "mean"
    scale = lk.option(1.0, low=0.0, low_open=True, doc="the error scale c")

    def value(self, xp, z, y):
        r = (z - y) / self.scale
        return 0.5 * self.scale * self.scale * xp.log1p(r * r)

    def derivative(self, xp, z, y):
        e = z - y
        return e / (1 + (e / self.scale) ** 2)

    def second_derivative(self, xp, z, y):
        r2 = ((z - y) / self.scale) ** 2
        return (1 - r2) / ((1 + r2) * (1 + r2))
