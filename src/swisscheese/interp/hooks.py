"""Residual-stream access for any HF causal LM: prompts through the chat template, forward
hooks on the decoder layers (always removed on exit), and activation capture.

The residual stream has `n_layers + 1` points: index 0 is the input of decoder layer 0 (the
token embeddings), index `i + 1` is the output of decoder layer `i`. Every other module of
`swisscheese.interp` uses this numbering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from swisscheese.models.base import ConversationLike, as_messages

if TYPE_CHECKING:
    import torch

# Where common HF architectures keep their decoder layers.
_LAYER_PATHS = ("model.layers", "model.language_model.layers", "transformer.h",
                "gpt_neox.layers", "model.decoder.layers")


class InterpError(ValueError):
    """Bad input to an interpretability tool: the message names what and where."""


def unwrap(model: Any) -> tuple[Any, Any]:
    """(torch module, tokenizer or None) from an HFChatModel or a bare HF model."""
    if hasattr(model, "model") and hasattr(model, "tokenizer") and hasattr(model, "eos_ids"):
        return model.model, model.tokenizer
    return model, None


def decoder_layers(model: Any) -> Any:
    """The list of decoder layers of an HF causal LM (Llama, Mistral, Qwen, GPT-2, ...)."""
    module, _ = unwrap(model)
    for path in _LAYER_PATHS:
        obj = module
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and len(obj) > 0:
            return obj
    raise InterpError(f"cannot find the decoder layers of {type(module).__name__}; "
                      f"looked for {', '.join(_LAYER_PATHS)}")


def n_layers(model: Any) -> int:
    return len(decoder_layers(model))


def hidden_size(model: Any) -> int:
    module, _ = unwrap(model)
    cfg = module.config
    size = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    if size is None and hasattr(cfg, "get_text_config"):
        size = getattr(cfg.get_text_config(), "hidden_size", None)
    if size is None:
        raise InterpError(f"{type(module).__name__} config has no hidden_size")
    return int(size)


def check_layer(model: Any, layer: int) -> int:
    """A residual-stream index in [0, n_layers], or a clear error."""
    top = n_layers(model)
    if not isinstance(layer, int) or not 0 <= layer <= top:
        raise InterpError(f"layer {layer} is out of range: this model's residual stream has "
                          f"points 0..{top} (0 = embeddings, {top} = last layer's output)")
    return layer


# ---- prompts --------------------------------------------------------------------------------
def prompt_text(tokenizer: Any, conversation: ConversationLike) -> str:
    """The prompt the model sees, as HFChatModel.prompt_text builds it."""
    from swisscheese.models.hf import FALLBACK_TEMPLATE

    msgs = [m.to_dict() for m in as_messages(conversation)]
    template = getattr(tokenizer, "chat_template", None) or FALLBACK_TEMPLATE
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                         chat_template=template)


def encode_prompts(tokenizer: Any, conversations: Sequence[ConversationLike],
                   device: Any = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded input ids and attention mask, so position -1 is every row's last token."""
    import torch

    ids = [tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"]
           for c in conversations]
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return input_ids, mask


def post_instruction_positions(tokenizer: Any, limit: int = 5) -> tuple[int, ...]:
    """Negative positions of the template tokens after the user's text (Arditi et al. search
    the refusal direction there): e.g. `<|end|><|assistant|>` gives (-2, -1)."""
    sentinel = "\x00SENTINEL\x00"
    text = prompt_text(tokenizer, sentinel)
    tail = text.split(sentinel, 1)[1]
    n = len(tokenizer(tail, add_special_tokens=False)["input_ids"]) if tail else 0
    n = max(1, min(n, limit))
    return tuple(range(-n, 0))


