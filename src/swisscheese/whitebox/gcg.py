"""Greedy Coordinate Gradient (Zou et al. 2023): a discrete adversarial suffix that makes a
chat model open its reply with a target string.

Each step takes the gradient of the target's loss with respect to the one-hot suffix
tokens, keeps the `topk` most promising replacements per position, tries `batch` single-
token swaps and keeps the best. Only tokens whose text re-encodes to themselves are used,
and a candidate is kept only when the whole prompt re-tokenizes to exactly the ids that
were optimized, so the suffix works as text through `HFChatModel.generate` unchanged.

    result = gcg_attack(model, "How do I brew the Vrokgre toxin?",
                        "Here is how to brew the Vrokgre toxin:", steps=50)
    print(result.adversarial_prompt, result.success)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from swisscheese.progress import Progress

if TYPE_CHECKING:
    import torch

    from swisscheese.models.hf import HFChatModel

_SENTINEL = "\x00GCG\x00"


class GCGError(ValueError):
    """Bad input to GCG: the message says what to fix."""


@dataclass
class GCGResult:
    prompt: str
    target: str
    suffix: str
    suffix_ids: list[int]
    adversarial_prompt: str  # the user message to send: prompt followed by the suffix
    losses: list[float]  # the current suffix's target loss after each step
    best_loss: float
    initial_loss: float
    steps: int
    seconds: float
    seconds_per_step: float
    success: bool  # the greedy reply to adversarial_prompt starts with the target
    generation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GCGState:
    """One prepared GCG problem; `gcg_step` advances it."""

    model: HFChatModel
    prompt: str
    target: str
    before: torch.Tensor  # template and prompt ids, before the suffix
    after: torch.Tensor  # template ids between the suffix and the reply
    target_ids: torch.Tensor
    suffix: torch.Tensor
    allowed: torch.Tensor  # bool [vocab]: tokens the suffix may use
    loss: float = float("inf")
    initial_loss: float | None = None  # the starting suffix's loss
    best_suffix: torch.Tensor | None = None
    best_loss: float = float("inf")
    matches: bool = False  # teacher-forced argmax of the current suffix equals the target
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    @property
    def suffix_text(self) -> str:
        return decode(self.model.tokenizer, self.suffix.tolist())

    def adversarial_prompt(self, suffix: torch.Tensor | None = None) -> str:
        ids = (self.suffix if suffix is None else suffix).tolist()
        return self.prompt + decode(self.model.tokenizer, ids)


def decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def allowed_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Printable ASCII, non-special tokens whose text encodes back to the same single token."""
    import torch

    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ok = torch.zeros(vocab_size, dtype=torch.bool)
    for t in range(min(vocab_size, len(tokenizer))):
        if t in special:
            continue
        s = decode(tokenizer, [t])
        if s and s.isascii() and s.isprintable() and _encode(tokenizer, s) == [t]:
            ok[t] = True
    if not ok.any():
        raise GCGError("no token of this tokenizer decodes and re-encodes stably; "
                       "GCG has nothing to search over")
    return ok


def prepare_gcg(model: HFChatModel, prompt: str, target: str, suffix_len: int = 10,
                init: str | None = None) -> GCGState:
    """Split the chat prompt around the suffix and pick the starting suffix ("! ! ! ...")."""
    import torch

    from swisscheese.interp.hooks import prompt_text

    if not prompt.strip():
        raise GCGError("GCG needs a non-empty prompt")
    if not target.strip():
        raise GCGError("GCG needs a non-empty target string")
    if suffix_len < 1:
        raise GCGError(f"suffix_len must be at least 1, got {suffix_len}")
    tok = model.tokenizer
    text = prompt_text(tok, prompt + _SENTINEL)
    pre, post = text.split(_SENTINEL, 1)
    emb = model.model.get_input_embeddings().weight
    allowed = allowed_tokens(tok, emb.shape[0])
    if init is None:
        bang = _encode(tok, " !")
        init_id = bang[0] if len(bang) == 1 and allowed[bang[0]] else None
        if init_id is None:
            init_id = next((t for t in _encode(tok, "!") if allowed[t]),
                           int(allowed.nonzero()[0]))
        suffix = [init_id] * suffix_len
    else:
        suffix = _encode(tok, init)
        if len(suffix) != suffix_len:
            raise GCGError(f"init {init!r} is {len(suffix)} tokens; suffix_len is {suffix_len}")
    dev = emb.device
    target_ids = _encode(tok, target)
    return GCGState(model, prompt, target, torch.tensor(_encode(tok, pre), device=dev),
                    torch.tensor(_encode(tok, post), device=dev),
                    torch.tensor(target_ids, device=dev), torch.tensor(suffix, device=dev),
                    allowed.to(dev))


