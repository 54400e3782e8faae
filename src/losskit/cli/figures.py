"""The figures of ``losskit plot`` and the demo's loss curves, drawn with matplotlib.

Every curve is computed by losskit itself (``lk.sigmoid``, ``lk.binary_cross_entropy``,
``value_and_grad`` ...), so a figure is also a picture of what the library returns. Figures are
built as ``matplotlib.figure.Figure`` objects, never through ``pyplot``: no global state, no GUI
backend, safe to call from any thread or a headless machine.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import losskit as lk

from ._common import require

BLUE, ORANGE, GREEN, GREY, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#d62728"


def _figure(width: float = 6.4, height: float = 4.0, ncols: int = 1):
    require("matplotlib", "drawing figures")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols) if ncols > 1 else fig.subplots()
    for ax in np.atleast_1d(axes):
        ax.grid(True, alpha=0.3)
    return fig, axes


def sigmoid():
    """sigma(z) over z in [-8, 8]: the binary head's activation, 0.5 at z = 0."""
    z = np.linspace(-8, 8, 401)
    fig, ax = _figure()
    ax.plot(z, lk.sigmoid(z), color=BLUE, lw=2, label=r"$\sigma(z) = 1 / (1 + e^{-z})$")
    ax.axhline(0.5, color=GREY, ls="--", lw=1)
    ax.axvline(0.0, color=GREY, ls="--", lw=1)
    for level in (0.0, 1.0):
        ax.axhline(level, color=GREY, lw=0.8)
    ax.annotate(r"$\sigma(0) = 0.5$: the decision threshold", xy=(0, 0.5), xytext=(0.8, 0.32),
                arrowprops={"arrowstyle": "->", "color": GREY})
    ax.set(xlabel="logit z", ylabel="probability", title="Sigmoid: a logit becomes a probability",
           ylim=(-0.05, 1.05))
    ax.legend(loc="upper left")
    return fig


def bce():
    """Binary cross-entropy against p for y = 1 (-log p) and y = 0 (-log(1 - p))."""
    p = np.linspace(0.001, 0.999, 999)
    fig, ax = _figure()
    for y, color, label in ((1, BLUE, r"$y = 1$: $-\log p$"), (0, ORANGE, r"$y = 0$: $-\log(1 - p)$")):
        loss = lk.binary_cross_entropy(p, np.full_like(p, y), reduction="none")
        ax.plot(p, loss, color=color, lw=2, label=label)
    ax.annotate("0 at p = 1:\nright and sure", xy=(1, 0), xytext=(0.8, 0.85), ha="center",
                arrowprops={"arrowstyle": "->", "color": BLUE}, color=BLUE)
    ax.annotate("0 at p = 0:\nright and sure", xy=(0, 0), xytext=(0.2, 0.85), ha="center",
                arrowprops={"arrowstyle": "->", "color": ORANGE}, color=ORANGE)
    ax.text(0.03, 4.6, "sure and wrong:\nthe loss grows\nwithout bound", va="top", color=GREY)
    ax.set(xlabel="predicted probability p = P(y = 1)", ylabel="loss", ylim=(0, 5), xlim=(0, 1),
           title="Binary cross-entropy")
    ax.legend(loc="upper center")
    return fig


SOFTMAX_LOGITS = (2.0, 1.0, 0.1, -1.0)


def softmax():
    """A small logit vector, its exponentials and their normalised shares (the softmax)."""
    z = np.array(SOFTMAX_LOGITS)
    e = np.exp(z)
    p = lk.softmax(z)
    fig, axes = _figure(10.5, 3.6, ncols=3)
    names = [f"class {k}" for k in range(len(z))]
    colors = [BLUE, ORANGE, GREEN, RED]
    panels = ((z, "logits $z_k$", "{:+.1f}"), (e, r"$e^{z_k}$" + f"  (sum {e.sum():.2f})", "{:.2f}"),
              (p, r"softmax $p_k = e^{z_k} / \Sigma_j e^{z_j}$", "{:.3f}"))
    for ax, (values, title, fmt) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2)
        ax.axhline(0, color=GREY, lw=0.8)
        ax.set_title(title)
        ax.margins(y=0.18)
        ax.tick_params(axis="x", labelsize=8)
    axes[2].set_ylim(0, 1)
    fig.suptitle("Softmax turns K logits into K probabilities that sum to 1")
    return fig


