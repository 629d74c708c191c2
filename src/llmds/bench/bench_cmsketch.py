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


class _Rates:
    """The rows, rates and measurements a run collects, in the order they are taken.

    Thread safety: one per run.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.rates: dict[str, float] = {}
        self.measurements: dict[str, Any] = {}

    def record(self, label: str, name: str, variant: str, m: harness.Measurement) -> None:
        self.rates[label] = m.ops_per_cpu_s
        self.measurements[label] = m.to_dict()
        self.rows.append(_row(name, variant, m))


def _sizes(ctx: BenchContext) -> tuple[int, int, int, int]:
    """``(stream items, distinct keys, str items, per-item add calls)`` for the run size."""
    if ctx.quick:
        return 50_000, 10_000, 20_000, 5_000
    if ctx.full:
        return 5_000_000, 1_000_000, 1_000_000, 200_000
    return 1_000_000, 100_000, 300_000, 100_000


def _time_updates(ctx: BenchContext, out: _Rates, ds: Any, keys: np.ndarray,
                  strs: list[str], n_scalar: int, total: int) -> None:
    """Update throughput: add_many on int64 keys (both modes), per-item add, str keys."""
    key_list = keys.tolist()
    n = len(key_list)
    for i, conservative in enumerate((True, False)):
        mode = "conservative" if conservative else "standard"
        ctx.progress(1 + i, total, f"llmds add_many int64 ({mode})")
        def fresh(c: bool = conservative) -> CountMinSketch:
            return CountMinSketch(WIDTH, DEPTH, conservative=c)

        m = harness.measure(lambda s: s.add_many(keys), ops=n, setup=fresh, repeat=ctx.repeat)
        out.record(f"add_many_int_{mode}", f"llmds add_many ({mode})", "update int64", m)
    ctx.progress(3, total, "per-item updates")
    m = harness.measure(
        lambda s: [s.add(k) for k in key_list[:n_scalar]],
        ops=n_scalar,
        setup=lambda: CountMinSketch(WIDTH, DEPTH),
        repeat=ctx.repeat,
    )
    out.record("add_loop_int", "llmds add() per item (conservative)", "update int64", m)
    if ds is not None:
        m = harness.measure(
            _ds_updater(key_list), ops=n, setup=lambda: ds.count_min_sketch(DEPTH, WIDTH),
            repeat=ctx.repeat, warmup=0,
        )
        out.record("ds_update_int", "datasketches update() per item", "update int64", m)
    else:
        out.rows.append({"impl": "datasketches", "variant": "update int64",
                         "skipped": harness.skipped("datasketches")})
    ctx.progress(4, total, "str keys")
    m = harness.measure(
        lambda s: s.add_many(strs), ops=len(strs), setup=lambda: CountMinSketch(WIDTH, DEPTH),
        repeat=ctx.repeat,
    )
    out.record("add_many_str", "llmds add_many (conservative)", "update str", m)
    if ds is not None:
        m = harness.measure(
            _ds_updater(strs), ops=len(strs), setup=lambda: ds.count_min_sketch(DEPTH, WIDTH),
            repeat=ctx.repeat, warmup=0,
        )
        out.record("ds_update_str", "datasketches update() per item", "update str", m)


def _time_estimates(ctx: BenchContext, out: _Rates, ds: Any, keys: np.ndarray) -> None:
    """Estimate throughput on a sketch filled with the stream: estimate_many vs per item."""
    n = len(keys)
    filled = CountMinSketch(WIDTH, DEPTH)
    filled.add_many(keys)
    m = harness.measure(lambda _: filled.estimate_many(keys), ops=n, repeat=ctx.repeat)
    out.record("estimate_many_int", "llmds estimate_many", "estimate int64", m)
    if ds is None:
        return
    key_list = keys.tolist()
    ds_filled = ds.count_min_sketch(DEPTH, WIDTH)
    for k in key_list:
        ds_filled.update(k)

    def ds_estimate(_: Any) -> None:
        get = ds_filled.get_estimate
        for k in key_list:
            get(k)

    m = harness.measure(ds_estimate, ops=n, repeat=ctx.repeat, warmup=0)
    out.record("ds_estimate_int", "datasketches get_estimate() per item", "estimate int64", m)


def _accuracy(
    ds: Any, keys: np.ndarray, widths: list[int]
) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Over-estimates over every distinct key at each width: rows and per-impl series."""
    uniq, true = np.unique(keys, return_counts=True)
    key_list = keys.tolist()
    uniq_list = uniq.tolist()
    accuracy: list[dict[str, Any]] = []
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
    return accuracy, series


