r"""Compiled kernels made from a loss's formula: the scalar ``xp`` and one row kernel per class.

An :class:`~losskit.ElementwiseLoss` writes ``value(self, xp, z, y)`` and ``derivative(self, xp, z,
y)`` once, against ``xp``. Here ``xp`` is one of :data:`SCALAR_MATH` (by the input's precision), an
object numba compiles whose methods are the scalar forms of
:data:`losskit.losses.formula.FUNCTIONS`, built on the vectorisable functions of
:mod:`losskit.fused.vmath` (no call into libm is left in a loop), and ``self`` is a named tuple of
the loss's numeric options. numba compiles the formula, its helpers and these methods inline into
one flat loop per row (LLVM ``alwaysinline``), so LLVM vectorises it as it does the hand-written
kernels. Accumulation and flags follow :mod:`losskit.fused.kernels`: the scaled loss ``s l`` (0
where ``s`` is 0), the scaled gradient, and ``flags[i] = 1`` for a row holding a non-finite input,
loss or derivative, or a target value outside the loss's domain (the array-API path then answers it
exactly, or raises the precise error).

The kernels are compiled per loss class, option values and variant (:func:`row_kernel`) on first
use, and cached on disk as the hand-written kernels are (``cache=True``): numba keys a cached
function on its bytecode and its closure's pickled contents, so the closure holds the formula's own
functions (pickled by module and name), the options' named tuple (a type kept in this module) and a
salt made from the source of the modules the formula is written in (an edited formula never loads a
stale kernel). A class numba cannot find again in another process (made inside a function, or in
``__main__``) compiles once per process. A first call on a small input is answered by the reference
path while the kernel compiles (or loads) in the background (:mod:`losskit.losses._compiled`).
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections import namedtuple

import numba
import numpy as np
from numba import prange, types
from numba.core.extending import register_jitable
from numba.extending import NativeValue, models, overload_attribute, overload_method, register_model, typeof_impl, unbox

from . import _diskcache  # noqa: F401 - numba's disk cache keyed on the whole package (see there)
from .vmath import vexp, vexpm1, vlog, vlog1p, vlog1p_unit, vpow

__all__ = ["SCALAR_MATH", "row_kernel", "options_tuple", "register_helpers"]


class ScalarMath:
    """The ``xp`` a formula sees inside a compiled kernel (a numba type of no data but its precision).

    In a float32 kernel its functions compute in float32 whatever their argument's type: a formula's
    Python constants make numba widen float32 arithmetic to float64 (``z / 2`` is float64), and the
    functions are where the time goes (float32 runs twice the SIMD lanes, on shorter polynomials).
    ``constant(c)`` is ``c`` in the kernel's dtype and ``eps`` its epsilon (a compile-time constant),
    so that a formula can stay float32 throughout.
    """

    def __init__(self, precision: str):
        self.precision = precision


class _ScalarMathType(types.Type):
    def __init__(self, precision: str):
        self.precision = precision
        super().__init__(name=f"losskit.ScalarMath[{precision}]")


_TYPES = {p: _ScalarMathType(p) for p in ("float32", "float64")}
#: the ``xp`` of the compiled kernels, by the input's dtype name
SCALAR_MATH = {p: ScalarMath(p) for p in _TYPES}


@typeof_impl.register(ScalarMath)
def _typeof(value, context):
    return _TYPES[value.precision]


register_model(_ScalarMathType)(models.OpaqueModel)


@unbox(_ScalarMathType)
def _unbox(typ, obj, context):
    return NativeValue(context.context.get_dummy_value())


def _method(name):
    def decorate(impl):
        overload_method(_ScalarMathType, name, jit_options={"fastmath": {"contract"}, "forceinline": True})(impl)
        return impl
    return decorate


def _working(self, x):
    """The float type a function computes in: float32 in a float32 kernel, else the argument's."""
    if self.precision == "float32" or x == types.float32:
        return np.float32
    return np.float64


def _float_type(x):
    return np.float32 if x == types.float32 else np.float64


@_method("exp")
def _exp(self, x):
    f = _working(self, x)
    return lambda self, x: vexp(f(x))


@_method("expm1")
def _expm1(self, x):
    f = _working(self, x)
    return lambda self, x: vexpm1(f(x))


