"""A chat model from any local Hugging Face causal-LM directory."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from swisscheese.models.base import (
    ConversationLike,
    GenerationParams,
    Message,
    ModelLoadError,
    as_messages,
    cut_at_stop,
    stop_filtered,
)

# Used only when a tokenizer ships without a chat template of its own.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """Fail with one clear line unless `path` looks like a causal-LM directory."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model directory {p} does not exist")
    if not p.is_dir():
        raise ModelLoadError(f"{p} is a file; expected a Hugging Face model directory")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"{p} is not a Hugging Face model directory (no config.json)")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{cfg} is not valid JSON: {e}") from None
    archs = config.get("architectures") or []
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise ModelLoadError(
            f"{p} is not a causal LM (architectures: {', '.join(archs)}); "
            "swisscheese needs a model that generates text")
    return p


class HFChatModel:
    """Greedy, sampled, batched and streamed generation with a local HF model on CPU or GPU."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu", name: str | None = None,
                 threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        p = check_model_dir(path)
        if threads:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(p)
        except Exception as e:  # noqa: BLE001 - any tokenizer failure means the same to the user
            raise ModelLoadError(f"cannot load the tokenizer from {p}: {e}") from None
        try:
            self.model = AutoModelForCausalLM.from_pretrained(p).to(device)
        except ValueError as e:
            raise ModelLoadError(f"{p} is not a causal LM: {str(e).splitlines()[0]}") from None
        except Exception as e:  # noqa: BLE001 - corrupt weights surface in many exception types
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(f"cannot load weights from {p}: {first}") from None
        self.model.eval()
        self.device = device
        self.path = p
        self.name = name or p.name
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = FALLBACK_TEMPLATE
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        # transformers 5 renamed the cache argument; older releases only know the old name.
        fwd = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in fwd else "past_key_values"
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 2048))

    # ---- prompts ------------------------------------------------------------------------
    def prompt_text(self, conversation: ConversationLike) -> str:
        msgs = [m.to_dict() for m in as_messages(conversation)]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, conversation: ConversationLike, max_new_tokens: int = 0) -> list[int]:
        ids = self.tokenizer(self.prompt_text(conversation), add_special_tokens=False)["input_ids"]
        room = self.max_context - max_new_tokens
        return ids[-room:] if room > 0 else ids  # keep the end: it holds the question

    def token_usage(self, conversation: ConversationLike, completion: str) -> tuple[int, int]:
        """(prompt tokens, completion tokens) as this model's tokenizer counts them."""
        prompt = len(self.prompt_ids(conversation))
        done = len(self.tokenizer(completion, add_special_tokens=False)["input_ids"]) \
            if completion else 0
        return prompt, done

    # ---- generation ---------------------------------------------------------------------
    def _sampling_kwargs(self, params: GenerationParams) -> dict:
        if params.greedy:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}

    def generate(self, conversation: ConversationLike,
                 params: GenerationParams | None = None) -> Message:
        return self.generate_batch([conversation], params)[0]

    def generate_batch(self, conversations: Sequence[ConversationLike],
                       params: GenerationParams | None = None,
                       batch_size: int = 64) -> list[Message]:
        import torch

        params = params or GenerationParams()
        if params.seed is not None:
            torch.manual_seed(params.seed)
        out: list[Message] = []
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            ids = [self.prompt_ids(c, params.max_new_tokens) for c in chunk]
            width = max(map(len, ids))
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids],
                                     device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids],
                                device=self.device)
            with torch.no_grad():
                gen = self.model.generate(
                    input_ids=input_ids, attention_mask=mask,
                    max_new_tokens=params.max_new_tokens, eos_token_id=self.eos_ids,
                    pad_token_id=pad, **self._sampling_kwargs(params))
            for row in gen[:, width:].tolist():
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                out.append(Message("assistant", cut_at_stop(text, params.stop)[0]))
        return out

    def stream(self, conversation: ConversationLike,
               params: GenerationParams | None = None) -> Iterator[str]:
        """Yield text deltas token by token, with a KV cache: constant work per token."""
        params = params or GenerationParams()
        return stop_filtered(self._deltas(conversation, params), params.stop)

    def stream_hidden(self, conversation: ConversationLike, params: GenerationParams | None = None,
                      layers: Sequence[int] = (-1,)) -> Iterator[tuple[str, Any]]:
        """Like `stream`, with the hidden states the generation computes anyway: yields
        (delta, hidden), `hidden` the states at `hidden_states[i]` for i in `layers`,
        concatenated into one vector, of the reply token this step read (the token the
        step before generated; None at the prompt's prefill), so a probe on the served
        model scores each token for one dot product.
        A delta is never covered by the hidden state that comes with it, only by the next
        one: the last item carries the last token's state (the end-of-turn step, or one
        extra forward pass when max_new_tokens cuts the reply). Deltas may be "" (a
        character split over tokens). Stop sequences are not applied."""
        return self._steps(conversation, params or GenerationParams(), tuple(layers))

    def _deltas(self, conversation: ConversationLike, params: GenerationParams) -> Iterator[str]:
        return (delta for delta, _ in self._steps(conversation, params, None) if delta)

    def _steps(self, conversation: ConversationLike, params: GenerationParams,
               layers: tuple[int, ...] | None) -> Iterator[tuple[str, Any]]:
        import torch

        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        ids = torch.tensor([self.prompt_ids(conversation, params.max_new_tokens)],
                           device=self.device)
        past = None
        tokens: list[int] = []
        prefix_off = read_off = 0
        want = layers is not None
        # With hidden states, one more step reads the last token when max_new_tokens ends it.
        with torch.no_grad():
            for step in range(params.max_new_tokens + want):
                out = self.model(input_ids=ids, **{self._cache_kw: past}, use_cache=True,
                                 output_hidden_states=want)
                past = out.past_key_values
                hidden = None
                if layers is not None and step:
                    hidden = torch.cat([out.hidden_states[i][0, -1] for i in layers])
                if step == params.max_new_tokens:
                    yield "", hidden
                    return
                nxt = self._pick(out.logits[0, -1].float(), params, gen)
                if nxt in self.eos_ids:
                    if hidden is not None:
                        yield "", hidden
                    return
                tokens.append(nxt)
                ids = torch.tensor([[nxt]], device=self.device)
                # Decode a sliding window so multi-byte characters are only sent whole.
                prev = self.tokenizer.decode(tokens[prefix_off:read_off], skip_special_tokens=True)
                new = self.tokenizer.decode(tokens[prefix_off:], skip_special_tokens=True)
                delta = ""
                if len(new) > len(prev) and not new.endswith("\ufffd"):
                    prefix_off, read_off = read_off, len(tokens)
                    delta = new[len(prev):]
                if delta or hidden is not None:
                    yield delta, hidden

    @staticmethod
    def _pick(logits, params: GenerationParams, gen) -> int:
        import torch

        if params.greedy:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1:
            sorted_p, idx = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, 0) - sorted_p < params.top_p
            probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
            probs = probs / probs.sum()
        return int(torch.multinomial(probs, 1, generator=gen))
