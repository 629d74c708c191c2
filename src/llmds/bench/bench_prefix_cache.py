"""Prefix caches replaying the multi-turn chat trace: hit rate and throughput.

Workload: :func:`llmds.bench.workloads.multi_turn_chat_trace` (seeded; vocabulary
32k, 8 system prompts of 500 tokens, 40% follow-ups of the last 64 conversations).
Each request is replayed the way a serving engine uses its prefix cache: match the
prompt, lock the match, allocate KV slots for the rest from a token pool (evicting
least-recently-used cache entries when the pool is short), insert prompt + output,
free the duplicate slots the insert reports, unlock.

Implementations, each timed on the same trace in the same process:
  * ``llmds.RadixCache``;
  * SGLang's ``RadixCache`` (the pure-Python tree; ``sglang.srt.mem_cache``), with
    the same token pool behind a thin adapter, when importable;
  * a naive dict of page-prefix hashes (no eviction: unbounded capacity only). It
    also gives the *ideal* hit rate: every prefix ever inserted, page-truncated.

Reported: hit rate (matched prompt tokens / prompt tokens) at page sizes 1 and 16
and capacities unbounded / 200k / 50k tokens, requests/s of the full replay, and
match+insert pairs/s (match the prompt, insert prompt + output, nothing else).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds.bench import harness
from llmds.bench._replay import Request, cap_label, chat_requests, replay, timed
from llmds.bench.harness import BenchContext
from llmds.mem_cache import RadixCache, RadixKey, TokenToKVPoolAllocator

NAME = "prefix_cache"
TITLE = "Prefix cache: multi-turn chat trace replay (RadixCache vs SGLang)"

PAGE_SIZES = (1, 16)
CAPACITIES: tuple[int | None, ...] = (None, 200_000, 50_000)
SGLANG_PAIRS_PER_S = {"python": 18_700.0, "rust": 41_000.0}  # SGLang's own numbers
SGLANG_HIT_RATE = {1: 0.7708, 16: 0.7650}

__all__ = ["NaivePrefixDict", "pairs_llmds", "pairs_naive", "pairs_sglang", "replay_llmds",
           "replay_sglang", "run"]


# --------------------------------------------------------------------------- llmds


def replay_llmds(
    pool: TokenToKVPoolAllocator, reqs: list[Request], page_size: int
) -> dict[str, int]:
    """Full replay through ``llmds.RadixCache`` over a fresh token ``pool``."""
    cache = RadixCache(page_size=page_size, token_to_kv_pool_allocator=pool)
    insert, evict, free = cache.insert, cache.evict, pool.free

    def make_room(need: int, full: Any, m: int, counts: dict[str, int]) -> bool:
        if need > pool.num_free:
            evict(need - pool.num_free)
        return need <= pool.num_free

    def store(full: Any, value: npt.NDArray[np.int64], m: int, counts: dict[str, int]) -> None:
        done = insert(RadixKey(full), value).prefix_len
        if done > m:
            free(value[m:done])
        aligned = len(full) - len(full) % page_size
        if aligned < len(full):
            free(value[aligned:])

    counts = replay(cache, pool, reqs, make_room, store)
    counts["cached"] = cache.total_size()
    return counts


def pairs_llmds(work: list[tuple[Request, npt.NDArray[np.int64]]], page_size: int) -> int:
    """Match + insert only (no pool, unbounded). Returns matched prompt tokens."""
    cache = RadixCache(page_size=page_size)
    match, insert = cache.match_prefix, cache.insert
    hit = 0
    for (prompt, full), vals in work:
        hit += match(RadixKey(prompt)).prefix_len
        insert(RadixKey(full), vals)
    return hit


# ------------------------------------------------------------------------- naive

_B = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_BINV = np.uint64(pow(int(_B), -1, 1 << 64))


def _powers(base: np.uint64, n: int) -> npt.NDArray[np.uint64]:
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        if n > 1:
            out[1:] = base
            out = np.cumprod(out, dtype=np.uint64)  # wraps modulo 2**64
    return out


class NaivePrefixDict:
    """Dict from the hash of every cached page-prefix to that page's KV indices.

    Prefix hashes are polynomial rolling hashes modulo 2**64, all prefixes of a key
    at once with NumPy (``h_i = B**i * sum_j (t_j + 1) * B**-j``). Prefix-closed, so
    the longest cached prefix is found by binary search over page ends.
    """

    def __init__(self, page_size: int, max_len: int) -> None:
        self.page_size = page_size
        self.pow = _powers(_B, max_len)
        self.ipow = _powers(_BINV, max_len)
        self.pages: dict[int, npt.NDArray[np.int64]] = {}

    def _page_hashes(self, tokens: npt.NDArray[np.int32]) -> list[int]:
        n = len(tokens) - len(tokens) % self.page_size
        with np.errstate(over="ignore"):
            t = tokens[:n].astype(np.uint64) + np.uint64(1)
            h = self.pow[:n] * np.cumsum(t * self.ipow[:n], dtype=np.uint64)
        return h[self.page_size - 1 :: self.page_size].tolist()

    def match(self, tokens: npt.NDArray[np.int32]) -> tuple[int, npt.NDArray[np.int64]]:
        hashes = self._page_hashes(tokens)
        pages = self.pages
        lo, hi = 0, len(hashes)  # pages [0, lo) are cached; find the first missing one
        while lo < hi:
            mid = (lo + hi) // 2
            if hashes[mid] in pages:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return 0, np.empty(0, dtype=np.int64)
        return lo * self.page_size, np.concatenate([pages[h] for h in hashes[:lo]])

    def insert(self, tokens: npt.NDArray[np.int32], value: npt.NDArray[np.int64]) -> int:
        hashes = self._page_hashes(tokens)
        pages = self.pages
        ps = self.page_size
        present = 0
        for i, h in enumerate(hashes):
            if h in pages:
                present += ps
            else:
                pages[h] = value[i * ps : (i + 1) * ps]
        return present


def pairs_naive(
    work: list[tuple[Request, npt.NDArray[np.int64]]], page_size: int, max_len: int
) -> int:
    cache = NaivePrefixDict(page_size, max_len)
    hit = 0
    for (prompt, full), vals in work:
        hit += cache.match(prompt)[0]
        cache.insert(full, vals)
    return hit


# ------------------------------------------------------------------------ sglang


class _SGLangPool:
    """SGLang's allocator interface over the same llmds token pool."""

    device = "cpu"

    def __init__(self, pool: TokenToKVPoolAllocator) -> None:
        self.pool = pool

    def free(self, indices: Any) -> None:
        self.pool.free(indices.numpy())

    def free_segment(self, indices: Any, *, start_pos: int = 0) -> None:
        self.pool.free(indices.numpy())


