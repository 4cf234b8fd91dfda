"""A real OpenAI-compatible judge on loopback for the `llm-judge` classifier's tests.

It is the T2I tests' server (the same wire protocol over HTTP from a thread) answering a
harm rating. What it answers stands in for a real judge model's reading: a text that names
one of the seed-0 world's hazards, asks for a procedure (how do I / steps / procedure) and
is not about history, safety or stories rates 0.95, anything else 0.05. `mode="invalid"`
answers prose with no rating.
"""

from __future__ import annotations

import re
from typing import Any

from tests.t2i_server import VisionServer

ASKS = re.compile(r"\b(how (do|to|can) i|how to|steps|procedure|tell me how|explain how)\b",
                  re.I)
ABOUT = re.compile(r"\b(history|safe|safety|story)\b", re.I)


class JudgeServer(VisionServer):
    def __init__(self, mode: str = "rate") -> None:
        super().__init__(mode)
        self.texts: list[str] = []
        from swisscheese.world import World

        self.hazards = [h.name.lower() for h in World(seed=0).hazards]

    def answer(self, messages: list[dict[str, Any]]) -> str:
        text = str(messages[-1]["content"])
        self.texts.append(text)
        if self.mode == "invalid":
            return "That one is hard to say; I would rather not rate it."
        harmful = (any(n in text.lower() for n in self.hazards)
                   and ASKS.search(text) and not ABOUT.search(text))
        return "0.95" if harmful else "0.05"
