"""From a call plan to the compiled kernels and back: host views, layouts, buffers.

The plan's arrays reach a kernel as NumPy views without a copy: NumPy arrays as they are, other
CPU arrays through DLPack (a torch CPU tensor that does not require grad, for example), and the
results go back the same way. Anything DLPack cannot share on the host (a GPU array, a tensor
in an autograd graph, a JAX tracer, a Dask graph) is left to the array-API path. A loss names
its kernel function here (``_kernel = _compiled.softmax_ce``...; every ElementwiseLoss runs
:func:`formula`, the kernel compiled from its own formula); the function lays the plan out for
the kernel and returns ``(scaled_loss, grad)``, or None when the kernel flagged a row. Small calls
run on the calling thread alone, and a first small call is answered by the reference while its
kernel compiles in the background (see :data:`ANSWER_WHILE_COMPILING`, :data:`SERIAL_BELOW`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time

import numpy as np
from array_api_compat import array_namespace, is_numpy_namespace, is_torch_namespace, is_writeable_array

from .. import _array, _checks, fused
from .._errors import LossInputError
from .._memory import Recycler
from ..fused import threads as fused_threads

UNHANDLED = object()
#: elementwise losses run as rows of this many elements, so a 1-D input still splits across threads
ROW = 4096


def host(array):
    """A NumPy view of ``array``'s memory, or None when it has none on the host."""
    if array is None or isinstance(array, np.ndarray):
        return array
    if isinstance(array, np.generic):  # NumPy's 0-d results are scalars
        return np.asarray(array)
    try:
        return np.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError):
        return None


def _same_library(out, input) -> bool:
    if type(out) is type(input):
        return True
    try:
        return _array.is_array(out) and array_namespace(out) is array_namespace(input)
    except TypeError:
        return False


def check_out(out, input, input_name: str) -> None:
    if not _array.is_array(input):
        raise _checks.fail("out", f"no out= for {input_name} given as {type(input).__name__} (out= takes an array "
                           f"of {input_name}'s library, shape and dtype)", f"{type(out).__name__}",
                           f"pass {input_name} as an array")
    if getattr(out, "requires_grad", False):  # torch writes no leaf that requires grad in place
        raise _checks.fail("out", "an array that does not require grad (the gradient is written into it)",
                           "a tensor with requires_grad=True")
    shape, dtype = tuple(getattr(input, "shape", ())), getattr(input, "dtype", None)
    # the input's library (a memmap's out an ndarray, a Parameter's a plain tensor: found in review)
    if not _same_library(out, input) or tuple(getattr(out, "shape", ())) != shape or out.dtype != dtype:
        def kind(array):  # (module and name: a Dask array and a NumPy one both say "ndarray"-like names apart)
            return f"{type(array).__module__.partition('.')[0]}.{type(array).__name__}"

        raise _checks.fail("out", f"an array of {input_name}'s type ({kind(input)}), shape {shape} and dtype {dtype}",
                           f"{kind(out)} of shape {tuple(getattr(out, 'shape', ()))} and dtype "
                           f"{getattr(out, 'dtype', None)}")
    flags = getattr(out, "flags", None)
    if flags is not None and not flags.writeable:  # NumPy's own words would name no argument
        raise _checks.fail("out", "a writeable array (the gradient is written into it)", "a read-only array",
                           "pass a copy, or leave out= out to get a new array")
    strides = _strides(out)
    if any(stride == 0 and size > 1 for stride, size in zip(strides, shape, strict=False)):
        # a broadcast view (np.broadcast_to, as_strided, torch's expand): its elements share memory, and each
        # row's gradient was written over the last (NumPy) or torch refused the write in its own words
        raise _checks.fail("out", "an array whose elements have memory of their own (the gradient is written "
                           "into it)", f"a view with a stride of 0 (strides {strides})",
                           "pass an array of its own (np.empty_like), or leave out= out")
    if not is_writeable_array(out):  # a library whose arrays are immutable
        raise _checks.fail("out", "a writeable array (the gradient is written into it)",
                           f"an array of {array_namespace(out).__name__}, which cannot be written in place",
                           "leave out= out to get a new array")


def _strides(array) -> tuple:
    """Strides in elements or bytes (only zeros matter here): NumPy's attribute, torch's method; () if neither."""
    strides = getattr(array, "strides", None)
    if strides is None and callable(getattr(array, "stride", None)):  # torch: Tensor.stride()
        strides = array.stride()
    return tuple(strides or ())