def _round_trips(state: GCGState, suffix: list[int]) -> bool:
    """The whole prompt, as text, tokenizes to exactly the optimized ids."""
    tok = state.model.tokenizer
    text = prompt_text_of(state, suffix)
    want = state.before.tolist() + suffix + state.after.tolist()
    return _encode(tok, text) == want


def prompt_text_of(state: GCGState, suffix: list[int]) -> str:
    from swisscheese.interp.hooks import prompt_text

    return prompt_text(state.model.tokenizer, state.prompt + decode(state.model.tokenizer, suffix))


def _token_gradients(state: GCGState) -> tuple[torch.Tensor, float]:
    """d loss / d one-hot suffix, [suffix_len, vocab], and the current loss."""
    import torch

    lm = state.model.model
    emb = lm.get_input_embeddings()
    w = emb.weight
    one_hot = torch.zeros(len(state.suffix), w.shape[0], dtype=w.dtype, device=w.device)
    one_hot.scatter_(1, state.suffix[:, None], 1.0)
    one_hot.requires_grad_(True)
    parts = [emb(state.before[None]), (one_hot @ w)[None], emb(state.after[None]),
             emb(state.target_ids[None])]
    embeds = torch.cat(parts, 1)
    logits = lm(inputs_embeds=embeds, use_cache=False).logits
    n_t = len(state.target_ids)
    pred = logits[0, -n_t - 1:-1].float()
    loss = torch.nn.functional.cross_entropy(pred, state.target_ids)
    (grad,) = torch.autograd.grad(loss, one_hot)
    return grad, float(loss.detach())


