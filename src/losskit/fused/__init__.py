"""Compiled CPU kernels: plain arrays in, plain arrays out (see :mod:`losskit.fused.kernels`).

A leaf: it knows no loss object, option or reduction. The losses marshal their call plan into
these kernels (:mod:`losskit.losses._compiled`); ``import losskit`` never loads numba.
"""

from __future__ import annotations

import functools
import importlib.util
import threading

__all__ = ["available", "no_alias_compiler", "pick", "running_serial", "serial", "serial_twin"]


@functools.cache
def available() -> bool:
    """Whether the compiled kernels can be used here (numba installed); asked once per process."""
    return importlib.util.find_spec("numba") is not None


_CALL = threading.local()


class serial:  # noqa: N801 - used as a function: ``with serial(on):``
    """Inside, :func:`pick` gives each kernel's serial twin when ``on`` (per calling thread). A class,
    not a generator context manager: it wraps every small call, where contextlib's machinery costs
    more than the kernel."""

    __slots__ = ("on", "previous")

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.previous = getattr(_CALL, "serial", False)
        _CALL.serial = self.on

    def __exit__(self, *exc):
        _CALL.serial = self.previous


def running_serial() -> bool:
    """Whether the calling thread's kernels run serially now (inside ``serial(True)``)."""
    return getattr(_CALL, "serial", False)


def pick(kernel):
    """``kernel`` (a ``parallel`` numba function), or its serial twin inside ``serial(True)``."""
    return serial_twin(kernel) if getattr(_CALL, "serial", False) else kernel


@functools.cache
def serial_twin(kernel):
    """``kernel`` compiled without a parallel region (``prange`` runs as ``range``), cached on disk apart.

    Why a twin and not ``numba.set_num_threads(1)`` around the parallel kernel: that still goes through
    the threading layer on every call (the count set twice, a launch and a join), where the twin is a
    plain loop on the calling thread; and the twin compiles in 60-75% of the parallel kernel's time
    (no parfor lowering), which is what a small first call and the test suite wait for. Its own
    qualified name gives it its own entry in numba's disk cache, which is keyed by name and bytecode,
    not by the ``parallel`` flag.

    The twin is compiled with numba's ``noalias`` flag (:func:`no_alias_compiler`; the row functions it
    calls, :data:`losskit.fused.kernels.ROW`, are not, nor need to be: see there): no array it writes
    may share memory with another of its arguments (the parallel kernel may be given ``grad`` =
    ``z``; its twin may not; the kernels of :func:`losskit.fused.kernels.row_sweep` call a row compiled
    so from both, and neither may)."""
    import types

    import numba
    from numba.core.caching import NullCache

    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    # the name is numba's disk-cache key, which holds neither the flags nor the pipeline: a twin compiled
    # another way (before noalias: ".serial") needs a name of its own, or its stale code is loaded
    twin.__qualname__ = f"{fn.__qualname__}.twin"
    twin.__module__, twin.__doc__ = fn.__module__, fn.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}  # njit sets it itself
    options["parallel"] = False
    return numba.njit(cache=not isinstance(kernel._cache, NullCache), pipeline_class=no_alias_compiler(),
                      **options)(twin)


@functools.cache
def no_alias_compiler():
    """numba's compiler with its ``noalias`` flag set: every array an argument gives is taken as
    disjoint from the others' (numba's parfor lowering sets the same flag on a parallel loop body when
    its alias analysis finds no argument derived from another; the elementwise kernels' bodies are not
    so compiled, by the evidence below). Every serial twin is compiled with it (not the row functions it
    calls: :data:`losskit.fused.kernels.ROW`); its callers never pass
    an array the kernel writes as another argument (:func:`losskit.losses._compiled.run` gives a small
    call's ``out=`` that shares an input's memory a buffer of the kernel's own).

    Without it LLVM guards each vectorised loop that stores with a run-time check of the arrays'
    address ranges and runs a scalar copy of the loop when they overlap. Its sums then come in
    another order: the last bits of a loss depended on where the heap put a kernel's unused
    placeholder outputs (the empty ``elements`` and ``grad`` of a value-only call, whose range LLVM
    reckons from the row's length), and a seeded demo run differed from the same run in its last
    bits. Not used for the parallel kernels: it made the parallel BCE kernel 1.3-2x slower (50M
    float32 elements, the value alone 39 -> 80 ms); their callers give each placeholder a range of its
    own instead (:func:`losskit.losses._compiled.placeholder`). The row function of a
    :func:`losskit.fused.kernels.row_sweep` kernel (the JSD's, distillation's) is compiled with it, for
    the parallel kernel too: its three arrays are always rows of distinct buffers."""
    from numba.core.compiler import Compiler

    class NoAliasCompiler(Compiler):
        def __init__(self, typingctx, targetctx, library, args, return_type, flags, locals):
            flags = flags.copy()
            flags.noalias = True
            super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)

    return NoAliasCompiler
