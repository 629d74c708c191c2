"""Hybrid-model prefix caches replaying the multi-turn chat trace.

Same seeded trace and replay loop as :mod:`llmds.bench.bench_prefix_cache` (match,
lock, allocate, evict when short, insert prompt + output, free duplicates, unlock),
page size 1, through three caches in the same run:
  * ``RadixCache`` (plain full attention: the baseline);
  * ``SWARadixCache`` with a 1,024-token window and a sliding-window KV budget
    (``swa_capacity`` tokens) smaller than the full-KV one: SWA KV is evicted
    (tombstones) to stay within it;
  * ``MambaRadixCache`` with a state checkpoint every 256 tokens and at the end
    of every request, over a :class:`MambaPool` of ``mamba_slots`` states. As
    SGLang's chunked prefill caches a request, each new checkpoint's prefix is
    inserted in increasing order with its state (the last one is the whole
    sequence), rather than the whole sequence first and then every checkpoint
    again: that extra walk and the split of the fresh leaf at every checkpoint
    were ~20% of the replay (cProfile, 2,000 requests).
Reported: hit rate (usable matched prompt tokens / prompt tokens), requests/s of
the replay, SWA tokens and states evicted. No peer library implements these caches
in a form importable here (SGLang's SWA/Mamba caches need its GPU memory pools).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench._replay import Request, cap_label, chat_requests, replay, timed
from llmds.bench.bench_prefix_cache import replay_llmds
from llmds.bench.harness import BenchContext
from llmds.mem_cache import (
    MambaPool,
    MambaRadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)

NAME = "hybrid_cache"
TITLE = "Hybrid prefix caches: SWA (W=1024) and Mamba (state every 256) on the chat trace"

WINDOW = 1024
STATE_EVERY = 256
CAPACITIES: tuple[int | None, ...] = (None, 200_000)


def _evict(cache: Any, short: int, second: int, counts: dict[str, int], key: str) -> None:
    """Evict ``short`` KV tokens and ``second`` second-phase units (SWA tokens or
    states, counted under ``key``) when either is positive; count the call."""
    if short > 0 or second > 0:
        e = cache.evict(max(short, 0), max(second, 0))
        counts["evict_calls"] += 1
        counts[key] += getattr(e, key)
        counts["full_evicted"] += e.full_evicted


def replay_swa(
    pool: TokenToKVPoolAllocator, reqs: list[Request], swa_capacity: int
) -> dict[str, int]:
    """Replay through SWARadixCache; SWA KV kept within ``swa_capacity`` tokens."""
    cache = SWARadixCache(1, sliding_window_size=WINDOW, token_to_kv_pool_allocator=pool)
    counts = {"swa_evicted": 0, "full_evicted": 0, "evict_calls": 0}

    def make_room(need: int, full: Any, m: int, c: dict[str, int]) -> bool:
        over = cache.swa_total_size() + need - swa_capacity
        _evict(cache, need - pool.num_free, over, counts, "swa_evicted")
        return need <= pool.num_free

    def store(full: Any, value: Any, m: int, c: dict[str, int]) -> None:
        done = cache.insert(RadixKey(full), value).prefix_len
        if done > m:
            pool.free(value[m:done])

    out = replay(cache, pool, reqs, make_room, store)
    return {**out, **counts, "inserts": len(reqs) - out["rejected"]}


def replay_mamba(
    pool: TokenToKVPoolAllocator, reqs: list[Request], mamba_slots: int
) -> dict[str, int]:
    """Replay through MambaRadixCache with states every STATE_EVERY tokens + at the end."""
    states = MambaPool(mamba_slots, state_shape=(1,))
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    insert, free = cache.insert, pool.free
    counts = {"mamba_evicted": 0, "full_evicted": 0, "evict_calls": 0, "inserts": 0}

    def checkpoints(full: Any, m: int) -> list[int]:
        return [p for p in (*range(STATE_EVERY, len(full), STATE_EVERY), len(full)) if p > m]

    def make_room(need: int, full: Any, m: int, c: dict[str, int]) -> bool:
        cps = len(checkpoints(full, m))
        _evict(cache, need - pool.num_free, cps - states.num_free, counts, "mamba_evicted")
        return need <= pool.num_free and cps <= states.num_free

    def store(full: Any, value: Any, m: int, c: dict[str, int]) -> None:
        # as SGLang's chunked prefill caches a request: each checkpoint's prefix in
        # increasing order (the last one is the whole sequence), each with its state
        cps = checkpoints(full, m)
        done = m  # value[:done] is the cache's or a duplicate already listed
        dups = []  # freed after the last insert: every insert gets allocated indices
        counts["inserts"] += len(cps)
        for p in cps:
            slot = states.alloc_track_slot()
            res = insert(RadixKey(full[:p]), value[:p], mamba_value=slot)
            if res.prefix_len > done:
                dups.append(value[done : res.prefix_len])
            done = p
            if res.mamba_exist:
                states.free_track_slot(slot)
        if dups:
            free(np.concatenate(dups))

    return {**replay(cache, pool, reqs, make_room, store), **counts}


def _case_row(impl: str, label: str, r: dict[str, Any], meas: Any,
              extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "impl": impl,
        "capacity": label,
        "hit_rate": r["hit"] / r["prompt"],
        "requests_per_s": meas.ops_per_cpu_s,
        "rejected": r["rejected"],
        "swa_evicted_tokens": r.get("swa_evicted", 0),
        "mamba_evicted_states": r.get("mamba_evicted", 0),
        # cache calls behind requests_per_s (None: not counted for the baseline,
        # which inserts once per request)
        "inserts": r.get("inserts"),
        "evict_calls": r.get("evict_calls"),
        **extra,
        **meas.to_dict(),
    }


SWA_CAPACITY = 50_000  # sliding-window KV budget, tokens
MAMBA_SLOTS = 512


def _ratios(hit: dict[tuple[str, str], float],
            rps: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cap in CAPACITIES:
        label = cap_label(cap)
        for impl in (f"SWARadixCache W={WINDOW}", f"MambaRadixCache state/{STATE_EVERY}"):
            out.append({"name": f"{impl} requests/s vs RadixCache ({label})",
                        "value": harness.ratio(rps[(impl, label)], rps[("RadixCache", label)]),
                        "goal": None})
            out.append({"name": f"{impl} hit rate vs RadixCache ({label})",
                        "value": harness.ratio(hit[(impl, label)], hit[("RadixCache", label)]),
                        "goal": None})
    return out


def run(ctx: BenchContext) -> dict[str, Any]:
    """The benchmark (see the module docstring) as a result record."""
    n = 200 if ctx.quick else 2000
    reqs = chat_requests(n, ctx.seed)
    total_tokens = sum(len(f) for _, f in reqs)
    repeat = max(ctx.repeat, 5)
    swa_capacity, mamba_slots = SWA_CAPACITY, MAMBA_SLOTS
    rows: list[dict[str, Any]] = []
    hit: dict[tuple[str, str], float] = {}
    rps: dict[tuple[str, str], float] = {}
    cases: list[tuple[str, Any, tuple[Any, ...], dict[str, Any]]] = [
        ("RadixCache", replay_llmds, (reqs, 1), {}),
        (f"SWARadixCache W={WINDOW}", replay_swa, (reqs, swa_capacity),
         {"swa_capacity": swa_capacity}),
        (f"MambaRadixCache state/{STATE_EVERY}", replay_mamba, (reqs, mamba_slots),
         {"mamba_slots": mamba_slots}),
    ]
    for cap in CAPACITIES:
        label = cap_label(cap)
        size = total_tokens + 1 if cap is None else cap
        for impl, fn, args, extra in cases:
            r, meas = timed(fn, args, n, repeat, size)
            hit[(impl, label)] = r["hit"] / r["prompt"]
            rps[(impl, label)] = meas.ops_per_cpu_s
            rows.append(_case_row(impl, label, r, meas, extra))
            ctx.progress(len(rows), len(cases) * len(CAPACITIES), f"{impl} {label}")
    ratios = _ratios(hit, rps)
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "num_requests": n,
            "page_size": 1,
            "window": WINDOW,
            "state_every": STATE_EVERY,
            "swa_capacity": swa_capacity,
            "mamba_slots": mamba_slots,
            "capacities": [cap_label(c) for c in CAPACITIES],
            "repeat": repeat,
        },
        data=f"synthetic multi_turn_chat_trace({n}, seed={ctx.seed})",
        rows=rows,
        ratios=ratios,
        notes=[
            "Peers: none importable implements SWA-tombstone or Mamba-state radix caches "
            "on CPU; the plain RadixCache on the same trace in the same run is the baseline.",
            "Hit rate counts only usable prefix tokens (SWA: window rule; Mamba: cut at "
            "the last cached state).",
        ],
        plots=[
            {
                "title": "Hit rate by cache (multi-turn chat trace, page 1)",
                "x_label": "capacity",
                "y_label": "hit rate",
                "kind": "bar",
                "series": [
                    {
                        "label": impl,
                        "x": [cap_label(c) for c in CAPACITIES],
                        "y": [hit[(impl, cap_label(c))] for c in CAPACITIES],
                    }
                    for impl in sorted({k[0] for k in hit})
                ],
            }
        ],
    )