@_method("log")
def _log(self, x):
    f = _working(self, x)
    return lambda self, x: vlog(f(x))


@_method("log1p")
def _log1p(self, x):
    f = _working(self, x)
    return lambda self, x: vlog1p(f(x))


@_method("sqrt")
def _sqrt(self, x):
    return lambda self, x: math.sqrt(x)


@_method("abs")
def _abs(self, x):
    return lambda self, x: abs(x)


@_method("sign")
def _sign(self, x):
    one = _float_type(x)(1)
    zero = _float_type(x)(0)
    return lambda self, x: one if x > 0 else -one if x < 0 else zero * x  # NaN stays NaN


@_method("log1p_unit")
def _log1p_unit(self, u):
    f = _working(self, u)
    return lambda self, u: vlog1p_unit(f(u))


@_method("tanh")
def _tanh(self, x):
    f = _working(self, x)
    minus_two, two = f(-2), f(2)

    def impl(self, x):
        m = vexpm1(minus_two * abs(f(x)))  # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): no cancellation
        t = -m / (two + m)
        return t if x >= 0 else -t
    return impl


@_method("sinh")
def _sinh(self, x):
    f = _working(self, x)
    half = f(0.5)
    return lambda self, x: half * (vexpm1(f(x)) - vexpm1(-f(x)))  # no cancellation: the terms have opposite signs


@_method("cosh")
def _cosh(self, x):
    f = _working(self, x)
    half = f(0.5)
    return lambda self, x: half * (vexp(f(x)) + vexp(-f(x)))


@_method("hypot")
def _hypot(self, x, y):
    return lambda self, x, y: math.hypot(x, y)


# NaN on either side gives NaN, as np.maximum's (``x >= y`` alone took y for a NaN x: the kernel answered a
# finite loss where the array-API path's was NaN, found in review)
@_method("maximum")
def _maximum(self, x, y):
    return lambda self, x, y: x if (x >= y or x != x) else y


@_method("minimum")
def _minimum(self, x, y):
    return lambda self, x, y: x if (x <= y or x != x) else y


@_method("where")
def _where(self, condition, a, b):
    return lambda self, condition, a, b: a if condition else b


@_method("clip")
def _clip(self, x, low, high):
    return lambda self, x, low, high: min(max(x, low), high)


@_method("pow")
def _pow(self, x, y):
    f = _working(self, x)
    if isinstance(y, types.Integer):  # an integer exponent, as a float (exact below 2^24)
        return lambda self, x, y: vpow(f(x), f(y))
    return lambda self, x, y: vpow(f(x), y)


@_method("isfinite")
def _isfinite(self, x):
    return lambda self, x: math.isfinite(x)


@overload_attribute(_ScalarMathType, "eps", jit_options={"forceinline": True})
def _eps(self):
    eps = float(np.finfo(np.float32 if self.precision == "float32" else np.float64).eps)
    return lambda self: eps


@_method("constant")
def _constant(self, value):
    cast = np.float32 if self.precision == "float32" else np.float64
    return lambda self, value: cast(value)


@_method("zeros_like")
def _zeros_like(self, x):
    zero = _float_type(x)(0)
    return lambda self, x: zero


@_method("ones_like")
def _ones_like(self, x):
    one = _float_type(x)(1)
    return lambda self, x: one


@_method("full_like")
def _full_like(self, x, value):
    cast = _float_type(x)
    return lambda self, x, value: cast(value)


@_method("sigmoid")
def _sigmoid(self, z):
    f = _working(self, z)
    one = f(1)

    def impl(self, z):
        z = f(z)
        e = vexp(-abs(z))
        inv = one / (one + e)
        return inv if z >= 0 else e * inv  # each side to full precision
    return impl


@_method("log_sigmoid")
def _log_sigmoid(self, z):
    f = _working(self, z)
    zero = f(0)
    # log sigmoid(z) = min(z, 0) - log1p(exp(-|z|)), exp(-|z|) in [0, 1]
    return lambda self, z: min(f(z), zero) - vlog1p_unit(vexp(-abs(f(z))))


@_method("softplus")
def _softplus(self, z):
    f = _working(self, z)
    zero = f(0)
    return lambda self, z: max(f(z), zero) + vlog1p_unit(vexp(-abs(f(z))))