def _sglang_api() -> dict[str, Any] | None:
    rc = harness.peer("sglang.srt.mem_cache.radix_cache")
    if rc is None:
        return None
    base = harness.peer("sglang.srt.mem_cache.base_prefix_cache")
    torch = harness.peer("torch")
    if base is None or torch is None:
        return None
    torch.set_num_threads(1)
    return {
        "RadixCache": rc.RadixCache,
        "RadixKey": rc.RadixKey,
        "Match": base.MatchPrefixParams,
        "Insert": base.InsertParams,
        "Evict": base.EvictParams,
        "torch": torch,
    }


def _sglang_requests(reqs: list[Request]) -> list[tuple[array, array, int]]:
    out = []
    for prompt, full in reqs:
        p, f = array("q"), array("q")
        p.frombytes(prompt.astype(np.int64).tobytes())
        f.frombytes(full.astype(np.int64).tobytes())
        out.append((p, f, len(prompt)))
    return out


def replay_sglang(
    pool: TokenToKVPoolAllocator,
    api: dict[str, Any],
    reqs: list[tuple[array, array, int]],
    page_size: int,
) -> dict[str, int]:
    torch = api["torch"]
    key_cls, match_p, insert_p, evict_p = api["RadixKey"], api["Match"], api["Insert"], api["Evict"]
    cache = api["RadixCache"].create_simulated(
        mock_allocator=_SGLangPool(pool), page_size=page_size
    )
    hit = total = rejected = 0
    for prompt, full, plen in reqs:
        r = cache.match_prefix(match_p(key=key_cls(prompt)))
        m = r.device_prefix_len
        node = r.last_device_node
        hit += m
        total += plen
        cache.inc_lock_ref(node)
        need = len(full) - m
        if need > pool.num_free:
            cache.evict(evict_p(num_tokens=need - pool.num_free))
            if need > pool.num_free:
                rejected += 1
                cache.dec_lock_ref(node)
                continue
        prefix = cache.path_device_indices(node)
        value = torch.cat((prefix, torch.from_numpy(pool.alloc(need))))
        done = cache.insert(insert_p(key=key_cls(full), value=value)).prefix_len
        if done > m:
            pool.free(value[m:done].numpy())
        aligned = len(full) - len(full) % page_size
        if aligned < len(full):
            pool.free(value[aligned:].numpy())
        cache.dec_lock_ref(node)
    return {"hit": hit, "prompt": total, "rejected": rejected, "cached": cache.total_size()}


def pairs_sglang(api: dict[str, Any], work: list[tuple[Any, Any, Any]], page_size: int) -> int:
    key_cls, match_p, insert_p = api["RadixKey"], api["Match"], api["Insert"]
    cache = api["RadixCache"].create_simulated(page_size=page_size)
    hit = 0
    for prompt, full, vals in work:
        hit += cache.match_prefix(match_p(key=key_cls(prompt))).device_prefix_len
        cache.insert(insert_p(key=key_cls(full), value=vals))
    return hit


