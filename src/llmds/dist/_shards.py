"""Where the shards of a :class:`~llmds.dist.sharded.ShardedRetrievalPipeline` run.

* :func:`shard_of`: the shard of a document id, a stable hash of its canonical
  encoding (never Python's ``hash``): the same on every machine, run and Python.
* :class:`LocalShards`: the shards as objects in this process, called one after the
  other (small setups, tests).
* :class:`RayShards`: one Ray actor per shard, placed by Ray's scheduler (any node of
  the cluster), each running calls on up to ``max_concurrency`` threads; a call goes
  to every shard at once and the answers are gathered.

Both raise :class:`ShardFailures` when any shard fails (its Ray actor died, it did
not answer within ``timeout``, or it raised), after every other shard answered, with
the answers that did arrive: the caller never uses a partial result as a whole one.

Thread safety: both are safe for concurrent callers (Ray handles are; local shards
are thread-safe themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import time
from collections.abc import Mapping
from typing import Any

from llmds._validate import show
from llmds.dist._shard import Shard
from llmds.page_hash import encode_namespace

__all__ = ["LOCAL_RAY_ENV", "LocalShards", "RayShards", "ShardFailures", "connect",
           "local_ray_env", "require_ray", "shard_of"]

_PLACEMENT = b"llmds/shard-placement/v1\x00"  # part of the placement's definition: frozen


def shard_of(doc_id: int | str, num_shards: int) -> int:
    """The shard of ``doc_id``: SHA-256 of its type-tagged encoding, modulo ``num_shards``.

    ``int`` ids and ``str`` ids never collide (``1`` and ``"1"`` are different ids);
    the first 8 bytes of the digest, little endian, are reduced modulo the count.
    O(len(id)), about 1 us.

    >>> shard_of("doc-1", 4), shard_of(7, 4)
    (3, 3)
    """
    digest = hashlib.sha256(_PLACEMENT + encode_namespace(doc_id)).digest()
    return int.from_bytes(digest[:8], "little") % num_shards


class ShardFailures(Exception):
    """Some shards failed a call: ``failures[i] = (what, detail)``; ``results`` holds the
    answers of the shards that succeeded (for undoing a write)."""

    def __init__(self, failures: dict[int, tuple[str, BaseException | None]],
                 results: dict[int, Any]) -> None:
        super().__init__(failures)
        self.failures = failures
        self.results = results


class LocalShards:
    """The shards in this process. ``map`` calls them one after the other.

    Thread safety: safe for concurrent calls (each :class:`Shard` is); the coordinator
    never sends a write while a search runs.
    """

    kind = "local"

    def __init__(self, num_shards: int) -> None:
        self.shards = [Shard(i) for i in range(num_shards)]

    def map(self, method: str, calls: Mapping[int, tuple[Any, ...]],
            timeout: float | None = None) -> dict[int, Any]:
        """``{shard: shards[shard].method(*args)}`` for every ``shard: args`` of ``calls``."""
        results: dict[int, Any] = {}
        failures: dict[int, tuple[str, BaseException | None]] = {}
        for i, args in calls.items():
            try:
                results[i] = getattr(self.shards[i], method)(*args)
            except Exception as exc:
                failures[i] = ("raised", exc)
        if failures:
            raise ShardFailures(failures, results)
        return results

    def broadcast(self, method: str, args: tuple[Any, ...], timeout: float | None = None,
                  ) -> dict[int, Any]:
        """:meth:`map` with the same ``args`` for every shard."""
        return self.map(method, dict.fromkeys(range(len(self.shards)), args), timeout)

    def describe(self, i: int) -> str:
        return f"shard {i} (in this process)"

    def close(self) -> None:
        pass


# Ray's own switches for a local node on loopback that reports nothing anywhere:
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 turns off Ray's multi-node mode, in which it
# advertises the machine's network address (ray._private.services.get_node_ip_address
# then returns 127.0.0.1, as on a laptop; ray.init(_node_ip_address="127.0.0.1") does
# not: Ray maps a loopback address back to the network one), and no usage statistics.
# Ray reads them when it is imported (ray_constants), and its processes inherit them,
# so they are set before the first import. Checked with Ray 2.60: every address
# ray.init reports is 127.0.0.1.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def local_ray_env() -> None:
    """Set :data:`LOCAL_RAY_ENV` (keeping values the user set). Effective before Ray's
    first import in this process."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


