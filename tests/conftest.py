"""Backends every core test runs on, and conversions to and from NumPy.

A backend whose library is not installed is skipped by name, with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

from losskit.losses import _compiled

# the tests compare paths to the bit (grad() against value_and_grad()): a small first call must not
# be answered by the reference while its kernel compiles in the background (tests/test_first_call.py
# turns that back on where it is tested)
_compiled.ANSWER_WHILE_COMPILING = 0

BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "dask")


@pytest.fixture(autouse=True)
def _mpmath_precision_restored():
    """Each test leaves mpmath's working precision as it found it (the 50 digits the reference modules set when
    collected): a test that set ``mp.prec = 100`` (30 digits) made a later test's references, computed with
    cancellation in them (a deviance at z = -1e-8), wrong by 41 eps, and the loss was blamed (found when the
    two met on one worker)."""
    mpmath = sys.modules.get("mpmath")
    prec = None if mpmath is None else mpmath.mp.prec
    yield
    if prec is not None:
        mpmath.mp.prec = prec

#: the environment variable that tells the xdist workers where the run's shared JAX cache is
_JAX_CACHE = "LOSSKIT_TESTS_JAX_CACHE"
#: the persistent JAX cache's bound: a run that finds it larger starts it again (a run writes about 70
#: MB). Not JAX's own bound (``jax_compilation_cache_max_size``): its eviction locks the directory and
#: reads every entry's time stamp on each write, and the suite took 998 s instead of 630 with it
_JAX_CACHE_BYTES = 1 << 30


def _shared_jax_cache():
    """The xdist workers of a run, and the runs of a checkout, share JAX's compiled programs through a
    disk cache (:func:`pytest_configure` names it): most of the JAX tests' time is XLA compiling
    programs, each eager op at each new shape included. Without it both workers compile the same ones,
    and every run compiles them all again. JAX keys a program on its HLO text, the compile options and
    the jax, jaxlib and device versions, so a changed formula is a new program: an entry is never stale."""
    path = os.environ.get(_JAX_CACHE)
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_configure(config):
    if getattr(config, "workerinput", None) is not None:
        return  # a worker: the controller named the cache (read when this module was imported)
    cache = getattr(config, "cache", None)  # pytest's cache provider (.pytest_cache), unless disabled
    if cache is not None:
        path = str(cache.mkdir("jax-compilation-cache"))
        try:
            too_large = sum(entry.stat().st_size for entry in os.scandir(path)) > _JAX_CACHE_BYTES
        except OSError:  # an entry removed while read (another run starting over)
            too_large = False
        if too_large:
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, exist_ok=True)
    else:  # this run only: removed in pytest_unconfigure
        path = config.losskit_jax_cache = tempfile.mkdtemp(prefix="losskit-tests-jax-")
    os.environ[_JAX_CACHE] = path
    if importlib.util.find_spec("jax") is not None:
        _shared_jax_cache()  # this process too (without xdist it runs the tests)


def pytest_unconfigure(config):
    path = getattr(config, "losskit_jax_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
    if getattr(config, "workerinput", None) is None:
        os.environ.pop(_JAX_CACHE, None)


if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 references need it; float32 stays float32
    _shared_jax_cache()


def _module_for(backend: str) -> str:
    return {"dask": "dask.array"}.get(backend, backend)


def backend_available(backend: str) -> bool:
    top = _module_for(backend).split(".")[0]
    return importlib.util.find_spec(top) is not None


def to_backend(backend: str, array: np.ndarray):
    """A copy of ``array`` in ``backend`` (NumPy copies are made read-only: no writes allowed)."""
    array = np.array(array)
    if backend == "numpy":
        array.setflags(write=False)
        return array
    if backend == "array_api_strict":
        import array_api_strict as xps

        return xps.asarray(array)
    if backend == "torch":
        import torch

        return torch.from_numpy(array)
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    if backend == "dask":
        import dask.array as da

        chunks = tuple(max(1, s // 2) for s in array.shape) if array.ndim else ()
        return da.from_array(array, chunks=chunks)
    raise ValueError(backend)


def to_numpy(array) -> np.ndarray:
    if hasattr(array, "compute"):
        array = array.compute()
    if type(array).__module__.startswith("torch"):
        array = array.detach().cpu()
        return (array.float() if array.dtype.is_floating_point and array.itemsize == 2 else array).numpy()
    if type(array).__module__.startswith("array_api_strict"):
        return np.from_dlpack(array)
    return np.asarray(array)


def to_numpy_all(*arrays) -> list[np.ndarray]:
    """:func:`to_numpy` of each; Dask arrays computed in one graph, so that a loss's value, gradient
    and Hessian share their forward instead of each computing it again."""
    if any(hasattr(a, "compute") for a in arrays):
        import dask

        arrays = dask.compute(*arrays)
    return [to_numpy(a) for a in arrays]


def library_of(array) -> str:
    module = type(array).__module__
    for name in ("array_api_strict", "torch", "jax", "dask", "numpy"):
        if module.startswith(name) or (name == "jax" and module.startswith("jaxlib")):
            return name
    return module


def dtype_of(backend: str, name: str):
    if backend == "numpy" or backend == "dask":
        return np.dtype(name)
    if backend == "array_api_strict":
        import array_api_strict as xps

        return getattr(xps, name)
    if backend == "torch":
        import torch

        return getattr(torch, name)
    if backend == "jax":
        import jax.numpy as jnp

        return getattr(jnp, name)
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request):
    if not backend_available(request.param):
        pytest.skip(f"{request.param} is not installed")
    return request.param