def run(loss, plan, with_grad: bool, out):
    """``(value, grad)`` from ``loss._kernel``; None when a row was flagged; UNHANDLED when no
    kernel takes the call (another library or device, a dtype, a layout, numba missing)."""
    xp = plan.xp
    if not (is_numpy_namespace(xp) or is_torch_namespace(xp)) or not fused.available() \
            or type(loss).kernel_name() is None:
        return UNHANDLED
    given = {"input": plan.input, "scale": plan.scale, "labels": plan.target.labels,
             "dense": plan.target.dense, "pos_weight": plan.target.pos_weight}
    arrays = {name: host(value) for name, value in given.items()}
    if any(arrays[k] is None and given[k] is not None for k in arrays):  # something not on the host
        return UNHANDLED
    # None where NumPy cannot view it (a torch bfloat16 out=): the kernel writes a buffer of its own, copied into
    # out at the end (impl="fused" refused such an out= as a call no kernel takes)
    arrays["out"] = host(out)
    z = arrays["input"]
    if z.dtype not in (np.float32, np.float64) or z.size == 0 or z.ndim == 0:
        return UNHANDLED
    # a class axis other than the last (PyTorch's (N, C, d1, ...)): the kernel writes a buffer of its own
    # (the columns kernel's in the caller's layout, a row kernel's in the moved one), which ``restore``
    # lays out as the caller's
    if arrays["out"] is not None and (plan.restore is not None or not (
            arrays["out"].dtype == z.dtype and arrays["out"].flags.c_contiguous
            and arrays["out"].flags.writeable and _writable_in_place(arrays))):
        arrays["out"] = None  # the kernel writes its own buffer, copied into out at the end
    key = _signature(loss, plan, arrays) + (with_grad,)
    state = _STATE.get(key)
    if state is not _READY:
        if z.size < ANSWER_WHILE_COMPILING and loss.options.impl == "auto" \
                and not getattr(_COMPILE_HERE, "depth", 0):
            if state is None:
                _compile_in_background(key, loss, plan, arrays, with_grad)
            else:
                # hand the GIL to the compiling thread: it releases the GIL over a thousand times (file
                # reads, llvmlite's calls) and waited each time for a caller's loop of small calls to let go
                # of it (the switch interval, 5 ms): a cached kernel's load took 6-18 s instead of 0.5, and
                # a compile into an empty cache did not end within 30 s
                time.sleep(0)
            return UNHANDLED  # the reference answers until the kernel is compiled
        _STATE[key] = _READY  # a large call (or impl="fused") compiles here, once numba's lock is free
    serial = z.size < SERIAL_BELOW
    if not serial:
        fused_threads.start()  # numba's threads, to sleep soon when idle (before its first parallel kernel)
    with fused.serial(serial):
        result = loss._kernel(plan, arrays, with_grad)
    if result is None and arrays["out"] is not None and np.may_share_memory(arrays["out"], z):
        # a flagged row takes the array-API path, which reads the input the kernel has overwritten (the
        # input was finite: a loss that overflows, or a target outside the loss's domain). A target outside
        # it is named as the reference names it (the error named `out`, found in review): the reference's
        # value on the overwritten input reads the target as given
        try:
            loss.reference(plan, 0)
        except LossInputError as error:
            if not str(error).startswith(f"{loss.input_name}:"):
                raise LossInputError(f"{error} (the input given as out= now holds partial gradients)") from None
        raise _checks.fail("out", "an array apart from the input for this call: a row the kernel cannot take (a "
                           "loss that overflows the dtype, or a target outside the loss's domain) is answered "
                           "from the input, which the gradient written in place has overwritten",
                           "the input itself", "the input now holds partial gradients and cannot be reused")
    if result is None or result is UNHANDLED:
        return result
    scaled_loss, grad = result
    if plan.reduction == "none":
        value = scaled_loss.reshape(plan.batch_shape).astype(z.dtype, copy=False)
    else:
        value = np.asarray(scaled_loss.sum(), dtype=z.dtype)
    value = _array.as_dtype(xp, _back(xp, value), plan.dtype)  # half precision ran in float32
    if not with_grad:
        return value, None
    if arrays["out"] is not None:
        return value, out
    grad = grad.reshape(z.shape)
    if plan.restore is None:
        grad = _back(xp, grad)
    else:  # the caller's layout: contiguous from the columns kernel, else a view of the kernel's rows
        caller = plan.restore(grad)
        grad = _back(xp, caller) if caller.flags.c_contiguous else plan.restore(_back(xp, grad))
    grad = _array.as_dtype(xp, grad, plan.dtype)
    if out is not None:  # an out the kernel could not write (half precision, a layout, shared memory): copied in
        out[...] = grad
        return value, out
    return value, grad


#: below this many input elements a call whose kernel is not compiled yet is answered by the
#: reference path while the kernel compiles in a background thread (a first call on a fresh install
#: would otherwise wait seconds for numba)
ANSWER_WHILE_COMPILING = 100_000
#: below this many input elements a call runs its kernel's serial twin (:func:`losskit.fused.serial_twin`):
#: waking the parallel threads costs more than they save, and inside a training loop they fight BLAS's
#: spinning threads
SERIAL_BELOW = 1 << 18
_READY, _COMPILING = "ready", "compiling"
#: the threads inside :func:`compile_here`
_COMPILE_HERE = threading.local()


@contextlib.contextmanager
def compile_here():
    """Within it, this thread's small calls wait for their kernel's compile (or cache load) instead of being
    answered by the reference meanwhile: a program that must give the same numbers run to run (the demo),
    since the reference equals the kernel only to the last bits and which answers a call would depend on
    how fast the compile ran."""
    _COMPILE_HERE.depth = getattr(_COMPILE_HERE, "depth", 0) + 1
    try:
        yield
    finally:
        _COMPILE_HERE.depth -= 1


_STATE: dict = {}  # signature -> _COMPILING (in a background thread) or _READY
_STATE_LOCK = threading.Lock()
_THREADS: list = []


def _writable_in_place(arrays) -> bool:
    """Whether the kernel may write the gradient into ``out`` itself: ``out`` shares no input's memory,
    or it is the input's (``out=x``) on a call that runs a parallel kernel, which reads what it needs of
    an element before writing there (the class-axis kernels that read the logits again after writing
    get a copy of them, :func:`_class_axis`). Otherwise the kernel writes a buffer of its own, copied
    into ``out`` at the end: the serial twins take every array they write as disjoint from the others
    (:func:`losskit.fused.no_alias_compiler`), and an ``out`` overlapping the target or part of the
    input would be read after it is written."""
    out, z = arrays["out"], arrays["input"]
    if any(value is not None and np.may_share_memory(out, value)
           for name, value in arrays.items() if name not in ("out", "input")):
        return False
    if not np.may_share_memory(out, z):
        return True
    return z.size >= SERIAL_BELOW and z.flags.c_contiguous and out.size == z.size \
        and out.ctypes.data == z.ctypes.data and _finite(z)


