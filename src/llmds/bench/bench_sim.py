"""Serving-simulator experiments (``llmds bench sim``), on three cost models.

Each experiment runs once per cost model ("setup"): the old guessed
:class:`~llmds.sim.CostModel` (``guess``), and Vidur's GPU profiles of Llama-2-7B on
an A100-80GB (``a100/llama-2-7b``, the headline) and on an H100 (``h100/llama-2-7b``,
attention scaled from the A100 by the HBM bandwidth ratio), each with the KV pool
vLLM's rule gives that GPU (:meth:`~llmds.sim.SimConfig.on_gpu`). Every row carries
its ``cost``; ratios end in ``[setup]``; only the headline setup's ratios carry goals,
and the report's claims check reads that setup (:data:`CLAIMS_SETUP`).

1. The Scheduler's micro-batching, ``max_wait_ms`` sweep: for several loads
   (fractions of the saturation throughput) and ``max_wait_ms`` values, run
   :mod:`llmds.sim` in ``micro_batch`` mode and report capacity relative to
   always-full batches and p95 queue wait / TTFT / E2E latency. The report this
   library started from claimed ~95% of max throughput with p95 < 100 ms at 50 ms.
2. FCFS vs EDF vs the Scheduler's default order, mixed SLO classes, load swept past
   saturation (continuous batching): goodput and SLO attainment.
3. Prefix caching off / hash-chain KVCache / RadixCache + PagedAllocator on the
   multi-turn chat trace: KV pages per running request (mean, peak), pages held,
   prefix hit rate, TTFT p50/p95, and ``memory_saved_fraction`` per cache vs off.
4. 2x overload with and without admission control: goodput.

Headline figures are ``ratios`` entries named ``exp1: ...`` to ``exp4: ...``.
Without the profiles (``serving/vidur`` in the datasets folder) only ``guess`` runs
and a note says so. Replica clusters are ``llmds bench sim_cluster``; the cost
model's own accuracy is ``llmds bench sim_profiles``.

No peer library ships a simulator built from its own structures; Vidur, the
closest, is recorded as skipped when not importable.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.sim import (
    CostModel,
    LengthDist,
    SimConfig,
    SLOClass,
    simulate,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.workloads import multi_turn_chat_trace

NAME = "sim"
TITLE = "Serving simulator: max_wait_ms sweep, policies, prefix caching, admission"
#: The setup whose results the claims check judges (and whose ratios carry goals).
CLAIMS_SETUP = "a100/llama-2-7b"
GUESS = "guess"
_CLASSES = (SLOClass("interactive", 1.0, ttft_ms=200.0), SLOClass("batch", 1.0, e2e_ms=30_000.0))
_GPUS = ("a100", "h100")


def setups(ctx: BenchContext) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``[(label, SimConfig fields)]`` for the guess and each GPU whose profiles exist.

    The fields are ``cost`` and, for a GPU, ``kv_pages`` (vLLM's rule). Also returns
    notes (profiles missing). O(1) after the first build of each profile model.
    """
    out: list[tuple[str, dict[str, Any]]] = [(GUESS, {"cost": CostModel()})]
    notes: list[str] = []
    data = ctx.dataset("serving", "vidur") or ctx.data_dir
    for gpu in _GPUS:
        try:
            cfg = SimConfig.on_gpu(gpu, "llama-2-7b", profiles_dir=data)
        except FileNotFoundError as e:
            notes.append(f"{gpu}: GPU profiles not found, setup skipped ({e})")
            continue
        out.append((f"{gpu}/llama-2-7b", {"cost": cfg.cost, "kv_pages": cfg.kv_pages}))
    return out, notes


def _ratio(name: str, label: str, value: float | None, goal: float | None,
           **extra: Any) -> dict[str, Any]:
    """A ratio of one setup: the goal only on the headline setup."""
    return {"name": f"{name} [{label}]", "value": value,
            "goal": goal if label == CLAIMS_SETUP else None, "cost": label, **extra}


