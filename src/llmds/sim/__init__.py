"""``llmds.sim``: a deterministic discrete-event LLM serving simulator.

Built from the real llmds structures (AdmissionController, Scheduler, KVCache) on a
simulated clock; see :mod:`llmds.sim.engine`. Quick start::

    from llmds.sim import SimConfig, simulate, synthetic_workload
    result = simulate(synthetic_workload(1000, rate=5.0, seed=0), SimConfig())
    result.metrics["ttft_ms"]["p95"], result.metrics["goodput"]

Absolute times are only as good as the :class:`CostModel` parameters; comparisons
between policies under the same parameters are the point.
"""

from llmds.sim.arrivals import (
    LengthDist,
    SimRequest,
    SLOClass,
    arrival_times,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import (
    MODES,
    POLICIES,
    SCENARIOS,
    SimConfig,
    SimResult,
    Simulator,
    scenario,
    simulate,
)
from llmds.sim.metrics import RequestRecord, format_table, summarize

__all__ = [
    "MODES",
    "POLICIES",
    "SCENARIOS",
    "CostModel",
    "LengthDist",
    "RequestRecord",
    "SLOClass",
    "SimConfig",
    "SimRequest",
    "SimResult",
    "Simulator",
    "arrival_times",
    "format_table",
    "scenario",
    "simulate",
    "summarize",
    "synthetic_workload",
    "trace_workload",
]
