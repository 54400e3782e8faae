"""benchmarks/_agree.py: the benchmark harness refuses to time an implementation that disagrees.

The smoke run (tests/test_benchmarks_smoke.py) passes every real implementation through the check;
here, the check itself: it accepts what is right, in either result order, and names what is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _agree  # noqa: E402
from benchmarks.__main__ import _inputs, implementations  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("kind", ["ce", "bce", "multilabel", "mse"])
def test_the_numpy_implementations_agree_and_wrong_ones_are_named(kind):
    arrays = _inputs(kind, (32, 20), RNG)
    impls = {name: fn for name, (fn, library) in implementations(kind).items() if library == "numpy"}
    results = {name: fn(*arrays) for name, fn in impls.items()}
    assert _agree.check(kind, arrays, results) == list(results)
    value, grad = results["losskit"]
    wrong = {
        "gradient not divided by N": (value, grad * arrays[0].shape[0]),
        "sum for mean": (float(value) * arrays[0].shape[0], grad),
        "one entry off": (value, np.where(np.arange(grad.size).reshape(grad.shape) == 7, grad * 1.01, grad)),
    }
    for name, result in wrong.items():
        with pytest.raises(AssertionError, match=name):
            _agree.check(kind, arrays, {name: result})


def test_a_gradient_first_result_is_read_in_its_order():
    arrays = _inputs("ce", (16, 9), RNG)
    value, grad = _agree.reference("ce", *arrays)
    assert _agree.check("ce", arrays, {"grad_and_value": (grad.astype(np.float32), np.float32(value))})


def test_the_linear_implementations_agree_and_a_wrong_one_is_named():
    from benchmarks.__main__ import _linear_impls

    impls = _linear_impls()
    checked = _agree.check_linear(impls, (64, 32, 500))
    assert "losskit linear_cross_entropy" in checked and not any("floor" in name for name in checked)
    fn, convert = impls["losskit linear_cross_entropy"]

    def doubled(*args):
        value, (dh, dw, db) = fn(*args)
        return value, (2 * dh, dw, db)

    with pytest.raises(AssertionError, match="d hidden"):
        _agree.check_linear({"doubled": (doubled, convert)}, (64, 32, 500))
