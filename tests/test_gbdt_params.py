"""``losskit.xgboost.params`` / ``losskit.lightgbm.params``: each built-in objective named there is
the loss it is declared to be. The check is on the loss's minimiser, which defines it: started at
losskit's best constant margin, one boosting round of the built-in (one leaf, no regularisation,
learning rate 1) does not move (the built-in's gradient sums to 0 where ours does); started half a
unit away, it moves back towards it. A built-in of another loss would move off the optimum."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import losskit as lk

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
import losskit.lightgbm as ll  # noqa: E402
import losskit.xgboost as lx  # noqa: E402

N = 2000
RNG = np.random.default_rng(3)
# one feature that splits the rows into the sample under test and a second draw: the first leaf of a
# depth-1 tree holds exactly the sample, so its value is the one-leaf step from the start (the
# libraries fit no tree of a single leaf, and a split needs two halves that differ)
X = np.repeat([[0.0], [1.0]], N, axis=0)


def _target(loss):
    if isinstance(loss, lk.SoftmaxCrossEntropy):
        return RNG.choice(3, size=N, p=[0.2, 0.5, 0.3]).astype(float)
    if isinstance(loss, lk.BinaryCrossEntropyWithLogits):
        return (RNG.uniform(size=N) < 0.3).astype(float)
    if isinstance(loss, lk.PoissonDeviance):
        return RNG.poisson(2.5, size=N).astype(float)
    if loss.link is lk.LOG:
        return RNG.gamma(2.0, 1.5, size=N)
    return RNG.standard_t(2, size=N) + 1.0


def _best(loss, y):
    if isinstance(loss, lk.SoftmaxCrossEntropy):  # per class: the log of its frequency (up to a shift)
        return np.log(np.bincount(y.astype(int), minlength=3) / N)
    return np.array([loss.best_constant(y)])


def _step(library, params, loss, y, start):
    """The margin change of one boosting round of the built-in started at margin ``start``."""
    k = start.size
    y = np.concatenate([y, _target(loss)])
    if library == "xgboost":
        data = xgb.DMatrix(X, label=y, base_margin=np.tile(start, (2 * N, 1)) if k > 1 else np.full(2 * N, start[0]))
        booster = xgb.train({**params, "max_depth": 1, "min_child_weight": 0.0, "lambda": 0.0, "eta": 1.0,
                             "max_delta_step": 0.0, "nthread": 1}, data, 1)
        # predicting on the same DMatrix adds its base_margin (base_score is not used where one is given)
        return booster.predict(data, output_margin=True)[0] - start
    data = lgb.Dataset(X, y, init_score=np.tile(start, (2 * N, 1)) if k > 1 else np.full(2 * N, start[0]))
    booster = lgb.train({**params, "num_leaves": 2, "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0.0,
                         "lambda_l2": 0.0, "learning_rate": 1.0,
                         "boost_from_average": False, "verbose": -1, "num_threads": 1,
                         "poisson_max_delta_step": 1e-12}, data, 1)
    return booster.predict(X[:1], raw_score=True)[0]


CASES = [lk.MeanSquaredError(), lk.BinaryCrossEntropyWithLogits(), lk.SoftmaxCrossEntropy(), lk.AbsoluteError(),
         lk.QuantileLoss(quantiles=0.8), lk.PoissonDeviance(), lk.GammaDeviance(), lk.TweedieDeviance(power=1.5),
         lk.PseudoHuberLoss(delta=0.5), lk.HuberLoss(delta=0.5)]


PAIRS = [(library, loss) for library in ("xgboost", "lightgbm") for loss in CASES if loss.gbdt_builtin(library)]


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_params_give_the_custom_objective_where_the_library_has_no_builtin(library):
    module = lx if library == "xgboost" else ll
    for loss in CASES + [lk.ExponentialLoss(), lk.HingeLoss()]:
        params = module.params(loss, num_class=3)
        assert callable(params["objective"]) == (loss.gbdt_builtin(library) is None), type(loss).__name__


def _documented_builtins() -> dict:
    """docs/gbdt.md's table of built-ins, read from the doc: class name -> (XGBoost's, LightGBM's)
    objective at the class's default options, None where the cell says custom."""
    text = (Path(__file__).parents[1] / "docs" / "gbdt.md").read_text()
    rows = text.split("| loss | XGBoost | LightGBM |", 1)[1].split("\n\n", 1)[0].strip().splitlines()[1:]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z]\w+)", cells[0])  # the class names, not an option named in the cell
        per_library = [[re.match(r"`([^`]+)`", part.strip()) for part in cell.split(" / ")] for cell in cells[1:]]
        for k, name in enumerate(names):
            table[name] = tuple(None if len(parts) <= k or parts[k] is None else parts[k].group(1)
                                for parts in (p if len(p) == len(names) else p * len(names) for p in per_library))
    return table


def test_every_registered_loss_has_exactly_the_documented_builtins():
    """Poly-1 and KL subclass softmax CE and inherited its built-in: params gave multi:softprob, which
    trains plain CE (a silently different objective). A built-in is now the declaring class's alone."""
    documented = _documented_builtins()
    assert len(documented) == 10 and documented["GammaDeviance"] == ("reg:gamma", "gamma")  # the parse
    for name, (cls, *_) in lk.REGISTRY.items():
        loss = cls()
        expected = documented.get(cls.__name__, (None, None))
        for module, builtin in zip((lx, ll), expected, strict=True):
            objective = module.params(loss, num_class=3)["objective"]
            assert (objective if isinstance(objective, str) else None) == builtin, (name, module.__name__)
    for module in (lx, ll):
        head = lk.head("multiclass", n_classes=3, loss="poly")
        assert callable(module.params(head, num_class=3)["objective"])


def test_a_custom_objective_from_params_trains_through_xgb_train_obj_as_docs_gbdt_says():
    """docs/gbdt.md: xgb.train takes a custom params' objective as ``obj`` (in the parameters themselves
    it is XGBoost's "Unknown objective function"); 20 rounds lower the training loss."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = x[:, 0] + rng.standard_t(2, size=400)
    loss = lk.HuberLoss(delta=1.0)
    data = xgb.DMatrix(x, label=y)
    with pytest.raises(xgb.core.XGBoostError, match="Unknown objective function"):
        xgb.train(lx.params(loss), data, 2)
    p = lx.params(loss)
    p["base_score"] = 0.0  # the margin starts at 0, as the comparison below does
    booster = xgb.train(p, data, 20, obj=p.pop("objective"))  # the docs' form: the pop runs before the call
    margin = booster.predict(data, output_margin=True)
    assert float(loss(margin, y)) < 0.8 * float(loss(np.zeros_like(y), y))


@pytest.mark.parametrize(("library", "loss"), PAIRS, ids=[f"{type(loss).__name__}-{lib}" for lib, loss in PAIRS])
def test_builtin_has_the_declared_loss_minimiser(library, loss):
    module = lx if library == "xgboost" else ll
    params = module.params(loss, num_class=3)
    y = _target(loss)
    best = _best(loss, y)
    shift = np.zeros_like(best)
    shift[0] = 0.5  # one class only for softmax: a shift of every class changes nothing
    at_best = _step(library, params, loss, y, best)
    away = _step(library, params, loss, y, best + shift)
    assert np.all(np.abs(at_best) < 0.02), at_best
    assert np.atleast_1d(away)[0] < -0.05, away  # back towards the optimum
