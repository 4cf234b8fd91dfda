"""Ray, for the batch work that outgrows one process: campaigns, data generation, batch
classification. Ray is an optional extra (`pip install 'swisscheese[ray]'`) imported only
here and in the functions that use it.

    connect(None)              a local Ray instance on this machine (the default)
    connect("10.0.0.5:6379")   an existing cluster (its GCS address), or "ray://host:10001"

`connect` probes a host:port address before it calls `ray.init`, so a cluster that cannot
be reached fails in seconds with one line instead of hanging; callers connect before they
write anything, so a failed connection leaves no half-run work behind.

`ModelActors` keeps one model per actor and fans `generate_batch` calls out over them,
returning the replies in the order of the calls: each call is the same seeded call the
in-process path makes, so the results are the same.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

LOCAL = ("", "local")


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; says which and how to fix."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable("Ray is not installed: pip install 'swisscheese[ray]' (or "
                             "`pip install ray`)") from None
    return ray


def _probe(address: str, timeout_s: float = 3.0) -> None:
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r}: expected HOST:PORT (the head's GCS "
                             "port, 6379 by default) or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {e.strerror or e}; "
                             "start it with `ray start --head` or check the address") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Connect this process to Ray (see the module docstring); a no-op when it already
    is. Returns the cluster's resources."""
    ray = _ray()
    local = address is None or address in LOCAL
    if address is not None and not local and address != "auto":
        _probe(address)  # even when connected already: the caller named this cluster
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if local:
            kwargs["num_cpus"] = num_cpus
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises several kinds; all mean "no cluster"
            raise RayUnavailable(f"cannot connect to Ray at {address or 'a local instance'}: "
                                 f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                                 ) from None
    return dict(ray.cluster_resources())


def default_workers(requested: int | None) -> int:
    """`requested`, else one actor per CPU of the cluster (at least one)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {requested}")
        return requested
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))


def ordered_map(actors: Sequence[Any], method: str, items: Sequence[Any],
                max_pending: int = 2) -> Iterator[tuple[int, Any]]:
    """Call `actor.<method>(item)` for every item, spread over `actors` (each keeps at
    most `max_pending` calls queued), yielding (index, result) as calls finish."""
    ray = _ray()
    queue = list(range(len(items)))[::-1]
    pending: dict[Any, tuple[int, int]] = {}  # ref -> (item index, actor index)
    load = [0] * len(actors)

    def submit(a: int) -> None:
        i = queue.pop()
        pending[getattr(actors[a], method).remote(items[i])] = (i, a)
        load[a] += 1

    for a in range(len(actors)):
        for _ in range(max_pending):
            if queue:
                submit(a)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i, a = pending.pop(done[0])
        load[a] -= 1
        result = ray.get(done[0])
        if queue:
            submit(a)
        yield i, result


def make_actor_class(factory: Callable[..., Any], num_cpus: float = 1) -> Any:
    """A Ray actor class wrapping `factory` (a class whose instance is the actor)."""
    return _ray().remote(num_cpus=num_cpus)(factory)


class _ModelWorker:
    """One model in one actor process."""

    def __init__(self, spec: str, threads: int = 1) -> None:
        from swisscheese.models import load_model

        if threads:
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
        self.model = load_model(spec)

    def generate_batch(self, call: tuple[list[Any], Any]) -> list[Any]:
        conversations, params = call
        return self.model.generate_batch(conversations, params)


class ModelActors:
    """A model spec loaded once per actor; `generate_batches` fans calls out over them.

    It also answers `generate_batch` and `generate` itself (one call on one actor), so it
    stands in for the model wherever a ChatModel is expected.
    """

    def __init__(self, spec: str, workers: int, threads: int = 1) -> None:
        cls = make_actor_class(_ModelWorker)
        self.spec = spec
        self.name = spec
        self.actors = [cls.remote(spec, threads) for _ in range(workers)]

    def generate_batches(self, calls: Sequence[tuple[list[Any], Any]],
                         progress: Callable[[int], None] | None = None) -> list[list[Any]]:
        out: list[list[Any] | None] = [None] * len(calls)
        for n, (i, replies) in enumerate(ordered_map(self.actors, "generate_batch", calls), 1):
            out[i] = replies
            if progress:
                progress(n)
        return [r if r is not None else [] for r in out]

    def generate_batch(self, conversations: Sequence[Any], params: Any = None) -> list[Any]:
        return self.generate_batches([(list(conversations), params)])[0]

    def generate(self, conversation: Any, params: Any = None) -> Any:
        return self.generate_batch([conversation], params)[0]

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