def _finite(z) -> bool:
    """Whether every input is finite, in two streaming reductions (a NaN propagates into both). A row
    holding +-inf or NaN is answered by the array-API path, which reads the input: written in place,
    the gradient would have overwritten it (``out=x`` then writes through a buffer of its own)."""
    return bool(np.isfinite(z.min()) and np.isfinite(z.max()))


def placeholder(row_length: int, dtype) -> np.ndarray:
    """An empty array for an output a call does not want (a kernel reads its emptiness as "not
    asked"), its data at the start of an untouched allocation of ``row_length`` elements.

    A kernel whose row loop both sums and writes (the elementwise ones) indexes it as ``[i, j]`` with
    its shape ``(0, 0)``: LLVM reckons the range it might write as ``row_length`` elements from its
    data and checks it against the inputs' before the vectorised loop, running a scalar copy of the
    loop, whose sum comes in another order, when they overlap. A bare ``np.empty(0)`` lay wherever the
    heap put it, at times inside an input's range: the last bits of a parallel kernel's loss depended
    on it (the serial twins are compiled so as not to check: :func:`losskit.fused.no_alias_compiler`).
    The allocation is never written, so its pages are never touched."""
    return np.empty(max(row_length, 1), dtype)[:0]


def _signature(loss, plan, arrays) -> tuple:
    """What decides the machine code a call needs (its kernel and the types numba sees): the layout too,
    as logits whose classes lie apart take softmax CE's columns kernel (:func:`_columns`), the row
    width's side of the blocked kernels' bounds, and whether there is smoothing (focal's labels take a
    kernel of their own without it)."""
    z = arrays["input"]
    columns = not z.flags.c_contiguous and arrays["out"] is None and _columns(z) is not None
    width = z.shape[-1]
    short = (width <= _rows().module.SHORT_ROW, width <= _kernels().module.SHORT_ROW, plan.smoothing == 0)
    return (type(loss), z.dtype.str, plan.reduction == "none", plan.spans_last_axis,
            getattr(arrays["scale"], "ndim", 0), arrays["labels"] is None, arrays["out"] is None, columns, short,
            _options_key(type(loss), loss.options))


@functools.lru_cache(maxsize=1024)
def _options_key(cls, options) -> tuple:
    """The part of a call's signature its options decide (cached: options records are frozen, and
    hash by identity)."""
    formula = cls.kernel_name() == "formula"  # its numeric options are constants of its code
    # a tuple option's length can be a constant of the code too (the quantile kernel's number of quantiles)
    return tuple((type(v).__name__, v if formula and isinstance(v, (int, float)) else
                  len(v) if isinstance(v, tuple) else None) for v in options.as_dict().values())


def _compile_in_background(key, loss, plan, arrays, with_grad) -> None:
    """Run the kernel once on copies of this call's (small) arrays in a background thread, so that numba
    compiles (or loads from its disk cache) the code the next calls need.

    A daemon thread, but a program's exit waits for one in which numba compiles anew (a disk-cache miss:
    :func:`_wait_at_exit_for_new_compiles`), so that numba writes the kernel to its cache. Killed
    mid-compile when a short program (the demo's regression task, a small script) ended first, every
    later run compiled the same kernel again, its calls answered by the reference meanwhile: the demo's
    regression task took 0.46-0.51 s in every run instead of 0.08-0.13 s. A thread only loading from the
    cache is not waited for: a one-call script's exit waited 0.2 s for it."""
    with _STATE_LOCK:
        if key in _STATE:
            return
        _STATE[key] = _COMPILING
    _wait_for_compiles_before_a_fork()
    copies = {k: (None if v is None else np.array(v)) for k, v in arrays.items()}

    def compile_kernel():
        _BACKGROUND.thread = True
        try:
            _wait_at_exit_for_new_compiles()
            with fused.serial(True):
                loss._kernel(plan, copies, with_grad)
            _STATE[key] = _READY
        except Exception:  # noqa: BLE001 - a failed warm-up leaves the call path to say why, synchronously
            _STATE[key] = _READY

    thread = threading.Thread(target=compile_kernel, name="losskit-compile", daemon=True)
    thread.start()
    with _STATE_LOCK:  # listed once started: a thread not yet started cannot be joined
        _THREADS.append(thread)


#: set in the background compiles' threads
_BACKGROUND = threading.local()
#: the background threads in which numba has compiled anew (a disk-cache miss), waited for at exit
_COMPILING_ANEW: set = set()


@functools.cache
def _wait_at_exit_for_new_compiles() -> None:
    """Have numba tell us (its ``numba:compile`` event, which a disk-cache hit does not raise) which
    background threads compile anew, and the program's exit wait for those (registered once, from the
    first background thread: numba is imported there). A program that ends before numba has begun the
    compile (a one-call script, while the thread builds the kernel and looks it up in the cache) does not
    wait, and the kernel is not written: waiting for every thread not yet known to load from the cache
    made a one-call script on a written cache wait 0.2 s for a load."""
    import atexit

    from numba.core import event
    from numba.core.caching import NullCache

    class NewCompiles(event.Listener):
        def on_start(self, _event):
            # a kernel that cannot be cached (a formula class made in __main__ or in a function) has
            # nothing to write: the exit does not wait for it
            cached = not isinstance(getattr(_event.data["dispatcher"], "_cache", None), NullCache)
            if cached and getattr(_BACKGROUND, "thread", False):
                with _STATE_LOCK:
                    _COMPILING_ANEW.add(threading.current_thread())

        def on_end(self, _event):
            pass

    event.register("numba:compile", NewCompiles())
    atexit.register(_join, _COMPILING_ANEW)


def wait_for_compiles(timeout: float | None = None) -> None:
    """Wait until the kernels compiling in the background are ready (benchmarks' warm-ups, tests, a fork),
    those that start meanwhile included; ``timeout`` bounds each wait. A compiling thread does not wait
    for itself."""
    _join(_THREADS, timeout)