def require_ray() -> Any:
    """The ``ray`` module, or ImportError naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("ShardedRetrievalPipeline(backend='ray') needs Ray: "
                          f"pip install 'llmds[ray]' ({exc})") from exc
    return ray


def connect(ray: Any, ray_init: Any) -> None:
    """Use the Ray this process runs, else join a running cluster, else follow ``ray_init``.

    ``ray_init`` None: join a running cluster (``ray.init(address="auto")``) or raise
    RuntimeError; ``"local"``: start a local Ray (no dashboard, on 127.0.0.1 when Ray
    was not imported before: see :data:`LOCAL_RAY_ENV`); a dict: the arguments of
    ``ray.init``.
    """
    if ray_init is not None and ray_init != "local" and not isinstance(ray_init, Mapping):
        raise ValueError(f"ray_init must be None, 'local' or a dict of ray.init arguments, "
                         f"got {show(ray_init)}")
    if ray.is_initialized():
        return
    if ray_init is None:
        try:
            ray.init(address="auto")
        except ConnectionError as exc:
            raise RuntimeError(
                "no Ray is running: call ray.init(...) before creating a "
                "ShardedRetrievalPipeline(backend='ray') (ray.init(address='auto') joins a "
                "cluster), or pass ray_init='local' to start a local Ray "
                f"({str(exc)[:200]})") from None
    elif ray_init == "local":
        ray.init(include_dashboard=False)
    else:
        ray.init(**ray_init)


class RayShards:
    """One Ray actor per shard. ``map`` sends every call at once and gathers the answers.

    Actors are created with ``max_restarts=0``: a restarted actor would come back
    empty, and its searches would silently miss its documents. A dead actor instead
    makes every later call on it fail, naming it (see :class:`ShardFailures`).
    Default options: ``num_cpus=0`` (a shard reserves no CPU, so more shards than
    cores can run, as on a test machine) and ``scheduling_strategy="SPREAD"`` (Ray
    spreads the actors over the cluster's nodes); ``ray_options`` overrides them,
    e.g. ``{"num_cpus": 4}`` to give each shard four cores of its own.

    Thread safety: safe for concurrent calls: Ray handles are thread-safe and each
    actor runs up to ``max_concurrency`` calls at once on a thread-safe :class:`Shard`.
    """

    kind = "ray"

    def __init__(self, num_shards: int, ray_init: Any, ray_options: Mapping[str, Any] | None,
                 max_concurrency: int) -> None:
        if ray_init == "local":
            local_ray_env()
        ray = require_ray()
        connect(ray, ray_init)
        self._ray = ray
        options = {"num_cpus": 0, "scheduling_strategy": "SPREAD",
                   "max_concurrency": max_concurrency, "max_restarts": 0,
                   **(ray_options or {})}
        actor = ray.remote(Shard)
        try:
            self.actors = [actor.options(**options).remote(i) for i in range(num_shards)]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ray_options: {exc}") from None

    def map(self, method: str, calls: Mapping[int, tuple[Any, ...]],
            timeout: float | None = None) -> dict[int, Any]:
        """``{shard: answer}`` of ``method(*args)`` on every actor of ``calls``, sent at once."""
        ray = self._ray
        errors = ray.exceptions
        refs = {i: getattr(self.actors[i], method).remote(*args) for i, args in calls.items()}
        deadline = None if timeout is None else time.monotonic() + timeout
        try:  # the common case: every shard answers in time
            return dict(zip(refs, ray.get(list(refs.values()), timeout=timeout), strict=True))
        except errors.RayError:
            pass  # find out which shards failed, below (the others' answers are ready)
        results: dict[int, Any] = {}
        failures: dict[int, tuple[str, BaseException | None]] = {}
        for i, ref in refs.items():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                results[i] = ray.get(ref, timeout=left)
            except errors.GetTimeoutError:
                failures[i] = ("timeout", None)
            except errors.RayActorError as exc:
                failures[i] = ("died", exc)
            except errors.RayTaskError as exc:
                failures[i] = ("raised", getattr(exc, "cause", None) or exc)
        if failures:
            for i, (what, _) in failures.items():
                if what == "timeout":
                    with contextlib.suppress(Exception):  # best effort: it may finish later
                        ray.cancel(refs[i])
            raise ShardFailures(failures, results)
        return results

    def broadcast(self, method: str, args: tuple[Any, ...], timeout: float | None = None,
                  ) -> dict[int, Any]:
        """:meth:`map` with the same ``args`` for every actor, pickled once, the answers
        pickled by the actors (:meth:`Shard.call_pickled`). Ray's own serialisation of
        an argument tuple and of numpy answers measured ~0.35 ms more coordinator CPU
        and ~0.6 ms more p50 per search on 2 shards. The bytes travel only between
        this coordinator and the actors it created (Ray pickles arguments anyway)."""
        blob = pickle.dumps((method, args), protocol=5)
        raw = self.map("call_pickled", dict.fromkeys(range(len(self.actors)), (blob,)),
                       timeout)
        return {i: pickle.loads(r) for i, r in raw.items()}

    def describe(self, i: int) -> str:
        try:
            actor_id = self.actors[i]._actor_id.hex()
        except AttributeError:  # a private attribute of Ray's handle: only for the message
            actor_id = "?"
        return f"shard {i} (Ray actor {actor_id})"

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
