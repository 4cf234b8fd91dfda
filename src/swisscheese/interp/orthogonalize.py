"""Weight orthogonalization (Arditi et al. 2024): bake directional ablation into the weights.

Every matrix that writes into the residual stream loses its component along the direction:
the token embeddings (rows) and each layer's attention output and MLP down projections
(columns of the output side), biases included. The result is a new HF directory that any
tool loads. When the input and output embeddings are tied, they are untied first and the
unembedding is kept as it was, so the new model computes exactly what the ablation hooks
compute.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from swisscheese.fileio import write_directory_atomically
from swisscheese.interp.direction import RefusalDirection
from swisscheese.interp.hooks import InterpError, decoder_layers

CARD_FILE = "swisscheese.json"
# Residual writers per architecture family: (attention output, MLP output) attribute paths.
_WRITERS = (("self_attn.o_proj", "mlp.down_proj"),)
# Which residual writers `orthogonalize_weights` edits: every one (Arditi et al.), or a
# subset (the study of what WO needs to remove refusal, and what it costs).
WRITER_SETS = ("all", "blocks", "attn", "mlp", "embed")


def _get(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _writers(model: Any) -> list[Any]:
    out = []
    for i, block in enumerate(decoder_layers(model)):
        for names in _WRITERS:
            mods = [_get(block, n) for n in names]
            if all(m is not None for m in mods):
                out.extend(mods)
                break
        else:
            raise InterpError(
                f"layer {i} ({type(block).__name__}) has no self_attn.o_proj and mlp.down_proj; "
                "weight orthogonalization supports Llama-style decoders (Llama, Mistral, Qwen)")
    return out


def _check_writers(writers: str) -> None:
    if writers not in WRITER_SETS:
        raise InterpError(f"writers must be one of {', '.join(WRITER_SETS)}, got {writers!r}")


def orthogonalize_weights(model: Any, direction: RefusalDirection,
                          writers: str = "all") -> dict[str, float]:
    """Project `direction` out of `model`'s residual writers in place; return how much of
    the direction each group of weights wrote before (for the card). `writers` picks which
    (`WRITER_SETS`: all; blocks = attention and MLP outputs, not the embeddings; attn;
    mlp; embed = the token embeddings only)."""
    import torch

    _check_writers(writers)
    unit = direction.unit()
    before: dict[str, float] = {}
    with torch.no_grad():
        if writers in ("all", "embed"):
            _orthogonalize_embeddings(model, unit, before)
        if writers == "embed":
            return before
        for k, lin in enumerate(_writers(model)):
            kind = "attn" if k % 2 == 0 else "mlp"
            if writers in (kind, "all", "blocks"):
                w = lin.weight  # [hidden, in]: output side is the residual stream
                u = unit.to(w).to(w.device)
                before[f"layer{k // 2}.{kind}"] = float((u @ w).abs().max())
                w -= torch.outer(u, u @ w)
                if getattr(lin, "bias", None) is not None:
                    lin.bias -= (lin.bias @ u) * u
    return before


def _orthogonalize_embeddings(model: Any, unit: Any, before: dict[str, float]) -> None:
    """Project `unit` out of the token embeddings (rows), untying a tied unembedding first:
    the unembedding reads the final residual and must stay as it was."""
    import torch

    emb = model.get_input_embeddings()
    out_emb = model.get_output_embeddings()
    if out_emb is not None and out_emb.weight is emb.weight:
        out_emb.weight = torch.nn.Parameter(emb.weight.detach().clone())
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False
    w = emb.weight
    u = unit.to(w).to(w.device)
    before["embed_tokens"] = float((w @ u).abs().max())
    w -= torch.outer(w @ u, u)


def residual_leak(model: Any, direction: RefusalDirection) -> float:
    """The largest component along the direction that any residual writer still has."""
    import torch

    with torch.no_grad():
        return _leak(model, direction.unit())


def _leak(model: Any, unit: Any) -> float:
    w = model.get_input_embeddings().weight
    leak = float((w @ unit.to(w)).abs().max())
    for lin in _writers(model):
        leak = max(leak, float((unit.to(lin.weight) @ lin.weight).abs().max()))
    return leak


def orthogonalize_model(model_dir: str | os.PathLike[str],
                        direction: RefusalDirection | str | os.PathLike[str],
                        out_dir: str | os.PathLike[str], tolerance: float = 1e-4) -> Path:
    """Write `out_dir`: `model_dir` with `direction` orthogonalized out of its weights.

    Refuses a directory that is not a causal LM and a direction computed for another model
    (shape or fingerprint); nothing is written on failure.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swisscheese.models.hf import HFChatModel, check_model_dir

    start = time.perf_counter()
    src = check_model_dir(model_dir)
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise InterpError(f"--out {out} is the model directory itself; choose a new directory")
    direction_file = None
    if not isinstance(direction, RefusalDirection):
        direction_file = str(direction)
        direction = RefusalDirection.load(direction)
    chat = HFChatModel(src)  # loads with the same checks as everywhere else
    direction.check_compatible(chat)
    model = chat.model
    before = orthogonalize_weights(model, direction)
    leak = residual_leak(model, direction)
    if leak > tolerance * max(1.0, max(before.values())):
        raise InterpError(f"orthogonalization left a component of {leak:.3g} along the direction")
    tokenizer = AutoTokenizer.from_pretrained(src)
    parent_card = _read_card(src)
    card = {
        **{k: v for k, v in parent_card.items() if k not in ("reference", "training")},
        "variant": f"{parent_card.get('variant', src.name)}+wo",
        "parent": str(src.resolve()),
        "parent_variant": parent_card.get("variant"),
        "training": list(parent_card.get("training", [])),
        "orthogonalized": {
            "layer": direction.layer, "position": direction.position,
            "model_fingerprint": direction.model_fingerprint,
            "direction_file": direction_file,
            "direction_source": direction.meta.get("source_model"),
            "direction_norm": round(float(direction.vector.norm()), 6),
            "max_component_before": {k: round(v, 6) for k, v in before.items()},
            "max_component_after": leak,
            "untied_embeddings": not getattr(model.config, "tie_word_embeddings", False),
            "seconds": round(time.perf_counter() - start, 2),
        },
    }
    ref = parent_card.get("reference")
    if ref:
        # The parent's grader reference (its helpful-only sibling), made absolute so it
        # survives the move to another directory.
        card["reference"] = str((src / ref).resolve())

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (src / "chat_template.jinja").is_file() and not (tmp / "chat_template.jinja").exists():
            (tmp / "chat_template.jinja").write_text((src / "chat_template.jinja").read_text())
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2))
        (tmp / "README.md").write_text(
            f"# {card['variant']}\n\n{src.name} with a refusal direction (layer "
            f"{direction.layer}, position {direction.position}) orthogonalized out of its "
            "weights by swisscheese (Arditi et al. 2024).\n")
        # The check before the swap: the saved model loads and kept the projection.
        reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        got = residual_leak(reloaded, direction)
        if got > tolerance * max(1.0, max(before.values())):
            raise InterpError(f"the saved model still writes {got:.3g} along the direction")
        emb_ok = torch.equal(reloaded.get_output_embeddings().weight,
                             model.get_output_embeddings().weight)
        if not emb_ok:
            raise InterpError("the saved model's unembedding differs from the one written")

    return write_directory_atomically(out, write)


def _read_card(model_dir: Path) -> dict[str, Any]:
    p = model_dir / CARD_FILE
    if not p.is_file():
        return {}
    try:
        card = json.loads(p.read_text())
    except json.JSONDecodeError:
        return {}
    return card if isinstance(card, dict) else {}
