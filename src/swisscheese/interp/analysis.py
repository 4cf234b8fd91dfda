"""The analyses behind model-level safety, each returning a JSON-able dict.

(a) `separation`: do safe, unsafe and jailbreak prompts form separate clusters in the
    residual stream, layer by layer, and on which side do jailbreaks land (Jain et al. 2024)?
(b) `weight_delta_analysis`: how the safety weight delta (aligned minus helpful-only, per
    linear layer) acts on unsafe versus safe inputs: the gain |dW x| / |x| and the share of
    x in dW's top right-singular directions against the rest (its near-null space).
(c) `direction_cosines` and `layerwise_direction_cosines`: how alike refusal directions of
    several checkpoints are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from swisscheese.interp.hooks import (
    InterpError,
    collect_activations,
    decoder_layers,
    encode_prompts,
    unwrap,
)

if TYPE_CHECKING:
    import torch


def _r(x: float, nd: int = 4) -> float | None:
    """Rounded for JSON; None where the figure is undefined (JSON has no NaN)."""
    return round(float(x), nd) if math.isfinite(float(x)) else None


# ---- (a) separation ---------------------------------------------------------------------------
def activation_groups(model: Any, groups: Mapping[str, Sequence[str]], position: int = -1,
                      batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Residual activations at one position for each named group: name -> [n, n_layers+1, d]."""
    out = {}
    for name, prompts in groups.items():
        if not prompts:
            raise InterpError(f"activation group {name!r} is empty")
        out[name] = collect_activations(model, None, list(prompts), positions=(position,),
                                        batch_size=batch_size)[:, :, 0]
    return out


def _fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, iters: int = 100
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logistic regression on standardised features (LBFGS): (weights, bias, mean, scale)."""
    import torch

    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mu, sd


def _predict(probe: tuple, x: torch.Tensor) -> torch.Tensor:
    w, b, mu, sd = probe
    return ((x - mu) / sd) @ w + b > 0


def probe_accuracy(neg: torch.Tensor, pos: torch.Tensor, folds: int = 5, seed: int = 0
                   ) -> float:
    """Cross-validated accuracy of a linear probe telling `pos` rows from `neg` rows."""
    import torch

    x = torch.cat([neg, pos]).float()
    y = torch.cat([torch.zeros(len(neg)), torch.ones(len(pos))])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    folds = max(2, min(folds, len(x)))
    correct = 0
    for k in range(folds):
        test = perm[k::folds]
        train = torch.cat([perm[j::folds] for j in range(folds) if j != k])
        probe = _fit_probe(x[train], y[train])
        correct += int((_predict(probe, x[test]) == y[test].bool()).sum())
    return correct / len(x)


def silhouette(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean silhouette coefficient of the two-cluster labelling (Euclidean)."""
    import torch

    x = torch.cat([a, b]).float()
    lab = torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).bool()
    d = torch.cdist(x, x)
    same = lab[:, None] == lab[None, :]
    n_same = same.sum(1) - 1
    a_i = (d * same).sum(1) / n_same.clamp_min(1)
    b_i = (d * ~same).sum(1) / (~same).sum(1).clamp_min(1)
    s = (b_i - a_i) / torch.maximum(a_i, b_i).clamp_min(1e-12)
    s = torch.where(n_same > 0, s, torch.zeros_like(s))
    return float(s.mean())