_REGISTERED: set = set()


def register_helpers(functions) -> None:
    """Make the :func:`~losskit.formula_function` helpers ``functions`` callable from compiled formulas
    (the caller passes them: this leaf module imports nothing of the losses)."""
    for fn in functions:
        if fn not in _REGISTERED:
            register_jitable(forceinline=True)(fn)  # inlined by LLVM: a call in the loop stops vectorisation
            _REGISTERED.add(fn)


@functools.cache
def _options_type(cls, fields: tuple):
    """The named tuple type of ``cls``'s options, kept as an attribute of this module: pickled by
    reference, as numba does for its disk cache's key, it is the same bytes in every process."""
    name = re.sub(r"\W", "_", f"_Options_{cls.__module__}_{cls.__qualname__}_{'_'.join(fields)}")
    options = namedtuple(name, fields)
    options.__module__ = __name__
    setattr(sys.modules[__name__], name, options)
    return options


def options_tuple(loss):
    """The loss's numeric options as the named tuple its compiled formula reads as ``self``."""
    values = {k: v for k, v in loss.options.as_dict().items()
              if k not in ("reduction", "impl") and (v is None or isinstance(v, (int, float)))}
    return _options_type(type(loss), tuple(values))(**values)


@functools.cache
def row_kernel(cls, opts, parallel: bool, with_grad: bool, store: bool, per_element: bool, domain: str):
    """The compiled row kernel of ``cls``'s formula with the options ``opts`` (:func:`options_tuple`)::

        kernel(xp, z, y, scale, inv_count, scaled_loss, elements, grad, flags)

    over ``z``, ``y`` ``[R, C]``; ``scale`` ``[R, C]`` (``per_element``) or ``[R, 1]`` / ``[1, 1]``; each
    element's loss is ``inv_count * value`` (1/D for a row's mean); outputs as
    :func:`losskit.fused.kernels.bce_logits_rows`, ``elements`` written when ``store``, ``grad`` when
    ``with_grad``. ``domain`` (a key of :data:`losskit.losses.elementwise.TARGETS`) is the set of target
    values the loss takes: a row holding another (or a NaN target) is flagged, so the check costs no
    pass of its own; a ``"sign"`` target reaches the formula as -1/+1. These four are fixed per
    compiled variant, not tested per element: a loop whose body branches on them (or gathers its
    scale through a chosen index) is one LLVM does not vectorise once the formula is long (it will
    not duplicate a long loop to unswitch it). The options are constants of the compiled code, so
    that LLVM folds what depends on them alone (``pow(q, 2.0)`` becomes ``q * q``, a Tweedie
    deviance's branches on its power disappear): a new value of an option compiles a new kernel.
    """
    binary, sign, count, positive = (domain == k for k in ("binary", "sign", "count", "positive"))
    value, derivative = _jitable(cls.value), _jitable(cls.derivative)
    loop = prange if parallel else range
    salt = _source_salt(cls)

    def rows(xp, z, y, scale, inv_count, scaled_loss, elements, grad, flags):
        n, c = z.shape
        per_row = scale.shape[0] > 1
        real = z.dtype.type
        zero, one = real(0), real(1)  # typed: a bare 0 would widen a float32 loop to float64 (8 lanes, not 16)
        w = real(inv_count)
        if salt < 0:  # never: the salt is here so that the disk cache's key holds the formula's source
            return
        for i in loop(n):
            total = zero  # the row's sum in the input's dtype, across the SIMD lanes; rows add in float64
            poison = zero
            outside = zero  # the count of target values outside the domain (a float: an int64 here
            # would make LLVM size the SIMD lanes for 64 bits, 8 float32 lanes instead of 16)
            row_scale = scale[i if per_row else i - i, 0]  # i - i: 0 of prange's type
            for j in range(c):
                x = z[i, j]
                t = y[i, j]
                if binary:
                    outside += zero if (t >= zero and t <= one) else one  # NaN fails both
                elif sign:
                    outside += zero if (abs(t) == one or t == zero) else one
                    t = one if t > zero else -one
                elif count:
                    outside += zero if t >= zero else one
                elif positive:
                    outside += zero if t > zero else one
                else:
                    outside += zero if t == t else one
                s = scale[i, j] if per_element else row_scale
                loss = w * real(value(opts, xp, x, t))
                weighted = zero if s == zero else s * loss  # a weight-0 example adds 0, even if inf
                poison += x * zero  # NaN for a non-finite input
                total += weighted
                if store:
                    elements[i, j] = weighted
                if with_grad:
                    d = real(derivative(opts, xp, x, t))
                    scaled = zero if s == zero else (s * w) * d
                    poison += scaled * zero
                    grad[i, j] = scaled
            row_total = float(total)
            if not (math.isfinite(row_total) and poison == zero and outside == zero):
                flags[i] = 1
            scaled_loss[i] = row_total

    return numba.njit(rows, parallel=parallel, nogil=True, error_model="numpy", cache=_cacheable(cls),
                      fastmath={"reassoc", "contract"})


