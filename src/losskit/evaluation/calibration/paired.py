"""Score predictions as they are and calibrated, in the same pass (``losskit eval --calibration``)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..._errors import fail
from ..scoring import Scorer, Spec

__all__ = ["Paired", "check_fits", "check_uncalibrated"]


def check_uncalibrated(files, arg: str = "--calibration") -> None:
    """Refuse files written by ``losskit calibrate apply`` (their Parquet metadata holds
    ``losskit.calibration``): a calibration applied again maps the calibrated logits a second time, and
    ``eval --calibration`` would call them "uncalibrated". ``files``: ``(path, that metadata or None)``
    pairs, as a layout's files hold them (:func:`calibrations`)."""
    import json

    for path, text in files:
        if text is None:
            continue
        try:
            method = json.loads(text).get("method", "a")
        except (TypeError, ValueError, AttributeError):
            method = "a"
        raise fail(arg, "uncalibrated logits", f"{path}, whose logits a {method} calibration "
                   "has mapped already (its metadata's losskit.calibration)",
                   "score or calibrate the model's uncalibrated predictions, or this file without --calibration")


def calibrations(layout):
    """``(path, losskit.calibration metadata or None)`` of each of ``layout``'s files, read by
    :func:`~..sources.resolve` with their schemas (no file opened again)."""
    return zip(layout.files, (info.calibration for info in layout._info), strict=True)


def check_fits(calibration, spec: Spec) -> None:
    """The calibration was fitted for this task, width and kind of predictions, or a LossInputError."""
    if calibration.task != spec.task or calibration.n_outputs != spec.n_outputs:
        values = "prediction value" + ("" if spec.n_outputs == 1 else "s")
        raise fail("--calibration", f"a calibration of the {spec.task} task with {spec.n_outputs} {values} "
                   f"per row, as these files hold", f"one fitted for the {calibration.task} task with "
                   f"{calibration.n_outputs} ({calibration.method})")
    if spec.pred_kind == "probs":
        raise fail("--calibration", "logit predictions to calibrate", "probabilities (--pred-kind probs)")


class Paired:
    """Two :class:`~..scoring.Scorer` s of one :class:`~..scoring.Spec`: ``before`` on the batches as read,
    ``after`` on their calibrated logits. Picklable; merges as the scorers do."""

    def __init__(self, spec: Spec, calibration):
        check_fits(calibration, spec)
        self.calibration = calibration
        self.before = Scorer(spec)
        self.after = Scorer(spec)

    @property
    def rows(self) -> int:
        return self.after.rows

    def update(self, batch) -> None:
        self.before.update(batch)
        pred = np.asarray(self.calibration.apply(batch.pred))
        self.after.update(dataclasses.replace(batch, pred=pred))

    def merge(self, other: Paired) -> Paired:
        self.before.merge(other.before)
        self.after.merge(other.after)
        return self
