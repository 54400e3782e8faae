"""The losses, as classes and functions, and the registry the tests iterate.

Each loss is one class in its family's module; importing the module registers it (see
:mod:`losskit.losses.registry`), and the exports below are read from the registry: adding a
loss edits no list here.
"""

from . import (  # noqa: F401 - importing a family registers its losses
    asymmetric,
    binary,
    categorical,
    deviance,
    distribution,
    focal,
    hinge,
    multilabel,
    regression,
    robust,
)
from .base import Loss, Terms
from .declaration import HALF_LOGIT, IDENTITY, LOG, LOGIT, SOFTMAX, Hessian, Link, option
from .elementwise import ElementwiseLoss
from .formula import formula_function
from .registry import REGISTRY, catalogue

#: the catalogue's classes and functions by name, for the package's exports
EXPORTS = {name: obj for cls, fn in catalogue().values() for name, obj in ((cls.__name__, cls), (fn.__name__, fn))}
globals().update(EXPORTS)

__all__ = ["REGISTRY", "Loss", "Terms", "ElementwiseLoss", "Hessian", "Link", "IDENTITY", "LOGIT", "HALF_LOGIT", "LOG",
           "SOFTMAX", "option", "formula_function", *EXPORTS]
