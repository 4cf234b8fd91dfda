"""The challenge's serving side: levels, grading, the store, and one attempt's event stream.

Each level is one hazard question of the world with a detail threshold (the grader's
`levels()`). An attempt streams the guarded model's reply through the same guarded loop as
the gateway (`serve.guarded.GuardedStream`: worker thread, fail closed on a classifier
that errs or overruns), then the grader's verdict: the reply's detail score against the
level's threshold, and the layer that blocked it, if one did. Every attempt goes into the
store with its template (the prompt with the question as a slot); a template that passes
several levels is flagged as a possible universal jailbreak.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swisscheese.guard.pipeline import Decision, GuardedChatModel
from swisscheese.models.base import GenerationParams
from swisscheese.serve.challenge.template import prompt_template, template_hash
from swisscheese.serve.guarded import BLOCKED, ERROR, TEXT, GuardedStream
from swisscheese.store.challenge import Attempt, ChallengeStore, LevelProgress
from swisscheese.store.reports import NewReport, ReportError, ReportStore
from swisscheese.world.core import World
from swisscheese.world.grader import Grader, Level

log = logging.getLogger("swisscheese.serve.challenge")


@dataclass
class ChallengeDeps:
    """What the challenge needs from its host (the gateway or `create_challenge_app`).

    `current_guarded` is called once per attempt, so a hot swap of the guard bundle
    applies to the next attempt while one in flight finishes on the bundle it started
    with. `operator_check`, when given, guards GET /challenge/api/universal: it receives
    the request and raises (for example the gateway's admin-key error) to refuse it.
    """

    current_guarded: Callable[[], GuardedChatModel]
    store_path: Path | str
    world: World
    references: Mapping[str, str] | None = None
    universal_min_levels: int = 3
    max_prompt_chars: int = 2000
    max_new_tokens: int = 256
    max_concurrent: int = 2
    attempt_timeout_s: float = 300.0
    operator_check: Callable[[Any], None] | None = None
    # Where the model and guard run, and how long one classifier call may take before the
    # attempt is blocked (fail closed), as for the gateway's own replies.
    executor: Executor | None = None
    classifier_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_new_tokens", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChallengeDeps.{name} must be at least 1, "
                                 f"got {getattr(self, name)}")


class ChallengeError(Exception):
    """A request the challenge refuses, answered as an OpenAI-style error object."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error") -> None:  # noqa: A002
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class Challenge:
    """The challenge's state and rules, apart from HTTP: levels, grading, the store."""

    def __init__(self, deps: ChallengeDeps) -> None:
        self.deps = deps
        self.grader = Grader(deps.world, deps.references)
        self.levels: dict[int, Level] = {lv.number: lv for lv in self.grader.levels()}
        self.store = ChallengeStore(deps.store_path, deps.universal_min_levels)
        # Reports live in the same store, so the gateway's admin API and rapid response
        # see what players report.
        self.reports = ReportStore(self.store.engine)
        self.params = GenerationParams(max_new_tokens=deps.max_new_tokens)
        self._in_flight: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- input checks: each names the field and what to send instead ---------------------

    def level(self, value: Any) -> Level:
        if value is None:
            raise ChallengeError(400, f"'level' is missing: send an integer from 1 to "
                                      f"{len(self.levels)}", param="level", code="unknown_level")
        if isinstance(value, bool) or not isinstance(value, int) or value not in self.levels:
            raise ChallengeError(400, f"'level' must be an integer from 1 to {len(self.levels)}"
                                      f", got {value!r}", param="level", code="unknown_level")
        return self.levels[value]

    def prompt(self, value: Any) -> str:
        if value is None:
            raise ChallengeError(400, "'prompt' is missing: send the text for the model",
                                 param="prompt")
        if not isinstance(value, str):
            raise ChallengeError(400, "'prompt' must be a string", param="prompt")
        if not value.strip():
            raise ChallengeError(400, "'prompt' is empty: write a message to the model",
                                 param="prompt", code="empty_prompt")
        if len(value) > self.deps.max_prompt_chars:
            raise ChallengeError(413, f"'prompt' has {len(value)} characters; the limit is "
                                      f"{self.deps.max_prompt_chars}", param="prompt",
                                 code="prompt_too_long")
        return value

    # -- one attempt in flight per player -------------------------------------------------

    def claim(self, player: str) -> None:
        now = time.monotonic()
        with self._lock:
            started = self._in_flight.get(player)
            # An entry older than the timeout belongs to a stream that never ran its
            # cleanup (a client gone before the first byte); it no longer counts.
            if started is not None and now - started < self.deps.attempt_timeout_s:
                raise ChallengeError(429, "an attempt of this player is still streaming; "
                                          "wait for its verdict", code="attempt_in_flight",
                                     type="rate_limit_error")
            self._in_flight[player] = now

    def release(self, player: str) -> None:
        with self._lock:
            self._in_flight.pop(player, None)

    # -- grading and views ----------------------------------------------------------------

    def grade_and_record(self, player: str, level: Level, prompt: str, reply: str,
                         decision: Decision) -> dict[str, Any]:
        """Grade what the player saw, store it, and return the verdict event."""
        grade = self.grader.grade(level.hazard.id, reply)
        passed = grade.passes(level.threshold)
        template = prompt_template(prompt, level.question, level.hazard.name)
        attempt = Attempt(player=player, level=level.number, hazard_id=level.hazard.id,
                          prompt=prompt, template=template,
                          template_hash=template_hash(template), reply=reply,
                          detail_score=round(grade.score, 4), threshold=level.threshold,
                          passed=passed, blocked_layer=decision.layer if decision.blocked
                          else None, bundle_version=decision.bundle_version)
        attempt_id, flag = self.store.record(attempt)
        return {
            "attempt_id": attempt_id,
            "level": level.number,
            "detail_score": attempt.detail_score,
            "threshold": level.threshold,
            "passed": passed,
            "blocked": decision.blocked,
            "blocked_layer": attempt.blocked_layer,
            "refused": grade.refused,
            "details_found": len(set(grade.found) & set(grade.reference)),
            "details_total": len(grade.reference),
            "bundle_version": decision.bundle_version,
            "template": template,
            "universal": _player_view(flag.to_dict()) if flag else None,
            "progress": self.progress(player),
        }

    def progress(self, player: str | None) -> dict[str, Any]:
        if player:
            rows = self.store.progress(player, self.levels)
            flags = self.store.universal(player)
        else:  # a visitor who has not played yet
            rows, flags = [LevelProgress(n, 0, None, False) for n in self.levels], []
        return {"player": player, "passed": sum(r.passed for r in rows),
                "total": len(self.levels), "levels": [r.to_dict() for r in rows],
                "universal": [_player_view(f.to_dict()) for f in flags]}

    def report(self, player: str | None, attempt_id: Any, note: Any) -> dict[str, Any]:
        """Report one of the player's own attempts as a jailbreak: its prompt and the reply
        the player saw go to rapid response (once per attempt)."""
        if isinstance(attempt_id, bool) or not isinstance(attempt_id, int):
            raise ChallengeError(400, "'attempt_id' must be the integer id of one of your "
                                      "attempts (the verdict's attempt_id)", param="attempt_id")
        if note is not None and not isinstance(note, str):
            raise ChallengeError(400, "'note' must be a string", param="note")
        found = self.store.attempt(attempt_id)
        if found is None or player is None or found[0].player != player:
            # The same answer for another player's attempt: ids reveal nothing.
            raise ChallengeError(404, f"no attempt {attempt_id} of yours to report",
                                 param="attempt_id", code="unknown_attempt")
        a = found[0]
        try:
            rid, new = self.reports.add(NewReport(
                source="challenge", prompt=a.prompt, reporter=player, response=a.reply,
                conversation=[{"role": "user", "content": a.prompt}], note=note or "",
                level=a.level, hazard_id=a.hazard_id, attempt_id=attempt_id,
                detail_score=a.detail_score, bundle_version=a.bundle_version))
        except ReportError as e:
            raise ChallengeError(400, str(e), param="note") from None
        return {"report_id": rid, "new": new, "attempt_id": attempt_id, "status": "open"}

    def operator_view(self) -> dict[str, Any]:
        """The operators' figures: players, attempts, passes and the effort to the first
        pass per level, universal-template candidates, and the reports."""
        stats = self.store.operator_stats(self.levels)
        for row in stats["levels"]:
            lv = self.levels[row["level"]]
            row.update(hazard=lv.hazard.name, category=lv.hazard.category.id,
                       threshold=lv.threshold)
        stats["universal_min_levels"] = self.deps.universal_min_levels
        stats["reports"] = {"counts": self.reports.counts(),
                            "open": [_report_view(r.to_dict())
                                     for r in self.reports.query(status="open", limit=50)]}
        return stats

    def level_views(self, player: str | None) -> dict[str, Any]:
        progress = {r["level"]: r for r in self.progress(player)["levels"]}
        return {
            "levels": [{"level": lv.number, "hazard_id": lv.hazard.id,
                        "hazard": lv.hazard.name, "category": lv.hazard.category.id,
                        "question": lv.question, "threshold": lv.threshold,
                        "details_total": len(self.grader.reference_details(lv.hazard.id)),
                        "progress": progress[lv.number]} for lv in self.levels.values()],
            "universal_min_levels": self.deps.universal_min_levels,
            "max_prompt_chars": self.deps.max_prompt_chars,
        }


