"""Numbered claims of README.md and docs/*.md that no other test pinned (tests/CLAIMS.md lists them
all, claim -> test). References: hand-worked values and the docs' own tables."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import losskit as lk

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLI_DOC = (ROOT / "docs" / "cli.md").read_text()


def test_readme_demo_figures_are_the_ones_docs_cli_records():
    """README's demo table and eval line repeat docs/cli.md's measured run, which
    test_demo.py::test_default_run_meets_the_goals_and_docs_record_it holds to the real run."""
    rows = {task: re.search(rf"^\| {task} \| [^|]+ \| [^|]+ -> ([\d.]+) \| [^|]*?(?:accuracy|R\^2) ([\d.]+)", CLI_DOC, re.M)
            for task in ("binary", "multiclass", "multilabel", "regression")}
    for readme_task, task in (("binary", "binary"), ("multi-class", "multiclass"), ("multi-label", "multilabel"),
                              ("regression", "regression")):
        metric = rows[task].group(2)
        assert re.search(rf"^\| {readme_task} \| [^|]+ \| [^|]*{re.escape(metric)} \(>= ", README, re.M), \
            (readme_task, metric)
    line = re.search(r"losskit eval losskit-demo/predictions.parquet\s+# .*loss ([\d.]+), accuracy ([\d.]+)", README)
    assert line and line.groups() == (rows["multiclass"].group(1), rows["multiclass"].group(2))


@pytest.mark.parametrize(("dtype", "base"), [(np.float64, 1e-6), (np.float32, 1e-3)])
def test_probability_rows_sum_to_one_within_the_documented_tolerance(dtype, base):
    """docs/losses.md: rows sum to 1 within 1e-6 (float64) or 1e-3 (lower precision), plus 8 sqrt(K) eps."""
    k = 4
    tol = base + 8 * np.sqrt(k) * float(np.finfo(dtype).eps)
    labels = np.array([0])
    for off, ok in ((0.9 * tol, True), (1.1 * tol, False), (-0.9 * tol, True), (-1.1 * tol, False)):
        row = np.full((1, k), 0.25) + np.array([[off, 0.0, 0.0, 0.0]])
        row = row.astype(dtype)
        assert abs(float(row.astype(np.float64).sum()) - 1) == pytest.approx(abs(off), rel=1e-3)
        if ok:
            assert np.isfinite(lk.categorical_cross_entropy(row, labels))
        else:
            with pytest.raises(lk.LossInputError, match="sum to 1"):
                lk.categorical_cross_entropy(row, labels)


def test_probability_gradients_have_their_denominators_floored_at_1e_12():
    """docs/losses.md: -w+ y'/p + (1 - y')/(1 - p) and y'/p^2 + ..., p and 1 - p floored at 1e-12:
    finite everywhere, exact on [1e-12, 1 - 1e-12]."""
    bce = lk.BinaryCrossEntropy(reduction="none")
    p, y = np.array([0.0, 1.0, 1e-12, 0.25]), np.array([1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(bce.grad(p, y), [-1e12, 1e12, -1e12, -4.0])
    np.testing.assert_allclose(bce.hessian_diag(p, y), [1e24, 1e24, 1e24, 16.0], rtol=1e-15)
    np.testing.assert_array_equal(bce(p, y), [100.0, 100.0, -np.log(1e-12), -np.log(0.25)])  # log floored at -100
    cce = lk.CategoricalCrossEntropy(reduction="none")
    probs = np.array([[0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_array_equal(cce.grad(probs, np.array([0, 1])), [[-1e12, 0.0], [0.0, -2.0]])
    np.testing.assert_array_equal(cce(probs, np.array([0, 1])), [100.0, np.log(2.0)])


@pytest.mark.parametrize("impl", ["auto", "xp"])
def test_a_weight_zero_padded_row_of_minus_inf_logits_adds_exactly_zero(impl):
    """docs/losses.md: "A weight-0 example adds exactly 0 even when its own loss is infinite (e.g. a
    padded row of -inf logits)"."""
    z = np.array([[0.0, np.log(3.0)], [-np.inf, -np.inf]])
    loss = lk.SoftmaxCrossEntropy(impl=impl)
    for reduction in ("sum", "mean"):
        value, grad = loss.replace(reduction=reduction).value_and_grad(z, np.array([1, 0]), weight=np.array([1.0, 0.0]))
        assert float(value) == pytest.approx(np.log(4 / 3), rel=1e-15)  # p_1 = 3/4
        np.testing.assert_allclose(grad, [[0.25, -0.25], [0.0, 0.0]], rtol=1e-15)


def test_all_weights_zero_give_zero_and_gradient_zero_never_nan():
    """docs/losses.md: D = 0 gives value 0 and gradient 0, never NaN (here with +-inf logits too)."""
    z = np.array([[np.inf, 0.0], [-np.inf, 1.0]])
    value, grad = lk.SoftmaxCrossEntropy().value_and_grad(z, np.array([1, 0]), weight=np.zeros(2))
    assert float(value) == 0.0 and np.all(grad == 0)


def test_every_test_claims_md_names_exists():
    """tests/CLAIMS.md maps each claim to tests: each ``file.py::name`` it names (``*`` a wildcard)
    must be a test function of that file, so the table cannot point at nothing."""
    text = (ROOT / "tests" / "CLAIMS.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::([\w*]+)", text)
    assert len(named) > 50
    missing = []
    for filename, name in named:
        source = (ROOT / "tests" / filename).read_text()
        pattern = name.replace("*", r"\w*")
        if not re.search(rf"^def {pattern}\(", source, re.M):
            missing.append(f"{filename}::{name}")
    files = set(re.findall(r"`(test_\w+\.py)", text))
    missing += [f for f in files if not (ROOT / "tests" / f).exists()]
    assert not missing, missing