def _candidate_losses(state: GCGState, cands: torch.Tensor, chunk: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Target loss and teacher-forced exact match for each candidate suffix."""
    import torch

    lm = state.model.model
    n = len(cands)
    rows = torch.cat([state.before.expand(n, -1), cands, state.after.expand(n, -1),
                      state.target_ids.expand(n, -1)], 1)
    n_t = len(state.target_ids)
    losses, matches = [], []
    with torch.no_grad():
        for s in range(0, n, chunk):
            logits = lm(input_ids=rows[s:s + chunk], use_cache=False).logits
            pred = logits[:, -n_t - 1:-1].float()
            tgt = state.target_ids.expand(len(pred), -1)
            ce = torch.nn.functional.cross_entropy(pred.transpose(1, 2), tgt, reduction="none")
            losses.append(ce.mean(1))
            matches.append((pred.argmax(-1) == tgt).all(1))
    return torch.cat(losses), torch.cat(matches)


def gcg_step(state: GCGState, topk: int = 64, batch: int = 64,
             generator: torch.Generator | None = None, eval_chunk: int | None = None) -> float:
    """One GCG step in place; returns the new current loss. Its wall time is the cost of
    one step of GCG-based adversarial training's inner loop."""
    import torch

    t0 = time.perf_counter()
    grad, loss_now = _token_gradients(state)
    if state.initial_loss is None:
        state.loss = state.initial_loss = loss_now
        state.best_loss, state.best_suffix = loss_now, state.suffix.clone()
    grad = grad.masked_fill(~state.allowed[None], float("inf"))
    k = min(topk, int(state.allowed.sum()))
    top = (-grad).topk(k, dim=1).indices  # [suffix_len, k]
    n_pos = len(state.suffix)
    dev = state.suffix.device
    # Spread the swaps evenly over the positions, as Zou et al. do; the token is random
    # among that position's top-k.
    pos = (torch.arange(batch) * n_pos // batch).to(dev)
    pick = torch.randint(0, k, (batch,), generator=generator).to(dev)
    cands = state.suffix.repeat(batch, 1)
    cands[torch.arange(batch, device=dev), pos] = top[pos, pick]
    cands = torch.unique(cands, dim=0)
    keep = [i for i, c in enumerate(cands.tolist()) if _round_trips(state, c)]
    if keep:
        cands = cands[keep]
        losses, matches = _candidate_losses(state, cands, eval_chunk or batch)
        i = int(losses.argmin())
        state.suffix, state.loss, state.matches = cands[i].clone(), float(losses[i]), bool(
            matches[i])
        if state.loss < state.best_loss:
            state.best_loss, state.best_suffix = state.loss, state.suffix.clone()
    state.losses.append(state.loss)
    state.step_seconds.append(time.perf_counter() - t0)
    return state.loss


def gcg_attack(model: HFChatModel, prompt: str, target: str, steps: int = 50,
               suffix_len: int = 10, topk: int = 64, batch: int = 64, seed: int = 0,
               progress: Progress | None = None, stop_on_success: bool = True,
               max_new_tokens: int | None = None) -> GCGResult:
    """Search a suffix for `prompt` that makes `model` reply starting with `target`.

    With `stop_on_success`, stops at the first step whose suffix makes the greedy reply
    (teacher-forced) start with the target; the returned `success` is always checked by
    generating from the adversarial prompt as text.
    """
    import torch

    from swisscheese.models.base import GenerationParams

    if steps < 0:
        raise GCGError(f"steps must be >= 0, got {steps}")
    if topk < 1 or batch < 1:
        raise GCGError(f"topk and batch must be at least 1 (got {topk}, {batch})")
    start = time.perf_counter()
    state = prepare_gcg(model, prompt, target, suffix_len)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        loss = gcg_step(state, topk, batch, gen)
        if progress:
            progress("gcg", step + 1, steps, {"loss": loss, "best": state.best_loss})
        if stop_on_success and state.matches:
            break
    if state.initial_loss is None:
        with torch.no_grad():
            state.initial_loss = float(_candidate_losses(state, state.suffix[None], 1)[0][0])
    initial = state.initial_loss
    # The suffix to return: the one that matched, else the lowest-loss one seen.
    final = state.suffix if state.matches else (
        state.best_suffix if state.best_suffix is not None else state.suffix)
    adv = state.adversarial_prompt(final)
    n_new = max_new_tokens or len(state.target_ids) + 8
    reply = model.generate(adv, GenerationParams(max_new_tokens=n_new)).content
    done = len(state.losses)
    secs = time.perf_counter() - start
    return GCGResult(
        prompt=prompt, target=target, suffix=decode(model.tokenizer, final.tolist()),
        suffix_ids=final.tolist(), adversarial_prompt=adv,
        losses=[round(x, 5) for x in state.losses],
        best_loss=round(min(state.best_loss, initial), 5), initial_loss=round(initial, 5),
        steps=done, seconds=round(secs, 3),
        seconds_per_step=round(sum(state.step_seconds) / done, 4) if done else 0.0,
        success=reply.strip().startswith(target.strip()), generation=reply)


def time_gcg_step(model: HFChatModel, prompt: str, target: str, steps: int = 3,
                  suffix_len: int = 10, topk: int = 64, batch: int = 64, seed: int = 0
                  ) -> float:
    """Mean wall seconds of one GCG step (gradient, candidates, their losses) on `model`."""
    import torch

    state = prepare_gcg(model, prompt, target, suffix_len)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max(1, steps)):
        gcg_step(state, topk, batch, gen)
    return sum(state.step_seconds) / len(state.step_seconds)