def _join(threads, timeout: float | None = None) -> None:
    """Join each thread of ``threads`` (a list or set that grows while we wait, read under the lock until it
    holds none not yet joined) but the current one."""
    waited = set()
    while True:
        with _STATE_LOCK:
            pending = [t for t in threads if t not in waited and t is not threading.current_thread()]
        if not pending:
            return
        for thread in pending:
            thread.join(timeout)
            waited.add(thread)


@functools.cache
def _wait_for_compiles_before_a_fork() -> None:
    """Make a fork wait for the kernels compiling in the background (registered once, at the first): a
    child forked mid-compile (a multiprocessing pool, a DataLoader's workers) inherited the locks the
    compiling thread held (numba's module lock while it imports, its compiler lock) with no thread to
    release them, and hung at its own first compile. ``logging`` is imported first: its fork hook takes
    its module lock, which a compile needs, and hooks run in the reverse order of their registration, so
    ours must be registered after it (a compile imports ``logging`` otherwise, and the fork then hung). A
    hook registered after ours that takes a lock a compile needs would hang a fork the same way; none of
    the standard library's does (``concurrent.futures``' lock is its own). Two threads' first compiles at
    once may register it twice: the second wait finds nothing to wait for."""
    import logging  # noqa: F401 - for its fork hook's place in the order

    if hasattr(os, "register_at_fork"):  # POSIX (Windows does not fork)
        os.register_at_fork(before=wait_for_compiles, after_in_child=_forget_compiles)


def _forget_compiles() -> None:
    """In a forked child: no background thread came along (one started between the fork hook's wait and
    the fork itself), so a kernel still marked compiling is compiled again at its next small call rather
    than answered by the reference for ever."""
    global _STATE_LOCK
    _STATE_LOCK = threading.Lock()
    for key in [key for key, state in _STATE.items() if state == _COMPILING]:
        del _STATE[key]
    _THREADS.clear()
    _COMPILING_ANEW.clear()


def frozen(array):
    """A read-only view of ``array``: what every kernel reads is passed read-only. numba compiles a
    separate machine code for a read-only array type, so a kernel fed sometimes a read-only input
    (a memory map, a broadcast scale, a caller's frozen array) and sometimes a writable one would
    compile twice (seconds each)."""
    view = array.view()
    view.flags.writeable = False
    return view


def row_scale(scale, batch_shape, dtype):
    """The plan's scale (0-d, or one per example) as a contiguous ``[rows]`` array of ``dtype``."""
    if scale.ndim == 0:  # the common case: every example scales alike
        return np.full(math.prod(batch_shape), scale, dtype)
    return np.ascontiguousarray(np.broadcast_to(scale, batch_shape), dtype=dtype).reshape(-1)


def _back(xp, array):
    if is_numpy_namespace(xp):
        return array
    # not np.ascontiguousarray: it turns a 0-d array into a 1-d one
    return xp.from_dlpack(array if array.flags.c_contiguous else array.copy())


_RECYCLER = Recycler(keep=2)


def recycled(size: int, dtype) -> np.ndarray:
    """A flat array of ``size`` for a kernel's gradient, in memory that comes back once nothing views it (a
    fresh 0.5 GB buffer costs more in page faults than the kernel: :class:`losskit._memory.Recycler`)."""
    return _RECYCLER.empty(size, dtype)


def _grad_buffer(arrays, size, dtype):
    out = arrays["out"]
    return recycled(size, dtype) if out is None else out.reshape(-1)


class _Kernels:
    """A module of compiled kernels whose functions are each taken serial when the call runs serially."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        return fused.pick(getattr(self.module, name))


def _finish(scaled_loss, grad, flags):
    """A kernel wrapper's answer: None when a row was flagged (the reference then takes the call)."""
    return None if np.count_nonzero(flags) else (scaled_loss, grad)


@functools.cache
def _kernels():
    from ..fused import kernels

    return _Kernels(kernels)


def softmax_ce(plan, arrays, with_grad):
    """Softmax CE: rows of the class axis; probability targets run the KL kernel without its entropy."""
    z = arrays["input"]
    if z.shape[-1] == 0:
        return UNHANDLED
    if arrays["labels"] is None:
        return _dense_rows(plan, arrays, with_grad, entropy=False)
    columns = _columns(z) if arrays["out"] is None else None  # an out= kept: a row kernel writes it
    if columns is not None:
        return _softmax_ce_columns(plan, arrays, with_grad, *columns)
    z2 = np.ascontiguousarray(z).reshape(-1, z.shape[-1])
    rows = z2.shape[0]
    labels = np.ascontiguousarray(arrays["labels"], dtype=np.int64).reshape(rows)
    scale = row_scale(arrays["scale"], plan.batch_shape, z.dtype)
    scaled_loss = np.empty(rows)
    grad = _grad_buffer(arrays, z2.size, z.dtype).reshape(z2.shape) if with_grad else np.empty((1, z2.shape[1]),
                                                                                                 z.dtype)
    flags = np.zeros(rows, np.uint8)
    kernels = _kernels()
    sweep = kernels.softmax_ce_short_rows if z2.shape[1] <= kernels.module.SHORT_ROW else kernels.softmax_ce_rows
    sweep(frozen(z2), frozen(labels), frozen(scale), plan.smoothing, scaled_loss, grad, with_grad, flags)
    return _finish(scaled_loss, grad, flags)


#: a class axis between others takes :func:`~losskit.fused.kernels.softmax_ce_columns` when the axes after
#: it hold at least this many positions (its SIMD runs across them; fewer, and the moved logits are copied)
COLUMNS_FROM = 64


