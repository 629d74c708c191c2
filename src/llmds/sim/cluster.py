"""Replica clusters: N simulated servers behind a router, optionally sharing a prefix tier.

:class:`Cluster` runs ``num_replicas`` copies of the :class:`~llmds.sim.engine.Simulator`
(continuous batching, each with its own KV cache and scheduler) on one simulated
clock. Requests arrive in time order; before each one is routed, every replica runs
the iterations that start before its arrival, so the router sees each replica as of
the end of the iteration it is in. The router picks a replica by one of
:data:`ROUTERS`:

* ``"round_robin"``: replicas in turn;
* ``"least_outstanding"``: fewest requests routed to it and not finished (lowest
  index on ties);
* ``"cache_aware"``: SGLang's cache-aware router (``sgl-router``; the rule read from
  its ``select_generate_worker_from_text``, written anew here). The router keeps an
  *approximate* prefix tree per replica of the prompts it sent there (a
  :class:`~llmds.mem_cache.RadixCache` of token pages, LRU-trimmed to
  :attr:`RouterConfig.tree_tokens`; it never sees evictions or outputs). The load
  is imbalanced when ``max - min > balance_abs_threshold`` and ``max >
  balance_rel_threshold * min`` over the replicas' outstanding requests: then the
  least loaded replica wins. Otherwise the replica whose tree holds the longest
  prefix of the prompt wins if that prefix is more than ``cache_threshold`` of the
  prompt, else the replica with the smallest tree ("most free cache"). Ties go to
  the less loaded replica, then the lower index. Defaults are sgl-router's current
  ones (``cache_threshold`` 0.3, ``balance_abs_threshold`` 64,
  ``balance_rel_threshold`` 1.5).
* ``"oracle"``: the same rule on the replicas' *actual* KV caches (exact longest
  cached prefix, read without touching them; ``kv_backend="radix"``), falling back
  to the least loaded replica. No real router knows this much. It is not an upper
  bound on the hit rate: once a replica evicted a conversation's history, the
  oracle no longer sends the conversation back there, where the approximate tree
  (which never sees evictions) still does and the replica re-caches it.

**Shared tier** (:class:`SharedTier`, optional; needs ``kv_backend="radix"``): a
store of prefix KV pages every replica writes to and reads from (LMCache/Mooncake
style, or llmds' Redis page tier). A replica publishes a prefix when a request's
prefill completes and when it finishes or is preempted (whole pages, up to the
tier's capacity, LRU). When a request is routed, if the tier holds more of its
prompt than the chosen replica's cache does, the extra pages are fetched first
when that is faster than recomputing them (the cost model's prefill time of those
tokens alone): the request enters the replica ``fetch_ms`` after its arrival and
skips their prefill. ``fetch_ms = request_latency_ms + tokens x kv_bytes_per_token /
bandwidth``; its inputs are stated, not measured here (see :class:`SharedTier`).
Publishing is instantaneous and free (asynchronous in real systems).

Metrics are the engine's (:func:`llmds.sim.metrics.summarize`) over all requests,
plus ``replicas`` (per replica: requests routed, completed, busy seconds, prefix hit
rate) and ``router`` (decisions by rule, fetches). ``prefix_hit_rate`` counts tokens
from the tier too; ``remote_hit_rate`` is that part.

Everything is deterministic for a given workload and configuration.

Thread safety: not thread-safe; one ``run`` at a time per Cluster.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_choice, check_int, check_number, check_size, show
from llmds.mem_cache.base_prefix_cache import RadixKey
from llmds.mem_cache.radix_cache import RadixCache
from llmds.sim.arrivals import SimRequest
from llmds.sim.config import SimConfig
from llmds.sim.engine import SimResult, Simulator
from llmds.sim.kv_backends import TokenRemap, cached_prefix
from llmds.sim.metrics import RequestRecord, summarize

__all__ = ["ROUTERS", "Cluster", "ClusterResult", "RouterConfig", "SharedTier",
           "simulate_cluster"]

ROUTERS = ("round_robin", "least_outstanding", "cache_aware", "oracle")
_MAX_REPLICAS = 1024
# Llama-2-7B fp16: 2 x 32 layers x 32 KV heads x 128 x 2 bytes (the guessed model's size)
_LLAMA2_7B_KV_BYTES = 524_288


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How a :class:`Cluster` routes (see the module docstring for each policy).

    ``tree_tokens``: the cache-aware router's tree size per replica in tokens (None:
    the replica's KV pool, ``kv_pages * kv_page_size``). Thread safety: immutable.
    """

    policy: str = "cache_aware"
    cache_threshold: float = 0.3
    balance_abs_threshold: int = 64
    balance_rel_threshold: float = 1.5
    tree_tokens: int | None = None

    def __post_init__(self) -> None:
        check_choice(self.policy, "policy", ROUTERS)
        check_number(self.cache_threshold, "cache_threshold", minimum=0.0, maximum=1.0)
        check_int(self.balance_abs_threshold, "balance_abs_threshold", minimum=0)
        check_number(self.balance_rel_threshold, "balance_rel_threshold", minimum=1.0)
        if self.tree_tokens is not None:
            check_size(self.tree_tokens, "tree_tokens", maximum=1 << 34)