def _ratios(rates: dict[str, float], accuracy: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measures, headline first: hot-query counting updates strings, so str leads.

    int64 keys are the favourable input (no encoding, one vectorised hash pass) and
    come second, under the same goal.
    """
    def acc(impl: str) -> float | None:
        for a in accuracy:
            if a["impl"] == impl and a["width"] == WIDTH:
                return float(a["mean_overestimate"])
        return None

    def vs_ds(ours: str, theirs: str) -> float | None:
        return harness.ratio(rates[ours], rates.get(theirs))

    cu, std, dsk = acc("llmds (conservative)"), acc("llmds (standard)"), acc("datasketches")
    return [
        {"name": "add_many (conservative) / datasketches update, str (items/s)",
         "value": vs_ds("add_many_str", "ds_update_str"), "goal": 3.0},
        {"name": "add_many (conservative) / datasketches update, int64 (items/s)",
         "value": vs_ds("add_many_int_conservative", "ds_update_int"), "goal": 3.0},
        {"name": "add_many (standard) / datasketches update, int64 (items/s)",
         "value": vs_ds("add_many_int_standard", "ds_update_int"), "goal": None},
        {"name": "estimate_many / datasketches get_estimate, int64 (items/s)",
         "value": vs_ds("estimate_many_int", "ds_estimate_int"), "goal": None},
        {"name": "add() per item / datasketches update, int64 (items/s)",
         "value": vs_ds("add_loop_int", "ds_update_int"), "goal": None},
        {"name": "mean over-estimate: conservative / standard (lower is better)",
         "value": (cu / std) if cu is not None and std else None, "goal": None,
         "higher_is_better": False},
        {"name": "mean over-estimate: conservative / datasketches (lower is better)",
         "value": (cu / dsk) if cu is not None and dsk else None, "goal": None,
         "higher_is_better": False},
    ]


def _plots(rates: dict[str, float], widths: list[int], series: dict[str, list[float]],
           n: int) -> list[dict[str, Any]]:
    return [
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


def run(ctx: BenchContext) -> dict[str, Any]:
    n, num_keys, n_str, n_scalar = _sizes(ctx)
    ds = harness.peer("datasketches")
    total = 8
    ctx.progress(0, total, "building stream")
    keys = zipf_keys(n, num_keys, s=1.1, seed=ctx.seed)
    strs = [f"query:{k}" for k in keys[:n_str].tolist()]
    out = _Rates()
    _time_updates(ctx, out, ds, keys, strs, n_scalar, total)
    ctx.progress(5, total, "estimates")
    _time_estimates(ctx, out, ds, keys)
    ctx.progress(6, total, "accuracy")
    widths = [WIDTH // 10, WIDTH // 2, WIDTH, WIDTH * 4]
    accuracy, series = _accuracy(ds, keys, widths)
    out.rows.extend({"variant": "accuracy", **a} for a in accuracy)
    ctx.progress(7, total, "done")
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "stream_items": n,
            "num_keys": num_keys,
            "distinct_keys": len(np.unique(keys)),
            "zipf_s": 1.1,
            "width": WIDTH,
            "depth": DEPTH,
            "epsilon": math.e / WIDTH,
            "str_items": n_str,
            "per_item_add_items": n_scalar,
            "accuracy_widths": widths,
        },
        data=f"synthetic Zipf stream, seed {ctx.seed}",
        rows=out.rows,
        ratios=_ratios(out.rates, accuracy),
        notes=[
            "datasketches has no batch update in Python; its rate is a per-item update "
            "loop, which is how a Python caller uses it.",
            "llmds str add_many includes joining/encoding the list into one UTF-8 buffer.",
            "Accuracy: over-estimate = estimate - true count over every distinct key.",
            "The headline is the str stream (hot-query counting counts query strings); "
            "int64 keys, the favourable input, are the second measure.",
        ],
        plots=_plots(out.rates, widths, series, n),
        extra={"measurements": out.measurements, "accuracy": accuracy},
    )