def cross_entropy():
    """Categorical cross-entropy -log p_y against the probability given to the true class."""
    p_true = np.linspace(0.005, 1.0, 400)
    rest = (1 - p_true) / 2
    probs = np.stack([p_true, rest, rest], axis=1)  # three classes, the true one first
    loss = lk.categorical_cross_entropy(probs, np.zeros(len(p_true), dtype=np.int64), reduction="none")
    fig, ax = _figure()
    ax.plot(p_true, loss, color=BLUE, lw=2, label=r"$-\log p_y$")
    for point, dx in ((0.1, 0.05), (1 / 3, 0.05), (0.9, -0.2)):
        value = -np.log(point)
        ax.plot(point, value, "o", color=ORANGE)
        ax.annotate(f"p = {point:.2f}: {value:.2f}", xy=(point, value), xytext=(point + dx, value + 0.4))
    ax.axvline(1 / 3, color=GREY, ls="--", lw=1)
    ax.text(1 / 3 + 0.01, 4.6, "uniform guess over K = 3:\nloss log 3", va="top", color=GREY)
    ax.set(xlabel="probability of the true class $p_y$", ylabel="loss", ylim=(0, 5), xlim=(0, 1),
           title="Categorical cross-entropy: only the true class's probability counts")
    ax.legend(loc="upper right")
    return fig


def mse():
    """Squared error as a parabola of the error, with its gradient 2e."""
    error = np.linspace(-3, 3, 301)
    prediction, target = error, np.zeros_like(error)
    loss = lk.mean_squared_error(prediction, target, reduction="none")
    grad = lk.MeanSquaredError(reduction="sum").grad(prediction, target)
    fig, ax = _figure()
    ax.plot(error, loss, color=BLUE, lw=2, label=r"loss $e^2$")
    ax.plot(error, grad, color=ORANGE, lw=1.5, ls="--", label=r"gradient $2e$")
    ax.axhline(0, color=GREY, lw=0.8)
    ax.set(xlabel=r"error $e = \hat y - y$", ylabel="loss / gradient", ylim=(-6.5, 9.5),
           title="Mean squared error: a parabola; big errors cost quadratically")
    ax.legend(loc="upper center")
    return fig


def bce_landscape():
    """BCE-with-logits over (logit, target): a valley along z = logit(y)."""
    z = np.linspace(-6, 6, 241)
    y = np.linspace(0, 1, 101)
    zz, yy = np.meshgrid(z, y)
    loss = lk.binary_cross_entropy_with_logits(zz, yy, reduction="none")
    fig, ax = _figure(6.4, 4.2)
    # rasterized: in SVG the mesh was 24,400 vector paths, 4.7 MB (found in review); the PNG is the same
    image = ax.pcolormesh(zz, yy, loss, shading="auto", cmap="viridis", vmax=6, rasterized=True)
    lines = ax.contour(zz, yy, loss, levels=(0.1, 0.5, 1, 2, 4), colors="white", linewidths=0.7)
    ax.clabel(lines, fmt="%g", fontsize=7)
    inner = y[(y > 0.0025) & (y < 0.9975)]
    ax.plot(np.log(inner) - np.log1p(-inner), inner, color=RED, ls="--", lw=1.5,
            label=r"minimum over z: $z = \log\frac{y}{1 - y}$")
    fig.colorbar(image, ax=ax, label="loss")
    ax.set(xlabel="logit z", ylabel="target y", xlim=(-6, 6), ylim=(0, 1),
           title="BCE-with-logits over (logit, target)")
    ax.grid(False)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def gradients():
    """The analytic gradients: BCE (sigma(z) - y), softmax CE (p - y), MSE (2e)."""
    z = np.linspace(-6, 6, 241)
    fig, axes = _figure(10.5, 3.4, ncols=3)
    bce_loss = lk.BinaryCrossEntropyWithLogits(reduction="sum")
    for y, color in ((1, BLUE), (0, ORANGE)):
        axes[0].plot(z, bce_loss.grad(z, np.full_like(z, y)), color=color, lw=2,
                     label=rf"$y = {y}$: $\sigma(z) - {y}$")
    axes[0].set(xlabel="logit z", title="BCE-with-logits: bounded in [-1, 1]", ylim=(-1.1, 1.1))
    logits = np.zeros((len(z), 3))
    logits[:, 0] = z  # vary the true class's logit, the other two stay at 0
    grad = lk.SoftmaxCrossEntropy(reduction="sum").grad(logits, np.zeros(len(z), dtype=np.int64))
    axes[1].plot(z, grad[:, 0], color=BLUE, lw=2, label=r"true class: $p_y - 1$")
    axes[1].plot(z, grad[:, 1], color=ORANGE, lw=2, label=r"other class: $p_k$")
    axes[1].set(xlabel="logit of the true class (others 0, K = 3)", title="softmax CE: $p - y$",
                ylim=(-1.1, 1.1))
    error = np.linspace(-3, 3, 121)
    axes[2].plot(error, lk.MeanSquaredError(reduction="sum").grad(error, np.zeros_like(error)),
                 color=GREEN, lw=2, label=r"$2e$")
    axes[2].set(xlabel=r"error $e = \hat y - y$", title="MSE: grows with the error")
    for ax in axes:
        ax.axhline(0, color=GREY, lw=0.8)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_ylabel("d loss / d input")
    fig.suptitle("Gradients with respect to the network's output, as losskit returns them")
    return fig


