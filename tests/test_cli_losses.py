"""``losskit demo --loss NAME`` and ``losskit plot losses --task T`` (issue 8)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("matplotlib")

import losskit as lk  # noqa: E402
from losskit.cli.figures import _curves  # noqa: E402
from losskit.demo import demo_losses, run  # noqa: E402
from test_cli import assert_one_line_error, assert_png, run_cli  # noqa: E402


@pytest.mark.parametrize(("task", "loss", "cls"), [("binary", "focal", "SigmoidFocalLoss"),
                                                   ("multiclass", "hinge", "MulticlassHingeLoss"),
                                                   ("multilabel", "squared_hinge", "MultilabelSquaredHingeLoss"),
                                                   ("regression", "huber", "HuberLoss"),
                                                   ("regression", "poisson", "PoissonDeviance"),
                                                   ("regression", "quantile", "QuantileLoss"),
                                                   ("regression", "gaussian_nll", "GaussianNLL")])
def test_demo_trains_with_the_chosen_loss_and_beats_the_baseline(capsys, tmp_path, task, loss, cls):
    code, out, err = run_cli(capsys, "demo", "--task", task, "--loss", loss, "--epochs", "30", "--out",
                             str(tmp_path), "--json")
    assert code == 0, err
    result = json.loads(out)["tasks"][task]
    assert result["loss"] == cls
    assert result["train_loss"][-1] < result["train_loss"][0]
    for metric, value in result["metrics"].items():
        assert value > result["baseline"][metric] + 0.1, (metric, value)
    assert_png(tmp_path / "loss_curves.png")


def test_every_demo_loss_of_every_task_runs():
    for task in ("binary", "multiclass", "multilabel", "regression"):
        for loss in demo_losses(task):
            result = run(task, epochs=1, loss=loss)
            assert np.isfinite(result.train_loss).all() and result.train_loss[-1] < result.train_loss[0], (task, loss)


@pytest.mark.parametrize(("args", "flag", "fragment"), [
    (["demo", "--loss", "huber"], "--loss", "expected a single --task"),
    (["demo", "--task", "binary", "--loss", "huber"], "--loss", "expected a loss of the binary task"),
    (["demo", "--task", "multiclass", "--loss", "distillation"], "--loss", "expected a loss of the multiclass"),
    (["plot", "losses", "--task", "ranking"], "--task", "'ranking' is not one of"),
])
def test_a_loss_of_another_task_is_refused_before_any_work(capsys, tmp_path, monkeypatch, args, flag, fragment):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args)
    assert_one_line_error(code, out, err, f"losskit: error: {flag}: ", fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression"])
def test_plot_losses_draws_every_loss_of_the_task_and_its_gradient(capsys, tmp_path, task):
    target = tmp_path / f"losses-{task}.png"
    code, out, err = run_cli(capsys, "plot", "losses", "--task", task, "--out", str(target), "--json")
    assert code == 0, err
    assert_png(target)
    x = np.linspace(-3, 3, 61)
    curves = _curves(task, x)
    assert len(curves) >= 4
    assert any("ASL" in label for label, *_ in curves) == (task == "multilabel")  # multi-label's own loss
    for label, _, value, grad in curves:  # each curve is the loss's value and its own gradient
        assert value.shape == grad.shape == x.shape, label
        jump = np.abs(np.diff(grad)) > 0.2  # piecewise losses: skip the points beside a kink
        near = np.zeros(len(x), dtype=bool)
        near[:-1] |= jump
        near[1:] |= jump
        near |= np.roll(near, 1) | np.roll(near, -1)
        near[[0, -1]] = True  # one-sided differences at the ends
        np.testing.assert_allclose(np.gradient(value, x)[~near], grad[~near], atol=0.05, err_msg=label)


@pytest.mark.parametrize("loss, pred", [("poisson", ["log_pred"]), ("gamma", ["log_pred"]),
                                        ("quantile", ["quantile_*"]), ("gaussian_nll", ["pred", "log_variance"])])
def test_the_demos_regression_files_score_with_the_loss_they_trained_on(capsys, tmp_path, loss, pred):
    """The demo writes a regression head's outputs as its loss reads them, in the data's units, beside
    ``pred``: ``lk.evaluate(file, loss=..., pred=...)`` gives the demo's held-out loss moved to those units
    (a deviance's by the training mean it was divided by, the pinball loss by the training standard
    deviation, the Gaussian NLL by its log) and the same R^2. Before, eval read the mean as a log-mean
    (loss 2.4e131, R^2 -2.7e260) and a one-quantile column as the wrong shape."""
    pa = pytest.importorskip("pyarrow")  # noqa: F841 - the predictions file
    from losskit.demo import load

    code, out, err = run_cli(capsys, "demo", "--task", "regression", "--loss", loss, "--epochs", "3",
                             "--out", str(tmp_path), "--json")
    assert code == 0, err
    result = json.loads(out)["tasks"]["regression"]
    y = load("regression").y_train
    expected = {"poisson": result["val_loss"][-1] * y.mean(), "gamma": result["val_loss"][-1],
                "quantile": result["val_loss"][-1] * y.std(),
                "gaussian_nll": result["val_loss"][-1] + np.log(y.std())}[loss]
    report = lk.evaluate([str(tmp_path / "predictions.parquet")], loss=loss, pred=pred)
    assert report.metrics["loss"] == pytest.approx(expected, rel=1e-9)
    assert report.metrics["r2"] == pytest.approx(result["metrics"]["R^2"], rel=1e-12)
