"""The kernels compiled from a loss's formula are cached on disk: a second process loads them.

numba keys a cached function on its bytecode and its closure's pickled contents; the formula kernel's
closure holds the formula's functions (pickled by module and name), the options' named tuple (a type
kept in losskit.fused.formula) and a salt made from the source of the modules the formula is written
in, so that an edited formula never loads a stale kernel.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

import losskit as lk  # noqa: E402
from losskit.fused import formula  # noqa: E402

LOSS_MODULE = '''
import losskit as lk


class CachedQuarticLoss(lk.ElementwiseLoss):
    """(z - y)^4 ({tag}) {note}: not registered (no name), so no other test meets it"""
    target = "value"

    def value(self, xp, z, y):
        return (z - y) ** 4

    def derivative(self, xp, z, y):
        return 4 * (z - y) ** 3

    def second_derivative(self, xp, z, y):
        return 12 * (z - y) ** 2
'''

RUN = '''
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from losskit.losses import _compiled
_compiled.ANSWER_WHILE_COMPILING = 0
from cached_quartic import CachedQuarticLoss
from losskit.fused import formula
kernels = []
make = formula.row_kernel
formula.row_kernel = lambda *args: kernels.append(make(*args)) or kernels[-1]
z = np.linspace(-2, 2, 64)
value, grad = CachedQuarticLoss(impl="fused", reduction="sum").value_and_grad(z, np.zeros(64))
(kernel,) = set(kernels)
print(repr(float(value)), sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
'''


def _write_loss(folder, tag, note=""):
    (folder / "cached_quartic.py").write_text(LOSS_MODULE.format(tag=tag, note=note))


def _run(folder, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", RUN, str(folder)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def test_a_second_process_loads_the_kernel_and_an_edited_formula_recompiles(tmp_path):
    module_dir, cache_dir = tmp_path / "mod", tmp_path / "cache"
    module_dir.mkdir()
    _write_loss(module_dir, "a")
    exact = float(np.sum(np.linspace(-2, 2, 64) ** 4))
    first = _run(module_dir, cache_dir)
    second = _run(module_dir, cache_dir)
    assert first[0] == pytest.approx(exact, rel=1e-14) and second[0] == first[0]
    assert (first[1], second[1]) == (0, 1)  # compiled, then loaded from disk
    assert second[2] == 0
    _write_loss(module_dir, "a", note="edited")  # the module's source changed: not the cached kernel
    assert _run(module_dir, cache_dir)[1] == 0


def test_the_salt_follows_the_source_of_the_formulas_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_loss(tmp_path, "b")
    module = importlib.import_module("cached_quartic")
    before = formula._source_salt(module.CachedQuarticLoss)
    _write_loss(tmp_path, "c", note="edited")
    importlib.invalidate_caches()
    module = importlib.reload(module)
    assert formula._source_salt(module.CachedQuarticLoss) not in (before, 0)
    sys.modules.pop("cached_quartic")


def test_a_loss_made_inside_a_function_is_compiled_but_not_cached():
    class LocalQuarticLoss(lk.ElementwiseLoss):
        target = "value"

        def value(self, xp, z, y):
            return (z - y) ** 4

        def derivative(self, xp, z, y):
            return 4 * (z - y) ** 3

    assert not formula._cacheable(LocalQuarticLoss)
    assert formula._cacheable(lk.HuberLoss)
    value, grad = LocalQuarticLoss(impl="fused", reduction="none").value_and_grad(np.array([3.0]), np.array([1.0]))
    assert (float(value[0]), float(grad[0])) == (16.0, 32.0)


def test_options_tuples_pickle_by_reference_as_the_same_bytes():
    import pickle

    opts = formula.options_tuple(lk.HuberLoss(delta=2.5))
    data = pickle.dumps(opts)
    assert pickle.loads(data) == opts and b"losskit.fused.formula" in data
    assert pickle.dumps(formula.options_tuple(lk.HuberLoss(delta=2.5))) == data
    assert pickle.dumps(formula.options_tuple(lk.HuberLoss(delta=3.0))) != data



@pytest.mark.parametrize(("define", "read"), [("K = {}", "K"), ("import numpy as np\nK = np.float32({})", "K"),
                                             ("K = ({}, 1.0)", "K[0]")])
def test_the_disk_cache_key_holds_the_numbers_a_formula_imports(tmp_path, monkeypatch, define, read):
    """numba freezes a global number into the machine code, and keyed the cached kernel on the source of the
    formula's own module alone: ``from consts import K``, K changed in consts.py, and a new process loaded the
    kernel of the old K (the array path read the new one). The salt now holds the numbers the formula reads: a
    float, a NumPy scalar, a tuple of numbers."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "lossmod_salt_test.py").write_text(
        "import losskit as lk\nfrom consts_salt_test import K\n\n\nclass KLoss(lk.ElementwiseLoss):\n"
        f"    def value(self, xp, z, y):\n        return {read} * (z - y) * (z - y)\n\n"
        f"    def derivative(self, xp, z, y):\n        return 2 * {read} * (z - y)\n")
    salts = []
    for k in (1.0, 5.25, 5.25):  # (sizes differ: a .pyc of the same size and second would be reused)
        (tmp_path / "consts_salt_test.py").write_text(define.format(k) + "\n")
        for name in ("lossmod_salt_test", "consts_salt_test"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        salts.append(formula._source_salt(importlib.import_module("lossmod_salt_test").KLoss))
    for name in ("lossmod_salt_test", "consts_salt_test"):
        sys.modules.pop(name, None)
    assert salts[0] != salts[1] and salts[1] == salts[2] and 0 not in salts
