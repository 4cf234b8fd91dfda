"""One guarded reply for an async server: the model and the guard in a worker thread, the
released text handed to the event loop as it comes. The gateway's chat completions
(`serving`) and the challenge page (`challenge.serving`) both stream through it.

The model's stream is synchronous (a torch loop or an HTTP stream), so it runs in a worker
thread, and the guard session runs in that same thread (`guard.pipeline.guarded_deltas`):
the input check first, then each model delta through the output layer. Only what the
session releases crosses to the event loop (through an asyncio queue, delta by delta), so
nothing reaches a client before the output classifier has scored it, and the guard costs no
extra thread hop per token.

Fail closed: a classifier that raises blocks (the session does that); one that overruns its
budget is caught by the event loop, which watches how long the worker has been inside a
classifier call and blocks the reply once the budget is spent, abandoning the worker (it
stops at its next delta).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

from swisscheese.guard.pipeline import (
    BLOCKED,
    DELTA,
    Decision,
    Guard,
    GuardSession,
    guarded_deltas,
)
from swisscheese.models.base import ChatModel, GenerationParams

# Event kinds of `GuardedStream.raw_events`: a model delta and what it released, then exactly
# one terminal event.
TEXT, END, ERROR = "text", "end", "error"
__all__ = ["BLOCKED", "END", "ERROR", "TEXT", "GuardedStream"]


class GuardedStream:
    """One reply: `raw_events()` yields (TEXT, (delta, released)) per model delta, then one
    of (END, tail), (BLOCKED, last delta or None) or (ERROR, exception)."""

    def __init__(self, guard: Guard, model: ChatModel, conversation: list[dict[str, str]],
                 params: GenerationParams, *, executor: Executor | None = None,
                 timeout_s: float = 5.0) -> None:
        self.guard = guard
        self.model = model
        self.conversation = conversation
        self.params = params
        self.executor = executor
        self.timeout_s = timeout_s
        self.session: GuardSession = guard.session(conversation)
        self.decision: Decision = self.session.decision
        self._stop = threading.Event()
        self._guarded = guard.bundle is not None
        self._scoring_since: tuple[str, float] | None = None

    # -- the model and the guard, in a worker thread ------------------------------------
    @contextmanager
    def _scoring(self, layer: str) -> Iterator[None]:
        self._scoring_since = (layer, time.monotonic())
        try:
            yield
        finally:
            self._scoring_since = None

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        def put(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the server is shutting down
                self._stop.set()

        try:
            with self._scoring("input"):
                passed = self.session.check_input()
            if self._stop.is_set():  # the reply was given up while the input was scored
                return
            if not passed:
                self.session.finish()
                put((BLOCKED, None))
                return
            deltas = self.guard.model_stream(self.model, self.conversation, self.params)
            for ev in guarded_deltas(self.session, deltas, self._stop.is_set, self._scoring):
                if ev.kind == DELTA:
                    put((TEXT, (ev.delta, ev.released)))
                elif ev.kind == BLOCKED:
                    put((BLOCKED, ev.delta))
                else:
                    put((END, ev.released))
        except Exception as e:  # noqa: BLE001 - handed to the request, which reports it
            put((ERROR, e))

    # -- the event loop side ------------------------------------------------------------
    def _fail_closed(self, message: str) -> None:
        # From here on the record reads this copy: the overrunning call may still finish in
        # its thread and write to the session's own decision.
        d = self.decision
        self.decision = dataclasses.replace(d, blocked=True, layer="error", error=message,
                                            latency_ms=dict(d.latency_ms))

    async def _next(self, queue: asyncio.Queue) -> tuple[str, Any]:
        """The worker's next event; blocks the reply when a classifier call overruns its
        budget (the worker is then abandoned: it stops at its next delta)."""
        if not self._guarded:
            return await queue.get()
        budget = self.timeout_s
        while True:
            try:
                return queue.get_nowait()
            except asyncio.QueueEmpty:
                pass
            try:
                return await asyncio.wait_for(queue.get(), max(0.005, budget / 4))
            except TimeoutError:
                scoring = self._scoring_since
                if scoring is not None and time.monotonic() - scoring[1] > budget:
                    self._fail_closed(f"{scoring[0]} layer: timed out after {budget:g} s")
                    return BLOCKED, None

    async def raw_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        """The worker's events until the terminal one (see the class docstring)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        worker = loop.run_in_executor(self.executor, self._produce, loop, queue)
        try:
            while True:
                kind, value = await self._next(queue)
                yield kind, value
                if kind != TEXT:
                    return
        finally:
            # Client gone, block or error: the worker stops at its next delta.
            self._stop.set()
            worker.add_done_callback(lambda f: f.exception())  # never "never retrieved"