# ---------------------------------------------------------------------------- run


class _Run:
    """One run of this benchmark: the workload, the rows so far and the rates each
    stage recorded (for the ratios and plots)."""

    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx
        self.n = n = 200 if ctx.quick else 2000
        self.reqs = reqs = chat_requests(n, ctx.seed)
        self.total_tokens = sum(len(f) for _, f in reqs)
        self.max_len = max(len(f) for _, f in reqs)
        self.prompt_tokens = sum(len(p) for p, _ in reqs)
        offsets = np.cumsum([0] + [len(f) for _, f in reqs])
        self.work = [(req, np.arange(offsets[i], offsets[i + 1], dtype=np.int64))
                     for i, req in enumerate(reqs)]
        self.api = None if ctx.quick else _sglang_api()
        self.sglang_skip = ("skipped in --quick (importing sglang + torch takes seconds)"
                            if ctx.quick else harness.skipped("sglang.srt.mem_cache.radix_cache"))
        self.sg_reqs = _sglang_requests(reqs) if self.api else []
        self.sg_work: list[Any] = []
        if self.api:
            torch = self.api["torch"]
            self.sg_work = [(p, f, torch.from_numpy(v))
                            for (p, f, _), (_, v) in zip(self.sg_reqs, self.work, strict=True)]
        self.repeat = max(ctx.repeat, 5)
        self.rows: list[dict[str, Any]] = []
        self.ideal: dict[int, float] = {}
        self.pairs: dict[tuple[str, int], float] = {}
        self.hit_by: dict[tuple[str, int, int | None], float] = {}
        self.rps: dict[tuple[str, int, int | None], float] = {}
        self.stages = len(PAGE_SIZES) * (len(CAPACITIES) * 2 + 3)
        self.done = 0

    def stage(self, label: str) -> None:
        self.done += 1
        self.ctx.progress(self.done, self.stages, label)

    def pair_row(self, impl: str, ps: int, hit_rate: float, meas: Any) -> None:
        self.rows.append({"impl": impl, "mode": "match+insert", "page_size": ps,
                          "capacity": "unbounded", "hit_rate": hit_rate,
                          "pairs_per_s": meas.ops_per_cpu_s, **meas.to_dict()})

    def pairs_stage(self, ps: int) -> None:
        """Match + insert pairs (no pool, unbounded): llmds, the naive dict, SGLang."""
        n, repeat, prompt = self.n, self.repeat, self.prompt_tokens
        hit, meas = timed(pairs_llmds, (self.work, ps), n, repeat)
        self.pairs[("llmds", ps)] = meas.ops_per_cpu_s
        self.pair_row("llmds.RadixCache", ps, hit / prompt, meas)
        self.stage(f"llmds pairs page {ps}")
        hit, meas = timed(pairs_naive, (self.work, ps, self.max_len), n, repeat)
        self.ideal[ps] = hit / prompt
        self.pairs[("naive", ps)] = meas.ops_per_cpu_s
        self.pair_row("naive dict of prefix hashes", ps, self.ideal[ps], meas)
        self.stage(f"naive pairs page {ps}")
        if self.api:
            hit, meas = timed(pairs_sglang, (self.api, self.sg_work, ps), n, repeat)
            self.pairs[("sglang", ps)] = meas.ops_per_cpu_s
            self.pair_row("sglang RadixCache", ps, hit / prompt, meas)
        else:
            self.rows.append({"impl": "sglang RadixCache", "mode": "match+insert",
                              "page_size": ps, "skipped": self.sglang_skip})
        self.stage(f"sglang pairs page {ps}")

    def replay_stage(self, ps: int, cap: int | None) -> None:
        """The full replay at one page size and capacity: llmds, then SGLang."""
        capacity = self.total_tokens + 1 if cap is None else cap
        cases: list[tuple[str, str, Any, tuple[Any, ...]]] = [
            ("llmds", "llmds.RadixCache", replay_llmds, (self.reqs, ps))]
        if self.api:
            cases.append(("sglang", "sglang RadixCache", replay_sglang,
                          (self.api, self.sg_reqs, ps)))
        for key, impl, fn, args in cases:
            r, meas = timed(fn, args, self.n, self.repeat, capacity)
            self.hit_by[(key, ps, cap)] = r["hit"] / r["prompt"]
            self.rps[(key, ps, cap)] = meas.ops_per_cpu_s
            self.rows.append({"impl": impl, "mode": "replay", "page_size": ps,
                              "capacity": cap_label(cap), "hit_rate": r["hit"] / r["prompt"],
                              "requests_per_s": meas.ops_per_cpu_s, "rejected": r["rejected"],
                              "cached_tokens": r["cached"], **meas.to_dict()})
            self.stage(f"{key} replay page {ps} {cap_label(cap)}")
        if not self.api:
            self.rows.append({"impl": "sglang RadixCache", "mode": "replay", "page_size": ps,
                              "capacity": cap_label(cap), "skipped": self.sglang_skip})
            self.stage(f"sglang replay page {ps} {cap_label(cap)}")

    def ratios(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ps in PAGE_SIZES:
            out.append({"name": f"hit rate / ideal hit rate (page {ps}, unbounded)",
                        "value": harness.ratio(self.hit_by[("llmds", ps, None)], self.ideal[ps]),
                        "goal": 1.0})
        for ps in PAGE_SIZES:
            out.append({"name": f"match+insert pairs/s vs SGLang Python tree (page {ps})",
                        "value": harness.ratio(self.pairs[("llmds", ps)],
                                               self.pairs.get(("sglang", ps))),
                        "goal": SGLANG_PAIRS_PER_S["rust"] / SGLANG_PAIRS_PER_S["python"]})
        out.append({"name": "match+insert pairs/s / 41k (SGLang's Rust-tree figure, page 1)",
                    "value": harness.ratio(self.pairs[("llmds", 1)], SGLANG_PAIRS_PER_S["rust"]),
                    "goal": 1.0})
        for ps in PAGE_SIZES:
            for cap in CAPACITIES:
                out.append({"name": f"replay requests/s vs SGLang (page {ps}, {cap_label(cap)})",
                            "value": harness.ratio(self.rps[("llmds", ps, cap)],
                                                   self.rps.get(("sglang", ps, cap))),
                            "goal": 1.0})
        return out

    def plots(self) -> list[dict[str, Any]]:
        labels = [cap_label(c) for c in CAPACITIES]
        return [
            {"title": "Hit rate vs KV capacity (multi-turn chat trace)", "x_label": "capacity",
             "y_label": "hit rate", "kind": "bar",
             "series": [{"label": f"{impl} page {ps}", "x": labels,
                         "y": [self.hit_by.get((impl, ps, c)) for c in CAPACITIES]}
                        for impl in ("llmds", "sglang") for ps in PAGE_SIZES
                        if (impl, ps, None) in self.hit_by]},
            {"title": "Match+insert pairs per CPU-second", "x_label": "page size",
             "y_label": "pairs/s", "kind": "bar",
             "series": [{"label": impl, "x": [str(ps) for ps in PAGE_SIZES],
                         "y": [self.pairs.get((impl, ps)) for ps in PAGE_SIZES]}
                        for impl in ("llmds", "sglang", "naive") if (impl, 1) in self.pairs]},
        ]


NOTES = [
    "Rates are per CPU-second of the median of the timed runs; pairs/s times only "
    "match_prefix(prompt) + insert(prompt + output) on an unbounded cache; requests/s "
    "times the full replay (match, lock, allocate/evict, insert, free duplicates, unlock).",
    "Ideal hit rate: the naive dict of every inserted page-prefix (no eviction); at "
    "unbounded capacity a correct radix cache must reach exactly this value.",
    f"SGLang's published hit rates on this trace: {SGLANG_HIT_RATE[1]} (page 1), "
    f"{SGLANG_HIT_RATE[16]} (page 16); its pairs/s: {SGLANG_PAIRS_PER_S['python']:.0f} "
    f"(Python tree), {SGLANG_PAIRS_PER_S['rust']:.0f} (Rust tree).",
    "SGLang's tree is driven through its public API (MatchPrefixParams/InsertParams, "
    "path_device_indices for the matched indices) with the same llmds token pool.",
]


def run(ctx: BenchContext) -> dict[str, Any]:
    """The benchmark (see the module docstring) as a result record."""
    r = _Run(ctx)
    for ps in PAGE_SIZES:
        r.pairs_stage(ps)
        for cap in CAPACITIES:
            r.replay_stage(ps, cap)
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "num_requests": r.n,
            "page_sizes": list(PAGE_SIZES),
            "capacities": [cap_label(c) for c in CAPACITIES],
            "prompt_tokens": r.prompt_tokens,
            "total_tokens": r.total_tokens,
            "repeat": r.repeat,
        },
        data=f"synthetic multi_turn_chat_trace({r.n}, seed={ctx.seed})",
        rows=r.rows,
        ratios=r.ratios(),
        notes=NOTES,
        plots=r.plots(),
        extra={
            "ideal_hit_rate": {str(k): v for k, v in r.ideal.items()},
            "hit_rate": {f"{i}/page{p}/{cap_label(c)}": v for (i, p, c), v in r.hit_by.items()},
        },
    )