def _jitable(fn):
    """``fn`` (a formula's method) callable from compiled code, inlined, and referred to in the kernel's
    closure as itself: numba keys its disk cache on the closure's pickled contents, which for a plain
    function is its module and name (a dispatcher would pickle with a new identity per process)."""
    if fn not in _REGISTERED:
        register_jitable(inline="always", error_model="numpy")(fn)  # inlined in numba IR, as njit(inline="always")
        _REGISTERED.add(fn)
    return fn


@functools.cache
def _source_salt(cls) -> int:
    """A number that changes when the source of ``cls``'s module, or of the kernels' maths, does."""
    import hashlib
    import inspect
    import sys

    digest = hashlib.sha256()
    modules = {c.__module__ for c in cls.__mro__} | {fn.__module__ for fn in _REGISTERED} | {__name__, vexp.__module__}
    # a helper made by exec (no module) can only be in the process that made it: nothing to salt
    modules = {m for m in modules if m in sys.modules and m != "builtins"}
    for module in (sys.modules[m] for m in sorted(modules)):
        try:
            digest.update(inspect.getsource(module).encode())
        except (OSError, TypeError):  # no source (a class made in a notebook cell...): no disk cache
            return 0
    # the numbers the formulas read as globals, which numba freezes into the machine code: one imported from
    # another module (from consts import K) changed there and the cached kernel kept the old K
    formulas = [getattr(cls, m) for m in ("value", "derivative", "second_derivative") if hasattr(cls, m)]
    for fn in (*formulas, *sorted(_REGISTERED, key=lambda f: (str(f.__module__), f.__qualname__))):
        digest.update(repr(sorted(_global_numbers(fn))).encode())
    return int.from_bytes(digest.digest()[:7], "little")


def _global_numbers(fn) -> list:
    """``(name, repr)`` of each global the code of ``fn`` (and its nested code) loads that numba freezes as a
    constant: a number (a NumPy scalar too), a tuple of them; a module's numbers it reads (``np.pi``)."""
    import dis
    import types as pytypes

    def frozen(value) -> bool:
        if isinstance(value, tuple):
            return all(frozen(v) for v in value)
        return isinstance(value, (int, float, complex, np.generic))

    namespace, found, codes = getattr(fn, "__globals__", {}), [], [getattr(fn, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is None:
            continue
        instructions = list(dis.get_instructions(code))
        for instruction, after in zip(instructions, instructions[1:] + [None], strict=True):
            if instruction.opname != "LOAD_GLOBAL" or instruction.argval not in namespace:
                continue
            name, value = instruction.argval, namespace[instruction.argval]
            if isinstance(value, pytypes.ModuleType) and after is not None and after.opname == "LOAD_ATTR":
                name, value = f"{name}.{after.argval}", getattr(value, after.argval, None)
            if frozen(value):
                found.append((name, repr(value)))
        codes += [c for c in code.co_consts if isinstance(c, pytypes.CodeType)]
    return found


def _cacheable(cls) -> bool:
    """Whether the kernel of ``cls`` can be cached on disk: its formula is found again by module and
    name in another process (not a class made inside a function or in ``__main__``)."""
    module = sys.modules.get(cls.__module__)
    return (cls.__module__ != "__main__" and "<locals>" not in cls.__qualname__ and module is not None
            and getattr(module, cls.__qualname__.split(".")[0], None) is not None and _source_salt(cls) != 0)
