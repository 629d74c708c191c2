"""AdmissionController vs limits (moving and fixed window) and pyrate-limiter.

Each implementation makes ``n`` admission decisions in a tight loop on the real
clock (the peers read the wall clock themselves), in two regimes:

* ``saturated``: every limiter allows 100 requests/s, so after the first burst
  nearly every call is a rejection: the hot path of an overloaded server, when
  admission cost matters most;
* ``admitting``: every limiter allows 10^9 requests/s, so every call is an
  admission that is recorded. ``limits``' in-memory moving window prepends one
  entry per admitted hit to a list (``events[:0] = ...``), so its cost grows with
  the hits inside the window; ``n`` is smaller here for that reason.

llmds calls ``try_admit(tokens)`` (atomic check-and-record of one request and a
seeded number of estimated tokens, 50-2000, against *two* buckets, the token one
non-binding); the peers check one request limit per call (``limits``:
``hit(item, "tenant")``, ``MemoryStorage``; ``pyrate-limiter``:
``Limiter(InMemoryBucket([Rate(...)])).try_acquire("tenant", blocking=False)``).
llmds' ``should_admit`` (the 0.1 API; no record) and ``check`` (decision object
with retry-after) are timed too. Rates are decisions per CPU-second of the median
run (see harness).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmds.admissions import AdmissionController
from llmds.bench import harness
from llmds.bench.harness import BenchContext

NAME = "admissions"
TITLE = "AdmissionController: decisions/s vs limits (moving/fixed window) and pyrate-limiter"


def _ours(limit: float, method: str) -> Callable[[], Callable[[Any], Any]]:
    def make() -> Callable[[Any], Any]:
        ac = AdmissionController(qps_target=limit, token_rate_limit=limit * 1e4)
        return getattr(ac, method)

    return make


def _impls(limit: int) -> list[tuple[str, Callable[[], Callable[[Any], Any]] | None, str]]:
    """(name, factory of a one-argument decision function, peer module or '')."""
    out: list[tuple[str, Callable[[], Callable[[Any], Any]] | None, str]] = [
        ("llmds try_admit", _ours(limit, "try_admit"), ""),
        ("llmds should_admit", _ours(limit, "should_admit"), ""),
        ("llmds check", _ours(limit, "check"), ""),
    ]
    limits = harness.peer("limits")
    for label, strategy in (("moving window", "MovingWindowRateLimiter"),
                            ("fixed window", "FixedWindowRateLimiter")):
        if limits is None:
            out.append((f"limits {label}", None, "limits"))
            continue
        item = limits.parse(f"{limit}/second")

        def make_limits(strategy: str = strategy, item: Any = item) -> Callable[[Any], Any]:
            lim = getattr(limits.strategies, strategy)(limits.storage.MemoryStorage())
            hit = lim.hit
            return lambda _tokens: hit(item, "tenant")

        out.append((f"limits {label}", make_limits, "limits"))
    pyrate = harness.peer("pyrate_limiter")
    if pyrate is None:
        out.append(("pyrate-limiter", None, "pyrate_limiter"))
    else:

        def make_pyrate() -> Callable[[Any], Any]:
            rate = pyrate.Rate(limit, pyrate.Duration.SECOND)
            lim = pyrate.Limiter(pyrate.InMemoryBucket([rate]))
            acquire = lim.try_acquire
            return lambda _tokens: acquire("tenant", blocking=False)

        out.append(("pyrate-limiter", make_pyrate, "pyrate_limiter"))
    return out


def _admitted(result: Any) -> bool:
    if isinstance(result, bool):
        return result
    if isinstance(result, tuple):
        return bool(result[0])
    return bool(result.admitted)


def _sizes(ctx: BenchContext) -> tuple[int, int, int]:
    """``(saturated calls, admitting calls, latency sample)`` for the run size."""
    if ctx.quick:
        return 10_000, 3_000, 2_000
    if ctx.full:
        return 1_000_000, 100_000, 50_000
    return 200_000, 40_000, 20_000


def _time_impl(
    ctx: BenchContext, factory: Callable[[], Callable[[Any], Any]], tokens: list[int], lat_n: int
) -> tuple[harness.Measurement, float, dict[str, float]]:
    """Decisions per CPU-second, the admitted fraction and per-call latencies of one limiter."""

    def fn(decide: Callable[[Any], Any]) -> None:
        for t in tokens:
            decide(t)

    m = harness.measure(fn, ops=len(tokens), setup=factory, repeat=ctx.repeat, warmup=1)
    decide = factory()  # untimed run: how many calls were admitted
    admitted = sum(1 for t in tokens if _admitted(decide(t)))
    lat = harness.latency_percentiles_ms(factory(), tokens[:lat_n])
    return m, admitted / len(tokens), lat


def _ratios(rates: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    ratios = []
    for regime, r in rates.items():
        ours = r.get("llmds try_admit")
        for peer_name in ("limits moving window", "limits fixed window", "pyrate-limiter"):
            ratios.append(
                {
                    "name": f"try_admit / {peer_name}, {regime} (decisions/s)",
                    "value": harness.ratio(ours, r.get(peer_name)) if ours else None,
                    "goal": 10.0,
                }
            )
    return ratios


def run(ctx: BenchContext) -> dict[str, Any]:
    n_sat, n_adm, lat_n = _sizes(ctx)
    rng = np.random.default_rng(ctx.seed)
    regimes = [("saturated", 100, n_sat), ("admitting", 10**9, n_adm)]
    impls_by_regime = {name: _impls(limit) for name, limit, _ in regimes}
    total = sum(len(v) for v in impls_by_regime.values()) + 1
    step = 0
    rows: list[dict[str, Any]] = []
    rates: dict[str, dict[str, float]] = {}
    measurements: dict[str, Any] = {}
    for regime, limit, n in regimes:
        tokens = rng.integers(50, 2001, n).tolist()
        rates[regime] = {}
        for name, factory, module in impls_by_regime[regime]:
            step += 1
            ctx.progress(step, total, f"{regime}: {name}")
            if factory is None:
                rows.append({"impl": name, "regime": regime,
                             "skipped": harness.skipped(module or name)})
                continue
            m, admitted, lat = _time_impl(ctx, factory, tokens, lat_n)
            rates[regime][name] = m.ops_per_cpu_s
            measurements[f"{regime}/{name}"] = m.to_dict()
            rows.append({"impl": name, "regime": regime, "limit_per_s": limit,
                         "decisions_per_cpu_s": m.ops_per_cpu_s, "decisions_per_s": m.ops_per_s,
                         "median_cpu_s": m.median_cpu_s, "admitted_fraction": admitted,
                         "peak_rss_mb": m.peak_rss_mb,
                         "latency_ms": {k: lat[k] for k in ("p50", "p95", "p99")}})
    ctx.progress(total, total, "done")
    plots = [
        {
            "title": "Admission decisions per CPU-second",
            "x_label": "implementation",
            "y_label": "decisions per CPU-second",
            "kind": "bar",
            "log_y": True,
            "series": [
                {"label": regime, "x": list(r), "y": list(r.values())}
                for regime, r in rates.items()
            ],
        }
    ]
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "saturated_calls": n_sat,
            "admitting_calls": n_adm,
            "saturated_limit_per_s": 100,
            "admitting_limit_per_s": 10**9,
            "estimated_tokens": [50, 2000],
            "latency_sample_calls": lat_n,
        },
        data=f"synthetic call stream on the real clock, tokens seeded with {ctx.seed}",
        rows=rows,
        ratios=_ratios(rates),
        notes=[
            "llmds checks two buckets (requests/s and tokens/s) per call; the peers check "
            "one request limit (cost 1).",
            "limits' in-memory moving window prepends every admitted hit to a list, so in "
            "the admitting regime its cost grows with the hits in the window.",
            "Latency = per-call timing (perf_counter_ns) of the first calls on a fresh "
            "limiter; sub-microsecond values are dominated by the timer itself.",
        ],
        plots=plots,
        extra={"measurements": measurements},
    )
