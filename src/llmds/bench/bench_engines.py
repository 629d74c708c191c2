"""The engine drop-ins against the engines' own caches, on the multi-turn chat trace.

* SGLang: match + insert pairs of the chat trace through
  ``llmds.integrations.sglang.RadixCache`` with torch tensors in and out (KV
  indices as int64 CPU tensors, ``device_indices`` back as tensors) against
  SGLang's ``RadixCache`` (the Python tree) driven the same way, at page 1 and 16.
  SGLang's Rust TreeCore is reported as skipped: it ships inside sglang, but only
  behind ``UnifiedRadixCache``, which needs SGLang's engine configuration.
* vLLM: the trace's request lifecycles (``get_computed_blocks``,
  ``allocate_slots`` for the prompt and for the output, ``free``) through
  ``llmds.integrations.vllm.KVCacheManager`` against vLLM v1's
  ``KVCacheManager``, both on SHA-256 identities, both given vLLM's own
  ``Request`` objects (vLLM's with its block hasher attached, as its engine does;
  the facade's without one: it finds cached blocks by llmds's SHA-256 page
  identity and computes vLLM's hashes only when asked).

Hit rates are reported next to the peers'; they must be identical.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench._kv_peers import TRACE_PAGE, VLLMReplay, lifecycle, vllm_modules
from llmds.bench._replay import chat_requests, timed
from llmds.bench.harness import BenchContext
from llmds.bench.workloads import multi_turn_chat_trace

NAME = "engines"
TITLE = "Engine drop-ins: SGLang's RadixCache and vLLM's KVCacheManager interfaces"
PAGE_SIZES = (1, 16)
RUST_SKIP = ("SGLang's Rust TreeCore ships in sglang 0.5.23 (rust_tree_core/mem_cache.so, "
             "loads with torch 2.13) but is reachable only through UnifiedRadixCache, which "
             "needs SGLang's engine configuration; not timed")

_VLLM = "vLLM v1 KVCacheManager (SHA-256)"
_FACADE = "llmds.integrations.vllm.KVCacheManager"

__all__ = ["run"]


def _pairs(api: dict[str, Any], work: list[tuple[Any, Any, Any]], page_size: int,
           sglang: bool) -> int:
    """match_prefix(prompt) + insert(prompt + output) for every request; returns hits."""
    cache = api["RadixCache"].create_simulated(page_size=page_size)
    key_cls, match_p, insert_p = api["RadixKey"], api["Match"], api["Insert"]
    hit = 0
    for prompt, full, vals in work:
        r = cache.match_prefix(match_p(key=key_cls(prompt)))
        hit += len(r.device_indices) if not sglang else r.device_prefix_len
        cache.insert(insert_p(key=key_cls(full), value=vals))
    return hit


def _llmds_api() -> dict[str, Any] | None:
    mod = harness.peer("llmds.integrations.sglang", extra="torch")
    if mod is None:
        return None
    return {"RadixCache": mod.RadixCache, "RadixKey": mod.RadixKey,
            "Match": mod.MatchPrefixParams, "Insert": mod.InsertParams}


def _sglang_api() -> dict[str, Any] | None:
    rc = harness.peer("sglang.srt.mem_cache.radix_cache")
    base = harness.peer("sglang.srt.mem_cache.base_prefix_cache")
    if rc is None or base is None:
        return None
    return {"RadixCache": rc.RadixCache, "RadixKey": rc.RadixKey,
            "Match": base.MatchPrefixParams, "Insert": base.InsertParams}


def _vllm_cases(mods: dict[str, Any], trace: list[Any], num_blocks: int
                ) -> tuple[dict[str, Any], dict[str, float]]:
    """``measure_interleaved`` cases for vLLM's manager and the facade, and a dict
    their runs fill with each one's hit rate. Both get fresh vLLM ``Request``
    objects from the untimed setup (the engine builds them whatever its manager);
    vLLM's get its SHA-256 block hasher attached inside the timed run, as
    ``Request.__init__`` does, the facade's none."""
    from llmds.integrations.vllm import KVCacheManager

    replay = VLLMReplay(mods, trace)
    hits: dict[str, float] = {}

    def theirs(state: Any) -> None:
        hits[_VLLM] = replay.run(state)

    def ours(state: Any) -> None:
        hits[_FACADE] = lifecycle(*state)

    def facade_setup() -> tuple[Any, Any]:
        return KVCacheManager(num_blocks=num_blocks, block_size=TRACE_PAGE), replay.requests()

    cases = {_VLLM: (theirs, partial(replay.setup, num_blocks)), _FACADE: (ours, facade_setup)}
    return cases, hits


