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
from llmds.bench.bench_prefix_cache import Request, _cap_label, _requests, _timed, replay_llmds
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


def replay_swa(
    pool: TokenToKVPoolAllocator, reqs: list[Request], swa_capacity: int
) -> dict[str, int]:
    """Replay through SWARadixCache; SWA KV kept within ``swa_capacity`` tokens."""
    cache = SWARadixCache(1, sliding_window_size=WINDOW, token_to_kv_pool_allocator=pool)
    hit = total = rejected = swa_ev = full_ev = evicts = 0
    for prompt, full in reqs:
        r = cache.match_prefix(RadixKey(prompt))
        m = r.prefix_len
        hit += m
        total += len(prompt)
        node = r.last_node
        tok = cache.inc_lock_ref(node)
        need = len(full) - m
        over = cache.swa_total_size() + need - swa_capacity
        short = need - pool.num_free
        if over > 0 or short > 0:
            e = cache.evict(max(short, 0), max(over, 0))
            evicts += 1
            swa_ev += e.swa_evicted
            full_ev += e.full_evicted
            if need > pool.num_free:
                rejected += 1
                cache.dec_lock_ref(node, tok)
                continue
        value = np.concatenate((r.indices, pool.alloc(need)))
        done = cache.insert(RadixKey(full), value).prefix_len
        if done > m:
            pool.free(value[m:done])
        cache.dec_lock_ref(node, tok)
    return {
        "hit": hit,
        "prompt": total,
        "rejected": rejected,
        "swa_evicted": swa_ev,
        "full_evicted": full_ev,
        "inserts": len(reqs) - rejected,
        "evict_calls": evicts,
    }


def replay_mamba(
    pool: TokenToKVPoolAllocator, reqs: list[Request], mamba_slots: int
) -> dict[str, int]:
    """Replay through MambaRadixCache with states every STATE_EVERY tokens + at the end."""
    states = MambaPool(mamba_slots, state_shape=(1,))
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    insert, free = cache.insert, pool.free
    hit = total = rejected = m_ev = full_ev = evicts = inserts = 0
    for prompt, full in reqs:
        r = cache.match_prefix(RadixKey(prompt))
        m = r.prefix_len
        hit += m
        total += len(prompt)
        node = r.last_node
        tok = cache.inc_lock_ref(node)
        need = len(full) - m
        cps = [*range(STATE_EVERY, len(full), STATE_EVERY), len(full)]
        cps = [p for p in cps if p > m]
        short = need - pool.num_free
        s_short = len(cps) - states.num_free
        if short > 0 or s_short > 0:
            e = cache.evict(max(short, 0), max(s_short, 0))
            evicts += 1
            m_ev += e.mamba_evicted
            full_ev += e.full_evicted
            if need > pool.num_free or len(cps) > states.num_free:
                rejected += 1
                cache.dec_lock_ref(node, tok)
                continue
        value = np.concatenate((r.indices, pool.alloc(need)))
        # as SGLang's chunked prefill caches a request: each checkpoint's prefix in
        # increasing order (the last one is the whole sequence), each with its state
        done = m  # value[:done] is the cache's or a duplicate already listed
        dups = []  # freed after the last insert: every insert gets allocated indices
        inserts += len(cps)
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
        cache.dec_lock_ref(node, tok)
    return {
        "hit": hit,
        "prompt": total,
        "rejected": rejected,
        "mamba_evicted": m_ev,
        "full_evicted": full_ev,
        "inserts": inserts,
        "evict_calls": evicts,
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    n = 200 if ctx.quick else 2000
    reqs = _requests(n, ctx.seed)
    total_tokens = sum(len(f) for _, f in reqs)
    repeat = max(ctx.repeat, 5)
    swa_capacity = 50_000
    mamba_slots = 512
    rows: list[dict[str, Any]] = []
    hit: dict[tuple[str, str], float] = {}
    rps: dict[tuple[str, str], float] = {}
    stages = 3 * len(CAPACITIES)
    done = 0
    for cap in CAPACITIES:
        label = _cap_label(cap)
        size = total_tokens + 1 if cap is None else cap
        cases = [
            ("RadixCache", replay_llmds, (reqs, 1), {}),
            (
                f"SWARadixCache W={WINDOW}",
                replay_swa,
                (reqs, swa_capacity),
                {"swa_capacity": swa_capacity},
            ),
            (
                f"MambaRadixCache state/{STATE_EVERY}",
                replay_mamba,
                (reqs, mamba_slots),
                {"mamba_slots": mamba_slots},
            ),
        ]
        for impl, fn, args, extra in cases:
            r, meas = _timed(fn, args, n, repeat, size)
            hit[(impl, label)] = r["hit"] / r["prompt"]
            rps[(impl, label)] = meas.ops_per_cpu_s
            rows.append(
                {
                    "impl": impl,
                    "capacity": label,
                    "hit_rate": r["hit"] / r["prompt"],
                    "requests_per_s": meas.ops_per_cpu_s,
                    "rejected": r["rejected"],
                    "swa_evicted_tokens": r.get("swa_evicted", 0),
                    "mamba_evicted_states": r.get("mamba_evicted", 0),
                    # cache calls behind requests_per_s (None: not counted for the
                    # baseline, which inserts once per request)
                    "inserts": r.get("inserts"),
                    "evict_calls": r.get("evict_calls"),
                    **extra,
                    **meas.to_dict(),
                }
            )
            done += 1
            ctx.progress(done, stages, f"{impl} {label}")
    ratios: list[dict[str, Any]] = []
    for cap in CAPACITIES:
        label = _cap_label(cap)
        for impl in (f"SWARadixCache W={WINDOW}", f"MambaRadixCache state/{STATE_EVERY}"):
            ratios.append(
                {
                    "name": f"{impl} requests/s vs RadixCache ({label})",
                    "value": harness.ratio(rps[(impl, label)], rps[("RadixCache", label)]),
                    "goal": None,
                }
            )
            ratios.append(
                {
                    "name": f"{impl} hit rate vs RadixCache ({label})",
                    "value": harness.ratio(hit[(impl, label)], hit[("RadixCache", label)]),
                    "goal": None,
                }
            )
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
            "capacities": [_cap_label(c) for c in CAPACITIES],
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
                        "x": [_cap_label(c) for c in CAPACITIES],
                        "y": [hit[(impl, _cap_label(c))] for c in CAPACITIES],
                    }
                    for impl in sorted({k[0] for k in hit})
                ],
            }
        ],
    )
