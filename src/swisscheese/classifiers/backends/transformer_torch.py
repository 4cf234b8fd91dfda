"""The byte-level transformer in torch, for training; `transformer` scores with numpy.

Both forwards compute the same function of the same weights (`export_weights` names them
as `TransformerConfig.param_shapes`; the numpy side computes x @ W, so linear weights are
stored transposed). tests/unit/test_transformer_classifier.py checks that they agree.
Imported only when a transformer is fitted, so scoring never needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from swisscheese.classifiers.backends.transformer_config import LN_EPS, VOCAB, TransformerConfig
from swisscheese.progress import Progress, step

# Progress reports per training run (a 4,000-step fit takes 11 minutes on 2 cores).
PROGRESS_REPORTS = 200


def build_net(cfg: TransformerConfig) -> Any:
    """The torch module: embeddings, causal blocks with a window and relative bias, final
    layer norm, and a head on [mean of states, last state]."""
    import torch
    from torch import nn

    d, nh, w = cfg.d_model, cfg.n_heads, cfg.window
    dh = d // nh

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=LN_EPS), nn.LayerNorm(d, eps=LN_EPS)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)
            self.rel_bias = nn.Parameter(torch.zeros(nh, w))

        def forward(self, x: torch.Tensor, bias_idx: torch.Tensor, ok: torch.Tensor
                    ) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, nh, dh).permute(2, 0, 3, 1, 4)
            bias = self.rel_bias[:, bias_idx].masked_fill(~ok, float("-inf"))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.out(torch.relu(self.fc(self.ln2(x))))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(VOCAB, d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.lnf = nn.LayerNorm(d, eps=LN_EPS)
            self.head = nn.Linear(2 * d, 1)
            # The exchange head: the conversation's mean state, and its products with the
            # reply's mean and last states.
            self.ctx_w = (nn.Parameter(torch.zeros(3 * d)) if cfg.context == "exchange"
                          else None)
            nn.init.normal_(self.emb.weight, std=0.1)

        def states(self, ids: torch.Tensor, lengths: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            """(mean, last) of the final states of each sequence."""
            t = ids.shape[1]
            dist = torch.arange(t)[:, None] - torch.arange(t)[None, :]
            ok = (dist >= 0) & (dist < w)
            x = self.emb(ids)
            for blk in self.blocks:
                x = blk(x, dist.clamp(0, w - 1), ok)
            h = self.lnf(x)
            mask = (torch.arange(t)[None, :] < lengths[:, None]).to(h.dtype)
            mean = (h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype)
            return mean, h[torch.arange(len(ids)), lengths - 1]

        def forward(self, ids: torch.Tensor, lengths: torch.Tensor,
                    ctx_ids: torch.Tensor | None = None,
                    ctx_lengths: torch.Tensor | None = None) -> torch.Tensor:
            mean, last = self.states(ids, lengths)
            out = self.head(torch.cat([mean, last], dim=-1)).squeeze(-1)
            if self.ctx_w is not None:
                assert ctx_ids is not None and ctx_lengths is not None
                c, _ = self.states(ctx_ids, ctx_lengths)
                out = out + torch.cat([c, c * mean, c * last], dim=-1) @ self.ctx_w
            return out

    return Net()


def _pairs(net: Any) -> list[tuple[str, Any, bool]]:
    """(weight name, torch parameter, stored transposed) for every weight of `net`."""
    out: list[tuple[str, Any, bool]] = [("emb", net.emb.weight, False)]
    for i, blk in enumerate(net.blocks):
        for name, lin in (("qkv", blk.qkv), ("proj", blk.proj), ("fc", blk.fc),
                          ("out", blk.out)):
            out += [(f"h{i}.{name}_w", lin.weight, True), (f"h{i}.{name}_b", lin.bias, False)]
        for name, ln in (("ln1", blk.ln1), ("ln2", blk.ln2)):
            out += [(f"h{i}.{name}_g", ln.weight, False), (f"h{i}.{name}_b", ln.bias, False)]
        out.append((f"h{i}.rel_bias", blk.rel_bias, False))
    out += [("lnf_g", net.lnf.weight, False), ("lnf_b", net.lnf.bias, False),
            ("head_b", net.head.bias, False)]
    if net.ctx_w is not None:
        out.append(("ctx_w", net.ctx_w, False))
    return out


def export_weights(net: Any) -> dict[str, np.ndarray]:
    """float32 numpy weights named as `TransformerConfig.param_shapes`."""
    out = {name: (p.detach().numpy().T if t else p.detach().numpy()) for name, p, t in
           _pairs(net)}
    out["head_w"] = net.head.weight.detach().numpy()[0]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def import_weights(net: Any, weights: dict[str, np.ndarray]) -> Any:
    """Load `export_weights`' output back into a module built by `build_net`."""
    import torch

    with torch.no_grad():
        for name, p, t in _pairs(net):
            w = torch.as_tensor(weights[name])
            p.copy_(w.T if t else w)
        net.head.weight.copy_(torch.as_tensor(weights["head_w"])[None, :])
    return net