def _columns(z):
    """``(z3, place)``: ``z`` (the plan's logits, class axis last) as the ``[N, K, S]`` array it is a view
    of and where its class axis lies in that memory, when the classes lie between other axes with ``S >=
    COLUMNS_FROM`` positions after them in a contiguous array: ``axis=1`` of PyTorch's ``(N, C, d1, ...)``,
    or a channels-last view of such an array with ``axis=-1``; else None."""
    if z.ndim < 3 or z.flags.c_contiguous:
        return None
    for place in range(z.ndim - 2, 0, -1):  # where the class axis lay: the view it came from is contiguous
        caller = np.moveaxis(z, -1, place)
        if caller.flags.c_contiguous:
            after = math.prod(z.shape[place:-1])
            return (caller.reshape(-1, z.shape[-1], after), place) if after >= COLUMNS_FROM else None
    return None


def _softmax_ce_columns(plan, arrays, with_grad, z3, place):
    """Softmax CE of labels over a class axis between others (:func:`_columns`): the gradient written in
    the caller's layout and returned as the class-axis-last view of it that the plan's ``restore`` undoes."""
    z = arrays["input"]
    n, width, after = z3.shape
    rows = n * after
    labels = np.ascontiguousarray(arrays["labels"], dtype=np.int64).reshape(rows)
    scale = np.full(1, arrays["scale"], z.dtype) if arrays["scale"].ndim == 0 else \
        row_scale(arrays["scale"], plan.batch_shape, z.dtype)
    scaled_loss = np.empty(rows)
    grad3 = _RECYCLER.empty(z.size, z.dtype).reshape(z3.shape) if with_grad else placeholder(z.size, z.dtype)[
        None, None, :]
    flags = np.zeros(rows, np.uint8)
    _kernels().softmax_ce_columns(frozen(z3), frozen(labels), frozen(scale), plan.smoothing, scaled_loss, grad3,
                                  with_grad, flags)
    caller_shape = (*z.shape[:place], width, *z.shape[place:-1])
    return _finish(scaled_loss, np.moveaxis(grad3.reshape(caller_shape), place, -1) if with_grad else None, flags)