def _continuous_experiments(
    ctx: BenchContext, label: str, fields: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Experiments 2-4 (continuous batching) on one setup: rows, ratios, plots."""
    n = 150 if ctx.quick else 1000
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    sat = simulate(synthetic_workload(n, 1e5, seed=ctx.seed), SimConfig(**fields))
    cap = sat.metrics["request_throughput"]
    # 2. FCFS vs EDF vs the Scheduler's default order, mixed SLO classes
    loads = [1.0, 1.2] if ctx.quick else [0.8, 1.0, 1.2, 1.5]
    good: dict[str, list[float]] = {}
    for load in loads:
        reqs = synthetic_workload(n, load * cap, slo_classes=_CLASSES, seed=ctx.seed)
        for policy in ("fcfs", "edf", "default"):
            m = simulate(reqs, SimConfig(policy=policy, **fields)).metrics
            good.setdefault(policy, []).append(m["goodput"])
            rows.append({"impl": "llmds.sim", "experiment": "policy", "cost": label,
                         "policy": policy, "load": load, "goodput": m["goodput"],
                         "slo_attainment": m["slo_attainment"],
                         "interactive_attainment": m["slo_attainment_by_class"].get("interactive"),
                         "p95_ttft_ms": m["ttft_ms"]["p95"]})
    for load, f, e, d in zip(loads, good["fcfs"], good["edf"], good["default"], strict=True):
        if load not in (1.0, 1.2):
            continue
        ratios.append(_ratio(f"exp2: goodput EDF/FCFS, load {load}", label,
                             e / f if f else None, 1.3, load=load))
        ratios.append(_ratio(f"exp2: goodput default priority/FCFS, load {load}", label,
                             d / f if f else None, 1.3, load=load))
    plots = [{"title": f"Goodput vs load (mixed SLO classes, continuous batching, {label})",
              "x_label": "load / capacity", "y_label": "requests meeting SLOs per s",
              "kind": "line",
              "series": [{"label": k, "x": loads, "y": v} for k, v in good.items()]}]
    more_rows, more_ratios, more_plots = _prefix_experiment(ctx, n, label, fields)
    rows.extend(more_rows)
    ratios.extend(more_ratios)
    plots.extend(more_plots)
    # 4. overload (2x capacity) with and without admission control
    reqs = synthetic_workload(n, 2.0 * cap, slo_classes=_CLASSES, seed=ctx.seed)
    for qps in (None, 0.9 * cap):
        m = simulate(reqs, SimConfig(qps_limit=qps, **fields)).metrics
        rows.append({"impl": "llmds.sim", "experiment": "admission", "cost": label,
                     "qps_limit": qps, "goodput": m["goodput"], "rejected": m["num_rejected"],
                     "slo_attainment": m["slo_attainment"], "p95_e2e_ms": m["e2e_ms"]["p95"]})
    no_ac, ac = rows[-2]["goodput"], rows[-1]["goodput"]
    ratios += [
        _ratio("exp4: goodput admission/none, 2x load", label,
               ac / no_ac if no_ac else None, 1.0, qps_limit=0.9 * cap),
        _ratio("exp4: goodput req/s without admission, 2x load", label, no_ac, None),
        _ratio("exp4: goodput req/s with admission, 2x load", label, ac, None,
               qps_limit=0.9 * cap),
    ]
    return rows, ratios, plots


# (label, kv_backend, prefix_caching); "KVCache" is the hash-chain llmds.KVCache,
# "RadixCache" the llmds.mem_cache.RadixCache over a PagedAllocator.
_CACHES = (("off", "kvcache", False), ("KVCache", "kvcache", True),
           ("RadixCache", "radix", True))


def _prefix_experiment(ctx: BenchContext, n: int, label: str, fields: dict[str, Any]) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Experiment 3: prefix caching off / hash-chain KVCache / RadixCache, multi-turn chat.

    Load is a fraction of the trace's saturation throughput with caching off.
    ``memory_saved_fraction`` = 1 - (KV pages per running request with the cache) /
    (the same without), both time-weighted means over the run: the memory a request
    holds while it runs, which is what prefix sharing changes. The total KV held
    at the same arrival rate (``kv_active_pages_mean``) falls further, because
    cached prefixes also shorten prefills and so fewer requests run at once.
    """
    trace = multi_turn_chat_trace(n, seed=ctx.seed)
    sat = simulate(trace_workload(trace, 1e5, seed=ctx.seed),
                   SimConfig(prefix_caching=False, **fields))
    cap = sat.metrics["request_throughput"]
    loads = [0.3, 0.9] if ctx.quick else [0.3, 0.6, 0.9]
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    by: dict[tuple[str, float], dict[str, Any]] = {}
    util: dict[str, list[tuple[float, float]]] = {}  # KV utilisation over time, top load
    for load in loads:
        reqs = trace_workload(trace, load * cap, seed=ctx.seed)
        for name, backend, on in _CACHES:
            res = simulate(reqs, SimConfig(kv_backend=backend, prefix_caching=on, **fields))
            if load == loads[-1]:
                step = max(1, len(res.kv_utilisation) // 200)
                util[name] = res.kv_utilisation[::step]
            by[name, load] = _prefix_row(name, backend, on, load, load * cap, res.metrics,
                                         label)
            rows.append(by[name, load])
        ratios += _memory_saved(by, load, label)
    ratios += _prefix_ratios(by, loads[-1], label)
    return rows, ratios, _prefix_plots(by, loads, util, label)


def _prefix_row(name: str, backend: str, on: bool, load: float, rate: float,
                m: dict[str, Any], label: str) -> dict[str, Any]:
    """One experiment-3 row: a cache at a load, the metrics the report compares."""
    return {"impl": f"llmds.sim {name}", "experiment": "prefix_cache", "cost": label,
            "cache": name, "kv_backend": backend, "prefix_caching": on, "load": load,
            "offered_rate": rate, "prefix_hit_rate": m["prefix_hit_rate"],
            "p50_ttft_ms": m["ttft_ms"]["p50"], "p95_ttft_ms": m["ttft_ms"]["p95"],
            "mean_ttft_ms": m["ttft_ms"]["mean"],
            "kv_pages_per_running_mean": m["kv_pages_per_running_mean"],
            "kv_pages_per_running_peak": m["kv_pages_per_running_peak"],
            "kv_active_pages_mean": m["kv_active_pages_mean"],
            "kv_active_pages_peak": m["kv_active_pages_peak"],
            "preemptions": m["preemptions"], "num_extrapolated": m["num_extrapolated"]}


def _memory_saved(by: dict[tuple[str, float], dict[str, Any]], load: float,
                  label: str) -> list[dict[str, Any]]:
    """Each cache's memory saved vs off at ``load``: set on its row, and the exp3 ratio."""
    off = by["off", load]
    ratios = []
    for name, _, _ in _CACHES[1:]:
        row = by[name, load]
        row["memory_saved_fraction"] = 1.0 - (
            row["kv_pages_per_running_mean"] / off["kv_pages_per_running_mean"])
        row["active_pages_saved_fraction"] = 1.0 - (
            row["kv_active_pages_mean"] / off["kv_active_pages_mean"])
        ratios.append(_ratio(
            f"exp3: memory saved by {name} vs off, load {load}", label,
            row["memory_saved_fraction"], 0.3, load=load,
            pages_per_running_request=row["kv_pages_per_running_mean"],
            pages_per_running_request_off=off["kv_pages_per_running_mean"],
            measure="1 - KV pages per running request (cache / off)"))
    return ratios


def _prefix_ratios(by: dict[tuple[str, float], dict[str, Any]], top: float,
                   label: str) -> list[dict[str, Any]]:
    """Hit rate, TTFT and pages held of each cache relative to off, at the top load."""
    off = by["off", top]
    ratios: list[dict[str, Any]] = []
    for name, _, _ in _CACHES[1:]:
        row = by[name, top]
        ratios += [
            _ratio(f"exp3: prefix hit rate {name}, load {top}", label,
                   row["prefix_hit_rate"], None),
            _ratio(f"exp3: p50 TTFT {name}/off, load {top}", label,
                   row["p50_ttft_ms"] / off["p50_ttft_ms"], 1.0, higher_is_better=False),
            _ratio(f"exp3: p95 TTFT {name}/off, load {top}", label,
                   row["p95_ttft_ms"] / off["p95_ttft_ms"], 1.0, higher_is_better=False),
            _ratio(f"exp3: KV pages held {name}/off, load {top}", label,
                   row["kv_active_pages_mean"] / off["kv_active_pages_mean"], None,
                   higher_is_better=False),
        ]
    return ratios


def _prefix_plots(by: dict[tuple[str, float], dict[str, Any]], loads: list[float],
                  util: dict[str, list[tuple[float, float]]],
                  label: str) -> list[dict[str, Any]]:
    return [{"title": f"KV pages per running request (multi-turn chat, {label})",
             "x_label": "load / capacity (caching off)", "y_label": "pages (16 tokens)",
             "kind": "line",
             "series": [{"label": name, "x": loads,
                         "y": [by[name, ld]["kv_pages_per_running_mean"] for ld in loads]}
                        for name, _, _ in _CACHES]},
            {"title": f"KV utilisation over time (multi-turn chat, load {loads[-1]}, {label})",
             "x_label": "simulated time (s)", "y_label": "used pages / KV pool",
             "kind": "line",
             "series": [{"label": name, "x": [round(t, 3) for t, _ in util[name]],
                         "y": [round(u, 4) for _, u in util[name]], "marker": False}
                        for name, _, _ in _CACHES]}]

_PROMPT = LengthDist("uniform", low=32, high=512)
_OUTPUT = LengthDist("uniform", low=1, high=16)


def _config(max_wait_ms: float, batch: int, fields: dict[str, Any]) -> SimConfig:
    return SimConfig(**{"kv_pages": 4096, **fields}, mode="micro_batch", policy="fcfs",
                     max_num_seqs=batch, max_wait_ms=max_wait_ms, kv_page_size=16)


def _exp1_sweep(
    ctx: BenchContext, n: int, batch: int, label: str, fields: dict[str, Any],
    waits: list[float], loads: list[float],
) -> tuple[list[dict[str, Any]], dict[float, dict[str, list[float]]], float]:
    """Experiment 1 on one setup: micro-batching at each load and ``max_wait_ms``.

    ``capacity_vs_full``: requests completed per second of busy server time,
    relative to always-full batches; below 1 the policy spends capacity on
    partly filled batches (and saturates earlier). Returns the rows, the plot
    series by load and the simulator's speed (requests per CPU-second).
    """
    # Always-full batches: arrivals far faster than service, max_wait_ms = inf.
    sat = simulate(
        synthetic_workload(n, 1e5, prompt=_PROMPT, output=_OUTPUT, seed=ctx.seed),
        _config(math.inf, batch, fields),
    )
    max_tput = sat.metrics["request_throughput"]
    # Capacity: requests per second of busy server time (what the batching policy
    # would sustain if the server were never idle).
    full_capacity = sat.metrics["completed"] / sat.metrics["busy_s"]
    rows: list[dict[str, Any]] = [
        {"impl": "llmds.sim", "cost": label, "load": "saturation", "max_wait_ms": "inf",
         "request_throughput": max_tput, "capacity_vs_full": 1.0,
         "mean_batch_size": sat.scheduler_stats["mean_batch_size"]},
    ]
    series: dict[float, dict[str, list[float]]] = {}
    cpu = 0.0
    for load in loads:
        rate = load * max_tput
        reqs = synthetic_workload(n, rate, prompt=_PROMPT, output=_OUTPUT, seed=ctx.seed)
        s = series.setdefault(load, {"x": [], "tput": [], "p95": []})
        for w in waits:
            c0 = time.process_time()
            res = simulate(reqs, _config(w, batch, fields))
            cpu += time.process_time() - c0
            m = res.metrics
            rel = m["completed"] / m["busy_s"] / full_capacity
            rows.append({
                "impl": "llmds.sim", "cost": label, "load": load, "max_wait_ms": w,
                "offered_rate": rate, "request_throughput": m["request_throughput"],
                "capacity_vs_full": rel,
                "server_busy_fraction": m["busy_s"] / m["duration_s"],
                "p95_queue_wait_ms": m["queue_wait_ms"]["p95"],
                "p95_e2e_ms": m["e2e_ms"]["p95"], "p95_ttft_ms": m["ttft_ms"]["p95"],
                "mean_batch_size": res.scheduler_stats["mean_batch_size"],
            })
            s["x"].append(w)
            s["tput"].append(rel)
            s["p95"].append(m["e2e_ms"]["p95"])
    simulated = n * len(loads) * len(waits)
    return rows, series, simulated / cpu if cpu else 0.0


def _exp1_results(
    rows: list[dict[str, Any]], series: dict[float, dict[str, list[float]]], label: str,
    cost: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Experiment 1's headline ratios (at max_wait 50 ms, the highest load) and plots."""
    at50 = [r for r in rows if r.get("max_wait_ms") == 50.0]
    top = max(at50, key=lambda r: r["load"])
    where = {"load": top["load"], "max_wait_ms": 50.0, "cost_model": _describe(cost),
             "p95_queue_wait_ms": top["p95_queue_wait_ms"], "p95_ttft_ms": top["p95_ttft_ms"]}
    ratios = [
        _ratio(f"exp1: capacity/always-full, max_wait 50ms, load {top['load']}", label,
               top["capacity_vs_full"], 0.95, **where),
        _ratio(f"exp1: p95 E2E ms, max_wait 50ms, load {top['load']}", label,
               top["p95_e2e_ms"], 100.0, higher_is_better=False, **where),
    ]
    plots: list[dict[str, Any]] = [
        {"title": f"Capacity (requests per busy second) relative to always-full batches "
                  f"({label})",
         "x_label": "max_wait_ms",
         "y_label": "capacity / always-full", "kind": "line",
         "series": [{"label": f"load {k}", "x": v["x"], "y": v["tput"]}
                    for k, v in series.items()]},
        {"title": f"p95 end-to-end latency ({label})", "x_label": "max_wait_ms", "y_label": "ms",
         "kind": "line", "log_y": True,
         "series": [{"label": f"load {k}", "x": v["x"], "y": v["p95"]}
                    for k, v in series.items()]},
    ]
    return ratios, plots


def _describe(cost: Any) -> dict[str, Any]:
    """What a cost model is, for ``params`` and the claims check's remark."""
    if isinstance(cost, CostModel):
        return {"kind": "guess", **asdict(cost)}
    d = cost.describe()
    return {"kind": "gpu profiles", "gpu": d["gpu"], "gpu_description": d["gpu_description"],
            "model": d["model"], "attention_source": d["attention_source"],
            "prefill_rule": d["prefill_rule"], "extrapolate": d["extrapolate"],
            "assumptions": d["assumptions"]}


def run(ctx: BenchContext) -> dict[str, Any]:
    """Run the four experiments on every setup and return the result record."""
    n = 400 if ctx.quick else 4000
    batch = 32
    waits = [0.0, 10.0, 50.0, 200.0] if ctx.quick else [0.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0]
    loads = [0.5, 0.9] if ctx.quick else [0.3, 0.6, 0.8, 0.9]
    configs, notes = setups(ctx)
    total = 2 * len(configs)
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    plots: list[dict[str, Any]] = []
    speeds: dict[str, float] = {}
    for i, (label, fields) in enumerate(configs):
        ctx.progress(2 * i, total, f"{label}: max_wait_ms sweep")
        sweep, series, speeds[label] = _exp1_sweep(ctx, n, batch, label, fields, waits, loads)
        more_ratios, more_plots = _exp1_results(sweep, series, label, fields["cost"])
        ctx.progress(2 * i + 1, total, f"{label}: policies, prefix caching, admission")
        cont_rows, cont_ratios, cont_plots = _continuous_experiments(ctx, label, fields)
        rows += sweep + cont_rows
        ratios += more_ratios + cont_ratios
        if label in (CLAIMS_SETUP, GUESS) or len(configs) == 1:
            plots += more_plots + cont_plots
    ctx.progress(total, total, "done")
    rows.append({"impl": "vidur", "skipped": harness.skipped("vidur")})
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"num_requests": n, "max_num_seqs": batch, "loads": loads, "max_wait_ms": waits,
                "setups": [label for label, _ in configs], "claims_setup": CLAIMS_SETUP,
                "cost_models": {label: _describe(f["cost"]) for label, f in configs},
                "kv_pages": {label: f.get("kv_pages") for label, f in configs},
                "prompt": asdict(_PROMPT), "output": asdict(_OUTPUT),
                "policy": "fcfs", "mode": "micro_batch"},
        data=(f"synthetic, seed {ctx.seed} (Poisson arrivals); experiment 3 replays the seeded "
              "synthetic multi-turn chat trace (llmds.sim.workloads.multi_turn_chat_trace)"),
        rows=rows, ratios=ratios, plots=plots,
        notes=[*notes,
               "Setups: 'guess' is the old unmeasured CostModel (8 ms per iteration + 0.06 ms "
               "per token ...); 'a100/llama-2-7b' and 'h100/llama-2-7b' time every iteration "
               "from Vidur's GPU profiles (llmds.sim.profiles; H100 attention is the A100 "
               "profile scaled by the HBM bandwidth ratio) with the KV pool vLLM's rule gives "
               "that GPU. Goals and the claims check use the a100/llama-2-7b setup.",
               "exp1: load is a fraction of the always-full-batch throughput; "
               "capacity_vs_full = requests per busy second / always-full batches'. A "
               "micro-batch's prefill runs in iterations of at most max_num_batched_tokens "
               "(2048) tokens.",
               "exp2: load is a fraction of the continuous-batching saturation throughput; the "
               "Scheduler's default order is earliest TTFT deadline, then fewest tokens, so it "
               "differs from EDF only among requests without a TTFT deadline (batch class).",
               "exp3: memory saved = 1 - (KV pages per running request with the cache) / "
               "(without), time-weighted over the run at the same arrival rate; 'KV pages held' "
               "is the total held, which falls further because cached prefixes shorten "
               "prefills and fewer requests run at once. Load is a fraction of the trace's "
               "saturation throughput with caching off. Prefix hit rate = cached prompt "
               "tokens / prompt tokens at first scheduling. num_extrapolated counts profile "
               "look-ups beyond the profiled range (linear extension, flagged).",
               "exp4: 2x the continuous-batching capacity, admission at 0.9x capacity (qps).",
               "Simulator speed (exp1 runs), requests per CPU-second: " + ", ".join(
                   f"{label} {v:.0f}" for label, v in speeds.items()) + "."],
    )
