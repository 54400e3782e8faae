"""numba's disk cache keyed on the whole fused package (losskit/fused/_diskcache.py): an edit of any
module of the package changes every kernel's key; numba's own places (NUMBA_CACHE_DIR first) are kept;
functions elsewhere keep numba's locators."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

numba = pytest.importorskip("numba")

from losskit import fused  # noqa: E402
from losskit.fused import _diskcache, kernels, rows  # noqa: E402


def _locator(dispatcher):
    return dispatcher._cache._impl.locator


def test_every_module_of_the_package_is_in_the_stamp(tmp_path):
    for path in _diskcache.PACKAGE.glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("a file that is not a module")
    before = _diskcache.package_stamp(tmp_path)
    (tmp_path / "notes.txt").write_text("changed")
    _diskcache.package_stamp.cache_clear()
    assert _diskcache.package_stamp(tmp_path) == before  # only the modules count
    for name in ("vmath.py", "kernels.py", "rows.py"):
        _diskcache.package_stamp.cache_clear()
        source = (tmp_path / name).read_text()
        (tmp_path / name).write_text(source + "\n# an edit\n")
        assert _diskcache.package_stamp(tmp_path) != before, name
        (tmp_path / name).write_text(source)
    _diskcache.package_stamp.cache_clear()
    assert _diskcache.package_stamp(tmp_path) == before


def test_the_kernels_are_keyed_on_the_package_not_their_file():
    assert _diskcache.LOCATORS, "numba's locator classes were not found: the stamp is the file's alone"
    twin = fused.serial_twin(kernels.softmax_ce_rows)  # compiled from kernels.py's code under another name
    for dispatcher in (kernels.softmax_ce_rows, kernels.bce_logits_rows, rows.kl_dense_rows, twin):
        locator = _locator(dispatcher)
        assert type(locator) in _diskcache.LOCATORS
        assert locator.get_source_stamp() == _diskcache.package_stamp()
        if not numba.config.CACHE_DIR:  # NUMBA_CACHE_DIR set: there (the last test)
            assert locator.get_cache_path() == os.path.join(str(_diskcache.PACKAGE), "__pycache__")


def test_a_function_elsewhere_keeps_numbas_locator(tmp_path):
    module = tmp_path / "elsewhere.py"
    module.write_text("import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    spec = importlib.util.spec_from_file_location("elsewhere", module)
    elsewhere = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(elsewhere)
    locator = _locator(elsewhere.twice)
    assert type(locator) not in _diskcache.LOCATORS
    assert locator.get_source_stamp() != _diskcache.package_stamp()


def test_numba_cache_dir_is_still_where_the_kernels_go(tmp_path):
    code = ("from losskit.fused import kernels; "
            "print(kernels.softmax_ce_rows._cache._impl.locator.get_cache_path())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=True)
    assert done.stdout.strip().startswith(str(tmp_path))