@dataclass(frozen=True, slots=True)
class SharedTier:
    """A shared prefix-KV tier, modelled by the time to fetch pages from it.

    ``bandwidth_gb_s``: GB/s (1e9 bytes) from the tier to a replica's GPU;
    ``request_latency_ms``: fixed cost per fetch (default 0.08 ms: one 64 KiB Redis
    GET on loopback took ~80 us in llmds' Redis benchmark; a pipelined fetch of many
    pages is one round trip); ``capacity_tokens``: tokens of KV it holds (LRU);
    ``kv_bytes_per_token``: None takes the model's from a profile cost model
    (Llama-2-7B: 512 KiB), or Llama-2-7B's with the guessed model.
    :data:`NETWORKS` holds the two settings the benchmark uses. Thread safety: immutable.

    >>> round(SharedTier(bandwidth_gb_s=25.0).fetch_ms(1024, 524_288), 2)  # 512 MiB
    21.55
    """

    bandwidth_gb_s: float = 25.0
    request_latency_ms: float = 0.08
    capacity_tokens: int = 1 << 20
    kv_bytes_per_token: int | None = None
    name: str = "shared tier"

    def __post_init__(self) -> None:
        check_number(self.bandwidth_gb_s, "bandwidth_gb_s", minimum=0.0, exclusive_minimum=True)
        check_number(self.request_latency_ms, "request_latency_ms", minimum=0.0)
        check_size(self.capacity_tokens, "capacity_tokens", maximum=1 << 34)
        if self.kv_bytes_per_token is not None:
            check_size(self.kv_bytes_per_token, "kv_bytes_per_token", maximum=1 << 30)

    def fetch_ms(self, tokens: int, kv_bytes_per_token: int) -> float:
        """Time to fetch the KV of ``tokens`` tokens, in ms. O(1)."""
        return self.request_latency_ms + tokens * kv_bytes_per_token / (
            self.bandwidth_gb_s * 1e6)


#: The tier settings of the router experiment: RDMA (25 GB/s, e.g. a 200 Gb/s NIC) and
#: 10 GbE (1.25 GB/s); both with the Redis round trip as the per-fetch latency.
NETWORKS = {"rdma-25GB/s": SharedTier(25.0, name="rdma-25GB/s"),
            "10GbE-1.25GB/s": SharedTier(1.25, name="10GbE-1.25GB/s")}


class _NoPool:
    """A RadixCache pool that frees nothing: the router's and tier's trees hold no KV."""

    __slots__ = ()

    def free(self, indices: Any) -> None:
        """Nothing to give back. O(1)."""


