"""OPAL's meta network (mDNN, seed 000): an MLP with two hidden layers that predicts a target network's
expensive objectives (error) from its encoded hyper-parameters. Arrays in, predictions out; no Optuna.

Follows scikit-learn's habit: the constructor stores settings, ``fit`` does the work and sets ``*_``
attributes. ``fit`` warm-starts from the previous weights when the input width is unchanged (OPAL retrains
after each evaluation: a few hundred Adam steps on the whole, small, data set are enough), so a refit costs
milliseconds; outputs are standardised per column, inputs are already in [0, 1].
"""

from __future__ import annotations

import numpy as np


class MetaDNN:
    """``MetaDNN(hidden=(32, 32), epochs=200, seed=0).fit(X, Y).predict(X2)``; tanh hidden units."""

    def __init__(self, hidden: tuple[int, int] = (32, 32), epochs: int = 200, warm_epochs: int = 60,
                 lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.warm_epochs = warm_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.weights_: list[np.ndarray] | None = None

    def _init(self, n_in: int, n_out: int) -> list[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        sizes = [n_in, *self.hidden, n_out]
        params = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            params += [rng.normal(0.0, np.sqrt(1.0 / a), (a, b)), np.zeros(b)]  # LeCun normal for tanh
        return params

    @staticmethod
    def _forward(params: list[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        w1, b1, w2, b2, w3, b3 = params
        h1 = np.tanh(x @ w1 + b1)
        h2 = np.tanh(h1 @ w2 + b2)
        return h2 @ w3 + b3, [h1, h2]

    def fit(self, x: np.ndarray, y: np.ndarray) -> MetaDNN:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float).reshape(len(x), -1)
        self.y_mean_ = y.mean(axis=0)
        self.y_std_ = y.std(axis=0) + 1e-12
        t = (y - self.y_mean_) / self.y_std_
        fresh = self.weights_ is None or self.weights_[0].shape[0] != x.shape[1] or \
            self.weights_[-1].shape[0] != y.shape[1]
        params = self._init(x.shape[1], y.shape[1]) if fresh else self.weights_
        assert params is not None
        steps = self.epochs if fresh else self.warm_epochs
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        beta1, beta2, n = 0.9, 0.999, len(x)
        for step in range(1, steps + 1):  # full-batch Adam (Kingma & Ba 2015) on the mean squared error
            out, (h1, h2) = self._forward(params, x)
            g_out = 2.0 * (out - t) / n
            w1, _, w2, _, w3, _ = params
            g_w3, g_b3 = h2.T @ g_out, g_out.sum(0)
            g_h2 = (g_out @ w3.T) * (1 - h2 ** 2)
            g_w2, g_b2 = h1.T @ g_h2, g_h2.sum(0)
            g_h1 = (g_h2 @ w2.T) * (1 - h1 ** 2)
            g_w1, g_b1 = x.T @ g_h1, g_h1.sum(0)
            grads = [g_w1, g_b1, g_w2, g_b2, g_w3, g_b3]
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                if p.ndim == 2:
                    g = g + self.weight_decay * p
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                m_hat = m[i] / (1 - beta1 ** step)
                v_hat = v[i] / (1 - beta2 ** step)
                params[i] = p - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        self.weights_ = params
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.weights_ is None:
            raise RuntimeError("MetaDNN.predict before fit")
        out, _ = self._forward(self.weights_, np.asarray(x, dtype=float))
        return out * self.y_std_ + self.y_mean_
