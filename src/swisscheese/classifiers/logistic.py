"""L2-penalised logistic regression by Newton's method, in numpy: the head that the probe and
the encoder backends fit on fixed features (hidden states, sentence embeddings)."""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    """The logistic function, written with tanh so that large |z| never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-sample weights n / (2 * n_class): both classes weigh the same in the loss."""
    n, n_pos = len(y), float(y.sum())
    return np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))


def newton_logistic(z: np.ndarray, y: np.ndarray, sw: np.ndarray, l2: float,
                    iters: int = 50, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Weights and bias minimising the weighted mean logistic loss + l2/(2n) |w|^2."""
    n, d = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # the bias is not penalised
    sw = sw / sw.sum() * n
    for _ in range(iters):
        p = sigmoid(a @ theta)
        grad = a.T @ (sw * (p - y)) + reg * theta
        hess = (a * (sw * p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < tol:
            break
    return theta[:-1], float(theta[-1])


def fit_standardized(x: np.ndarray, y: np.ndarray, sw: np.ndarray, l2: float,
                     iters: int = 50, tol: float = 1e-6) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features, returned as weights and bias on the
    raw features (so scoring is one dot product). Newton steps stop once no weight moves
    by `tol`: far below what changes a probability at the thresholds in use."""
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd < 1e-8] = 1.0
    w, b = newton_logistic((x - mu) / sd, y.astype(np.float64), sw, l2, iters, tol)
    coef = w / sd
    return coef, float(b - coef @ mu)
