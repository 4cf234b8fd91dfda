"""The refusal direction (Arditi et al. 2024): difference of means between the residual
activations of harmful and harmless prompts, at one layer and one post-instruction position.

When the layer or position is not given, each candidate is ablated on a validation split
and the one that most lowers refusal is kept, among those that leave harmless prompts'
next-token distribution nearly unchanged (KL filter), as in the paper. Refusal is scored
first by the log-odds of the model's own refusal-opening tokens, then the best few by
generating and counting `swisscheese.world.grader.is_refusal`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swisscheese.fileio import atomic_write_json
from swisscheese.interp.hooks import (
    InterpError,
    check_layer,
    collect_activations,
    encode_prompts,
    hidden_size,
    n_layers,
    post_instruction_positions,
    unwrap,
)
from swisscheese.progress import Progress

if TYPE_CHECKING:
    import torch

    from swisscheese.models.hf import HFChatModel

FORMAT = "swisscheese-refusal-direction/1"


class DirectionMismatchError(InterpError):
    """A direction applied to a model it was not computed for."""


def model_fingerprint(model: Any, tokenizer: Any = None) -> str:
    """A short hash of what makes residual streams comparable: the architecture, its sizes
    and the tokenizer's vocabulary. Fine-tuned checkpoints of one model share it."""
    module, own_tok = unwrap(model)
    tokenizer = tokenizer or own_tok
    if tokenizer is None:
        raise InterpError("a fingerprint needs the model's tokenizer; pass an HFChatModel")
    cfg = module.config
    vocab = sorted(tokenizer.get_vocab().items())
    text = json.dumps([getattr(cfg, "model_type", type(module).__name__), hidden_size(module),
                       n_layers(module), getattr(cfg, "vocab_size", None), vocab])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RefusalDirection:
    """A residual-stream direction; `vector` is the raw difference of means (its norm is
    meaningful for activation addition); ablation uses its unit vector."""

    vector: torch.Tensor
    layer: int
    position: int
    model_fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return int(self.vector.numel())

    def unit(self) -> torch.Tensor:
        from swisscheese.interp.ablation import unit_vector

        return unit_vector(self.vector)

    def check_compatible(self, model: Any, tokenizer: Any = None) -> None:
        """Raise DirectionMismatchError unless this direction fits `model` (an HFChatModel,
        a bare HF model with its tokenizer, or a model directory)."""
        if isinstance(model, str | os.PathLike):
            from swisscheese.models.hf import HFChatModel

            model = HFChatModel(model)
        module, own_tok = unwrap(model)
        size = hidden_size(module)
        if self.hidden_size != size:
            raise DirectionMismatchError(
                f"direction has {self.hidden_size} dimensions but the model's residual stream "
                f"has {size}: it was computed for another model "
                f"({self.meta.get('source_model', 'unknown source')})")
        top = n_layers(module)
        if not 0 <= self.layer <= top:
            raise DirectionMismatchError(
                f"direction layer {self.layer} is out of range for a model with {top} layers")
        fp = model_fingerprint(module, tokenizer or own_tok)
        if fp != self.model_fingerprint:
            raise DirectionMismatchError(
                f"direction fingerprint {self.model_fingerprint} does not match the model's "
                f"{fp} (architecture or tokenizer differ): it was computed for "
                f"{self.meta.get('source_model', 'another model')}")

    # ---- files --------------------------------------------------------------------------
    @staticmethod
    def paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """(tensor file, metadata file) for `path` with or without a suffix."""
        p = Path(path)
        if p.suffix in (".safetensors", ".json"):
            p = p.with_suffix("")
        return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write `<path>.safetensors` (the vector) and `<path>.json` (the rest), each atomically;
        returns the tensor file."""
        from safetensors.torch import save

        tensor_path, meta_path = self.paths(path)
        tensor_path.parent.mkdir(parents=True, exist_ok=True)
        data = save({"direction": self.vector.detach().float().contiguous().cpu()},
                    metadata={"format": FORMAT, "fingerprint": self.model_fingerprint})
        _atomic_write_bytes(tensor_path, data)
        atomic_write_json(meta_path, {
            "format": FORMAT, "layer": self.layer, "position": self.position,
            "hidden_size": self.hidden_size, "model_fingerprint": self.model_fingerprint,
            "tensor_sha256": hashlib.sha256(data).hexdigest(), "meta": self.meta})
        return tensor_path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RefusalDirection:
        from safetensors.torch import load

        tensor_path, meta_path = cls.paths(path)
        for p in (tensor_path, meta_path):
            if not p.is_file():
                raise InterpError(f"direction file {p} does not exist (a direction is a "
                                  ".safetensors file with a .json beside it)")
        try:
            info = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise InterpError(f"{meta_path} is not valid JSON: {e}") from None
        fmt = info.get("format") if isinstance(info, dict) else None
        if fmt != FORMAT:
            raise InterpError(f"{meta_path} is not a swisscheese refusal direction "
                              f"(format {fmt!r}, expected {FORMAT!r})")
        data = tensor_path.read_bytes()
        if info.get("tensor_sha256") not in (None, hashlib.sha256(data).hexdigest()):
            raise InterpError(f"{tensor_path} does not match the hash in {meta_path}: "
                              "the two files come from different saves")
        try:
            vec = load(data)["direction"]
        except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt file
            raise InterpError(f"cannot read {tensor_path}: {e}") from None
        if vec.ndim != 1 or vec.numel() != info.get("hidden_size"):
            raise InterpError(f"{tensor_path} holds a tensor of shape {tuple(vec.shape)}; "
                              f"{meta_path} says hidden size {info.get('hidden_size')}")
        return cls(vec, int(info["layer"]), int(info["position"]),
                   str(info["model_fingerprint"]), dict(info.get("meta") or {}))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_chat_model(model: str | os.PathLike[str] | HFChatModel) -> HFChatModel:
    if isinstance(model, str | os.PathLike):
        from swisscheese.models.hf import HFChatModel

        return HFChatModel(model)
    if not hasattr(model, "tokenizer") or not hasattr(model, "model"):
        raise InterpError(f"expected a model directory or an HFChatModel, got "
                          f"{type(model).__name__}")
    return model


# ---- difference of means ----------------------------------------------------------------------
def mean_differences(model: HFChatModel, harmful: Sequence[str], harmless: Sequence[str],
                     positions: Sequence[int], batch_size: int = 32) -> torch.Tensor:
    """mean(harmful) - mean(harmless) at every residual point: [n_layers+1, n_pos, hidden]."""
    if not harmful or not harmless:
        raise InterpError("the refusal direction needs harmful and harmless prompts "
                          f"(got {len(harmful)} harmful, {len(harmless)} harmless)")
    a = collect_activations(model, None, list(harmful), positions=positions,
                            batch_size=batch_size).mean(0)
    b = collect_activations(model, None, list(harmless), positions=positions,
                            batch_size=batch_size).mean(0)
    return a - b


def _last_logprobs(model: HFChatModel, prompts: Sequence[str], batch_size: int
                   ) -> torch.Tensor:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            ids, mask = encode_prompts(model.tokenizer, prompts[s:s + batch_size],
                                       model.model.device)
            logits = model.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            out.append(torch.log_softmax(logits[:, -1].float(), -1).cpu())
    return torch.cat(out)


def refusal_score(logprobs: torch.Tensor, refusal_tokens: Sequence[int]) -> torch.Tensor:
    """Per prompt: log-odds that the reply opens with one of the refusal tokens."""
    import torch

    p = torch.logsumexp(logprobs[:, list(refusal_tokens)], -1)
    return p - torch.log1p(-p.exp().clamp(max=1 - 1e-6))


def _refusal_rate(model: HFChatModel, prompts: Sequence[str], max_new_tokens: int) -> float:
    from swisscheese.models.base import GenerationParams
    from swisscheese.world.grader import is_refusal

    replies = model.generate_batch(list(prompts), GenerationParams(max_new_tokens=max_new_tokens))
    return sum(is_refusal(r.content) for r in replies) / len(replies)


def _split(items: Sequence[str], val: Sequence[str] | None) -> tuple[list[str], list[str]]:
    if val is not None:
        return list(items), list(val)
    cut = max(1, len(items) * 3 // 4)
    if cut >= len(items):
        raise InterpError("selecting the layer needs a validation split: pass val_harmful and "
                          "val_harmless, or at least 2 prompts of each kind")
    return list(items[:cut]), list(items[cut:])


def compute_refusal_direction(
        model: str | os.PathLike[str] | HFChatModel, harmful: Sequence[str],
        harmless: Sequence[str], layer: int | None = None, position: int | None = None,
        val_harmful: Sequence[str] | None = None, val_harmless: Sequence[str] | None = None,
        *, candidate_layers: Sequence[int] | None = None,
        candidate_positions: Sequence[int] | None = None, kl_max: float = 0.1,
        top_generate: int = 3, max_new_tokens: int = 24, batch_size: int = 32,
        progress: Progress | None = None) -> RefusalDirection:
    """The refusal direction of `model`, selecting layer and position when not given.

    Layers are residual-stream points (0 = embeddings, i = output of decoder layer i-1);
    positions are negative, counted from the end of the prompt. Without validation
    prompts, the last quarter of each list is held out for the selection.
    """
    start = time.perf_counter()
    m = as_chat_model(model)
    top = n_layers(m.model)
    if layer is not None:
        check_layer(m.model, layer)
    if position is not None and (not isinstance(position, int) or position >= 0):
        raise InterpError(f"position {position} must be a negative index from the prompt's end")
    select = layer is None or position is None
    if select:
        harmful, val_harmful = _split(harmful, val_harmful)
        harmless, val_harmless = _split(harmless, val_harmless)
    positions = ([position] if position is not None
                 else list(candidate_positions or post_instruction_positions(m.tokenizer)))
    diffs = mean_differences(m, harmful, harmless, positions, batch_size)
    meta: dict[str, Any] = {
        "source_model": str(getattr(m, "path", m.name)), "n_harmful": len(harmful),
        "n_harmless": len(harmless), "method": "difference of means"}
    fp = model_fingerprint(m)
    if not select:
        assert layer is not None and position is not None  # both given: nothing to select
        meta["selection"] = "given"
        meta["seconds"] = round(time.perf_counter() - start, 2)
        return RefusalDirection(diffs[layer, 0].clone(), layer, position, fp,
                                _with_norm(meta, diffs[layer, 0]))
    layers = ([layer] if layer is not None else list(
        candidate_layers or range(1, max(1, int(0.8 * top)) + 1)))
    for lay in layers:
        check_layer(m.model, lay)
    best = _select(m, diffs, layers, positions, list(val_harmful or []),
                   list(val_harmless or []), kl_max, top_generate, max_new_tokens, batch_size,
                   progress)
    meta.update(best["meta"])
    meta["seconds"] = round(time.perf_counter() - start, 2)
    li, pi = best["layer"], best["position"]
    vec = diffs[li, positions.index(pi)].clone()
    return RefusalDirection(vec, li, pi, fp, _with_norm(meta, vec))


def _with_norm(meta: dict[str, Any], vec: torch.Tensor) -> dict[str, Any]:
    return {**meta, "norm": round(float(vec.norm()), 6)}


def _select(m: HFChatModel, diffs: torch.Tensor, layers: list[int], positions: list[int],
            val_harmful: list[str], val_harmless: list[str], kl_max: float, top_generate: int,
            max_new_tokens: int, batch_size: int, progress: Progress | None) -> dict[str, Any]:
    import torch

    from swisscheese.interp.ablation import ablate_direction
    from swisscheese.models.base import GenerationParams
    from swisscheese.world.grader import is_refusal

    # The model's own refusals tell which first tokens open a refusal.
    base_h = _last_logprobs(m, val_harmful, batch_size)
    replies = m.generate_batch(val_harmful, GenerationParams(max_new_tokens=max_new_tokens))
    refused = [is_refusal(r.content) for r in replies]
    tokens = sorted({int(base_h[i].argmax()) for i, r in enumerate(refused) if r})
    if not tokens:
        raise InterpError(
            f"{m.name} refuses none of the {len(val_harmful)} validation harmful prompts, so "
            "there is no refusal to find a direction for; pass layer and position to take the "
            "difference of means at a fixed point")
    base_b = _last_logprobs(m, val_harmless, batch_size)
    cands = [(lay, pos) for lay in layers for pos in positions]
    rows: list[dict[str, Any]] = []
    for k, (lay, pos) in enumerate(cands):
        vec = diffs[lay, positions.index(pos)]
        with ablate_direction(m, vec, check=False):
            abl_h = _last_logprobs(m, val_harmful, batch_size)
            abl_b = _last_logprobs(m, val_harmless, batch_size)
        kl = float((base_b.exp() * (base_b - abl_b)).sum(-1).mean())
        rows.append({"layer": lay, "position": pos,
                     "refusal_score": round(float(refusal_score(abl_h, tokens).mean()), 4),
                     "harmless_kl": round(kl, 5)})
        if progress:
            progress("score candidates", k + 1, len(cands))
    ok = [r for r in rows if r["harmless_kl"] <= kl_max] or rows
    ranked = sorted(ok, key=lambda r: r["refusal_score"])[:max(1, top_generate)]
    for k, r in enumerate(ranked):
        vec = diffs[r["layer"], positions.index(r["position"])]
        with ablate_direction(m, vec, check=False):
            r["ablated_refusal_rate"] = round(_refusal_rate(m, val_harmful, max_new_tokens), 4)
        if progress:
            progress("generate with ablation", k + 1, len(ranked))
    best = min(ranked, key=lambda r: (r["ablated_refusal_rate"], r["refusal_score"]))
    return {"layer": best["layer"], "position": best["position"], "meta": {
        "selection": "ablation on validation split",
        "n_val_harmful": len(val_harmful), "n_val_harmless": len(val_harmless),
        "baseline_refusal_rate": round(sum(refused) / len(refused), 4),
        "baseline_refusal_score": round(float(refusal_score(base_h, tokens).mean()), 4),
        "refusal_tokens": [m.tokenizer.decode([t]) for t in tokens],
        "kl_max": kl_max, "kl_filter_passed": len(ok) if ok is not rows else 0,
        "candidates": rows, "chosen": best, "torch": torch.__version__}}