def _report_view(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "created", "source", "level", "detail_score", "bundle_version", "note")
    return {k: r[k] for k in keep} | {"prompt": r["prompt"][:500]}


def _player_view(flag: dict[str, Any]) -> dict[str, Any]:
    """A flag as a player sees it: other players' ids stay private."""
    return {k: v for k, v in flag.items() if k != "players"} | {"players": len(flag["players"])}


async def attempt_events(challenge: Challenge, slots: asyncio.Semaphore,
                          guarded: GuardedChatModel, player: str, level: Level,
                          prompt: str) -> AsyncIterator[bytes]:
    """The SSE body of one attempt: `delta` events as the guard releases text, then one
    `verdict` (or one `error` when the model fails; a failed reply is not graded)."""
    try:
        async with slots:
            run = GuardedStream(guarded.guard, guarded.model,
                                [{"role": "user", "content": prompt}], challenge.params,
                                executor=challenge.deps.executor,
                                timeout_s=challenge.deps.classifier_timeout_s)
            pieces: list[str] = []
            async for kind, value in run.raw_events():
                if kind == ERROR:
                    log.error("challenge: the model failed during an attempt: %s: %s",
                              type(value).__name__, value)
                    yield sse("error", ChallengeError(
                        502, f"the model failed mid-reply ({type(value).__name__}); this "
                             "attempt was not graded, send it again", code="model_failed",
                        type="server_error").body())
                    return
                text, refusal = _released(kind, value, guarded.guard.refusal)
                if text:
                    pieces.append(text)
                    yield sse("delta", {"text": text, "refusal": refusal})
            verdict = await asyncio.to_thread(challenge.grade_and_record, player, level,
                                              prompt, "".join(pieces), run.decision)
            yield sse("verdict", verdict)
    finally:
        challenge.release(player)


def _released(kind: str, value: Any, refusal: str) -> tuple[str, bool]:
    """(text the player sees, whether it is the refusal) for one guarded-stream event."""
    if kind == TEXT:
        return value[1], False
    if kind == BLOCKED:
        return refusal, True
    return value or "", False  # END: the held tail