def _elementwise(plan, arrays, with_grad, kernel, column=None):
    """Run an elementwise ``kernel`` over the plan. Rows are an example's axis when an example
    spans it and its total is read or scaled alone, else the flat array cut in rows of about ``ROW``
    elements (a multiple of the ``column`` option's length), with any remainder as one more, shorter
    row. A kernel's ``cols`` is then not an example's length."""
    z = np.ascontiguousarray(arrays["input"]).reshape(-1)
    target = np.ascontiguousarray(arrays["dense"]).reshape(-1)
    scale, size, dtype = arrays["scale"], z.size, z.dtype
    # an example spanning the last axis needs rows of its own only when its total is read alone (reduction
    # "none") or scaled alone (a weight): otherwise rows of ROW elements, as an elementwise loss's. A row of
    # K = 1000 left 40 elements a row to LLVM's scalar remainder loop (multi-label BCE at 50000 x 1000 float32:
    # 1.3x the time of the same elements in rows of 4096)
    if plan.spans_last_axis and (plan.reduction == "none" or scale.ndim > 0):
        width = arrays["input"].shape[-1]
    else:
        width = ROW if column is None else column.shape[0] * max(1, ROW // column.shape[0])
    if width == 0:
        return UNHANDLED
    flat_scale = None if scale.ndim == 0 else row_scale(scale, plan.batch_shape, dtype)
    grad = _grad_buffer(arrays, size, dtype) if with_grad else placeholder(width, dtype)
    elements = np.empty(size, dtype) if plan.reduction == "none" and not plan.spans_last_axis else \
        placeholder(width, dtype)
    whole = size - size % width
    totals, flagged = [], False
    for start, stop, rows in ((0, whole, whole // width), (whole, size, 1)):
        if stop == start:
            continue
        cols = (stop - start) // rows
        if flat_scale is None:
            chunk_scale = np.asarray(scale, dtype=dtype).reshape(1, 1)
        elif plan.spans_last_axis:
            chunk_scale = flat_scale[start // cols: start // cols + rows].reshape(rows, 1)
        else:
            chunk_scale = flat_scale[start:stop].reshape(rows, cols)

        def part(a, start=start, stop=stop, rows=rows, cols=cols):
            return a[start:stop].reshape(rows, cols) if a.size else a.reshape(0, 0)

        out_loss, flags = np.empty(rows), np.zeros(rows, np.uint8)
        kernel(frozen(part(z)), frozen(part(target)), frozen(chunk_scale), cols, out_loss, part(elements), part(grad),
               with_grad, flags)
        flagged = flagged or bool(np.count_nonzero(flags))
        totals.append(out_loss)
    if flagged:
        return None
    return (elements if elements.size else np.concatenate(totals)), grad


def bce_logits(plan, arrays, with_grad):
    """BCE-with-logits and multi-label CE: sigmoid BCE per element, ``pos_weight`` per column."""
    pw = arrays["pos_weight"]
    column = None if pw is None or pw.ndim == 0 else pw

    def kernel(z, y, scale, cols, out_loss, elements, grad, with_grad, flags):
        if column is None:
            row_pw = np.full(cols, 1 if pw is None else pw, z.dtype)
        else:
            row_pw = np.ascontiguousarray(np.tile(column, cols // column.shape[0]), dtype=z.dtype)
        _kernels().bce_logits_rows(z, y, frozen(row_pw), scale, plan.smoothing, out_loss, elements, grad,
                                   with_grad, flags)

    return _elementwise(plan, arrays, with_grad, kernel, column)


def squared_error(plan, arrays, with_grad):
    """Squared error: each row's mean (an example spans the last axis) or each element's."""
    inv_count = 1.0 / arrays["input"].shape[-1] if plan.spans_last_axis else 1.0  # an example's D values

    def kernel(z, y, scale, cols, out_loss, elements, grad, with_grad, flags):
        _kernels().squared_error_rows(z, y, scale, inv_count, out_loss, elements, grad, with_grad, flags)

    return _elementwise(plan, arrays, with_grad, kernel)


def formula(loss, plan, arrays, with_grad):
    """An :class:`~losskit.ElementwiseLoss`: the kernel compiled from its own formula."""
    from numba.core.errors import TypingError

    from ..fused import formula as compiled

    # a formula without a derivative (a value-only class) compiles only the value's variants: the one
    # small-call variant, which writes a gradient, would not compile; a gradient is refused as the
    # reference refuses it (also under impl="fused", which would otherwise say no kernel takes the call)
    differentiable = type(loss).writes_derivative()
    if with_grad and not differentiable:
        raise NotImplementedError(f"{type(loss).__name__} writes no derivative")  # the reference's words
    opts, xp = compiled.options_tuple(loss), compiled_math(arrays["input"].dtype)
    # an example's D values (its rows may hold several examples: _elementwise)
    inv_count = 1.0 / arrays["input"].shape[-1] if loss.over_last_axis == "mean" and plan.spans_last_axis else 1.0

    def rows(z, y, scale, cols, out_loss, elements, grad, with_grad, flags):
        if fused.running_serial():
            # a small call: one variant (gradient, values and a scale per element, into scratch where the
            # call wants none) serves every small call; the extra writes cost nothing at this size, and
            # each variant left out is a compile saved (seconds, against microseconds per call)
            shape = z.shape
            grad = grad if with_grad else np.empty(shape, z.dtype)
            elements = elements if elements.size else np.empty(shape, z.dtype)
            scale = scale if scale.shape == shape else frozen(np.ascontiguousarray(np.broadcast_to(scale, shape)))
            kernel = compiled.row_kernel(type(loss), opts, False, differentiable, True, True, loss.target_domain())
        else:
            kernel = compiled.row_kernel(type(loss), opts, True, with_grad, elements.size > 0, scale.shape[1] > 1,
                                         loss.target_domain())
        try:
            kernel(xp, z, y, scale, inv_count, out_loss, elements, grad, flags)
        except TypingError as error:  # numba's screens of nested reasons, for a formula the class check let through
            raise _formula_compile_error(type(loss), error) from None

    return _elementwise(plan, arrays, with_grad, rows)


def _formula_compile_error(cls, error) -> TypeError:
    """A TypeError naming ``cls`` with the innermost reason of numba's ``error`` and where in the formula it is
    (a method called on an element, ``(z - y).clip(...)``, met numba's several screens of nested failures;
    found in review)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # numba nests the formula's own failure under its callers': the innermost reason follows the last
    # "TypingError:" (else the first line after numba's "Failed in nopython mode pipeline")
    inner = max((i for i, line in enumerate(lines) if line.startswith("TypingError:")), default=0)
    reason = lines[inner + 1] if inner + 1 < len(lines) else lines[-1]
    where = next((line.rstrip(":") for line in lines[inner + 1:] if line.startswith("File ")), None)
    return TypeError(f"{cls.__name__}: its formula does not compile into the kernel: {reason}"
                     + (f" ({where})" if where else "") + "; docs/own-loss.md lists what a formula may use")


def jsd(loss, plan, arrays, with_grad):
    """The generalised JSD (:class:`~losskit.JSDivergence`): rows of the class axis, the student's
    logits copied into the gradient's buffer and the teacher's into scratch (the kernel writes both)."""
    from ..fused.jsd import jsd_scratch

    z = arrays["input"]
    if z.shape[-1] == 0:
        return UNHANDLED
    rows, width = z.size // z.shape[-1], z.shape[-1]
    # without a gradient the student's copy is scratch: recycled too
    grad = (_grad_buffer(arrays, z.size, z.dtype) if with_grad else recycled(z.size, z.dtype)).reshape(rows, width)
    grad[...] = z.reshape(rows, width)
    # the kernel writes the teacher's copy: in recycled memory, as the gradient (a fresh 0.5 GB copy a call paid
    # its page faults every time, 1.3 -> 3.3-6.2 s at 4096 x 32000 float32 beside JAX's runs)
    teacher = recycled(z.size, z.dtype).reshape(rows, width)
    teacher[...] = np.asarray(arrays["dense"]).reshape(rows, width)
    scale = row_scale(arrays["scale"], plan.batch_shape, z.dtype)
    scaled_loss, flags = np.zeros(rows), np.zeros(rows, np.uint8)
    jsd_kernel(type(loss))(compiled_math(z.dtype), grad, teacher, jsd_scratch(rows, width, z.dtype), frozen(scale),
                           loss.beta, loss.temperature, scaled_loss, flags)  # grad, teacher and scratch all written
    return _finish(scaled_loss, grad, flags)


def jsd_kernel(cls):
    """:func:`losskit.fused.jsd.jsd_kernel` made with the formula functions of its value (called as
    ``kernel(compiled_math(dtype), student, teacher, ...)``); ``cls``, :class:`~losskit.JSDivergence` or
    a subclass, keys its disk cache (given by the caller: this module imports no loss)."""
    from ..fused import formula as compiled
    from ..fused.jsd import jsd_kernel as make
    from ._shared import logit_gap, scaled_exp_moment, scaled_expm1

    compiled_math(np.float64)
    salt, cacheable = compiled._source_salt(cls), compiled._cacheable(cls)
    return fused.pick(make(scaled_expm1, scaled_exp_moment, logit_gap, salt, cacheable))


@functools.cache
def _rows():
    from ..fused import rows

    return _Kernels(rows)


def _class_axis(plan, arrays, with_grad, full_rows):
    """The plan laid out for a kernel of :mod:`losskit.fused.rows`: ``(z [N, K], labels [N] or empty,
    dense [N, K] or empty [0, K], scale [N], grad)``, with ``grad`` the gradient's buffer when
    ``with_grad`` or ``full_rows`` (a kernel that keeps a row of scratch per row), else one scratch
    row; ``z`` copied when the gradient is written in place (``out=x``, :func:`_writable_in_place`):
    these kernels read the logits after writing the gradient."""
    z = arrays["input"]
    rows, width = z.size // z.shape[-1], z.shape[-1]
    grad = (_grad_buffer(arrays, z.size, z.dtype) if with_grad else _RECYCLER.empty(z.size, z.dtype)).reshape(
        rows, width) if with_grad or full_rows else np.empty((1, width), z.dtype)
    z2 = np.ascontiguousarray(z).reshape(rows, width)
    dense = arrays["dense"]
    dense = np.empty((0, width), z.dtype) if dense is None else \
        np.ascontiguousarray(dense, dtype=z.dtype).reshape(rows, width)
    if np.may_share_memory(grad, z2):
        z2 = z2.copy()
    labels = arrays["labels"]
    labels = np.empty(0, np.int64) if labels is None else np.ascontiguousarray(labels, dtype=np.int64).reshape(rows)
    scale = row_scale(arrays["scale"], plan.batch_shape, z.dtype)
    return frozen(z2), frozen(labels), frozen(dense), frozen(scale), grad


def kl_divergence(loss, plan, arrays, with_grad):
    """:class:`~losskit.KLDivergence`: with labels, softmax CE's kernel plus the smoothed one-hot's
    negative entropy (a constant per row); with probabilities, :func:`~losskit.fused.rows.kl_dense_rows`."""
    z = arrays["input"]
    a, width = plan.smoothing, z.shape[-1]
    if arrays["labels"] is not None:
        result = softmax_ce(plan, arrays, with_grad)
        if result is None or result is UNHANDLED:
            return result
        scaled_loss, grad = result
        high, low = 1.0 - a + a / width, a / width
        neg_entropy = high * math.log(high) + ((width - 1) * low * math.log(low) if low > 0 else 0.0)
        if neg_entropy:
            scaled_loss += np.broadcast_to(arrays["scale"], plan.batch_shape).reshape(-1) * neg_entropy
        return scaled_loss, grad
    return _dense_rows(plan, arrays, with_grad, entropy=True)


def _dense_rows(plan, arrays, with_grad, entropy):
    """Probability targets through :func:`~losskit.fused.rows.kl_dense_rows`: the KL divergence, or
    without the target's entropy the softmax CE."""
    z2, _, dense, scale, grad = _class_axis(plan, arrays, with_grad, full_rows=True)
    scaled_loss, flags = np.empty(z2.shape[0]), np.zeros(z2.shape[0], np.uint8)
    rows = _rows()
    sweep = rows.kl_dense_short_rows if z2.shape[1] <= rows.module.SHORT_ROW else rows.kl_dense_rows
    sweep(z2, dense, scale, plan.smoothing, entropy, _sum_tolerance(z2), scaled_loss, grad, flags)
    return _finish(scaled_loss, grad, flags)


def _sum_tolerance(z2) -> float:
    """The bound of ``_checks.rows_sum_to_one`` for rows of ``z2``'s length and dtype: the kernels of
    probability targets check them in their own pass (a row outside it is flagged, and the reference
    raises the precise error)."""
    return _checks.row_sum_tolerance(z2.dtype == np.float64, z2.shape[1], float(np.finfo(z2.dtype).eps))


def distillation(loss, plan, arrays, with_grad):
    """:class:`~losskit.DistillationLoss`: the teacher's logits are the dense target."""
    z2, _, teacher, scale, grad = _class_axis(plan, arrays, with_grad, full_rows=True)
    scaled_loss, flags = np.empty(z2.shape[0]), np.zeros(z2.shape[0], np.uint8)
    _distillation_kernel(type(loss))(compiled_math(z2.dtype), z2, teacher, grad, scale, loss.temperature, with_grad,
                                     scaled_loss, flags)
    return _finish(scaled_loss, grad, flags)


def compiled_math(dtype):
    """The scalar ``xp`` of compiled formulas in ``dtype``, the formula functions registered first."""
    from ..fused import formula as compiled
    from .formula import FORMULA_FUNCTIONS

    compiled.register_helpers(FORMULA_FUNCTIONS)  # before a kernel compiles: formulas may call them
    return compiled.SCALAR_MATH[np.dtype(dtype).name]


def _distillation_kernel(cls):
    """:func:`losskit.fused.rows.distillation_kernel` made with the formula functions of its near rows;
    ``cls``, :class:`~losskit.DistillationLoss` or a subclass, keys its disk cache."""
    from ..fused import formula as compiled
    from ..fused.rows import distillation_kernel
    from ._shared import EXACT_GRADIENT_BELOW, centred_kl, logit_gap, scaled_exp_moment, scaled_expm1

    compiled_math(np.float64)
    salt, cacheable = compiled._source_salt(cls), compiled._cacheable(cls)
    return fused.pick(distillation_kernel(scaled_expm1, scaled_exp_moment, centred_kl, logit_gap, EXACT_GRADIENT_BELOW,
                                          salt, cacheable))


def poly(loss, plan, arrays, with_grad):
    """:class:`~losskit.PolyCrossEntropy`, labels or probabilities."""
    z2, labels, dense, scale, grad = _class_axis(plan, arrays, with_grad, full_rows=arrays["labels"] is None)
    scaled_loss, flags = np.empty(z2.shape[0]), np.zeros(z2.shape[0], np.uint8)
    kernels = _kernels()
    if arrays["labels"] is not None:  # softmax CE's blocked rows, or its row kernel
        if z2.shape[1] <= kernels.module.SHORT_ROW:
            kernels.poly_short_rows(z2, labels, scale, plan.smoothing, loss.epsilon, scaled_loss, grad, with_grad,
                                    flags)
        else:
            kernels.softmax_ce_rows(z2, labels, scale, plan.smoothing, scaled_loss, grad, with_grad, flags,
                                    loss.epsilon)
    else:
        _rows().poly_rows(z2, dense, scale, plan.smoothing, loss.epsilon, _sum_tolerance(z2), scaled_loss,
                          grad, with_grad, flags)
    return _finish(scaled_loss, grad, flags)


def softmax_focal(loss, plan, arrays, with_grad):
    """:class:`~losskit.SoftmaxFocalLoss`: ``alpha`` as one weight per class."""
    from ..fused.rows import focal_scratch

    z = arrays["input"]
    alpha = loss.alpha
    if alpha is None or np.ndim(alpha) == 0:
        alpha = np.full(z.shape[-1], 1.0 if alpha is None else alpha, z.dtype)
    else:
        # the kernels read alpha[y] unchecked: one per class, >= 0, checked here as the reference checks it
        alpha = host(_checks.number_or_per_class(plan.xp, alpha, "alpha", plan.input))
        if alpha is None:
            return UNHANDLED
        alpha = np.ascontiguousarray(alpha, dtype=z.dtype)
    sparse = arrays["labels"] is not None and plan.smoothing == 0
    z2, labels, dense, scale, grad = _class_axis(plan, arrays, with_grad, full_rows=not sparse)
    scaled_loss, flags = np.empty(z2.shape[0]), np.zeros(z2.shape[0], np.uint8)
    kernels = _kernels()
    if sparse:  # softmax CE's blocked rows or its row kernel, then the label's term
        if z2.shape[1] <= kernels.module.SHORT_ROW:
            kernels.focal_short_rows(z2, labels, frozen(alpha), scale, float(loss.gamma), scaled_loss, grad,
                                     with_grad, flags)
        else:
            kernels.softmax_ce_rows(z2, labels, scale, 0.0, scaled_loss, grad, with_grad, flags, 0.0, frozen(alpha),
                                    float(loss.gamma))
        return _finish(scaled_loss, grad, flags)
    scratch = focal_scratch(z2.shape[0], z2.shape[1], z.dtype)
    _rows().focal_rows(z2, labels, dense, frozen(alpha), scale, plan.smoothing, float(loss.gamma), _sum_tolerance(z2),
                       scaled_loss, grad, scratch, with_grad, flags)
    return _finish(scaled_loss, grad, flags)


def crammer_singer(loss, plan, arrays, with_grad):
    """:class:`~losskit.MulticlassHingeLoss` (integer labels only)."""
    z2, labels, _, scale, grad = _class_axis(plan, arrays, with_grad, full_rows=False)
    scaled_loss, flags = np.empty(z2.shape[0]), np.zeros(z2.shape[0], np.uint8)
    _rows().crammer_singer_rows(z2, labels, scale, scaled_loss, grad, with_grad, flags)
    return _finish(scaled_loss, grad, flags)


def _units(plan, arrays, with_grad):
    """The plan laid out for a kernel of :mod:`losskit.fused.pairs`: ``(pred [N, U], target [N], scale
    [N] or [1], block, scaled_loss [B], elements [N] or empty, grad [N, U] or empty, flags [B])``, blocks
    of about :data:`ROW` elements; ``elements`` for ``reduction="none"`` only."""
    z = arrays["input"]
    units = z.shape[-1]
    n = z.size // units
    pred = np.ascontiguousarray(z).reshape(n, units)
    target = np.ascontiguousarray(arrays["dense"], dtype=z.dtype).reshape(n)
    scale = arrays["scale"]
    scale = np.asarray(scale, dtype=z.dtype).reshape(1) if scale.ndim == 0 else row_scale(scale, plan.batch_shape,
                                                                                           z.dtype)
    block = max(1, ROW // units)
    blocks = -(-n // block)
    grad = _grad_buffer(arrays, z.size, z.dtype).reshape(n, units) if with_grad else np.empty((0, units), z.dtype)
    elements = np.empty(n if plan.reduction == "none" else 0, z.dtype)
    return frozen(pred), frozen(target), frozen(scale), block, np.empty(blocks), elements, grad, np.zeros(blocks,
                                                                                                          np.uint8)


def _pairs():
    from ..fused import pairs

    return pairs


def gaussian_nll(loss, plan, arrays, with_grad):
    """:class:`~losskit.GaussianNLL`: (mean, log-variance) pairs, one target each."""
    pred, target, scale, block, totals, elements, grad, flags = _units(plan, arrays, with_grad)
    fused.pick(_pairs().gaussian_nll_blocks)(pred, target, scale, block, totals, elements, grad, with_grad, flags)
    return _finish(elements if elements.size else totals, grad, flags)


def quantile(loss, plan, arrays, with_grad):
    """:class:`~losskit.QuantileLoss`: Q units per example, one target shared by them."""
    pred, target, scale, block, totals, elements, grad, flags = _units(plan, arrays, with_grad)
    quantiles = frozen(np.asarray(loss.quantiles, dtype=pred.dtype))  # as the reference: q, then q - 1 in the dtype
    kernel = fused.pick(_pairs().quantile_blocks(pred.shape[1], scale.shape[0] > 1, with_grad, elements.size > 0))
    kernel(pred, target, quantiles, scale, block, totals, elements, grad, flags)
    return _finish(elements if elements.size else totals, grad, flags)
