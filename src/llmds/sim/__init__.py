"""``llmds.sim``: a deterministic discrete-event LLM serving simulator.

Built from the real llmds structures (AdmissionController, Scheduler, KVCache or
RadixCache + PagedAllocator) on a simulated clock; see :mod:`llmds.sim.engine` (and
the modules it lists), :mod:`llmds.sim.kv_backends` and :mod:`llmds.sim.workloads`
(the multi-turn chat trace). Quick start::

    from llmds.sim import SimConfig, simulate, synthetic_workload
    result = simulate(synthetic_workload(1000, rate=5.0, seed=0), SimConfig())
    result.metrics["ttft_ms"]["p95"], result.metrics["goodput"]

Absolute times are only as good as the cost model: the guessed :class:`CostModel`
by default, or measured GPU profiles with :meth:`SimConfig.on_gpu` (Vidur's operator
timings of Llama-2-7B/Llama-3-8B on an A100 or H100, :mod:`llmds.sim.profiles`).
:mod:`llmds.sim.cluster` puts several servers behind a router::

    from llmds.sim import Cluster, SimConfig
    cfg = SimConfig.on_gpu("a100", "llama-2-7b", kv_backend="radix")
    Cluster(cfg, num_replicas=4, router="cache_aware").run(requests).metrics
"""

from llmds.sim.arrivals import (
    LengthDist,
    SimRequest,
    SLOClass,
    Tenant,
    arrival_times,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cluster import (
    ROUTERS,
    Cluster,
    ClusterResult,
    RouterConfig,
    SharedTier,
    simulate_cluster,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import (
    KV_BACKENDS,
    MODES,
    POLICIES,
    SimConfig,
    SimResult,
    Simulator,
    simulate,
)
from llmds.sim.kv_backends import KVCacheBackend, RadixBackend, TokenRemap
from llmds.sim.metrics import RequestRecord, format_table, summarize
from llmds.sim.scenarios import SCENARIOS, scenario
from llmds.sim.workloads import ChatRequest, multi_turn_chat_trace

__all__ = [
    "KV_BACKENDS",
    "MODES",
    "POLICIES",
    "ROUTERS",
    "SCENARIOS",
    "ChatRequest",
    "Cluster",
    "ClusterResult",
    "CostModel",
    "KVCacheBackend",
    "LengthDist",
    "RadixBackend",
    "RequestRecord",
    "RouterConfig",
    "SLOClass",
    "SharedTier",
    "SimConfig",
    "SimRequest",
    "SimResult",
    "Simulator",
    "Tenant",
    "TokenRemap",
    "arrival_times",
    "format_table",
    "multi_turn_chat_trace",
    "scenario",
    "simulate",
    "simulate_cluster",
    "summarize",
    "synthetic_workload",
    "trace_workload",
]