class _PrefixStore:
    """Token prefixes in a RadixCache trimmed to ``capacity`` tokens, LRU. O(d + T) per call.

    Thread safety: not thread-safe (one per router tree or tier).
    """

    __slots__ = ("capacity", "page_size", "tree")

    def __init__(self, page_size: int, capacity: int) -> None:
        self.page_size = page_size
        self.capacity = capacity
        self.tree = RadixCache(page_size=page_size, token_to_kv_pool_allocator=_NoPool())

    def size(self) -> int:
        return self.tree.total_size()

    def longest(self, ids: npt.NDArray[np.uint32]) -> int:
        """Tokens of ``ids`` held (whole pages), read only."""
        return cached_prefix(self.tree, ids)

    def put(self, ids: npt.NDArray[np.uint32], num_tokens: int) -> None:
        """Add the whole pages of ``ids[:num_tokens]``; trim the least recently used."""
        n = (min(num_tokens, len(ids)) // self.page_size) * self.page_size
        if n == 0:
            return
        self.tree.insert(RadixKey(ids[:n]))
        over = self.tree.total_size() - self.capacity
        if over > 0:
            self.tree.evict(over)


class _Tier:
    """The shared tier's contents during a run (what replicas publish into). O(T) calls."""

    __slots__ = ("model", "store")

    def __init__(self, model: SharedTier, page_size: int) -> None:
        self.model = model
        self.store = _PrefixStore(page_size, model.capacity_tokens)

    def publish(self, ids: npt.NDArray[np.uint32], num_tokens: int) -> None:
        self.store.put(ids, num_tokens)


@dataclass(frozen=True, slots=True)
class ClusterResult:
    """A finished cluster run: cluster-wide metrics, every record, each replica's result.

    ``metrics`` holds :func:`~llmds.sim.metrics.summarize`'s table over all requests
    plus ``num_replicas``, ``router`` (policy and decision counts) and
    ``replicas`` (one dict per replica). Thread safety: treat it as read-only.
    """

    metrics: dict[str, Any]
    records: list[RequestRecord]
    replicas: list[SimResult] = field(default_factory=list)


class Cluster:
    """``num_replicas`` simulated servers behind a router (see the module docstring).

    Complexity per request: O(replicas) to advance the clock and pick, plus the
    cache-aware router's O(replicas x (d + T)) tree look-ups (T prompt tokens) and
    the tier's O(d + T); the replicas' own work is the engine's. Memory: the
    replicas, one router tree per replica (``cache_aware``), the tier's tree.

    Thread safety: not thread-safe; one ``run`` at a time.

    >>> from llmds.sim.arrivals import synthetic_workload, LengthDist
    >>> reqs = synthetic_workload(40, 50.0, prompt=LengthDist("constant", mean=32),
    ...                           output=LengthDist("constant", mean=4), seed=0)
    >>> res = Cluster(SimConfig(kv_pages=64), 2, "round_robin").run(reqs)
    >>> res.metrics["completed"], [r["routed"] for r in res.metrics["replicas"]]
    (40, [20, 20])
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        num_replicas: int = 4,
        router: str | RouterConfig = "cache_aware",
        tier: SharedTier | None = None,
    ) -> None:
        self.config = config or SimConfig()
        if not isinstance(self.config, SimConfig):
            raise TypeError(f"config must be a SimConfig, got {show(self.config)}")
        if self.config.mode != "continuous":
            raise ValueError("a cluster's replicas use continuous batching: config.mode must "
                             f"be 'continuous', got {self.config.mode!r}")
        self.num_replicas = check_size(num_replicas, "num_replicas", maximum=_MAX_REPLICAS)
        if isinstance(router, str):
            router = RouterConfig(check_choice(router, "router", ROUTERS))
        if not isinstance(router, RouterConfig):
            raise TypeError(f"router must be one of {ROUTERS} or a RouterConfig, got "
                            f"{show(router)}")
        self.router = router
        if tier is not None and not isinstance(tier, SharedTier):
            raise TypeError(f"tier must be a SharedTier or None, got {show(tier)}")
        self.tier = tier
        needs_probe = router.policy == "oracle" or tier is not None
        if needs_probe and self.config.kv_backend != "radix":
            what = "router='oracle'" if router.policy == "oracle" else "a shared tier"
            raise ValueError(f"{what} reads the replicas' caches: config.kv_backend must be "
                             f"'radix', got {self.config.kv_backend!r}")
        if needs_probe and not self.config.prefix_caching:
            raise ValueError("router='oracle' and a shared tier need prefix_caching=True")
        model = getattr(self.config.cost, "model", None)
        default_bytes = model.kv_bytes_per_token() if model is not None else _LLAMA2_7B_KV_BYTES
        self.kv_bytes_per_token = (default_bytes if tier is None or tier.kv_bytes_per_token
                                   is None else tier.kv_bytes_per_token)

    # ------------------------------------------------------------------ run
    def run(
        self,
        requests: Sequence[SimRequest],
        progress: Callable[[int, int, str], None] | None = None,
    ) -> ClusterResult:
        """Route and simulate ``requests`` (any order; sorted by arrival). O(events).

        ``progress(routed, total, label)`` is called every 1024 requests.
        """
        cfg = self.config
        Simulator(cfg).validate(requests)
        reqs = sorted(requests, key=lambda r: (r.arrival, r.request_id))
        remap = TokenRemap()
        ps = cfg.kv_page_size
        tier = None if self.tier is None else _Tier(self.tier, ps)
        replicas = [Simulator(cfg) for _ in range(self.num_replicas)]
        for rep in replicas:
            rep.open(remap, tier)
        picker = _Picker(self.router, replicas, ps, cfg.kv_pages * ps)
        # requests waiting for a tier fetch, per replica: (ready, order, submit args);
        # they enter their replica at ``ready``, so later arrivals are not held behind
        fetching: list[list[tuple[float, int, tuple[Any, ...]]]] = [[] for _ in replicas]
        records: list[RequestRecord] = []
        routed = [0] * self.num_replicas
        fetches = fetched_tokens = 0
        fetch_ms = 0.0
        total = len(reqs)
        for n, r in enumerate(reqs):
            t = r.arrival
            for rep, held in zip(replicas, fetching, strict=True):
                _advance(rep, held, t)
            ids = (remap.encode(r.token_ids) if r.token_ids is not None
                   else remap.fresh(r.prompt_tokens + r.output_tokens))
            prompt = ids[: r.prompt_tokens]
            k = picker.pick(prompt, [rep.num_outstanding + len(held)
                                     for rep, held in zip(replicas, fetching, strict=True)])
            rec = RequestRecord(r)
            records.append(rec)
            ms, fetched, extra = (0.0, 0, 0) if tier is None else self._fetch(
                replicas[k], tier, prompt)
            if fetched:
                heapq.heappush(fetching[k], (t + ms / 1000.0, n, (r, rec, ids, fetched)))
                fetches += 1
                fetched_tokens += extra
                fetch_ms += ms
            else:
                replicas[k].submit(r, rec, ids)
            routed[k] += 1
            if progress is not None and n % 1024 == 1023:
                progress(n + 1, total, "routing")
        for rep, held in zip(replicas, fetching, strict=True):
            _advance(rep, held, math.inf)
        results = [rep.close() for rep in replicas]
        metrics = self._metrics(records, results, routed, picker,
                                {"fetches": fetches, "fetched_tokens": fetched_tokens,
                                 "fetch_ms_total": fetch_ms})
        return ClusterResult(metrics, records, results)

    def _fetch(self, rep: Simulator, tier: _Tier, prompt: npt.NDArray[np.uint32]
               ) -> tuple[float, int, int]:
        """(fetch ms, prefix the request then has, tokens fetched) if fetching pays, else 0s.

        Pays: the tier holds more of the prompt than the replica's cache, and moving
        the extra KV is faster than the cost model's prefill of those tokens alone.
        """
        usable = len(prompt) - 1  # the last prompt token is always recomputed
        have = min(tier.store.longest(prompt), usable)
        local = rep.kv.cached_prefix(prompt)
        extra = have - local
        if extra <= 0:
            return 0.0, 0, 0
        ms = tier.model.fetch_ms(extra, self.kv_bytes_per_token)
        if ms >= self.config.cost.iteration_ms_mix(0, 0, [(extra, local)]):
            return 0.0, 0, 0
        return ms, have, extra

    def _metrics(self, records: list[RequestRecord], results: list[SimResult],
                 routed: list[int], picker: _Picker, tier: dict[str, Any]) -> dict[str, Any]:
        ms = [res.metrics for res in results]
        page_s = sum(m["kv_active_page_s"] for m in ms)
        run_s = sum(m["running_request_s"] for m in ms)
        extra: dict[str, Any] = {
            "num_replicas": self.num_replicas,
            "router": {"policy": self.router.policy, **picker.counts,
                       **({"tier": self.tier.name, **tier} if self.tier is not None else {})},
            "num_iterations": sum(m["num_iterations"] for m in ms),
            "busy_s": sum(m["busy_s"] for m in ms),
            "kv_backend": ms[0]["kv_backend"],
            "kv_pages_per_running_mean": page_s / run_s if run_s else 0.0,
            "num_extrapolated": sum(m["num_extrapolated"] for m in ms),
            "replicas": [
                {"routed": n, "completed": m["completed"], "busy_s": m["busy_s"],
                 "prefix_hit_rate": m["prefix_hit_rate"], "preemptions": m["preemptions"]}
                for n, m in zip(routed, ms, strict=True)
            ],
        }
        return summarize(records, extra)


def _advance(rep: Simulator, fetching: list[tuple[float, int, tuple[Any, ...]]],
             until: float) -> None:
    """Advance ``rep`` to ``until``, handing it each fetched request at its ready time."""
    while fetching and fetching[0][0] <= until:
        ready, _, (req, rec, ids, fetched) = heapq.heappop(fetching)
        rep.advance(ready)
        rep.submit(req, rec, ids, ready, fetched)
    rep.advance(until)


class _Picker:
    """The routing rule of a run: state (turn, router trees) and the decision counts.

    Thread safety: not thread-safe (its cluster's).
    """

    __slots__ = ("cfg", "counts", "replicas", "trees", "turn")

    def __init__(self, cfg: RouterConfig, replicas: list[Simulator], page_size: int,
                 kv_tokens: int) -> None:
        self.cfg = cfg
        self.replicas = replicas
        self.turn = 0
        size = kv_tokens if cfg.tree_tokens is None else cfg.tree_tokens
        self.trees = ([_PrefixStore(page_size, size) for _ in replicas]
                      if cfg.policy == "cache_aware" else [])
        self.counts = {"imbalanced": 0, "cache_hit": 0, "cache_miss": 0}

    def pick(self, prompt: npt.NDArray[np.uint32], loads: list[int]) -> int:
        """The replica for a request with these prompt codes, given each replica's
        outstanding requests. O(replicas x (d + T))."""
        policy = self.cfg.policy
        if policy == "round_robin":
            k = self.turn
            self.turn = (k + 1) % len(self.replicas)
            return k
        if policy == "least_outstanding":
            return loads.index(min(loads))
        k = self._affinity(prompt, loads)
        if self.trees:
            self.trees[k].put(prompt, len(prompt))
        return k

    def _affinity(self, prompt: npt.NDArray[np.uint32], loads: list[int]) -> int:
        cfg, counts = self.cfg, self.counts
        lo, hi = min(loads), max(loads)
        if hi - lo > cfg.balance_abs_threshold and hi > cfg.balance_rel_threshold * lo:
            counts["imbalanced"] += 1
            return loads.index(lo)
        if self.trees:
            matches = [tree.longest(prompt) for tree in self.trees]
        else:
            matches = [rep.kv.cached_prefix(prompt) for rep in self.replicas]
        order = range(len(loads))
        best = max(order, key=lambda i: (matches[i], -loads[i], -i))
        if len(prompt) and matches[best] / len(prompt) > cfg.cache_threshold:
            counts["cache_hit"] += 1
            return best
        counts["cache_miss"] += 1
        if self.trees:  # SGLang: the replica with the smallest tree has the most room
            return min(order, key=lambda i: (self.trees[i].size(), loads[i], i))
        return loads.index(lo)


def simulate_cluster(
    requests: Sequence[SimRequest],
    config: SimConfig | None = None,
    num_replicas: int = 4,
    router: str | RouterConfig = "cache_aware",
    tier: SharedTier | None = None,
) -> ClusterResult:
    """Run one cluster simulation (:class:`Cluster`). O(events)."""
    return Cluster(config, num_replicas, router, tier).run(requests)