PURPLE, BROWN, PINK = "#9467bd", "#8c564b", "#e377c2"


def _curves(task: str, x):
    """(label, colour, per-example loss, d loss / d x) of every loss of ``task`` along ``x``: the
    residual for regression, the margin (the logit of the true side) for the classifiers."""
    rows = []
    if task == "regression":
        zero = np.zeros_like(x)
        for label, color, loss in (("squared error", BLUE, lk.MeanSquaredError()),
                                   ("absolute error", ORANGE, lk.AbsoluteError()),
                                   (r"Huber $\delta = 1$", GREEN, lk.HuberLoss(delta=1.0)),
                                   (r"pseudo-Huber $\delta = 1$", RED, lk.PseudoHuberLoss(delta=1.0)),
                                   ("log-cosh", PURPLE, lk.LogCoshLoss())):
            rows.append((label, color, *_none(loss, x, zero)))
        # the pinball loss of one quantile: predictions [N, 1], one target per example
        rows.append((r"pinball $q = 0.8$", BROWN, *(v.reshape(-1) for v in _none(
            lk.QuantileLoss(quantiles=0.8), x[:, None], zero))))
        return rows
    if task in ("binary", "multilabel"):
        one = np.ones_like(x)  # y = 1, so the logit is the margin
        for label, color, loss in (("BCE", BLUE, lk.BinaryCrossEntropyWithLogits()),
                                   (r"focal $\gamma = 2$", ORANGE, lk.SigmoidFocalLoss(gamma=2.0)),
                                   (r"focal $\gamma = 0.5$", PINK, lk.SigmoidFocalLoss(gamma=0.5)),
                                   ("hinge", GREEN, lk.HingeLoss()),
                                   ("squared hinge", RED, lk.SquaredHingeLoss())):
            rows.append((label, color, *_none(loss, x, one)))
        if task == "multilabel":  # ASL's positive label (its negatives' focusing and margin are not drawn)
            value, grad = _none(lk.AsymmetricLoss(), x[:, None], one[:, None])
            rows.append((r"ASL $\gamma_+ = 1$", PURPLE, value, grad[:, 0]))
        return rows
    logits = np.zeros((len(x), 3))
    logits[:, 0] = x  # the true class's logit against two others at 0
    labels = np.zeros(len(x), dtype=np.int64)
    for label, color, loss in (("cross-entropy", BLUE, lk.SoftmaxCrossEntropy()),
                               (r"focal $\gamma = 2$", ORANGE, lk.SoftmaxFocalLoss(gamma=2.0)),
                               (r"Poly-1 $\epsilon = 1$", GREEN, lk.PolyCrossEntropy(epsilon=1.0)),
                               ("Crammer-Singer hinge", RED, lk.MulticlassHingeLoss())):
        value, grad = _none(loss, logits, labels)
        rows.append((label, color, value, grad[:, 0]))
    return rows


