"""Serving metrics computed the way vLLM's ``benchmark_serving`` computes them.

Per finished request: TTFT (arrival to first output token), TPOT ((E2E - TTFT) /
(output_tokens - 1), requests with one output token excluded), ITL (every gap
between consecutive output tokens of a request, pooled over requests), E2E
(arrival to last token) and queue wait (arrival to first scheduling). Throughput
divides by the run's duration (first arrival to last completion). Goodput counts
finished requests that met every SLO they carry, per second.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RequestRecord", "format_table", "summarize", "tenant_metrics"]

FINISHED, REJECTED = "finished", "rejected"
_PCTS = (50, 95, 99)


class RequestRecord:
    """What happened to one request (times in simulated seconds). O(1) + its ITLs.

    Thread safety: written by one simulation run; read it once the run returned.
    """

    __slots__ = (
        "arrival",
        "cached_tokens",
        "e2e_slo_ms",
        "finish",
        "first_scheduled",
        "first_token",
        "generated",
        "itls",
        "last_token",
        "output_tokens",
        "preemptions",
        "prompt_tokens",
        "reason",
        "remote_tokens",
        "request_id",
        "slo_class",
        "status",
        "tenant",
        "tpot_slo_ms",
        "ttft_slo_ms",
    )

    def __init__(self, req: Any) -> None:
        self.request_id = req.request_id
        self.arrival = req.arrival
        self.prompt_tokens = req.prompt_tokens
        self.output_tokens = req.output_tokens
        self.slo_class = req.slo_class
        self.ttft_slo_ms = req.ttft_slo_ms
        self.e2e_slo_ms = req.e2e_slo_ms
        self.tpot_slo_ms = req.tpot_slo_ms
        self.tenant = req.tenant
        self.status = "pending"
        self.reason: str | None = None
        self.first_scheduled: float | None = None
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.finish: float | None = None
        self.generated = 0
        self.cached_tokens = 0  # prompt tokens not prefilled at first scheduling
        self.remote_tokens = 0  # ... of which a cluster's shared tier supplied
        self.preemptions = 0
        # array('d'): 8 bytes per gap instead of ~32 for a list of floats
        self.itls: array[float] = array("d")

    def emit(self, t: float) -> None:
        """Record one output token at time ``t``. O(1)."""
        if self.first_token is None:
            self.first_token = t
        else:
            self.itls.append(t - self.last_token)  # type: ignore[operator]
        self.last_token = t
        self.generated += 1

    @property
    def ttft_ms(self) -> float:
        assert self.first_token is not None
        return (self.first_token - self.arrival) * 1000.0

    @property
    def e2e_ms(self) -> float:
        assert self.finish is not None
        return (self.finish - self.arrival) * 1000.0

    @property
    def tpot_ms(self) -> float | None:
        if self.output_tokens <= 1:
            return None
        return (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)

    def met_slos(self) -> bool:
        """True if finished and within every SLO it carries."""
        if self.status != FINISHED:
            return False
        if self.ttft_slo_ms is not None and self.ttft_ms > self.ttft_slo_ms:
            return False
        if self.e2e_slo_ms is not None and self.e2e_ms > self.e2e_slo_ms:
            return False
        tpot = self.tpot_ms
        return not (self.tpot_slo_ms is not None and tpot is not None and tpot > self.tpot_slo_ms)


def _dist(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    p = np.percentile(a, _PCTS)
    return {"mean": float(a.mean()), "p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2])}


def summarize(
    records: Sequence[RequestRecord], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The metrics table of a run. O(n + total ITLs).

    Keys: ``num_requests``, ``completed``, ``rejected`` (by reason),
    ``duration_s``, ``request_throughput`` and ``output_token_throughput`` /
    ``total_token_throughput`` (per s), ``goodput`` (SLO-meeting requests per s),
    ``slo_attainment`` (fraction of finished requests meeting their SLOs, overall
    and per class), ``ttft_ms``/``tpot_ms``/``itl_ms``/``e2e_ms``/``queue_wait_ms``
    (mean, p50, p95, p99), ``preemptions``, ``prefix_hit_rate`` (prompt tokens
    not prefilled at first scheduling / prompt tokens, finished requests) and
    ``remote_hit_rate`` (the part of it a cluster's shared tier supplied); ``by_tenant``
    (see :func:`tenant_metrics`) when the requests carry more than one tenant;
    plus ``extra``.
    """
    done = [r for r in records if r.status == FINISHED]
    rejected: dict[str, int] = {}
    for r in records:
        if r.status == REJECTED:
            rejected[r.reason or "unknown"] = rejected.get(r.reason or "unknown", 0) + 1
    if records:
        start = min(r.arrival for r in records)
        end = max([r.finish for r in done if r.finish is not None] + [r.arrival for r in records])
        duration = max(end - start, 1e-12)
    else:
        duration = 0.0
    good = [r for r in done if r.met_slos()]
    itls = (
        np.concatenate([np.frombuffer(r.itls, dtype=np.float64) for r in done if r.itls])
        if any(r.itls for r in done)
        else np.empty(0)
    )
    out_tokens = sum(r.generated for r in done)
    in_tokens = sum(r.prompt_tokens for r in done)
    per_class: dict[str, list[int]] = {}
    for r in done:
        c = per_class.setdefault(r.slo_class, [0, 0])
        c[0] += 1
        c[1] += r.met_slos()
    queried = sum(r.prompt_tokens for r in done)
    out: dict[str, Any] = {
        "num_requests": len(records),
        "completed": len(done),
        "rejected": rejected,
        "num_rejected": sum(rejected.values()),
        "duration_s": duration,
        "request_throughput": len(done) / duration if duration else 0.0,
        "output_token_throughput": out_tokens / duration if duration else 0.0,
        "total_token_throughput": (out_tokens + in_tokens) / duration if duration else 0.0,
        "goodput": len(good) / duration if duration else 0.0,
        "slo_attainment": len(good) / len(done) if done else 0.0,
        "slo_attainment_by_class": {k: v[1] / v[0] for k, v in sorted(per_class.items())},
        "ttft_ms": _dist([r.ttft_ms for r in done]),
        "tpot_ms": _dist([t for r in done if (t := r.tpot_ms) is not None]),
        "itl_ms": _dist(np.asarray(itls) * 1000.0),
        "e2e_ms": _dist([r.e2e_ms for r in done]),
        "queue_wait_ms": _dist(
            [
                (r.first_scheduled - r.arrival) * 1000.0
                for r in done
                if r.first_scheduled is not None
            ]
        ),
        "preemptions": sum(r.preemptions for r in records),
        "prefix_hit_rate": sum(r.cached_tokens for r in done) / queried if queried else 0.0,
        "remote_hit_rate": sum(r.remote_tokens for r in done) / queried if queried else 0.0,
    }
    if len({r.tenant for r in records}) > 1:
        out["by_tenant"] = tenant_metrics(records, duration)
    if extra:
        out.update(extra)
    return out


def tenant_metrics(
    records: Sequence[RequestRecord], duration: float
) -> dict[str, dict[str, Any]]:
    """Per tenant (keyed by ``str(tenant)``): ``num_requests``, ``completed``,
    ``rejected``, ``goodput`` (its SLO-meeting requests per second of the whole
    run's ``duration``), ``slo_attainment`` and ``ttft_ms`` (mean/p50/p95/p99). O(n).
    """
    groups: dict[str, list[RequestRecord]] = {}
    for r in records:
        groups.setdefault(str(r.tenant), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(groups):
        recs = groups[name]
        done = [r for r in recs if r.status == FINISHED]
        good = sum(1 for r in done if r.met_slos())
        out[name] = {
            "num_requests": len(recs),
            "completed": len(done),
            "rejected": sum(1 for r in recs if r.status == REJECTED),
            "goodput": good / duration if duration else 0.0,
            "slo_attainment": good / len(done) if done else 0.0,
            "ttft_ms": _dist([r.ttft_ms for r in done]),
        }
    return out


def format_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of the headline metrics (what ``llmds simulate`` prints). O(1)."""
    lines = [
        f"{'requests':<28}{metrics['num_requests']:>12}",
        f"{'completed':<28}{metrics['completed']:>12}",
        f"{'rejected':<28}{metrics['num_rejected']:>12}  {metrics['rejected'] or ''}",
        f"{'duration (s)':<28}{metrics['duration_s']:>12.2f}",
        f"{'request throughput (/s)':<28}{metrics['request_throughput']:>12.2f}",
        f"{'output tokens (/s)':<28}{metrics['output_token_throughput']:>12.1f}",
        f"{'goodput (/s)':<28}{metrics['goodput']:>12.2f}",
        f"{'SLO attainment':<28}{metrics['slo_attainment']:>12.3f}",
        f"{'preemptions':<28}{metrics['preemptions']:>12}",
        f"{'prefix hit rate':<28}{metrics['prefix_hit_rate']:>12.3f}",
        f"{'metric (ms)':<16}{'mean':>10}{'p50':>10}{'p95':>10}{'p99':>10}",
    ]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_wait_ms"):
        d = metrics[key]
        cells = "".join(f"{'-' if d[k] is None else f'{d[k]:.1f}':>10}"
                        for k in ("mean", "p50", "p95", "p99"))
        lines.append(f"{key[:-3]:<16}{cells}")
    if "kv_pages_per_running_mean" in metrics:
        lines.insert(10, f"{'KV pages / running (mean)':<28}"
                         f"{metrics['kv_pages_per_running_mean']:>12.1f}")
    if metrics.get("num_extrapolated"):  # GPU-profile look-ups beyond the profiled range
        lines.insert(10, f"{'profile extrapolations':<28}{metrics['num_extrapolated']:>12}")
    for name, t in (metrics.get("by_tenant") or {}).items():
        p95 = t["ttft_ms"]["p95"]
        lines.append(f"tenant {name[:12]:<12} done {t['completed']:>7} rejected {t['rejected']:>6} "
                     f"goodput {t['goodput']:>7.2f}/s  ttft p95 "
                     f"{'-' if p95 is None else f'{p95:.1f}'} ms")
    return "\n".join(lines)
