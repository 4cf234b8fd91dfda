"""A one-hidden-layer perceptron head on fixed features (sentence embeddings), trained with
torch and scored in numpy: the non-linear alternative to `logistic.fit_standardized`.

A linear head on frozen mean-pooled embeddings cannot carve out the regions where harmful
requests and their harmless look-alikes sit close together (XSTest's safe and unsafe
prompts, JailbreakBench's harmful and benign pairs); one hidden layer of ReLUs can, for
the price of a (dim x hidden) matrix. The features are standardised first and the
standardisation is folded into the first layer, so scoring is two matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MLPWeights:
    """w1 (d, h), b1 (h,), w2 (h,), b2: logit = relu(x @ w1 + b1) @ w2 + b2."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = np.maximum(np.asarray(x, dtype=np.float64) @ self.w1 + self.b1, 0.0)
        return np.asarray(h @ self.w2 + self.b2, dtype=np.float64)

    def tensors(self) -> dict[str, np.ndarray]:
        # Contiguous copies: safetensors writes an array's buffer as it lies in memory,
        # and w1 comes out of a transpose.
        return {k: np.ascontiguousarray(v) for k, v in (
            ("w1", self.w1), ("b1", self.b1), ("w2", self.w2), ("b2", np.array([self.b2])))}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], where: str) -> MLPWeights:
        """From `tensors()`'s mapping; ValueError naming `where` when shapes disagree."""
        w1, b1, w2, b2 = (t.get(k) for k in ("w1", "b1", "w2", "b2"))
        if w1 is None or b1 is None or w2 is None or b2 is None or w1.ndim != 2 \
                or b1.shape != (w1.shape[1],) or w2.shape != (w1.shape[1],) \
                or b2.shape != (1,):
            raise ValueError(f"{where}: expected tensors w1 (d, h), b1 (h,), w2 (h,), b2 (1,),"
                             f" got { {k: tuple(v.shape) for k, v in t.items()} }")
        arrays = [np.asarray(a, dtype=np.float64) for a in (w1, b1, w2, b2)]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError(f"{where}: weights hold NaN or infinity")
        return cls(arrays[0], arrays[1], arrays[2], float(arrays[3][0]))


def fit_mlp(x: np.ndarray, y: np.ndarray, sw: np.ndarray, hidden: int = 256,
            weight_decay: float = 1e-3, epochs: int = 60, lr: float = 2e-3,
            batch_size: int = 256, dropout: float = 0.1, noise: float = 0.0,
            seed: int = 0) -> MLPWeights:
    """Minimise the `sw`-weighted logistic loss of a ReLU MLP on standardised `x` (AdamW,
    minibatches, dropout on the hidden layer, a cosine-decayed learning rate); the weights
    are returned on the raw features. Deterministic for a seed (one torch thread is not
    needed for that: CPU float32 matmuls are deterministic for fixed shapes)."""
    import torch
    from torch import nn

    mu = x.mean(0)
    sd = x.std(0)
    sd[sd < 1e-8] = 1.0
    n, d = x.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.float32)
        wt = torch.tensor(sw / sw.mean(), dtype=torch.float32)
        net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                            nn.Linear(hidden, 1))
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        steps = epochs * -(-n // batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
        gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                xb = xt[idx]
                if noise > 0:
                    xb = xb + noise * torch.randn(xb.shape, generator=gen)
                loss = (nn.functional.binary_cross_entropy_with_logits(
                    net(xb)[:, 0], yt[idx], reduction="none") * wt[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    lin1, lin2 = net[0], net[3]
    w1 = np.ascontiguousarray(lin1.weight.detach().double().numpy().T / sd[:, None])
    b1 = lin1.bias.detach().double().numpy() - mu @ w1
    return MLPWeights(w1, b1, lin2.weight.detach().double().numpy()[0],
                      float(lin2.bias.detach().double().numpy()[0]))
