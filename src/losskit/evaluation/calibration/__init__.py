r"""Post-hoc calibration of a model's logits: :func:`calibrate` fits, :class:`Calibration` applies.

A calibration maps the logits ``z`` to new logits whose probabilities are better calibrated, with
a few parameters fitted by minimising the weighted validation NLL of the task's loss:

==========================  ====================  ======================================  =================
method                      task                  map                                     parameters
==========================  ====================  ======================================  =================
``"temperature"``           every classification  ``z / T`` (one T shared by all labels)  ``temperature``
``"temperature_per_label"`` multi-label, binary   ``z_k / T_k``                           ``temperature``
``"vector"``                multi-class           ``a_k z_k + b_k``                       ``scale, offset``
``"platt"``                 binary                ``a z + b``                             ``a, b``
``"variance"``              Gaussian regression   log-variance ``+ log c``                ``variance_factor``
==========================  ====================  ======================================  =================

The fit is Newton's method on the exact gradient and Hessian (:mod:`.newton`, :mod:`.objectives`),
each step one pass over the data: here in memory (NumPy, torch, JAX, or a Dask array, one
``compute`` per pass), and over files in :mod:`.files` (``losskit calibrate``).

Design note: the fit runs on the host in float64 whatever the input (the parameters are a few
floats, and a 1e-10 relative gradient needs float64 sums); :meth:`Calibration.apply` maps arrays
in their own library, dtype and device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..._errors import fail
from ...losses.declaration import number
from . import objectives as _objectives
from . import scaling as _scaling
from .newton import minimise

__all__ = ["calibrate", "Calibration", "METHODS", "objective_for"]

#: method -> (objective class, the tasks it fits)
METHODS = {
    "temperature": (_objectives.Temperature, ("binary", "multiclass", "multilabel")),
    "temperature_per_label": (_objectives.Temperature, ("binary", "multilabel")),
    "vector": (_scaling.Vector, ("multiclass",)),
    "platt": (_scaling.Platt, ("binary",)),
    "variance": (_scaling.Variance, ("regression",)),
}
FORMAT = "losskit.calibration/1"


def objective_for(method: str, task: str, n_outputs: int, l2: float = 0.0):
    """The objective of ``method`` on ``task`` with ``n_outputs`` prediction values per row."""
    if method not in METHODS:
        raise fail("method", f"one of {', '.join(METHODS)}", repr(method))
    cls, tasks = METHODS[method]
    if task not in tasks:
        fits = ", ".join(m for m, (_, t) in METHODS.items() if task in t)
        raise fail("method", f"a method for the {task} task ({fits})", repr(method))
    l2 = number(l2, "l2", low=0.0)  # the penalty on vector scaling's offsets
    if l2 != 0 and method != "vector":  # (it was taken and ignored; the command line refused it)
        raise fail("l2", f"0 for method {method!r} (l2 penalises vector scaling's offsets)", f"{l2:g}")
    if method == "vector":
        return cls(task, n_outputs, l2=l2)
    if cls is _objectives.Temperature:
        return cls(task, n_outputs, per_label=method == "temperature_per_label")
    return cls(task, n_outputs)


@dataclass
class Calibration:
    """A fitted calibration: ``apply(logits)`` gives the calibrated logits.

    ``method``, ``task``, ``params`` (floats or lists of floats), ``n_outputs`` (prediction values
    per row), ``nll_before`` / ``nll_after`` (weighted mean NLL on the fitting data, identity map
    and fitted), ``ece_before`` / ``ece_after`` (15-bin ECE as ``losskit eval`` computes it; None
    for multi-label and regression), ``passes`` (evaluations of the NLL, each one pass over the
    data), ``rows``.

    >>> import numpy as np, losskit as lk
    >>> z = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 0.0]]); y = np.array([0, 1, 1, 0])
    >>> cal = lk.calibrate(z, y)
    >>> round(cal.params["temperature"], 4), cal.nll_after < cal.nll_before
    (3.641, True)
    >>> lk.Calibration.from_json(cal.to_json()).apply(z).shape
    (4, 2)
    """

    method: str
    task: str
    params: dict
    n_outputs: int
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    passes: int = 0
    rows: int = 0
    history: list = field(default_factory=list, repr=False)

    @property
    def objective(self):
        return objective_for(self.method, self.task, self.n_outputs, float(self.params.get("l2", 0.0)))

    def apply(self, logits):
        """The calibrated logits, in ``logits``' library, dtype, device and shape.

        Shapes: binary ``[N]`` or ``[N, 1]``; multi-class and multi-label ``[N, K]``; variance
        ``[..., 2]`` (mean, log-variance)."""
        from ..._array import isdtype, namespace

        xp, arrays = namespace(logits=logits)
        logits = arrays["logits"]
        if not isdtype(xp, logits.dtype, "real floating"):  # integer logits: the parameters are not integers
            logits = xp.astype(logits, xp.float64)
        objective = self.objective
        width = 2 if self.method == "variance" else (1 if logits.ndim <= 1 else logits.shape[-1])
        if logits.ndim == 0 or width != self.n_outputs:
            raise fail("logits", f"{self.n_outputs} values per row (as at fitting)", f"shape {tuple(logits.shape)}")
        return objective.apply(self.theta(), logits, xp)

    def theta(self):
        """The parameters as the objective's vector, checked: as many as the method has for ``n_outputs``,
        each finite (a temperature or variance factor > 0). A calibration read from a file that was
        edited, or built by hand, would otherwise map every logit to NaN or inf without a word."""
        import numpy as np

        objective = self.objective
        if not all(_numbers(value) for value in self.params.values()):  # (a JSON true read as the number 1)
            raise fail("calibration", f"numbers as the params of a {self.method} calibration", _plain(self.params))
        try:
            with np.errstate(all="ignore"):  # log of a temperature <= 0: judged below
                theta = np.asarray(objective.theta(self.params), dtype=np.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise fail("calibration", f"the params of a {self.method} calibration",
                       f"{_plain(self.params)} ({error})") from None
        if theta.shape != (objective.n_params,) or not np.all(np.isfinite(theta)):
            raise fail("calibration", f"{objective.n_params} finite parameter(s) for {self.method} on "
                       f"{self.n_outputs} prediction value(s) per row (temperatures and variance factors > 0)",
                       _plain(self.params))
        return theta

    def to_dict(self) -> dict:
        return {"format": FORMAT, "method": self.method, "task": self.task, "params": self.params,
                "n_outputs": self.n_outputs, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "passes": self.passes,
                "rows": self.rows}

    def to_json(self) -> str:
        """The calibration as JSON text (``from_json`` reads it back); floats keep every digit."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """The :class:`Calibration` of :meth:`to_json`'s text; a bad text is a ``LossInputError``."""
        import numpy as np

        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise fail("calibration", "the JSON text of Calibration.to_json", f"unreadable text ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise fail("calibration", f"a JSON object with \"format\": \"{FORMAT}\"",
                       repr(data.get("format") if isinstance(data, dict) else type(data).__name__))
        if not isinstance(data.get("params"), dict) or isinstance(data.get("n_outputs"), bool) \
                or not isinstance(data.get("n_outputs"), int) or data["n_outputs"] < 1:
            raise fail("calibration", "\"params\" an object and \"n_outputs\" an integer >= 1",
                       f"params {data.get('params')!r} and n_outputs {data.get('n_outputs')!r}")
        try:
            out = cls(**{k: data[k] for k in ("method", "task", "params", "n_outputs")},
                      **{k: data.get(k) for k in ("nll_before", "nll_after", "ece_before", "ece_after")},
                      passes=int(data.get("passes", 0)), rows=int(data.get("rows", 0)))
            with np.errstate(all="ignore"):  # a temperature <= 0 is judged by theta() below
                out.objective.theta(out.params)  # every parameter present
        except (KeyError, TypeError, ValueError) as error:
            raise fail("calibration", "method, task, params and n_outputs of a fitted calibration",
                       f"a JSON object missing or mistyping {error}") from None
        out.theta()  # as many as the method has, each finite
        return out


