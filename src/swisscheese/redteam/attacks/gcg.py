"""GCG as a red-team attack: a thin wrapper over `swisscheese.whitebox.gcg.gcg_attack`.

White box: it needs the weights, so it runs only against a local HF model (`HFChatModel`)
or a `GuardedChatModel` wrapping one, and raises `AttackUnsupported` for anything else (an
OpenAI-compatible endpoint, say).

A guarded target is attacked as a real adversary would attack it: the suffix is optimised
against the underlying model alone (the classifiers give no gradient and the attacker need
not know them), then the adversarial prompt is sent to the *guarded* target as text, so
the input classifier reads it, the output classifier reads the reply, and the guarded ASR
is measured honestly.
"""

from __future__ import annotations

from typing import Any

from swisscheese.models.base import ChatModel
from swisscheese.redteam.attacks.pair import TargetProbe
from swisscheese.redteam.base import (
    Attack,
    AttackUnsupported,
    Attempt,
    Behaviour,
    Judge,
)


def white_box_model(attack: str, target: ChatModel) -> tuple[Any, Any]:
    """(the HFChatModel to differentiate, the guard or None) for a white-box attack.

    Unwraps one `GuardedChatModel`; anything that is not a local HF model underneath
    raises AttackUnsupported, naming the target.
    """
    from swisscheese.models.hf import HFChatModel

    guard = None
    inner: Any = target
    if not isinstance(inner, HFChatModel) and hasattr(inner, "guard") and hasattr(inner, "model"):
        from swisscheese.guard.pipeline import GuardedChatModel

        if isinstance(inner, GuardedChatModel):
            guard, inner = inner.guard, inner.model
    if not isinstance(inner, HFChatModel):
        raise AttackUnsupported(
            f"{attack} is a white-box attack: it needs a local Hugging Face model (or one "
            f"behind a guard), but target {getattr(target, 'name', target)!r} is a "
            f"{type(inner).__name__}")
    return inner, guard


class GCGAttack(Attack):
    """Greedy Coordinate Gradient suffix toward `behaviour.target`, then one judged query.

    The attempt's `meta["gcg"]` holds the suffix, the losses, whether the model's own
    greedy reply started with the target string (`target_match`) and the seconds spent.
    """

    name = "gcg"
    family = "gcg"
    white_box = True

    def __init__(self, steps: int = 50, suffix_len: int = 10, topk: int = 64, batch: int = 64,
                 seed: int = 0, max_new_tokens: int = 192) -> None:
        self.steps = steps
        self.suffix_len = suffix_len
        self.topk = topk
        self.batch = batch
        self.seed = seed
        self.max_new_tokens = max_new_tokens

    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        from swisscheese.whitebox.gcg import gcg_attack

        model, guard = white_box_model(self.name, target)
        res = gcg_attack(model, behaviour.prompt, behaviour.target, steps=self.steps,
                         suffix_len=self.suffix_len, topk=self.topk, batch=self.batch,
                         seed=self.seed)
        probe = TargetProbe(self.name, behaviour, target, judge, self.max_new_tokens)
        meta = {"gcg": {"suffix": res.suffix, "losses": res.losses, "best_loss": res.best_loss,
                        "initial_loss": res.initial_loss, "steps": res.steps,
                        "target_match": res.success, "seconds": res.seconds},
                "guarded": guard is not None}
        (attempt,) = probe.send([res.adversarial_prompt], [f"gcg/{self.steps}"], [meta])
        attempt.seconds += res.seconds  # the search is part of what the attempt cost
        return probe.finish()