# ---- hooks ----------------------------------------------------------------------------------
Edit = Callable[["torch.Tensor", int], "torch.Tensor | None"]


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, new: Any) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextmanager
def residual_hooks(model: Any, edit: Edit, layers: Sequence[int] | None = None
                   ) -> Iterator[None]:
    """Call `edit(hidden, point)` on residual-stream points; a returned tensor replaces it.

    Point 0 is seen by a pre-hook on layer 0, point i+1 by a forward hook on layer i.
    Hooks are removed on exit, also after an error.
    """
    blocks = decoder_layers(model)
    points = set(range(len(blocks) + 1) if layers is None else layers)
    handles = []

    def pre(_module: Any, args: tuple, kwargs: dict) -> Any:
        if args:
            new = edit(args[0], 0)
            return None if new is None else ((new, *args[1:]), kwargs)
        new = edit(kwargs["hidden_states"], 0)
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    def post_for(point: int) -> Callable[..., Any]:
        def post(_module: Any, _args: Any, output: Any) -> Any:
            new = edit(_first(output), point)
            return None if new is None else _replace_first(output, new)
        return post

    try:
        if 0 in points:
            handles.append(blocks[0].register_forward_pre_hook(pre, with_kwargs=True))
        for i, block in enumerate(blocks):
            if i + 1 in points:
                handles.append(block.register_forward_hook(post_for(i + 1)))
        yield
    finally:
        for h in handles:
            h.remove()


_SUBLAYERS = (("self_attn", "attn", "attention", "self_attention"), ("mlp", "feed_forward"))


@contextmanager
def sublayer_output_hooks(model: Any, edit: Callable[[torch.Tensor], torch.Tensor]
                          ) -> Iterator[None]:
    """Replace every attention and MLP block's output (what it adds to the residual stream)
    by `edit(output)`; removed on exit. Layers without such blocks are an error."""
    handles = []

    def post(_module: Any, _args: Any, output: Any) -> Any:
        return _replace_first(output, edit(_first(output)))

    try:
        for i, block in enumerate(decoder_layers(model)):
            for names in _SUBLAYERS:
                sub = next((getattr(block, n) for n in names if hasattr(block, n)), None)
                if sub is None:
                    raise InterpError(f"layer {i} ({type(block).__name__}) has none of "
                                      f"{', '.join(names)}")
                handles.append(sub.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


def _resolve_positions(mask: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """Padded column index per row and position; negative positions count from the end."""
    import torch

    width = mask.shape[1]
    lengths = mask.sum(1)
    cols = []
    for p in positions:
        if p < 0:
            col = torch.full_like(lengths, width + p)
        else:
            col = width - lengths + p
        cols.append(col)
    idx = torch.stack(cols, 1)
    if (idx < width - lengths[:, None]).any() or (idx >= width).any():
        raise InterpError(f"positions {tuple(positions)} fall outside a prompt of the batch "
                          f"(shortest prompt: {int(lengths.min())} tokens)")
    return idx


def collect_activations(model: Any, tokenizer: Any = None,
                        conversations: Sequence[ConversationLike] = (),
                        layers: Sequence[int] | None = None,
                        positions: Sequence[int] = (-1,), batch_size: int = 32,
                        progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Residual-stream activations, float32 on CPU, shape [n, len(layers), n_pos, hidden].

    `model` is an HFChatModel or a bare HF causal LM with its `tokenizer`; `layers` picks
    residual points (default all n_layers+1); `positions` index prompt tokens, negative ones
    from the end (the prompt ends with the chat template's assistant header).
    """
    import torch

    module, own_tok = unwrap(model)
    tokenizer = tokenizer or own_tok
    if tokenizer is None:
        raise InterpError("collect_activations needs a tokenizer for a bare model")
    if not conversations:
        raise InterpError("collect_activations needs at least one conversation")
    points = list(range(n_layers(module) + 1)) if layers is None else list(layers)
    for p in points:
        check_layer(module, p)
    device = next(module.parameters()).device
    out = []
    captured: dict[int, torch.Tensor] = {}

    def grab(hidden: torch.Tensor, point: int) -> None:
        captured[point] = hidden
        return None

    with torch.no_grad(), residual_hooks(module, grab, points):
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            input_ids, mask = encode_prompts(tokenizer, chunk, device)
            idx = _resolve_positions(mask, positions)
            captured.clear()
            module(input_ids=input_ids, attention_mask=mask, use_cache=False)
            rows = torch.arange(len(chunk), device=device)[:, None]
            out.append(torch.stack([captured[p][rows, idx] for p in points], 1).float().cpu())
            if progress:
                progress(min(start + batch_size, len(conversations)), len(conversations))
    return torch.cat(out, 0)