def _none(loss, x, target):
    """Per-example loss and its gradient (``reduction="none"``: the gradient of their sum)."""
    return loss.replace(reduction="none").value_and_grad(x, target)


#: x axis of each task's loss figure
_AXES = {"regression": (r"residual $e = \hat y - y$", (-3.0, 3.0)),
         "binary": (r"margin $s z$ (the logit, for $y = 1$)", (-4.0, 4.0)),
         "multilabel": (r"margin $s z$ of one label (the multi-label head sums them)", (-4.0, 4.0)),
         "multiclass": (r"logit of the true class (two others at 0, K = 3)", (-4.0, 6.0))}


def losses(task: str = "regression"):
    """The losses of a task's head that are a function of one residual (regression) or margin
    (classification), and their gradients, side by side. Every value is ``value_and_grad(...,
    reduction="none")``. Left out: the deviances and the Gaussian NLL (their value depends on the
    target's size or a second output too), KL (cross-entropy itself on one-hot targets) and the
    exponential loss (e^4 = 55 at a margin of -4, off the others' scale)."""
    if task not in _AXES:
        raise ValueError(f"task: expected one of {', '.join(_AXES)}, got {task!r}")
    label_x, (lo, hi) = _AXES[task]
    x = np.linspace(lo, hi, 481)
    fig, axes = _figure(11.0, 4.2, ncols=2)
    for label, color, value, grad in _curves(task, x):
        axes[0].plot(x, value, color=color, lw=2, label=label)
        axes[1].plot(x, grad, color=color, lw=2, label=label)
    top = {"regression": 4.5, "binary": 5.0, "multilabel": 5.0, "multiclass": 5.0}[task]
    axes[0].set(xlabel=label_x, ylabel="loss", ylim=(-0.1, top), title="loss")
    axes[1].set(xlabel=label_x, ylabel="d loss / d input", title="gradient (what backpropagation receives)")
    # the squared losses' gradients grow without bound: keep the bounded ones readable
    axes[1].set_ylim({"regression": (-2.5, 2.5), "binary": (-2.2, 0.2), "multilabel": (-2.2, 0.2)}.get(task))
    for ax in axes:
        ax.axhline(0, color=GREY, lw=0.8)
        ax.axvline(0, color=GREY, lw=0.8)
    axes[0].legend(loc="upper center" if task == "regression" else "upper right", fontsize=8)
    name = "regression" if task == "regression" else f"{task} classification"
    fig.suptitle(f"losskit: the losses of the {name} head and their gradients")
    return fig


def loss_curves(results):
    """The demo's training and held-out loss per epoch, one panel per task."""
    n = len(results)
    cols = 2 if n > 1 else 1
    rows = (n + 1) // 2
    require("matplotlib", "drawing figures")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8 * cols, 3.1 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for ax, result in zip(axes, results, strict=False):
        epochs = np.arange(len(result.train_loss))
        ax.plot(epochs, result.train_loss, color=BLUE, lw=2, label="train")
        ax.plot(epochs, result.val_loss, color=ORANGE, lw=2, label="held out")
        ax.set_yscale("log")
        name, value = result.metric
        ax.set(xlabel="epoch", ylabel="loss",
               title=f"{result.task} ({result.dataset}): {name} {value:.3f}")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(loc="upper right", title=result.loss, title_fontsize=8, fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("losskit demo: loss per epoch (log scale)")
    return fig


#: name -> (draw function, one-line description) of every figure ``losskit plot`` draws
FIGURES: dict[str, tuple[Callable, str]] = {
    "sigmoid": (sigmoid, "sigmoid over z"),
    "bce": (bce, "binary cross-entropy against p, for y = 1 and y = 0"),
    "softmax": (softmax, "softmax of a small logit vector: logits, exponentials, probabilities"),
    "cross-entropy": (cross_entropy, "categorical cross-entropy against the true class's probability"),
    "mse": (mse, "squared error as a parabola of the error, with its gradient"),
    "bce-landscape": (bce_landscape, "BCE-with-logits over (logit, target)"),
    "gradients": (gradients, "gradient curves of BCE, softmax CE and MSE"),
    "losses": (losses, "a task's (--task) losses of one residual or margin and their gradients, side by side"),
}
