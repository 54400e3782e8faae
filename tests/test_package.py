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
    skip = ("losskit.torch", "losskit.jax", "losskit.dask", "losskit.cli", "losskit.demo",
            "losskit.__main__")  # (python -m losskit: importing it runs the command)
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


def test_dir_lists_every_public_name_the_lazy_ones_too():
    """Tab completion reads dir(): evaluate, calibrate and Calibration are loaded on first use (module
    __getattr__) and were missing from it."""
    assert set(losskit.__all__) <= set(dir(losskit))
    assert {"evaluate", "calibrate", "Calibration"} <= set(dir(losskit))


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("losskit").joinpath("py.typed").is_file()


def _module_imports():
    """Every module of the package -> the package's modules it imports, read from the source (imports inside
    functions included: a lazy import is still a dependency), ``from X import name`` going to the submodule
    ``X.name`` where there is one and to ``X`` otherwise."""
    import ast
    from pathlib import Path

    root = Path(losskit.__file__).parent
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                origin = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in names else origin)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def test_no_module_imports_itself_through_a_chain_of_imports():
    """The package's import graph has no circle (a module that, through a chain of the imports its
    modules write, imports itself), so that each module can be read, tested and loaded after the ones
    it uses. Not modelled: the ``__init__`` of each package on an import's way, and
    ``importlib.import_module`` calls (the CLI's, the torch layer's)."""
    graph = _module_imports()
    assert graph["losskit.losses._compiled"] and graph["losskit.losses.distribution"]  # the reading works
    # Tarjan's strongly connected components: a component of more than one module is a circle
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles
