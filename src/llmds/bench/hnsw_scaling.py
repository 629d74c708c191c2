"""Thread-scaling rows of the HNSW benchmark (:mod:`llmds.bench.bench_hnsw`).

Rates here are **wall-clock** queries per second (``qps_wall``): CPU seconds add up
over threads, so a per-CPU-second rate hides a parallel speed-up; ``qps_per_cpu_s``
is recorded next to it. The machine's cores are shared with whatever else runs, so
the ratios are indicative. Three scenarios, on the indexes the sweep built (one
thread each):

* **batch search** at 1 and 2 threads: one call over all queries (llmds
  ``search_batch(num_threads=)``, hnswlib ``knn_query(num_threads=)``, faiss
  ``search`` after ``omp_set_num_threads``), each library at the smallest ef of the
  sweep whose recall@10 reaches the target, the libraries taking turns per round;
* **parallel build**: llmds ``add_items(num_threads=2)`` and hnswlib's 2-thread
  ``add_items`` against their 1-thread builds, and the 2-thread llmds graph's recall
  at every ef against the serial graph's;
* **threaded server**: ``CLIENTS`` threads each send single-query searches to one
  shared index (a thread-pool web endpoint); total QPS, and every answer compared
  with a serial run of the same library (``wrong``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.ann_libs import AnnLib, K

__all__ = ["CLIENTS", "THREADS", "scaling"]

THREADS = (1, 2)
CLIENTS = 8


def _recall(ids: np.ndarray, gt: np.ndarray) -> float:
    pairs = zip(ids[:, :K].tolist(), gt[:, :K].tolist(), strict=True)
    return sum(len(set(a) & set(b)) for a, b in pairs) / (gt.shape[0] * K)


def _target_ef(per_ef: list[dict[str, Any]], target: float) -> int:
    """The smallest swept ef whose recall reaches ``target`` (else the largest)."""
    ok = [e["ef"] for e in per_ef if e["recall"] >= target]
    return min(ok) if ok else max(e["ef"] for e in per_ef)


def _batch_rows(ctx: harness.BenchContext, libs: list[AnnLib], queries: np.ndarray,
                gt: np.ndarray, efs: dict[str, int]) -> list[dict[str, Any]]:
    cases: dict[str, tuple[Callable[[Any], object], Callable[[], Any] | None]] = {}
    for lib in libs:
        for t in THREADS:
            def call(_: object, lib: AnnLib = lib, t: int = t) -> None:
                lib.set_threads(t)
                lib.batch(queries)
            cases[f"{lib.name}|{t}"] = (call, None)
    for lib in libs:
        lib.set_ef(efs[lib.name])
    ms = harness.measure_interleaved(cases, ops=len(queries), repeat=ctx.repeat)
    rows = []
    for lib in libs:
        lib.set_threads(1)
        recall = _recall(np.asarray(lib.batch(queries), dtype=np.int64), gt)
        for t in THREADS:
            m = ms[f"{lib.name}|{t}"]
            rows.append({"scenario": "batch search", "impl": lib.name, "threads": t,
                         "search_ef": efs[lib.name], "recall@10": round(recall, 4),
                         "qps_wall": round(m.ops_per_s, 1),
                         "qps_per_cpu_s": round(m.ops_per_cpu_s, 1), "batch": m.to_dict()})
    return rows


def _serve(one: Callable[[np.ndarray], object], queries: np.ndarray, expected: list[Any],
           normal: Callable[[object], Any]) -> tuple[float, float, int]:
    """``CLIENTS`` threads answer the queries (client ``c`` takes every ``CLIENTS``-th):
    ``(wall_s, cpu_s, wrong)``."""
    wrong = [0] * CLIENTS
    start = threading.Barrier(CLIENTS + 1)

    def client(c: int) -> None:
        start.wait()
        for i in range(c, len(queries), CLIENTS):
            if normal(one(queries[i])) != expected[i]:
                wrong[c] += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    start.wait()
    c0, w0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - w0, time.process_time() - c0, sum(wrong)


def _normal(found: object) -> Any:
    """An answer as plain lists: llmds' ``[(id, d)]`` or hnswlib's ``(labels, dists)``."""
    if isinstance(found, tuple):
        return [np.asarray(a).tolist() for a in found]
    return found


def _server_rows(ctx: harness.BenchContext, libs: list[AnnLib], queries: np.ndarray,
                 efs: dict[str, int]) -> list[dict[str, Any]]:
    served = [lib for lib in libs if lib.name in ("llmds", "hnswlib")]
    expected = {}
    for lib in served:
        lib.set_ef(efs[lib.name])
        expected[lib.name] = [_normal(lib.one(q)) for q in queries]
    runs: dict[str, list[tuple[float, float, int]]] = {lib.name: [] for lib in served}
    for _ in range(ctx.repeat):  # the libraries take turns, as in the sweep
        for lib in served:
            lib.set_ef(efs[lib.name])
            runs[lib.name].append(_serve(lib.one, queries, expected[lib.name], _normal))
    rows = []
    for lib in served:
        wall = [w for w, _, _ in runs[lib.name]]
        cpu = [c for _, c, _ in runs[lib.name]]
        n = len(queries)
        rows.append({"scenario": "threaded server", "impl": lib.name, "clients": CLIENTS,
                     "search_ef": efs[lib.name], "qps_wall": round(n / float(np.median(wall)), 1),
                     "qps_per_cpu_s": round(n / float(np.median(cpu)), 1),
                     "wrong": sum(w for _, _, w in runs[lib.name]),
                     "answers": n * len(runs[lib.name])})
    return rows


def _build_rows(libs: list[AnnLib], base: np.ndarray, queries: np.ndarray, gt: np.ndarray,
                seed: int, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for lib in libs:
        if lib.name not in ("llmds", "hnswlib"):
            continue
        fresh = lib.fresh()
        c0, w0 = time.process_time(), time.perf_counter()
        fresh.build(base, seed, threads=2)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        serial = results[lib.name]
        row: dict[str, Any] = {
            "scenario": "parallel build", "impl": lib.name, "threads": 2,
            "build_wall_s": round(wall, 3), "build_cpu_s": round(cpu, 3),
            "serial_build_wall_s": round(serial["build_wall_s"], 3),
            "speedup_wall": round(serial["build_wall_s"] / wall, 3)}
        if lib.name == "llmds":  # the parallel graph's recall against the serial one's
            diffs = {}
            for e in serial["per_ef"]:
                fresh.set_ef(e["ef"])
                fresh.set_threads(-1)
                diffs[str(e["ef"])] = round(_recall(fresh.batch(queries), gt) - e["recall"], 4)
            row["recall_minus_serial"] = diffs
        fresh.release()
        rows.append(row)
    return rows


def _ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def get(scenario: str, impl: str, key: str, **match: Any) -> float | None:
        for r in rows:
            if r["scenario"] == scenario and r["impl"] == impl and all(
                    r.get(k) == v for k, v in match.items()):
                return float(r[key])
        return None

    own1, own2 = (get("batch search", "llmds", "qps_wall", threads=t) for t in THREADS)
    out: list[dict[str, Any]] = [
        {"name": "batch QPS, 2 threads / 1 thread (llmds, wall clock)",
         "value": harness.ratio(own2, own1) if own2 else None, "goal": 1.7}]
    for peer, goal in (("hnswlib", 1.1), ("faiss", 1.0)):
        peer2 = get("batch search", peer, "qps_wall", threads=2)
        peer1 = get("batch search", peer, "qps_wall", threads=1)
        out.append({"name": f"batch QPS at 2 threads vs {peer} (wall clock)",
                    "value": harness.ratio(own2, peer2) if own2 else None, "goal": goal})
        out.append({"name": f"{peer} batch QPS, 2 threads / 1 thread (wall clock)",
                    "value": harness.ratio(peer2, peer1) if peer2 else None, "goal": None})
    b_own = get("parallel build", "llmds", "build_wall_s")
    b_peer = get("parallel build", "hnswlib", "build_wall_s")
    out.append({"name": "build speed-up, 2 threads / 1 thread (llmds, wall clock)",
                "value": get("parallel build", "llmds", "speedup_wall"), "goal": 1.6})
    out.append({"name": "2-thread build time vs hnswlib's 2-thread build (wall clock)",
                "value": harness.ratio(b_own, b_peer) if b_own else None, "goal": 1.0,
                "higher_is_better": False})
    for r in rows:
        for ef, diff in r.get("recall_minus_serial", {}).items():
            out.append({"name": f"recall@10 of the 2-thread build minus the serial build's "
                                f"at ef={ef}", "value": diff, "goal": -0.005})
    s_own = get("threaded server", "llmds", "qps_wall")
    s_peer = get("threaded server", "hnswlib", "qps_wall")
    out.append({"name": f"threaded server QPS, {CLIENTS} clients, vs hnswlib (wall clock)",
                "value": harness.ratio(s_own, s_peer) if s_own else None, "goal": 1.0})
    out.append({"name": f"threaded server wrong answers (llmds, {CLIENTS} clients)",
                "value": get("threaded server", "llmds", "wrong"), "goal": 0,
                "higher_is_better": False})
    return out


def scaling(ctx: harness.BenchContext, libs: list[AnnLib], base: np.ndarray,
            queries: np.ndarray, gt: np.ndarray, results: dict[str, dict[str, Any]],
            target: float) -> dict[str, Any]:
    """Rows, ratios, plots and notes of the three scenarios (see the module docstring)."""
    threaded = [lib for lib in libs if lib.name in ("llmds", "hnswlib", "faiss")]
    efs = {lib.name: _target_ef(results[lib.name]["per_ef"], target) for lib in threaded}
    rows = _batch_rows(ctx, threaded, queries, gt, efs)
    rows += _server_rows(ctx, threaded, queries, efs)
    rows += _build_rows(threaded, base, queries, gt, ctx.seed, results)
    for lib in threaded:
        lib.set_threads(1)
    batch = [r for r in rows if r["scenario"] == "batch search"]
    plot = {"title": f"batch search QPS (wall clock) vs threads, recall@10 >= {target}",
            "x_label": "threads", "y_label": "queries per second (wall clock)",
            "kind": "line",
            "series": [{"label": lib.name, "x": list(THREADS), "marker": True,
                        "y": [r["qps_wall"] for r in batch if r["impl"] == lib.name]}
                       for lib in threaded]}
    notes = [
        "Thread-scaling rows (scenario = batch search, threaded server, parallel build) give "
        "wall-clock rates (qps_wall, build_wall_s): CPU seconds add up over threads and hide "
        "a parallel speed-up; qps_per_cpu_s is recorded beside them. The machine's cores are "
        "shared with other work, so these ratios are indicative.",
        f"Batch search and the threaded server run each library at the smallest swept ef "
        f"whose recall@10 reaches {target} (search_ef). Threaded server: {CLIENTS} client "
        "threads send single-query searches to one shared index; 'wrong' counts answers that "
        "differ from a serial run of the same library.",
        "Parallel build: one 2-thread build per library, against the 1-thread build of the "
        "sweep; recall_minus_serial is the 2-thread llmds graph's recall@10 minus the serial "
        "graph's, per ef.",
    ]
    return {"rows": rows, "ratios": _ratios(rows), "plots": [plot], "notes": notes}