def _padded(seqs: Sequence[list[int]]) -> tuple[Any, Any]:
    """(right-padded ids, lengths) as tensors."""
    import torch

    lens = [len(s) for s in seqs]
    ids = torch.zeros((len(seqs), max(lens)), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : lens[r]] = torch.tensor(s)
    return ids, torch.tensor(lens)


def torch_logits(net: Any, seqs: Sequence[list[int]],
                 ctx_seqs: Sequence[list[int]] | None = None) -> np.ndarray:
    """The module's logits for token-id sequences (right-padded into one batch); an
    exchange net also reads each sequence's conversation in `ctx_seqs`."""
    import torch

    net.eval()
    with torch.no_grad():
        ctx = _padded(ctx_seqs) if ctx_seqs is not None else (None, None)
        return net(*_padded(seqs), *ctx).double().numpy()


def train_weights(cfg: TransformerConfig, seqs: list[list[int]], y: np.ndarray,
                  ctx_seqs: list[list[int]] | None = None, progress: Progress | None = None
                  ) -> dict[str, np.ndarray]:
    """Fit the model with AdamW on the class-weighted logistic loss (warm-up, then linear
    decay to a tenth); returns its weights as `export_weights` names them. An exchange
    model (cfg.context) reads each sequence's conversation in `ctx_seqs`. `progress`
    hears the steps done, with the mean loss since the last report."""
    if (cfg.context == "exchange") != (ctx_seqs is not None):
        raise ValueError("an exchange transformer trains on conversations (ctx_seqs), a "
                         "reply-only one without them")
    import torch
    from torch import nn

    n = len(seqs)
    per_epoch = -(-n // cfg.batch_size)
    steps = int(min(max(round(cfg.epochs * per_epoch), cfg.min_steps), cfg.max_steps))
    if cfg.class_weight == "balanced":
        n_pos = float(y.sum())
        sample_w = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
    else:
        sample_w = np.ones(n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = build_net(cfg)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                foreach=True)
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (1.0 - 0.9 * s / max(steps - 1, 1)))
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(n)
        pos = 0
        every, losses = max(1, steps // PROGRESS_REPORTS), []
        net.train()
        step(progress, "transformer: training steps", 0, steps)
        for done in range(1, steps + 1):
            if pos + cfg.batch_size > n:
                order, pos = rng.permutation(n), 0
            batch = order[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            ctx = (_padded([ctx_seqs[j] for j in batch]) if ctx_seqs is not None
                   else (None, None))
            logits = net(*_padded([seqs[j] for j in batch]), *ctx)
            target = torch.tensor(y[batch], dtype=torch.float32)
            sw = torch.tensor(sample_w[batch], dtype=torch.float32)
            loss = (nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="none") * sw).sum() / sw.sum()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if done % every == 0 or done == steps:
                step(progress, "transformer: training steps", done, steps,
                     {"loss": sum(losses) / len(losses)})
                losses = []
    return export_weights(net)