def _numbers(value) -> bool:
    """Whether ``value`` is a real number (not a bool) or a sequence or array of them."""
    import numbers

    import numpy as np

    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    if isinstance(value, (list, tuple)):
        return all(_numbers(v) for v in value)
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _plain(params: dict) -> str:
    """``params`` as JSON would show them (``nan``, not ``np.float64(nan)``; a string quoted, a bool ``true``: a
    hand-edited ``"2"`` was shown as the number 2 it is refused for not being)."""
    def shown(value) -> str:
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(map(shown, value)) + "]"
        if isinstance(value, (str, bool)) or value is None:
            return json.dumps(value)
        return str(value)

    return ", ".join(f"{k} {shown(v)}" for k, v in params.items())


def from_fit(objective, fit) -> Calibration:
    params = objective.params(fit.theta)
    return Calibration(method=objective.method, task=objective.task, params=params,
                       n_outputs=objective.n_outputs, nll_before=fit.before.nll, nll_after=fit.after.nll,
                       ece_before=fit.before.ece, ece_after=fit.after.ece, passes=len(fit.history),
                       rows=fit.after.rows, history=fit.history)


def calibrate(logits, target, *, method: str = "temperature", weight=None, task: str | None = None,
              l2: float = 0.0, max_passes: int = 100) -> Calibration:
    r"""Fit a post-hoc calibration of ``logits`` to ``target`` by minimising the weighted NLL.

    .. math:: \hat\theta = \arg\min_\theta \sum_i w_i\, \ell(f_\theta(z_i), y_i) \Big/ \sum_i w_i

    with ``ell`` the task's loss (sigmoid or softmax cross-entropy, the sum of per-label sigmoid
    cross-entropies, Gaussian NLL) and ``f_theta`` the method's map (see the module table:
    ``"temperature"``, ``"temperature_per_label"``, ``"vector"`` (offsets penalised by
    ``l2 / 2 |b|^2``), ``"platt"``, ``"variance"``). Newton's method on the exact derivatives,
    converged to a relative gradient of 1e-10 (:mod:`.newton`).

    Shapes: ``logits`` binary ``[N]`` / ``[N, 1]``; multi-class ``[N, K]`` with ``target`` integer
    labels ``[N]`` or class probabilities ``[N, K]``; multi-label ``[N, K]`` with 0/1 ``target
    [N, K]``; variance ``[N, 2]`` (mean, log-variance) with ``target [N]``. ``weight [N]`` >= 0.
    NumPy, torch, JAX or Dask arrays (Dask: one ``compute`` per Newton step, chunk by chunk).
    ``task``: default from the shapes and :func:`~losskit.targets.type_of_target`.

    Edges: probabilities where logits are needed, a target with one class only, a non-finite
    logit or an empty input raise :class:`~losskit.LossInputError`; so do data on which the NLL
    has no minimiser (e.g. perfectly separated classes: T -> 0), with the reason.

    >>> import numpy as np, losskit as lk
    >>> cal = lk.calibrate(np.array([3.0, -3.0, 3.0, -3.0, 1.0]), np.array([1, 0, 0, 0, 1]))
    >>> cal.method, cal.task, round(cal.params["temperature"], 6), cal.passes
    ('temperature', 'binary', 2.338989, 7)
    >>> cal.apply(np.array([3.0, -1.0], dtype=np.float32)).dtype
    dtype('float32')
    """
    from ..._checks import given, int_at_least
    from . import inputs

    given(logits=logits, target=target)
    max_passes = int_at_least(max_passes, "max_passes", 1)
    data = inputs.prepare(logits, target, weight, method=method, task=task)
    objective = objective_for(method, data.task, data.n_outputs, l2)
    fit = minimise(objective, inputs.passes(objective, data), max_passes=max_passes)
    return from_fit(objective, fit)
