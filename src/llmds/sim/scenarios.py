"""Named scenarios for ``llmds simulate NAME``: a workload and a server configuration.

Thread safety: pure functions; safe from any number of threads.
"""

from __future__ import annotations

from llmds._validate import check_choice
from llmds.sim.arrivals import (
    LengthDist,
    SimRequest,
    SLOClass,
    Tenant,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.config import SimConfig
from llmds.sim.workloads import check_num_requests, check_seed, multi_turn_chat_trace

__all__ = ["SCENARIOS", "scenario"]

#: name -> one-line description (``llmds simulate --list``).
SCENARIOS: dict[str, str] = {
    "chat": "multi-turn chat trace (shared prefixes), Poisson at 4 req/s, continuous batching",
    "chat-bursty": "multi-turn chat trace, gamma arrivals (cv=3) at 4 req/s",
    "mixed-slo": "synthetic interactive (TTFT 200 ms) + batch (E2E 30 s) at 10 req/s, EDF",
    "micro-batch": "synthetic short requests at 30 req/s, the Scheduler's micro-batching (50 ms)",
    "overload-admission": "synthetic at 25 req/s (2x capacity) with admission at 10 req/s",
    "chat-radix": "multi-turn chat trace at 4 req/s, RadixCache + PagedAllocator KV backend",
    "tenants-fair": "two tenants (one sends 4x), 15 req/s (1.3x capacity), SFQ fair share",
}


def scenario(
    name: str, num_requests: int = 2000, seed: int = 0
) -> tuple[list[SimRequest], SimConfig]:
    """The workload and configuration of a named scenario (see :data:`SCENARIOS`). O(n).

    ``llmds simulate NAME`` should call ``simulate(*scenario(NAME, n, seed))`` and
    print :func:`llmds.sim.metrics.format_table` of ``result.metrics``.

    >>> reqs, cfg = scenario("micro-batch", 10)
    >>> len(reqs), cfg.mode
    (10, 'micro_batch')
    """
    check_choice(name, "scenario", SCENARIOS)
    num_requests = check_num_requests(num_requests)  # before anything is drawn
    seed = check_seed(seed)  # (the chat trace checks its own size first)
    classes = [SLOClass("interactive", 1.0, ttft_ms=200.0), SLOClass("batch", 1.0, e2e_ms=30e3)]
    if name in ("chat", "chat-radix"):
        return trace_workload(multi_turn_chat_trace(num_requests, seed=seed), 4.0, seed=seed), (
            SimConfig(kv_backend="radix" if name == "chat-radix" else "kvcache")
        )
    if name == "tenants-fair":
        tenants = (Tenant("noisy", share=4.0), Tenant("quiet", share=1.0))
        reqs = synthetic_workload(num_requests, 15.0, tenants=tenants,
                                  slo_classes=[classes[0]], seed=seed)
        return reqs, SimConfig(policy="fair", tenants=tenants)
    if name == "chat-bursty":
        reqs = trace_workload(
            multi_turn_chat_trace(num_requests, seed=seed), 4.0, process="gamma", cv=3.0,
            seed=seed,
        )
        return reqs, SimConfig()
    if name == "mixed-slo":
        return synthetic_workload(num_requests, 10.0, slo_classes=classes, seed=seed), SimConfig(
            policy="edf"
        )
    if name == "micro-batch":
        reqs = synthetic_workload(
            num_requests, 30.0, prompt=LengthDist("uniform", low=32, high=512),
            output=LengthDist("uniform", low=1, high=16), seed=seed,
        )
        return reqs, SimConfig(mode="micro_batch", max_num_seqs=32, max_wait_ms=50.0)
    reqs = synthetic_workload(num_requests, 25.0, slo_classes=classes, seed=seed)
    return reqs, SimConfig(qps_limit=10.0)
