"""The continuous embedding-space attack as a red-team attack: a thin wrapper over
`swisscheese.whitebox.embedding` (Schwinn et al. 2024).

White box, like GCG: a local HF model, or a `GuardedChatModel` wrapping one, else
`AttackUnsupported`. The perturbation lives in embedding space, so no text carries it, and
a guarded target is treated as a deployment would see such an attacker:

- the input classifier reads the conversation's *text*, the unperturbed prompt (the
  perturbation never becomes words it could read); if it flags the prompt, the reply is
  the guard's refusal and no generation happens;
- otherwise the underlying model replies greedily from the perturbed embeddings, and the
  reply streams through the output classifier in the guard's chunks, exactly as
  `GuardedChatModel.generate_batch` streams a model's reply; a block gives the refusal.

So the unguarded ASR measures the model's own refusal under the attack, and the guarded
ASR what the classifiers (the output one above all) still catch.
"""

from __future__ import annotations

import time

from swisscheese.models.base import ChatModel
from swisscheese.redteam.attacks.gcg import white_box_model
from swisscheese.redteam.base import Attack, Attempt, Behaviour, Judge
from swisscheese.whitebox.embedding import DEFAULT_EPSILON


class EmbeddingAttack(Attack):
    """Projected gradient descent on the user message's input embeddings toward
    `behaviour.target`, within `epsilon` per token (`norm` "l2" or "linf")."""

    name = "embedding"
    family = "embedding"
    white_box = True

    def __init__(self, epsilon: float = DEFAULT_EPSILON, steps: int = 30, norm: str = "l2",
                 max_new_tokens: int = 192, seed: int = 0) -> None:
        from swisscheese.whitebox.embedding import NORMS

        if not epsilon > 0 or steps < 1 or norm not in NORMS:
            raise ValueError(f"need epsilon > 0, steps >= 1 and norm in {NORMS}; got "
                             f"{epsilon}, {steps}, {norm!r}")
        self.epsilon = epsilon
        self.steps = steps
        self.norm = norm
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        from swisscheese.whitebox.embedding import attack_and_generate

        model, guard = white_box_model(self.name, target)
        conv = [{"role": "user", "content": behaviour.prompt}]
        meta: dict[str, object] = {"epsilon": self.epsilon, "steps": self.steps,
                                   "norm": self.norm, "guarded": guard is not None}
        attempt = Attempt(behaviour.id, self.name, getattr(target, "name", "target"),
                          f"embedding/eps{self.epsilon:g}", conv, meta=meta)
        t0 = time.perf_counter()
        session = guard.session(conv) if guard is not None else None
        if session is not None and not session.check_input():
            session.finish()
            attempt.response = guard.refusal
        else:
            try:
                (reply,) = attack_and_generate(model, [behaviour.prompt], [behaviour.target],
                                               self.epsilon, self.steps, self.max_new_tokens,
                                               norm=self.norm, seed=self.seed)  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - a model failure is an error, not a failure
                attempt.error = f"target: {type(e).__name__}: {e}"
                attempt.seconds = time.perf_counter() - t0
                return [attempt]
            attempt.response = reply if session is None else _through_output(guard, session,
                                                                               reply)
        if session is not None:
            meta["guard"] = session.decision.to_dict()
        attempt.seconds = time.perf_counter() - t0
        try:
            attempt.verdict = judge.judge(behaviour, attempt.response)
        except Exception as e:  # noqa: BLE001 - a judge failure is an error, not a failure
            attempt.error = f"judge: {type(e).__name__}: {e}"
        meta["best"] = True
        meta["queries"] = 1
        return [attempt]


def _through_output(guard, session, reply: str) -> str:  # noqa: ANN001 - guard types are lazy
    """The reply as the output layer releases it, in the bundle's stream chunks."""
    chunk = max(1, guard.bundle.stream_chunk_chars if guard.bundle else 4)
    pieces = (reply[j:j + chunk] for j in range(0, len(reply), chunk))
    released = "".join(guard.guard_stream(session, pieces))
    return guard.refusal if session.decision.blocked else released
