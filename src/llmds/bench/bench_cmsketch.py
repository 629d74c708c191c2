"""CountMinSketch: batch update/estimate throughput and accuracy vs datasketches.

Workload (seeded): a stream of ``n`` items drawn from Zipf(1.1) over
``num_keys`` ids (hot keys are spread over the id space), as ``int64`` keys and,
for the string variant, as ``"query:<id>"`` strings. Every sketch is
``depth x width = 5 x 2719`` (epsilon = 0.001, delta = 0.01) unless stated.

Throughput: llmds ``add_many`` (one call over the whole array or list,
conservative and standard update) and ``estimate_many`` against
``datasketches.count_min_sketch`` ``update``/``get_estimate`` called once per
item (its Python API has no batch call); the llmds per-item ``add`` loop is
reported too. The str variant includes llmds' UTF-8 concatenation of the list.

Accuracy: over all distinct keys of the stream, the mean and max over-estimate
(estimate - true count) and the fraction of exact estimates, for conservative
update, standard update and datasketches at equal size, at several widths.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.bench.workloads import zipf_keys
from llmds.cmsketch import CountMinSketch

NAME = "cmsketch"
TITLE = "CountMinSketch: add_many/estimate_many vs datasketches count_min_sketch, and accuracy"

WIDTH, DEPTH = 2719, 5


def _row(name: str, variant: str, m: harness.Measurement) -> dict[str, Any]:
    return {
        "impl": name,
        "variant": variant,
        "items_per_cpu_s": m.ops_per_cpu_s,
        "items_per_s": m.ops_per_s,
        "median_cpu_s": m.median_cpu_s,
        "peak_rss_mb": m.peak_rss_mb,
    }


def _overestimates(est: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = est.astype(np.float64) - true
    if (err < 0).any():
        raise AssertionError("a Count-Min sketch under-estimated")
    return {
        "mean_overestimate": float(err.mean()),
        "max_overestimate": float(err.max()),
        "exact_fraction": float((err == 0).mean()),
        "mean_relative_overestimate": float((err / true).mean()),
    }


def _ds_updater(keys: list[Any]) -> Any:
    """datasketches' per-item ``update`` over ``keys`` (its only bulk path is a loop)."""

    def update_all(sketch: Any) -> None:
        update = sketch.update
        for k in keys:
            update(k)

    return update_all