def separation(acts: Mapping[str, torch.Tensor], safe: str = "safe", unsafe: str = "unsafe",
               folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Per layer: probe accuracy and silhouette of safe vs unsafe, and where every other
    group lands: its mean position on the safe->unsafe axis (0 = safe mean, 1 = unsafe mean),
    the share of its rows nearer the unsafe mean, and the share the probe calls unsafe."""
    import torch

    for g in (safe, unsafe):
        if g not in acts:
            raise InterpError(f"separation needs a {g!r} group; got {', '.join(acts)}")
    n_points = acts[safe].shape[1]
    layers = []
    for lay in range(n_points):
        s, u = acts[safe][:, lay].float(), acts[unsafe][:, lay].float()
        mu_s, mu_u = s.mean(0), u.mean(0)
        axis = mu_u - mu_s
        # When the two means coincide (e.g. the embedding of one shared template token)
        # the axis is undefined and so is every position along it.
        scale = float(torch.cat([s, u]).norm(dim=1).mean())
        denom = float(axis @ axis) if float(axis.norm()) > 1e-5 * max(scale, 1e-12) else math.nan
        y = torch.cat([torch.zeros(len(s)), torch.ones(len(u))])
        probe = _fit_probe(torch.cat([s, u]), y)
        row: dict[str, Any] = {
            "layer": lay,
            "probe_accuracy": _r(probe_accuracy(s, u, folds, seed)),
            "silhouette": _r(silhouette(s, u)),
            "mean_distance": _r(float(axis.norm())),
            "groups": {}}
        for name, x in acts.items():
            xl = x[:, lay].float()
            along = (xl - mu_s) @ axis / denom
            nearer_unsafe = (xl - mu_u).norm(dim=1) < (xl - mu_s).norm(dim=1)
            row["groups"][name] = {
                "n": len(xl),
                "axis_position": _r(along.mean()),
                "nearer_unsafe": _r(nearer_unsafe.float().mean()),
                "probe_unsafe": _r(_predict(probe, xl).float().mean()),
                "distance_to_safe": _r((xl - mu_s).norm(dim=1).mean()),
                "distance_to_unsafe": _r((xl - mu_u).norm(dim=1).mean()),
            }
        layers.append(row)
    best = max(layers, key=lambda r: (r["probe_accuracy"], r["silhouette"]))
    return {"safe": safe, "unsafe": unsafe, "layers": layers, "best_layer": best["layer"]}


# ---- (b) the safety weight delta ----------------------------------------------------------------
def linear_layers(model: Any) -> dict[str, Any]:
    """Every nn.Linear inside the decoder layers, by name ("0.self_attn.q_proj", ...)."""
    import torch

    out = {}
    for i, block in enumerate(decoder_layers(model)):
        for name, mod in block.named_modules():
            if isinstance(mod, torch.nn.Linear):
                out[f"{i}.{name}"] = mod
    return out


def linear_inputs(model: Any, prompts: Sequence[str], batch_size: int = 32
                  ) -> dict[str, torch.Tensor]:
    """What each decoder linear layer reads at the last prompt token: name -> [n, in]."""
    import torch

    module, tok = unwrap(model)
    lins = linear_layers(module)
    got: dict[str, list[torch.Tensor]] = {n: [] for n in lins}
    handles = []

    def hook_for(name: str) -> Any:
        def hook(_m: Any, args: tuple) -> None:
            got[name].append(args[0][:, -1].detach().float().cpu())
        return hook

    try:
        for name, lin in lins.items():
            handles.append(lin.register_forward_pre_hook(hook_for(name)))
        with torch.no_grad():
            for s in range(0, len(prompts), batch_size):
                ids, mask = encode_prompts(tok, list(prompts[s:s + batch_size]),
                                           next(module.parameters()).device)
                module(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in got.items()}


def weight_delta_analysis(helpful: Any, aligned: Any, groups: Mapping[str, Sequence[str]],
                          top_k: int = 4, inputs_from: str = "aligned",
                          batch_size: int = 32) -> dict[str, Any]:
    """Per linear layer: SVD of dW = W_aligned - W_helpful, and for each prompt group the
    mean gain |dW x|/|x| and the share of |x| in dW's top-k right-singular subspace (the
    rest lies in directions dW barely changes: its near-null space)."""
    import torch

    h_mod, _ = unwrap(helpful)
    a_mod, _ = unwrap(aligned)
    h_lin, a_lin = linear_layers(h_mod), linear_layers(a_mod)
    if list(h_lin) != list(a_lin):
        raise InterpError("helpful and aligned models have different linear layers; the weight "
                          "delta needs two checkpoints of one architecture")
    src = aligned if inputs_from == "aligned" else helpful
    inputs = {g: linear_inputs(src, p, batch_size) for g, p in groups.items()}
    layers = []
    for name in a_lin:
        wa = a_lin[name].weight.detach().float().cpu()
        wh = h_lin[name].weight.detach().float().cpu()
        if wa.shape != wh.shape:
            raise InterpError(f"{name}: shapes {tuple(wh.shape)} and {tuple(wa.shape)} differ")
        dw = wa - wh
        _, sv, vh = torch.linalg.svd(dw, full_matrices=False)
        k = min(top_k, len(sv))
        vk = vh[:k]
        energy = float((sv[:k] ** 2).sum() / (sv ** 2).sum().clamp_min(1e-30))
        row: dict[str, Any] = {
            "name": name, "shape": list(dw.shape),
            "delta_rel_norm": _r(dw.norm() / wh.norm().clamp_min(1e-12), 6),
            "top_singular_values": [_r(v, 6) for v in sv[:k]],
            "topk_energy": _r(energy), "groups": {}}
        for g, ins in inputs.items():
            x = ins[name]
            xn = x.norm(dim=1).clamp_min(1e-12)
            top = (x @ vk.T).norm(dim=1) / xn
            row["groups"][g] = {
                "gain": _r(((x @ dw.T).norm(dim=1) / xn).mean(), 6),
                "topk_share": _r(top.mean()),
                "rest_share": _r((1 - top ** 2).clamp_min(0).sqrt().mean()),
            }
        layers.append(row)
    summary = {}
    names = list(groups)
    for g in names:
        summary[g] = {
            "mean_gain": _r(sum(r["groups"][g]["gain"] for r in layers) / len(layers), 6),
            "mean_topk_share": _r(sum(r["groups"][g]["topk_share"] for r in layers)
                                  / len(layers))}
    if "unsafe" in groups and "safe" in groups:
        ratios = [r["groups"]["unsafe"]["gain"] / max(r["groups"]["safe"]["gain"], 1e-12)
                  for r in layers]
        summary["unsafe_over_safe_gain"] = {
            "mean": _r(sum(ratios) / len(ratios)),
            "share_of_layers_above_1": _r(sum(x > 1 for x in ratios) / len(ratios))}
    return {"top_k": top_k, "inputs_from": inputs_from, "layers": layers, "summary": summary}


# ---- (c) refusal directions across checkpoints --------------------------------------------------
def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    import torch

    a, b = a.float().flatten(), b.float().flatten()
    if a.shape != b.shape:
        raise InterpError(f"cannot compare directions of {a.numel()} and {b.numel()} dimensions")
    if a.norm() < 1e-6 or b.norm() < 1e-6:
        # A zero difference of means (e.g. the embedding of a shared template token) has no
        # direction to compare.
        return math.nan
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def direction_cosines(directions: Mapping[str, Any]) -> dict[str, Any]:
    """Pairwise cosine between named directions (RefusalDirection or tensors)."""
    names = list(directions)
    vecs = {n: getattr(d, "vector", d) for n, d in directions.items()}
    return {"names": names,
            "matrix": [[_r(cosine(vecs[a], vecs[b])) for b in names] for a in names]}


def layerwise_direction_cosines(models: Mapping[str, Any], harmful: Sequence[str],
                                harmless: Sequence[str], position: int = -1,
                                batch_size: int = 32) -> dict[str, Any]:
    """Difference-of-means directions of each model at every residual point, and the cosine
    of every pair of models per layer."""
    from swisscheese.interp.direction import mean_differences

    diffs = {n: mean_differences(m, harmful, harmless, [position], batch_size)[:, 0]
             for n, m in models.items()}
    names = list(models)
    n_points = min(d.shape[0] for d in diffs.values())
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pairs[f"{a} vs {b}"] = [_r(cosine(diffs[a][lay], diffs[b][lay]))
                                    for lay in range(n_points)]
    return {"position": position, "models": names, "layers": list(range(n_points)),
            "norms": {n: [_r(d[lay].norm()) for lay in range(n_points)]
                      for n, d in diffs.items()},
            "cosine": pairs}
