r"""The namespace a loss formula is written against, on arrays and (compiled) on scalars.

A loss's formula (:class:`~losskit.ElementwiseLoss`'s ``value``, ``derivative`` and
``second_derivative``) takes ``xp`` and calls only the functions listed in :data:`FUNCTIONS`
on it, plus arithmetic, comparisons and the option attributes of ``self``. The same text then
runs on every path:

* arrays (NumPy, torch, JAX, CuPy, Dask): ``xp`` is :class:`ArrayMath`, the array namespace plus
  the few functions a loss needs that the array API lacks (``sigmoid``, ``log_sigmoid``,
  ``softplus``), with Python numbers accepted where the array API wants arrays (``where``,
  ``maximum``, ``minimum``, ``clip``);
* the compiled CPU kernel: ``xp`` is a numba type whose methods are the scalar forms of the same
  functions (:mod:`losskit.fused.formula`), and ``self`` a tuple of the numeric options.

A formula may call a helper of its own if the helper is marked :func:`formula_function`: numba
then compiles it too. Design note: the alternative of a second, hand-written kernel per loss is
how the catalogue's kernels and references came to drift; scikit-learn's ``_loss`` has one
templated scalar formula per loss for the same reason.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Callable, Iterator

from .registry import is_losskits

__all__ = ["FUNCTIONS", "ArrayMath", "formula_function", "FORMULA_FUNCTIONS", "check_formula", "check_formulas"]

#: the functions a formula may call on ``xp``: each has an array form here and a scalar form in the
#: compiled kernels (``losskit.fused.formula``)
FUNCTIONS = ("exp", "expm1", "log", "log1p", "log1p_unit", "sqrt", "abs", "sign", "tanh", "sinh", "cosh", "hypot",
             "maximum", "minimum", "where", "clip", "sigmoid", "log_sigmoid", "softplus", "zeros_like",
             "ones_like", "full_like", "isfinite", "pow", "constant")
#: the attributes a formula may read on ``xp``: ``eps``, the working dtype's machine epsilon
ATTRIBUTES = ("eps",)

#: helpers marked with :func:`formula_function`, compiled on demand by the kernels
FORMULA_FUNCTIONS: list[Callable] = []


def formula_function(fn: Callable) -> Callable:
    """Mark ``fn(xp, ...)`` as a helper that loss formulas call: it runs as written on arrays and is
    compiled (numba) inside the kernels. It may use ``xp`` as a formula does.

    Shapes: whatever the formula passes, elementwise: arrays of the input's shape on the array path,
    one element at a time in the compiled kernel; the result has the arguments' (broadcast) shape.
    """
    if not is_losskits(fn):
        check_formula(fn, getattr(fn, "__qualname__", repr(fn)), argument=0)
    FORMULA_FUNCTIONS.append(fn)
    return fn


def check_formulas(cls, methods=("value", "derivative", "second_derivative"), options=()) -> None:
    """:func:`check_formula` of each formula method ``cls`` defines itself (``options``: the numeric options,
    the attributes it may read on ``self``), unless ``cls`` is losskit's (its formulas are held by the tests
    instead, and reading their bytecode would cost ``import losskit`` some 20 ms)."""
    if is_losskits(cls):
        return
    for method in methods:
        if method in cls.__dict__:
            check_formula(cls.__dict__[method], f"{cls.__name__}.{method}", options=options)


#: the builtins a formula may call: the same on arrays and in the compiled kernel (``max`` of an array is
#: an error, of two elements a number; ``round`` and ``int`` the same). Types are calls too: refused
BUILTINS = ("abs", "float")


def check_formula(fn: Callable, owner: str, argument: int = 1, options=None) -> None:
    """Refuse, when a formula is defined, what only one path can run (else it fails inside numba's compiler
    with a multi-screen TypingError on a compiled call, or on arrays, by the call's size). ``fn``'s parameter
    number ``argument`` is ``xp``: every attribute it reads there must be in :data:`FUNCTIONS` or
    :data:`ATTRIBUTES`. A method's ``self`` (``argument`` 1) may be read for ``options`` alone (the compiled
    kernel's ``self`` holds the numeric options, nothing else: no class constant, no method). A global it
    calls must be a helper marked :func:`formula_function` or one of :data:`BUILTINS`: not a module's
    function (``math.erf`` runs in the kernel, not on arrays), not another function (not compiled)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount <= argument:
        return
    xp = code.co_varnames[argument]
    allowed = (*FUNCTIONS, *ATTRIBUTES)
    for name in _attributes_read(code, xp):
        if name not in allowed:
            raise TypeError(f"{owner} uses xp.{name}, which a formula cannot: xp offers {', '.join(FUNCTIONS)} "
                            f"and {', '.join(ATTRIBUTES)} (losskit.losses.formula.FUNCTIONS), the same on "
                            "every path; write it from these, in a helper marked @lk.formula_function if need be")
    if options is not None and argument == 1:
        for name in _attributes_read(code, code.co_varnames[0]):
            if name not in options:
                raise TypeError(f"{owner} reads self.{name}, which is not an option of the loss: a formula reads "
                                f"on self only its numeric options ({', '.join(options) or 'none declared'}), the "
                                "compiled kernel's self holds nothing else; declare it with lk.option(...), or make "
                                "a helper marked @lk.formula_function")
    import builtins

    for name, value in _globals_read(fn, code):
        if isinstance(value, types.ModuleType):  # a module's number (math.pi) is a number; its function is not
            for attribute in _attributes_read(code, name, global_=True):
                if not isinstance(getattr(value, attribute, None), (int, float)):
                    _refuse(owner, f"{name}.{attribute}")
        elif callable(value) and not any(value is f for f in FORMULA_FUNCTIONS) \
                and not (name in BUILTINS and value is getattr(builtins, name, None)):
            _refuse(owner, name)


def _refuse(owner: str, name: str):
    if name == "super":  # the kernel calls the formula as a plain function of the options: no class, no parent
        raise TypeError(f"{owner} uses super(), which a formula cannot (the compiled kernel calls it as a plain "
                        "function of the options): write the shared formula in a helper marked "
                        "@lk.formula_function and call it from both classes")
    raise TypeError(f"{owner} uses {name}, which a formula cannot: call on xp the functions {', '.join(FUNCTIONS)}, "
                    f"the builtins {', '.join(BUILTINS)}, and helpers marked @lk.formula_function (compiled with "
                    "the formula); read numbers (a module's too: math.pi); a module's function, a type such as int "
                    "or another function runs on one path only")


def _globals_read(fn: Callable, code: types.CodeType) -> Iterator[tuple[str, object]]:
    """``(name, value)`` of each global (or builtin) name ``code`` and its nested code load, found now in
    ``fn``'s globals or the builtins; a name not defined yet (a helper written after the class) is skipped."""
    import builtins

    namespace = getattr(fn, "__globals__", {})
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_GLOBAL":
            name = instruction.argval
            if name in namespace:
                yield name, namespace[name]
            elif hasattr(builtins, name):
                yield name, getattr(builtins, name)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _globals_read(fn, const)


def _attributes_read(code: types.CodeType, xp: str, global_: bool = False) -> Iterator[str]:
    """The attribute names read directly on the local (or closed-over) variable ``xp`` in ``code``
    and the functions nested in it (comprehensions, lambdas); ``global_``: on the global ``xp``."""
    instructions = list(dis.get_instructions(code))
    loads = ("LOAD_GLOBAL",) if global_ else ("LOAD_FAST", "LOAD_DEREF")
    for load, attribute in zip(instructions, instructions[1:], strict=False):
        # Python 3.13 loads two locals in one LOAD_FAST_LOAD_FAST (argval a pair): the later is on top
        loaded = load.argval[-1] if isinstance(load.argval, tuple) else load.argval
        if (load.opname.startswith(loads) and loaded == xp
                and attribute.opname in ("LOAD_ATTR", "LOAD_METHOD")):
            yield attribute.argval
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _attributes_read(const, xp, global_)


class ArrayMath:
    """``xp`` for a formula on arrays of one library, in the working dtype ``dtype``."""

    def __init__(self, xp, like):
        self._xp = xp
        self._like = like

    def __getattr__(self, name):
        function = getattr(self._xp, name)
        if name in FUNCTIONS:  # a Python number argument made an array of the working dtype: torch's functions
            return lambda *args: function(*map(self._array, args))  # refuse one (xp.log(2 * self.b), found in review)
        return function

    def _array(self, value):
        if isinstance(value, (int, float)):
            return self._xp.asarray(value, dtype=self._like.dtype, device=_device(self._like))
        return value

    def where(self, condition, a, b):
        return self._xp.where(condition, self._array(a), self._array(b))

    def maximum(self, a, b):
        return self._xp.maximum(self._array(a), self._array(b))

    def minimum(self, a, b):
        return self._xp.minimum(self._array(a), self._array(b))

    def clip(self, x, low, high):
        return self.minimum(self.maximum(x, low), high)

    def pow(self, x, y):
        return self._xp.pow(self._array(x), self._array(y))

    def zeros_like(self, x):
        return self._xp.zeros_like(self._array(x))

    @property
    def eps(self) -> float:
        """The working dtype's machine epsilon (a Python float: a formula may choose, say, a series'
        length by it; in the compiled kernel it is a constant and the other choice is not compiled)."""
        return float(self._xp.finfo(self._like.dtype).eps)

    def constant(self, value):
        """``value`` in the working dtype (0-d): ``xp.constant(2.0) * z`` keeps a float32 ``z`` float32
        in the compiled kernel too, where ``2.0 * z`` is float64 arithmetic (numba's promotion)."""
        return self._array(value)

    def ones_like(self, x):
        return self._xp.ones_like(self._array(x))

    def full_like(self, x, value):
        return self._xp.full_like(self._array(x), value)

    def sigmoid(self, z):
        from ..activations import sigmoid_xp

        return sigmoid_xp(self._xp, self._array(z))

    def log_sigmoid(self, z):
        from ..activations import log_sigmoid_xp

        return log_sigmoid_xp(self._xp, self._array(z))

    def log1p_unit(self, u):
        """``log(1 + u)`` for ``u`` in [0, 1] (the compiled kernels vectorise this one, not ``log1p``)."""
        return self._xp.log1p(self._array(u))

    def softplus(self, z):
        """``log(1 + exp(z)) = -log_sigmoid(-z)``: no overflow, no cancellation."""
        return -self.log_sigmoid(-z)


def _device(array):
    from .._array import device

    return device(array)