def run(ctx: BenchContext) -> dict[str, Any]:
    if ctx.quick:
        n, num_keys, n_str, n_scalar = 50_000, 10_000, 20_000, 5_000
    elif ctx.full:
        n, num_keys, n_str, n_scalar = 5_000_000, 1_000_000, 1_000_000, 200_000
    else:
        n, num_keys, n_str, n_scalar = 1_000_000, 100_000, 300_000, 100_000
    ds = harness.peer("datasketches")
    total = 8
    ctx.progress(0, total, "building stream")
    keys = zipf_keys(n, num_keys, s=1.1, seed=ctx.seed)
    key_list = keys.tolist()
    strs = [f"query:{k}" for k in key_list[:n_str]]
    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    measurements: dict[str, Any] = {}

    def record(label: str, name: str, variant: str, m: harness.Measurement) -> None:
        rates[label] = m.ops_per_cpu_s
        measurements[label] = m.to_dict()
        rows.append(_row(name, variant, m))

    # ---- int64 keys: batch update
    for i, conservative in enumerate((True, False)):
        mode = "conservative" if conservative else "standard"
        ctx.progress(1 + i, total, f"llmds add_many int64 ({mode})")
        def fresh(c: bool = conservative) -> CountMinSketch:
            return CountMinSketch(WIDTH, DEPTH, conservative=c)

        m = harness.measure(lambda s: s.add_many(keys), ops=n, setup=fresh, repeat=ctx.repeat)
        record(f"add_many_int_{mode}", f"llmds add_many ({mode})", "update int64", m)
    ctx.progress(3, total, "per-item updates")
    m = harness.measure(
        lambda s: [s.add(k) for k in key_list[:n_scalar]],
        ops=n_scalar,
        setup=lambda: CountMinSketch(WIDTH, DEPTH),
        repeat=ctx.repeat,
    )
    record("add_loop_int", "llmds add() per item (conservative)", "update int64", m)
    if ds is not None:
        m = harness.measure(
            _ds_updater(key_list), ops=n, setup=lambda: ds.count_min_sketch(DEPTH, WIDTH),
            repeat=ctx.repeat, warmup=0,
        )
        record("ds_update_int", "datasketches update() per item", "update int64", m)
    else:
        rows.append({"impl": "datasketches", "variant": "update int64",
                     "skipped": harness.skipped("datasketches")})

    # ---- str keys
    ctx.progress(4, total, "str keys")
    m = harness.measure(
        lambda s: s.add_many(strs), ops=n_str, setup=lambda: CountMinSketch(WIDTH, DEPTH),
        repeat=ctx.repeat,
    )
    record("add_many_str", "llmds add_many (conservative)", "update str", m)
    if ds is not None:
        m = harness.measure(
            _ds_updater(strs), ops=n_str, setup=lambda: ds.count_min_sketch(DEPTH, WIDTH),
            repeat=ctx.repeat, warmup=0,
        )
        record("ds_update_str", "datasketches update() per item", "update str", m)

    # ---- estimates
    ctx.progress(5, total, "estimates")
    filled = CountMinSketch(WIDTH, DEPTH)
    filled.add_many(keys)
    m = harness.measure(lambda _: filled.estimate_many(keys), ops=n, repeat=ctx.repeat)
    record("estimate_many_int", "llmds estimate_many", "estimate int64", m)
    if ds is not None:
        ds_filled = ds.count_min_sketch(DEPTH, WIDTH)
        for k in key_list:
            ds_filled.update(k)

        def ds_estimate(_: Any) -> None:
            get = ds_filled.get_estimate
            for k in key_list:
                get(k)

        m = harness.measure(ds_estimate, ops=n, repeat=ctx.repeat, warmup=0)
        record("ds_estimate_int", "datasketches get_estimate() per item", "estimate int64", m)

    # ---- accuracy at equal size
    ctx.progress(6, total, "accuracy")
    uniq, true = np.unique(keys, return_counts=True)
    uniq_list = uniq.tolist()
    accuracy: list[dict[str, Any]] = []
    widths = [WIDTH // 10, WIDTH // 2, WIDTH, WIDTH * 4]
    series: dict[str, list[float]] = {"conservative": [], "standard": [], "datasketches": []}
    for width in widths:
        for conservative in (True, False):
            s = CountMinSketch(width, DEPTH, conservative=conservative)
            s.add_many(keys)
            label = "conservative" if conservative else "standard"
            stats = _overestimates(s.estimate_many(uniq), true)
            stats["error_bound"] = s.get_error_bound()
            accuracy.append({"impl": f"llmds ({label})", "width": width, **stats})
            series[label].append(stats["mean_overestimate"])
        if ds is not None:
            d = ds.count_min_sketch(DEPTH, width)
            for k in key_list:
                d.update(k)
            est = np.array([d.get_estimate(k) for k in uniq_list], dtype=np.float64)
            stats = _overestimates(est, true)
            accuracy.append({"impl": "datasketches", "width": width, **stats})
            series["datasketches"].append(stats["mean_overestimate"])
    rows.extend({"variant": "accuracy", **a} for a in accuracy)

    def acc(impl: str) -> float | None:
        for a in accuracy:
            if a["impl"] == impl and a["width"] == WIDTH:
                return float(a["mean_overestimate"])
        return None

    cu, std, dsk = acc("llmds (conservative)"), acc("llmds (standard)"), acc("datasketches")
    ctx.progress(7, total, "done")
    ratios = [
        {
            "name": "add_many (conservative) / datasketches update, int64 (items/s)",
            "value": harness.ratio(rates["add_many_int_conservative"], rates.get("ds_update_int")),
            "goal": 3.0,
        },
        {
            "name": "add_many (standard) / datasketches update, int64 (items/s)",
            "value": harness.ratio(rates["add_many_int_standard"], rates.get("ds_update_int")),
            "goal": None,
        },
        {
            "name": "add_many (conservative) / datasketches update, str (items/s)",
            "value": harness.ratio(rates["add_many_str"], rates.get("ds_update_str")),
            "goal": None,
        },
        {
            "name": "estimate_many / datasketches get_estimate, int64 (items/s)",
            "value": harness.ratio(rates["estimate_many_int"], rates.get("ds_estimate_int")),
            "goal": None,
        },
        {
            "name": "add() per item / datasketches update, int64 (items/s)",
            "value": harness.ratio(rates["add_loop_int"], rates.get("ds_update_int")),
            "goal": None,
        },
        {
            "name": "mean over-estimate: conservative / standard (lower is better)",
            "value": (cu / std) if cu is not None and std else None,
            "goal": None,
            "higher_is_better": False,
        },
        {
            "name": "mean over-estimate: conservative / datasketches (lower is better)",
            "value": (cu / dsk) if cu is not None and dsk else None,
            "goal": None,
            "higher_is_better": False,
        },
    ]
    plots = [
        {
            "title": f"Count-Min update throughput ({DEPTH} x {WIDTH})",
            "x_label": "implementation",
            "y_label": "items per CPU-second",
            "kind": "bar",
            "log_y": True,
            "series": [{"label": "items/s", "x": list(rates), "y": list(rates.values())}],
        },
        {
            "title": f"Mean over-estimate vs width (depth {DEPTH}, {n:,} Zipf items)",
            "x_label": "width",
            "y_label": "mean over-estimate (counts)",
            "kind": "line",
            "log_x": True,
            "log_y": True,
            "series": [
                {"label": k, "x": widths, "y": v}
                for k, v in series.items()
                if len(v) == len(widths)
            ],
        },
    ]
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "stream_items": n,
            "num_keys": num_keys,
            "distinct_keys": len(uniq_list),
            "zipf_s": 1.1,
            "width": WIDTH,
            "depth": DEPTH,
            "epsilon": math.e / WIDTH,
            "str_items": n_str,
            "per_item_add_items": n_scalar,
            "accuracy_widths": widths,
        },
        data=f"synthetic Zipf stream, seed {ctx.seed}",
        rows=rows,
        ratios=ratios,
        notes=[
            "datasketches has no batch update in Python; its rate is a per-item update "
            "loop, which is how a Python caller uses it.",
            "llmds str add_many includes joining/encoding the list into one UTF-8 buffer.",
            "Accuracy: over-estimate = estimate - true count over every distinct key.",
        ],
        plots=plots,
        extra={"measurements": measurements, "accuracy": accuracy},
    )
