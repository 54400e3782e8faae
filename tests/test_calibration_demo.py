"""losskit demo's temperature: fitted on a calibration split carved from the training data (never
trained on), held-out NLL and ECE before and after, and the calibration JSON that chains into
losskit eval --calibration."""

import json

import numpy as np
import pytest

import losskit as lk
from losskit.demo import run
from losskit.demo.data import load
from losskit.demo.train import CALIBRATION_FRACTION


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_demo_fits_a_temperature_on_a_carved_split(task):
    result = run(task, epochs=3)
    full = load(task, 0)
    cal = result.calibration
    assert cal["n_calibration"] == round(CALIBRATION_FRACTION * len(full.x_train))
    assert result.n_train + cal["n_calibration"] == len(full.x_train)  # carved out, not trained on
    assert cal["nll_before"] == pytest.approx(result.val_loss[-1], rel=1e-12)
    assert cal["temperature"] > 0 and np.isfinite(cal["nll_after"]) and 0 <= cal["ece_after"] <= 1
    assert result.calibrator.params["temperature"] == cal["temperature"]
    assert "calibration" in result.to_dict() and "calibrator" not in result.to_dict()


@pytest.mark.parametrize(("task", "loss"), [("binary", "hinge"), ("multiclass", "hinge"), ("multiclass", "kl")])
def test_the_nll_is_the_likelihood_whatever_loss_trained(task, loss):
    # the held-out NLL is the labels' log-likelihood under the logits' softmax/sigmoid (SciPy's log-softmax;
    # not scikit-learn's log loss, which clips a probability below 2.2e-16), not the training loss (a hinge's
    # value): before, and after dividing the logits by the temperature
    special = pytest.importorskip("scipy.special")
    result = run(task, epochs=3, loss=loss)
    cal, columns = result.calibration, result.predictions
    target = columns["target"]
    if task == "binary":
        logits = columns["logit"][:, None] * np.array([-0.5, 0.5])  # softmax of (-z/2, z/2) is the sigmoid of z
    else:
        logits = np.stack([columns[f"logit_{k}"] for k in range(10)], axis=1)

    def log_loss(z):
        return -special.log_softmax(z, axis=1)[np.arange(len(z)), target].mean()

    assert cal["nll_before"] == pytest.approx(log_loss(logits), rel=1e-9)
    assert cal["nll_after"] == pytest.approx(log_loss(logits / cal["temperature"]), rel=1e-9)
    if loss == "hinge":  # (KL from one-hot targets is the cross-entropy itself)
        assert cal["nll_before"] != pytest.approx(result.val_loss[-1], rel=1e-3)


def test_other_tasks_have_no_calibration():
    assert run("regression", epochs=1).calibration is None


def test_demo_calibration_chains_into_eval(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from losskit.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--task", "binary", "--epochs", "5", "--out", str(out), "--json"]) == 0
    demo = json.loads(capsys.readouterr().out)["tasks"]["binary"]["calibration"]
    saved = lk.Calibration.from_json((out / "calibration.json").read_text())
    assert saved.params["temperature"] == demo["temperature"]
    assert main(["eval", str(out / "predictions.parquet"), "--calibration", str(out / "calibration.json"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["loss"] == pytest.approx(demo["nll_after"], rel=1e-9)
    assert report["before"]["loss"] == pytest.approx(demo["nll_before"], rel=1e-9)
    assert report["metrics"]["ece"] == pytest.approx(demo["ece_after"], rel=1e-9)