def run(ctx: BenchContext) -> dict[str, Any]:
    """The benchmark (see the module docstring) as a result record."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    n = 200 if ctx.quick else 2000
    repeat = max(ctx.repeat, 3 if ctx.quick else 5)
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    reqs = chat_requests(n, ctx.seed)
    prompt_tokens = sum(len(p) for p, _ in reqs)
    ours, theirs = _llmds_api(), (None if ctx.quick else _sglang_api())
    sg_skip = ("skipped in --quick" if ctx.quick
               else harness.skipped("sglang.srt.mem_cache.radix_cache"))
    work: list[tuple[Any, Any, Any]] = []
    if ours is not None:
        import torch

        torch.set_num_threads(1)
        offsets = np.cumsum([0] + [len(f) for _, f in reqs])
        work = [(p.tolist(), f.tolist(), torch.arange(int(offsets[i]), int(offsets[i + 1])))
                for i, (p, f) in enumerate(reqs)]
    for ps in PAGE_SIZES:
        rate: dict[str, float] = {}
        hits: dict[str, float] = {}
        for label, api, sg in (("llmds.integrations.sglang.RadixCache", ours, False),
                               ("sglang RadixCache (Python tree)", theirs, True)):
            if api is None:
                why = sg_skip if sg else harness.skipped("llmds.integrations.sglang")
                rows.append({"impl": label, "page_size": ps, "skipped": why})
                continue
            hit, meas = timed(_pairs, (api, work, ps, sg), n, repeat)
            rate[label], hits[label] = meas.ops_per_cpu_s, hit / prompt_tokens
            rows.append({"impl": label, "mode": "match+insert, torch tensors", "page_size": ps,
                         "hit_rate": hit / prompt_tokens, "pairs_per_s": meas.ops_per_cpu_s,
                         **meas.to_dict()})
        rows.append({"impl": "sglang Rust TreeCore", "page_size": ps, "skipped": RUST_SKIP})
        a, b = "llmds.integrations.sglang.RadixCache", "sglang RadixCache (Python tree)"
        ratios.append({"name": f"SGLang facade pairs/s vs SGLang Python tree (page {ps})",
                       "value": harness.ratio(rate.get(a, 0.0), rate.get(b)), "goal": 1.0})
        ratios.append({"name": f"SGLang facade hit rate / SGLang's (page {ps})",
                       "value": harness.ratio(hits.get(a, 0.0), hits.get(b)), "goal": 1.0})
        ctx.progress(PAGE_SIZES.index(ps) + 1, len(PAGE_SIZES) + 1, f"sglang page {ps}")
    mods = None if ctx.quick else vllm_modules()
    if isinstance(mods, dict):
        trace = multi_turn_chat_trace(n, seed=ctx.seed)
        num_blocks = sum(-(-(len(r.prompt) + len(r.output)) // TRACE_PAGE) for r in trace) + 2
        cases, hits_v = _vllm_cases(mods, trace, num_blocks)
        meas = harness.measure_interleaved(cases, ops=n, repeat=repeat)
        meas_v, meas_f = meas[_VLLM], meas[_FACADE]
        hit_v, hit_f = hits_v[_VLLM], hits_v[_FACADE]
        for label, hit, m in ((_VLLM, hit_v, meas_v), (_FACADE, hit_f, meas_f)):
            rows.append({"impl": label, "mode": "request lifecycle", "page_size": TRACE_PAGE,
                         "hit_rate": hit, "requests_per_s": m.ops_per_cpu_s, **m.to_dict()})
        ratios.append({"name": "vLLM facade requests/s vs vLLM v1 KVCacheManager (SHA-256)",
                       "value": harness.ratio(meas_f.ops_per_cpu_s, meas_v.ops_per_cpu_s),
                       "goal": 3.0})
        ratios.append({"name": "vLLM facade hit rate / vLLM's",
                       "value": harness.ratio(hit_f, hit_v), "goal": 1.0})
    else:
        why = "skipped in --quick" if ctx.quick else str(mods)
        rows.append({"impl": _VLLM, "skipped": why})
    ctx.progress(len(PAGE_SIZES) + 1, len(PAGE_SIZES) + 1, "vllm")
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"num_requests": n, "page_sizes": list(PAGE_SIZES), "repeat": repeat,
                "prompt_tokens": prompt_tokens},
        data=f"synthetic multi_turn_chat_trace({n}, seed={ctx.seed})",
        rows=rows, ratios=ratios,
        notes=["Rates per CPU-second, torch pinned to one thread.", RUST_SKIP,
               "Both vLLM-side managers get vLLM's own Request objects built untimed; "
               "vLLM's manager gets its SHA-256 block hasher attached in the timed run, as "
               "vLLM's Request does, the facade none; the two are timed in alternating "
               "turns."],
    )
