"""A small multi-layer perceptron and Adam, in NumPy, for the demo.

The network ends in raw output units (logits); everything about the task (activation, loss,
its gradient, decoding) comes from a losskit head, so backpropagation starts from
``head.value_and_grad(logits, target)`` and this module never computes a loss itself.
"""

from __future__ import annotations

import numpy as np


class MLP:
    """``x [N, d_in]`` -> ReLU hidden layers -> ``logits [N, units]``, He-initialised, seeded.

    ``forward`` keeps what ``backward`` needs; ``backward(grad_logits)`` returns the gradient
    of the loss with respect to every parameter, in the order of ``params``.
    """

    def __init__(self, sizes: list[int], rng: np.random.Generator):
        self.params: list[np.ndarray] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # He initialisation keeps ReLU activations at unit scale through the layers
            self.params.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)))
            self.params.append(np.zeros(fan_out))
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
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        g = grad_logits
        for layer in reversed(range(self.n_layers)):
            h_in = self._cache[layer]
            grads[2 * layer] = h_in.T @ g
            grads[2 * layer + 1] = g.sum(axis=0)
            if layer > 0:
                # ReLU's derivative: 1 where the unit was active (h_in > 0), else 0
                g = (g @ self.params[2 * layer].T) * (h_in > 0)
        return grads


class Adam:
    """Adam (Kingma and Ba, 2015) with decoupled weight decay on the weight matrices (AdamW)."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        self.params, self.lr, self.eps, self.weight_decay = params, lr, eps, weight_decay
        self.beta1, self.beta2 = betas
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        c1 = 1 - self.beta1 ** self.t
        c2 = 1 - self.beta2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            if self.weight_decay and p.ndim == 2:  # decay weights, not biases
                p -= self.lr * self.weight_decay * p
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
