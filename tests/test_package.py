"""Package-level promises: a light import, working doctests, typed, documented public names."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import losskit

# numpy.testing: array-api-compat's NumPy namespace loads it (and f2py), a tenth of a second; asked on first use
HEAVY = ("torch", "jax", "dask", "matplotlib", "scipy", "numba", "sklearn", "typer", "rich", "numpy.testing")


def test_import_losskit_imports_no_framework():
    code = (f"import sys, losskit; heavy = {HEAVY!r}; "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import losskit imported: {out.stdout.strip()}"


def _modules():
    # framework layers and the CLI import their framework on purpose: their doctests live in
    # their own test modules
    skip = ("losskit.torch", "losskit.jax", "losskit.dask", "losskit.cli", "losskit.demo")
    for info in pkgutil.walk_packages(losskit.__path__, "losskit."):
        if not info.name.startswith(skip):
            yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", losskit.__all__)
def test_every_public_name_has_a_docstring_with_shapes(name):
    obj = getattr(losskit, name)
    doc = obj.__doc__ or ""
    assert len(doc.strip()) > 40, name
    if callable(obj) and name[0].islower() and name not in ("LossInputError",):
        assert "Shape" in doc or "shape" in doc, f"{name}'s docstring gives no shapes"


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("losskit").joinpath("py.typed").is_file()
