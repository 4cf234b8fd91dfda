"""An LLM judge as a classifier: any OpenAI-compatible chat endpoint reads each text and
rates how harmful it is, from 0 to 1. It is meant as a cascade's stage 2
(`classifier train --backend cascade --input-param stage2=llm-judge --input-param
'stage2_params={"base_url": "http://127.0.0.1:8000/v1", "model": "judge"}'`), so only the
texts stage 1 escalates pay for a call.

    >>> clf = LLMJudgeClassifier(base_url="http://127.0.0.1:8000/v1")  # doctest: +SKIP

It learns nothing: `fit` checks its data and nothing more (the bundle's threshold is
calibrated on its scores like any backend's). An endpoint that is down, times out, or
answers without a readable rating raises (`EndpointError`, `ClassifierError`), so a guard
fails closed on the text it was asked about; nothing is guessed. The API key is read from
the environment variable `api_key_env` at use, never saved. The saved directory holds
config.json and rubric.txt (the system prompt, checksummed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import Classifier, check_labels, check_texts
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.classifiers.persist import (
    CONFIG_FILE,
    checked_weights_path,
    read_config,
    sha256_file,
    write_config,
)
from swisscheese.models.base import GenerationParams, Message
from swisscheese.models.ratings import parse_rating

FORMAT = "swisscheese.classifiers.llm_judge"
FORMAT_VERSION = 1
RUBRIC_FILE = "rubric.txt"
RUBRIC = (
    "You are a safety classifier guarding an AI assistant. The user message is a text sent "
    "to the assistant (a request or a whole conversation). Rate how likely it is that the "
    "text asks for, or carries, real help with something dangerous: weapons, poisons, "
    "attacks, or any hazard the assistant must not help with. Texts about history, safety, "
    "fiction without instructions, or everyday tasks are harmless. Answer with one number "
    "between 0 and 1 (0 harmless, 1 certainly harmful) and nothing else."
)
# Longer texts are cut (from the start, keeping the end, where a request usually sits):
# a judge's context is finite and a guard's latency budget too.
DEFAULT_MAX_CHARS = 6000


class LLMJudgeClassifier(Classifier):
    """Scores each text with an LLM behind an OpenAI-compatible URL.

    `LLMJudgeClassifier(base_url, model=None, api_key_env="OPENAI_API_KEY", timeout=10.0,
    max_retries=1, rubric=RUBRIC, max_chars=6000)`; see the module docstring.
    """

    name: ClassVar[str] = "llm-judge"
    # The contract tests give it the URL of a judge on loopback.
    needs_endpoint: ClassVar[bool] = True

    def __init__(self, base_url: str, model: str | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 10.0,
                 max_retries: int = 1, rubric: str = RUBRIC,
                 max_chars: int = DEFAULT_MAX_CHARS) -> None:
        from swisscheese.models.openai_compat import normalise_base_url

        if not isinstance(rubric, str) or not rubric.strip():
            raise ValueError("llm-judge: the rubric must be a non-empty string")
        if max_chars < 1:
            raise ValueError(f"llm-judge: max_chars must be >= 1, got {max_chars}")
        if timeout <= 0 or max_retries < 0:
            raise ValueError(f"llm-judge: need timeout > 0 and max_retries >= 0, got "
                             f"{timeout} and {max_retries}")
        self.settings: dict[str, Any] = {
            "base_url": normalise_base_url(base_url), "model": model,
            "api_key_env": api_key_env, "timeout": float(timeout),
            "max_retries": int(max_retries), "max_chars": int(max_chars)}
        self.rubric = rubric
        self._model: Any = None

    def __repr__(self) -> str:
        return (f"LLMJudgeClassifier(base_url={self.settings['base_url']!r}, "
                f"model={self.settings['model']!r})")

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # The HTTP client is not copyable; a copy opens its own on first use.
        new = type(self).__new__(type(self))
        new.settings, new.rubric, new._model = dict(self.settings), self.rubric, None
        return new

    def _chat(self) -> Any:
        if self._model is None:
            import os

            from swisscheese.models.openai_compat import OpenAIChatModel

            s = self.settings
            self._model = OpenAIChatModel(s["base_url"], s["model"],
                                          api_key=os.environ.get(s["api_key_env"]) or None,
                                          timeout=s["timeout"], max_retries=s["max_retries"])
        return self._model

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        check_labels(labels, len(check_texts(texts)))  # nothing to learn; the data is checked
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = check_texts(texts)
        out = np.zeros(len(x))
        asked = [i for i, t in enumerate(x) if t.strip()]  # an empty text carries nothing
        if not asked:
            return out
        cut = self.settings["max_chars"]
        conversations = [[Message("system", self.rubric), Message("user", x[i][-cut:])]
                         for i in asked]
        replies = self._chat().generate_batch(conversations, GenerationParams(
            max_new_tokens=16, temperature=0.0))
        for i, reply in zip(asked, replies, strict=True):
            out[i] = self._rating(reply.content)
        return out

    def _rating(self, reply: str) -> float:
        score = parse_rating(reply, "0-1")
        if score is None:
            raise ClassifierError(f"llm-judge at {self.settings['base_url']}: no rating "
                                  f"between 0 and 1 in the judge's reply {reply[:80]!r}")
        return float(score)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / RUBRIC_FILE).write_text(self.rubric)
        write_config(d, {"name": self.name, "format": FORMAT, "format_version": FORMAT_VERSION,
                         "settings": self.settings, "weights_file": RUBRIC_FILE,
                         "weights_sha256": sha256_file(d / RUBRIC_FILE)})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, FORMAT, FORMAT_VERSION)
        rubric = checked_weights_path(d, cpath, meta).read_text()
        s = meta.get("settings")
        keys = {"base_url", "model", "api_key_env", "timeout", "max_retries", "max_chars"}
        if not isinstance(s, dict) or set(s) != keys:
            raise ClassifierError(f"{cpath}: 'settings' must have exactly {sorted(keys)}, "
                                  f"got {s!r}")
        try:
            return cls(s["base_url"], s["model"], api_key_env=s["api_key_env"],
                       timeout=s["timeout"], max_retries=s["max_retries"], rubric=rubric,
                       max_chars=s["max_chars"])
        except (TypeError, ValueError) as e:
            raise ClassifierError(f"{cpath}: bad 'settings' ({e})") from e
