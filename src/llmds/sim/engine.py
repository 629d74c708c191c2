"""Deterministic discrete-event LLM server built from the real llmds structures.

The server gates arrivals with :class:`~llmds.admissions.AdmissionController` (one
global bucket and, optionally, one per tenant), queues them in
:class:`~llmds.scheduler.Scheduler` and keeps KV memory in one of two backends
(:mod:`llmds.sim.kv_backends`): :class:`~llmds.kv_cache.KVCache` (``kv_backend=
"kvcache"``: token-level ``allocate``/``append_tokens``/``free`` with hash-chain prefix
sharing) or :class:`~llmds.mem_cache.RadixCache` over a
:class:`~llmds.paged_allocator.PagedAllocator` (``kv_backend="radix"``: match, lock,
LRU-evict, insert). ``prefix_caching=False`` turns prefix reuse off in either. All of
them read the simulated clock, which jumps from event to event (no sleeping). Time
per iteration comes from a :class:`~llmds.sim.cost_model.CostModel` (a guess) or a
GPU's :class:`~llmds.sim.profiles.ProfileCostModel` (:meth:`SimConfig.on_gpu`).

The pieces, one module each:

* :mod:`llmds.sim.config` -- :class:`SimConfig` (re-exported here) and config files;
* :mod:`llmds.sim.server` -- the state of a run: arrivals through admission into the
  scheduler, tenants' fair queueing (SFQ), KV-memory accounting
  (``kv_pages_per_running_mean`` and the other memory metrics);
* :mod:`llmds.sim.continuous` -- ``mode="continuous"``: iteration-level batching
  (vLLM/Orca style) with chunked prefill and preemption by recomputation;
* :mod:`llmds.sim.micro_batch` -- ``mode="micro_batch"``: the Scheduler's release
  rules release a batch that runs to its end before the next one starts;
* :mod:`llmds.sim.metrics` -- per-request records and the metrics table;
* :mod:`llmds.sim.cluster` -- several Simulators behind a router, fed one request
  at a time (:meth:`Simulator.open`, ``submit``, ``advance``, ``close``).

Everything is deterministic for a given workload and configuration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds.sim.arrivals import SimRequest
from llmds.sim.config import MAX_KV_TOKENS, MODES, POLICIES, SimConfig
from llmds.sim.continuous import ContinuousBatching
from llmds.sim.kv_backends import KV_BACKENDS, TokenRemap
from llmds.sim.metrics import RequestRecord, summarize
from llmds.sim.micro_batch import MicroBatching

__all__ = [
    "KV_BACKENDS",
    "MAX_KV_TOKENS",
    "MODES",
    "POLICIES",
    "SimConfig",
    "SimResult",
    "Simulator",
    "simulate",
]


@dataclass(frozen=True, slots=True)
class SimResult:
    """A finished run: the metrics table, per-request records and server counters.

    Thread safety: treat it as read-only (the records are the run's own objects).
    """

    metrics: dict[str, Any]
    records: list[RequestRecord]
    kv_utilisation: list[tuple[float, float]]  # (time s, used pages / kv_pages), per iteration
    scheduler_stats: dict[str, Any]
    admission_stats: dict[str, Any] | None
    kv_stats: dict[str, Any]
    tenant_admission_stats: dict[str, dict[str, Any]] = field(default_factory=dict)


class Simulator(ContinuousBatching, MicroBatching):
    """A discrete-event server (see the module docstring).

    Complexity per iteration: O(running requests + tokens hashed by the KV
    cache); per request O(log queued) in the scheduler and admission O(1).
    Memory: O(requests) records plus the KV cache's page bookkeeping (the pool
    is one float32 per token slot, mapped lazily by the OS).

    Thread safety: not thread-safe; one ``run`` at a time per Simulator (separate
    Simulators may run in separate threads).

    >>> from llmds.sim.arrivals import synthetic_workload, LengthDist
    >>> reqs = synthetic_workload(20, 5.0, prompt=LengthDist("constant", mean=32),
    ...                           output=LengthDist("constant", mean=4), seed=0)
    >>> res = Simulator(SimConfig(kv_pages=64)).run(reqs)
    >>> res.metrics["completed"], res.kv_stats["used_pages"]
    (20, 0)
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        super().__init__(config or SimConfig())

    def validate(self, requests: Sequence[SimRequest]) -> None:
        """Check that every request can run on this server, before anything is built. O(n).

        Raises ``TypeError`` for a non-``SimRequest`` and ``ValueError`` for a request
        larger than the KV pool or (continuous batching without chunked prefill)
        than ``max_num_batched_tokens``. ``run`` calls it first; ``llmds simulate``
        calls it to report such a workload as a usage error.
        """
        cfg = self.config
        ps = cfg.kv_page_size
        for r in requests:
            if not isinstance(r, SimRequest):
                raise TypeError(f"requests must be SimRequest objects, got {type(r).__name__}")
            need = -(-(r.prompt_tokens + r.output_tokens) // ps)
            if need > cfg.kv_pages:
                raise ValueError(
                    f"kv_pages={cfg.kv_pages} (x {ps} tokens) is smaller than request "
                    f"{r.request_id}, which needs {need} pages for {r.prompt_tokens} prompt + "
                    f"{r.output_tokens} output tokens"
                )
            if (
                cfg.mode == "continuous"
                and not cfg.chunked_prefill
                and r.prompt_tokens + r.output_tokens > cfg.max_num_batched_tokens
            ):
                raise ValueError(
                    f"request {r.request_id} needs up to {r.prompt_tokens + r.output_tokens} "
                    f"tokens in one prefill > max_num_batched_tokens="
                    f"{cfg.max_num_batched_tokens}; enable chunked_prefill or raise the budget"
                )

    def run(
        self,
        requests: Sequence[SimRequest],
        progress: Callable[[int, int, str], None] | None = None,
    ) -> SimResult:
        """Simulate ``requests`` (any order; sorted by arrival) to completion. O(events).

        ``progress(arrived, total, label)``, if given, is called every 256 iterations
        (the CLI's progress bar); it does not affect the simulation.
        """
        self.validate(requests)
        self._begin(sorted(requests, key=lambda r: (r.arrival, r.request_id)), progress)
        if self.config.mode == "continuous":
            self._run_continuous()
        else:
            self._run_micro_batch()
        return self._result()

    # ------------------------------------------------ streaming (llmds.sim.cluster)
    def open(self, remap: TokenRemap | None = None, tier: Any = None) -> None:
        """Start an empty run that requests are fed into one by one (continuous mode). O(1).

        The cluster's way in (:mod:`llmds.sim.cluster`): :meth:`open`, then
        :meth:`advance` to each arrival and :meth:`submit`, then :meth:`close`.
        ``remap`` is the token-code table shared with the other replicas; ``tier`` the
        shared tier told about every prefix computed here (``publish(ids, n)``).
        """
        if self.config.mode != "continuous":
            raise ValueError("a streamed run (a cluster replica) needs mode='continuous', "
                             f"got {self.config.mode!r}")
        self._begin([], None, remap, tier)
        self._start_continuous()

    def submit(self, request: SimRequest, record: RequestRecord, ids: npt.NDArray[np.uint32],
               ready: float | None = None, fetched: int = 0) -> None:
        """Hand one request (already validated) to an open run. O(1).

        ``ids``: its token codes in the shared table; ``ready`` (default its arrival):
        when it enters the server; ``fetched``: leading tokens whose KV it brings.
        """
        self._submit(request, record, ids, request.arrival if ready is None else ready,
                     fetched)

    def advance(self, until: float) -> None:
        """Run an open run's iterations that start before ``until`` (see ``_advance``)."""
        self._advance(until)

    def close(self) -> SimResult:
        """Run an open run to its end and return its result (its records only). O(events)."""
        self._advance(math.inf)
        return self._result()

    def _result(self) -> SimResult:
        return SimResult(
            metrics=summarize(self.records, self._memory_metrics()),
            records=self.records,
            kv_utilisation=self.kv_util,
            scheduler_stats=self.sched.stats(),
            admission_stats=None if self.admission is None else self.admission.stats(),
            kv_stats=self.kv.stats(),
            tenant_admission_stats={str(k): a.stats() for k, a in self.tenant_admission.items()},
        )


def simulate(
    requests: Sequence[SimRequest],
    config: SimConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimResult:
    """Run one simulation (what ``llmds simulate`` calls). O(events)."""
    return Simulator(config).run(requests, progress)
