"""Chat-trace replay through a prefix cache, shared by the prefix-cache benchmarks.

Internal to ``llmds.bench`` (``bench_prefix_cache`` and ``bench_hybrid_cache``): the
seeded request list, the serving loop every llmds prefix cache is driven by, and
the timing helper. The loop is the one a serving engine runs per request: match the
prompt, lock the match, make room for the rest (evicting when the pool is short),
allocate, insert prompt + output, free the duplicate slots, unlock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds.bench import harness
from llmds.bench.workloads import multi_turn_chat_trace
from llmds.mem_cache import RadixKey, TokenToKVPoolAllocator

__all__ = ["Request", "cap_label", "chat_requests", "replay", "timed"]

Request = tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]  # (prompt, prompt+output)

# make_room(need, full, matched, counts) -> True when ``need`` slots can be allocated
Room = Callable[[int, npt.NDArray[np.int32], int, dict[str, int]], bool]
# store(full, value, matched, counts): insert and free the caller's duplicate slots
Store = Callable[[npt.NDArray[np.int32], npt.NDArray[np.int64], int, dict[str, int]], None]


def chat_requests(n: int, seed: int) -> list[Request]:
    """The first ``n`` requests of the seeded multi-turn chat trace as (prompt, full)."""
    trace = multi_turn_chat_trace(n, seed=seed)
    return [(r.prompt, np.concatenate([r.prompt, r.output])) for r in trace]


def cap_label(cap: int | None) -> str:
    """A KV capacity in tokens as a label: ``"unbounded"`` or ``"200k"``."""
    return "unbounded" if cap is None else f"{cap // 1000}k"


def timed(
    fn: Any, args: tuple[Any, ...], n: int, repeat: int, pool_size: int | None = None
) -> tuple[Any, Any]:
    """``harness.measure`` of ``fn(*args)``, or of ``fn(pool, *args)`` with a fresh
    (untimed) token pool of ``pool_size`` slots; returns (last result, Measurement)."""
    box: dict[str, Any] = {}

    def call(pool: Any) -> None:
        box["r"] = fn(*args) if pool is None else fn(pool, *args)

    setup = None if pool_size is None else (lambda: TokenToKVPoolAllocator(pool_size))
    meas = harness.measure(call, ops=n, repeat=repeat, setup=setup)
    return box["r"], meas


def replay(
    cache: Any, pool: TokenToKVPoolAllocator, reqs: list[Request], make_room: Room,
    store: Store,
) -> dict[str, int]:
    """Drive ``cache`` over ``reqs`` as a serving engine does (see the module doc).

    ``make_room`` evicts what the request needs (and counts what it evicted);
    ``store`` inserts and frees duplicates. Returns the counters: ``hit`` (matched
    prompt tokens), ``prompt`` (prompt tokens), ``rejected`` (requests that did not
    fit) and whatever the two callbacks counted.
    """
    counts = {"hit": 0, "prompt": 0, "rejected": 0}
    match, lock, unlock = cache.match_prefix, cache.inc_lock_ref, cache.dec_lock_ref
    alloc = pool.alloc
    for prompt, full in reqs:
        r = match(RadixKey(prompt))
        m = r.prefix_len
        counts["hit"] += m
        counts["prompt"] += len(prompt)
        node = r.last_node
        token = lock(node)
        need = len(full) - m
        if not make_room(need, full, m, counts):
            counts["rejected"] += 1
            unlock(node, token)
            continue
        store(full, np.concatenate((r.indices, alloc(need))), m, counts)
        unlock(node, token)
    return counts
