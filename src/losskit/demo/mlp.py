"""A small multi-layer perceptron and Adam, in NumPy, for the demo.

The network ends in raw output units (logits); everything about the task (activation, loss,
its gradient, decoding) comes from a losskit head, so backpropagation starts from
``head.value_and_grad(logits, target)`` and this module never computes a loss itself.
"""

from __future__ import annotations

import math

import numpy as np


class MLP:
    """``x [N, d_in]`` -> ReLU hidden layers -> ``logits [N, units]``, He-initialised, seeded.

    ``forward`` keeps what ``backward`` needs; ``backward(grad_logits)`` returns the gradient
    of the loss with respect to every parameter, in the order of ``params``. The parameters are
    views of one flat array, and so are the gradients (overwritten by the next ``backward``): an
    optimiser then updates all of them in a few whole-array operations (:class:`Adam` does),
    which is what a small network's step costs, not the arithmetic.
    """

    def __init__(self, sizes: list[int], rng: np.random.Generator):
        shapes = [shape for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
                  for shape in ((fan_in, fan_out), (fan_out,))]
        self.params = _views(np.zeros(sum(math.prod(s) for s in shapes)), shapes)
        for weight, fan_in in zip(self.params[::2], sizes[:-1], strict=True):
            # He initialisation keeps ReLU activations at unit scale through the layers
            weight[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=weight.shape)
        self._grads = _views(np.empty(self.params[0].base.size), shapes)
        self._cache: list[np.ndarray] = []

    @property
    def n_layers(self) -> int:
        return len(self.params) // 2

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._cache = [x]
        h = x
        for layer in range(self.n_layers):
            w, b = self.params[2 * layer], self.params[2 * layer + 1]
            h = h @ w + b
            if layer < self.n_layers - 1:
                h = np.maximum(h, 0.0)
                self._cache.append(h)
        return h

    def backward(self, grad_logits: np.ndarray) -> list[np.ndarray]:
        grads = self._grads
        g = grad_logits
        for layer in reversed(range(self.n_layers)):
            h_in = self._cache[layer]
            np.matmul(h_in.T, g, out=grads[2 * layer])
            np.sum(g, axis=0, out=grads[2 * layer + 1])
            if layer > 0:
                # ReLU's derivative: 1 where the unit was active (h_in > 0), else 0
                g = (g @ self.params[2 * layer].T) * (h_in > 0)
        return grads


def _views(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Consecutive views of ``flat`` with ``shapes``."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views


def _flat_base(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The one 1-D array that ``arrays`` tile in order (as :func:`_views` made them), else None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address, offset = base.__array_interface__["data"][0], 0
    for a in arrays:
        if a.base is not base or a.__array_interface__["data"][0] != address + offset * base.itemsize:
            return None
        offset += a.size
    return base if offset == base.size else None


class Adam:
    """Adam (Kingma and Ba, 2015) with decoupled weight decay on the weight matrices (AdamW).

    Parameters that tile one flat array (:class:`MLP`'s) are updated as that one array, with the
    same operations in the same order per element as the update of each parameter apart."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params, self.lr, self.eps, self.weight_decay = params, lr, eps, weight_decay
        self.beta1, self.beta2 = betas
        self._flat = _flat_base(params)
        if self._flat is not None:
            shapes = [p.shape for p in params]
            self.m, self.v = (_views(np.zeros_like(self._flat), shapes) for _ in range(2))
            # 1 on the weight matrices, 0 on the biases: lr * weight_decay times it (p - 0 * p is p), made again
            # when either changes (fixed at construction, a schedule's new lr still decayed at the old one)
            self._weights = np.concatenate([np.full(p.size, 1.0 if p.ndim == 2 else 0.0) for p in params])
            self._decay_of: tuple = (None, None)
        else:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        self._seen: tuple = ((), None)  # the last gradients asked about, and their flat base

    def _flat_grad(self, grads: list[np.ndarray]) -> np.ndarray | None:
        """:func:`_flat_base` of ``grads``, remembered for the same arrays: :class:`MLP` hands the same
        views back every step, and finding their base took about a tenth of a demo step."""
        seen, base = self._seen
        if len(seen) != len(grads) or any(a is not b for a, b in zip(seen, grads, strict=False)):
            base = _flat_base(grads)
            self._seen = (tuple(grads), base)
        return base

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        flat_grad = None if self._flat is None else self._flat_grad(grads)
        if flat_grad is not None and flat_grad.size == self._flat.size:
            if self._decay_of[0] != (self.lr, self.weight_decay):
                self._decay_of = ((self.lr, self.weight_decay), self._weights * (self.lr * self.weight_decay))
            pairs = [(self._flat, flat_grad, self.m[0].base, self.v[0].base, self._decay_of[1])]
        else:
            pairs = [(p, g, m, v, self.lr * self.weight_decay if p.ndim == 2 else None)
                     for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True)]
        for p, g, m, v, decay in pairs:
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            if self.weight_decay and decay is not None:  # decay weights, not biases
                p -= decay * p
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
