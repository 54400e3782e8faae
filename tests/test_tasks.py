"""One Task enum: every part of losskit that names a task speaks it (losses, heads, detection, CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import losskit as lk
from losskit import LossInputError, Task
from losskit.losses import REGISTRY


@pytest.mark.parametrize("spelling, task", [
    ("binary", Task.BINARY), ("multiclass", Task.MULTICLASS), ("multi-class", Task.MULTICLASS),
    ("multilabel", Task.MULTILABEL), ("multi-label", Task.MULTILABEL), ("regression", Task.REGRESSION),
    ("continuous", Task.REGRESSION), (Task.MULTILABEL, Task.MULTILABEL)])
def test_parse_reads_every_spelling(spelling, task):
    assert Task.parse(spelling) is task


@pytest.mark.parametrize("bad", ["Binary", "classification", "", None, 3])
def test_parse_names_the_argument_and_the_choices(bad):
    with pytest.raises(LossInputError, match=r"^--task: expected one of 'binary', 'multiclass', 'multilabel', "
                                              r"'regression', got "):
        Task.parse(bad, "--task")


def test_a_task_is_its_name_as_a_string():
    assert Task.REGRESSION == "regression" and f"{Task.MULTICLASS:>12}" == "  multiclass"
    assert str(Task.BINARY) == "binary" and json.dumps({"task": Task.BINARY}) == '{"task": "binary"}'
    assert {Task.MULTILABEL: 1}["multilabel"] == 1


def test_every_registered_loss_declares_a_task_member_or_none():
    for cls, _ in REGISTRY.values():
        assert cls.task is None or isinstance(cls.task, Task), cls.__name__
    # the regression losses say "regression", the word heads and eval use (formerly "continuous")
    assert lk.HuberLoss.task is Task.REGRESSION and lk.MeanSquaredError.task is Task.REGRESSION


def test_a_loss_declared_with_a_task_name_gets_the_member_and_a_bad_one_is_refused():
    class NamedTaskLoss(lk.ElementwiseLoss):
        task = "continuous"
        target = "value"

        def value(self, xp, z, y):
            return xp.abs(z - y)

    assert NamedTaskLoss.task is Task.REGRESSION
    with pytest.raises(LossInputError, match=r"^BadTaskLoss\.task: expected one of 'binary'.*got 'ranking'"):
        class BadTaskLoss(lk.ElementwiseLoss):
            task = "ranking"

            def value(self, xp, z, y):
                return z - y


def test_detection_returns_a_task():
    assert lk.type_of_target(np.array([0.5, 1.25, -3.0])).kind is Task.REGRESSION
    assert lk.type_of_target(np.array([0, 1, 2, 1])).kind is Task.MULTICLASS
    assert lk.type_of_target(np.array([0, 1, 2, 1]), task=Task.REGRESSION).kind is Task.REGRESSION
    assert lk.head_for(np.array([0.5, 1.25, -3.0])).task is Task.REGRESSION


@pytest.mark.parametrize("task", list(Task))
def test_heads_and_task_losses_take_the_member_and_its_name(task):
    units = {Task.MULTICLASS: {"n_classes": 3}, Task.MULTILABEL: {"n_labels": 3}}.get(task, {})
    assert lk.head(task, **units).task is task
    assert lk.head(task.value, **units).task is task
    assert lk.heads.TASK_LOSSES[task] == lk.heads.TASK_LOSSES[task.value]


@pytest.mark.parametrize("command, extra", [(["eval", "p.parquet"], []), (["calibrate", "p.parquet"], []),
                                             (["plot"], []), (["demo"], ["all"])])
def test_the_cli_task_choices_are_the_tasks(command, extra, capsys):
    pytest.importorskip("typer")
    from losskit.cli import main

    assert main([*command, "--task", "ranking"]) == 2
    choices = ", ".join(repr(name) for name in [*extra, *(t.value for t in Task)])
    assert capsys.readouterr().err == f"losskit: error: --task: 'ranking' is not one of {choices}.\n"
