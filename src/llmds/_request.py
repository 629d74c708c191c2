"""The Scheduler's request record and its dispatch accounting (queue waits, counters).

:class:`Request` is what :class:`~llmds.scheduler.Scheduler` keeps per request (also
importable as ``llmds.scheduler.Request``): its tokens, SLO, times and state, and the
latencies derived from them. :class:`DispatchStats` counts what the scheduler did
(submissions, batches by release rule, completions) and keeps the queue waits of the
last ``history`` dispatched requests for percentiles.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "IN_FLIGHT",
    "QUEUED",
    "RELEASE_RULES",
    "DispatchStats",
    "Request",
]

QUEUED, IN_FLIGHT, COMPLETED, CANCELLED = "queued", "in_flight", "completed", "cancelled"
#: The Scheduler's release rules, in the order ``get_batch`` checks them.
RELEASE_RULES = ("force", "full", "max_wait", "slo")


class Request:
    """One request and its queue-wait accounting (times in clock seconds).

    ``priority_fn`` receives this object. Treat it as read-only: the scheduler
    owns it. ``wait_ms`` is the queue wait (what time-to-first-token adds on top
    of prefill); ``service_ms`` dispatch to completion; ``latency_ms`` arrival to
    completion. ``order_key`` is the ``(score, tie)`` pair the queue orders it by
    while queued (smallest first). Every property is O(1); memory: one slotted
    object.

    Thread safety: readable from any thread; only the Scheduler writes it, under
    its lock.
    """

    __slots__ = (
        "arrival",
        "completion_time",
        "deadline",
        "dispatch_time",
        "order_key",
        "request_id",
        "slo_ms",
        "state",
        "tokens",
    )

    def __init__(
        self, request_id: int, tokens: int, slo_ms: float | None, arrival: float, deadline: float
    ) -> None:
        self.request_id = request_id
        self.tokens = tokens
        self.slo_ms = slo_ms
        self.arrival = arrival
        self.deadline = deadline  # release-rule deadline, inf without an SLO
        self.dispatch_time: float | None = None
        self.completion_time: float | None = None
        self.state = QUEUED
        self.order_key: tuple[float, int] = (0.0, 0)  # (score, tie) while queued

    @property
    def wait_ms(self) -> float | None:
        """Queue wait, arrival to dispatch, in ms (None while queued)."""
        if self.dispatch_time is None:
            return None
        return (self.dispatch_time - self.arrival) * 1000.0

    @property
    def service_ms(self) -> float | None:
        """Dispatch to completion in ms (None until completed)."""
        if self.completion_time is None or self.dispatch_time is None:
            return None
        return (self.completion_time - self.dispatch_time) * 1000.0

    @property
    def latency_ms(self) -> float | None:
        """Arrival to completion in ms (None until completed)."""
        if self.completion_time is None:
            return None
        return (self.completion_time - self.arrival) * 1000.0

    @property
    def slo_met(self) -> bool | None:
        """True if dispatched by its SLO deadline; None without an SLO or before dispatch."""
        if self.slo_ms is None or self.dispatch_time is None:
            return None
        return self.dispatch_time <= self.arrival + self.slo_ms / 1000.0

    def __repr__(self) -> str:
        return (
            f"Request(request_id={self.request_id}, tokens={self.tokens}, slo_ms={self.slo_ms}, "
            f"arrival={self.arrival}, state={self.state!r})"
        )


class DispatchStats:
    """What one Scheduler did: counters, releases by rule, and queue waits in ms.

    ``mean``/``max``/``count`` of the waits cover every dispatched request; the
    percentiles cover the last ``history`` of them (a bounded deque). Each record is
    O(1) per request; ``snapshot`` is O(history). Memory: ``8 * history`` bytes of
    waits plus a few counters.

    Thread safety: not thread-safe; the Scheduler calls it under its lock.
    """

    __slots__ = ("counts", "releases", "wait_max_ms", "wait_sum_ms", "waits_ms")

    def __init__(self, history: int) -> None:
        self.counts = {
            "submitted": 0,
            "dispatched": 0,
            "completed": 0,
            "cancelled": 0,
            "batches": 0,
            "slo_missed": 0,
        }
        self.releases = dict.fromkeys(RELEASE_RULES, 0)
        self.waits_ms: deque[float] = deque(maxlen=history)
        self.wait_sum_ms = 0.0
        self.wait_max_ms = 0.0

    def record_batch(self, reason: str, waits_ms: list[float], slo_missed: int) -> None:
        """Count one batch released by ``reason`` with these queue waits. O(len(waits))."""
        self.waits_ms.extend(waits_ms)
        self.wait_sum_ms += sum(waits_ms)
        if waits_ms:
            self.wait_max_ms = max(self.wait_max_ms, max(waits_ms))
        counts = self.counts
        counts["slo_missed"] += slo_missed
        counts["dispatched"] += len(waits_ms)
        counts["batches"] += 1
        self.releases[reason] += 1

    def snapshot(self, queued: int, in_flight: int, queued_tokens: int) -> dict[str, Any]:
        """The ``Scheduler.stats()`` dictionary, given the queue's state. O(history)."""
        counts = self.counts
        waits = np.asarray(self.waits_ms, dtype=np.float64)
        out: dict[str, Any] = dict(counts)
        out.update(
            queued=queued,
            in_flight=in_flight,
            queued_tokens=queued_tokens,
            releases=dict(self.releases),
            mean_batch_size=(
                counts["dispatched"] / counts["batches"] if counts["batches"] else 0.0
            ),
        )
        n = counts["dispatched"]
        wait: dict[str, Any] = {
            "count": n,
            "mean": self.wait_sum_ms / n if n else None,
            "max": self.wait_max_ms if n else None,
        }
        if waits.size:
            p50, p95, p99 = np.percentile(waits, [50, 95, 99])
            wait.update(p50=float(p50), p95=float(p95), p99=float(p99), window=int(waits.size))
        out["wait_ms"] = wait
        return out
