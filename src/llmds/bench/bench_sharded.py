"""ShardedRetrievalPipeline against one RetrievalPipeline: latency, throughput, build time.

Two corpora, each searched by hybrid queries (BM25 + a vector, weighted fusion, top 10,
result cache off):
  * SciFact (BEIR; 5,183 documents, its 300 test queries), with seeded unit vectors
    (64 dims) in place of model embeddings, the dense side exact (brute force) on
    every configuration, so the identity check covers both sides;
  * a synthetic corpus (Zipf-distributed vocabulary, seeded vectors) large enough
    that one node's index is the slow part; the dense side uses the HNSW graph above
    ``brute_force_max`` (approximate on both sides, so its identity check is the
    lexical side's: ``fusion_weight=0``).
Configurations: one ``RetrievalPipeline`` (the baseline), and
``ShardedRetrievalPipeline`` with 1, 2 and 4 shards (``--quick``: 1 and 2, smaller
corpora) on the ``local`` and ``ray`` backends (Ray: the running cluster, else a
local one started here and stopped at the end). Per configuration: build time
(``add_documents``), p50/p95 latency of one query, queries/s with 8 concurrent client
threads, the mean time a shard spends on one search measured inside it
(``stats()["shards"]``), and whether every answer equals the baseline's (ids, and
scores within 1e-6 relative). Without Ray the Ray
rows are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import threading
import time
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.bench.ir_data import load_beir
from llmds.retrieval_pipeline import RetrievalPipeline

NAME = "sharded"
TITLE = "Sharded retrieval: ShardedRetrievalPipeline (local, Ray) vs one RetrievalPipeline"

DIM = 64
TOP_K = 10
CLIENTS = 8
SHARDS = (1, 2, 4)
QUICK_SHARDS = (1, 2)  # --quick (the test suite's smoke run): no 4-actor startups


def shard_counts(ctx: BenchContext) -> tuple[int, ...]:
    return QUICK_SHARDS if ctx.quick else SHARDS
BACKENDS = ("local", "ray")
SYN_VOCAB = 20_000
GOAL_RAY_OVERHEAD_MS = 2.5
GOAL_THROUGHPUT = 0.8
GOAL_SHARD_TIME = 0.6  # per-shard search time at 2 shards / at 1 shard (ideal 0.5)
NOTES = [
    "p50/p95: one client, one query at a time. queries/s: 8 client threads sharing the "
    "queries; the one-node baseline is the same thread-safe RetrievalPipeline searched "
    "by the same 8 threads; the sharded pipeline batches concurrent searches into one "
    "call per shard (llmds.dist._batcher).",
    "shard_search_ms: mean time one shard spent in one search call (a batch under "
    "concurrent clients, one query in the latency run), measured inside the shard (its "
    "actor with Ray); the rest of a query's latency is the coordinator (query analysis, "
    "merge, fusion) and the fan-out. cpu_ms_per_query_here: CPU of the benchmark's own "
    "process per query in the 8-client run (one node: all the work; Ray: the "
    "coordinator's part, which bounds one coordinator's queries/s per core).",
    "Ray fan-out (no work): one call to N actors that answer at once with what a shard "
    "answers one query (100 keys and scores per side); the floor of the Ray backend's "
    "latency.",
    "identical: every query's ids equal one node's and scores within 1e-6 relative; "
    "SciFact checks the hybrid answers (dense exact by brute force), the synthetic "
    "corpus the lexical side (its HNSW graphs differ by shard).",
]


class Workload:
    """Documents (ids, texts, vectors), queries (texts, vectors) and pipeline settings."""

    def __init__(self, name: str, ids: list[Any], texts: list[str], vectors: np.ndarray,
                 queries: list[str], qvecs: np.ndarray, settings: dict[str, Any],
                 check_weight: float, data: str) -> None:
        self.name, self.ids, self.texts, self.vectors = name, ids, texts, vectors
        self.queries, self.qvecs, self.settings = queries, qvecs, settings
        self.check_weight, self.data = check_weight, data


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scifact(ctx: BenchContext) -> Workload | str:
    """SciFact (quick: the first 1,000 documents), or why it is missing."""
    folder = ctx.dataset("ir", "scifact")
    if folder is None:
        return "SciFact not found (set LLMDS_DATA or place ../shared/datasets/ir/scifact)"
    c = load_beir(folder)
    n = 600 if ctx.quick else len(c.doc_ids)
    nq = 20 if ctx.quick else len(c.queries)
    rng = np.random.default_rng(ctx.seed)
    return Workload("SciFact", c.doc_ids[:n], c.docs[:n], _unit(rng, n), c.queries[:nq],
                    _unit(rng, nq), {"brute_force_max": n}, 0.5,
                    f"{folder} ({n} documents, {nq} queries; seeded {DIM}-dim vectors)")


def synthetic(ctx: BenchContext) -> Workload:
    """Zipf-worded documents of 20-80 terms and 2-5-term queries, seeded."""
    n = 2000 if ctx.quick else (200_000 if ctx.full else 40_000)
    nq = 20 if ctx.quick else 200
    rng = np.random.default_rng(ctx.seed + 1)
    words = np.array([f"w{i}" for i in range(SYN_VOCAB)])
    p = 1.0 / np.arange(1, SYN_VOCAB + 1) ** 1.05
    p /= p.sum()
    lengths = rng.integers(20, 81, n)
    drawn = rng.choice(SYN_VOCAB, int(lengths.sum()), p=p)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(words[drawn[bounds[i]: bounds[i + 1]]]) for i in range(n)]
    queries = [" ".join(words[rng.choice(SYN_VOCAB, int(rng.integers(2, 6)), p=p)])
               for _ in range(nq)]
    return Workload("synthetic", list(range(n)), texts, _unit(rng, n), queries,
                    _unit(rng, nq), {"ef_construction": 100}, 0.0,
                    f"synthetic Zipf corpus ({n} documents, {nq} queries, seed {ctx.seed + 1})")


# ------------------------------------------------------------------ measuring
def _search(p: Any, w: Workload, i: int, weight: float = 0.5) -> list[Any]:
    j = i % len(w.queries)
    return p.search(w.queries[j], w.qvecs[j], top_k=TOP_K, fusion_weight=weight,
                    use_cache=False)


def _throughput(p: Any, w: Workload, total: int) -> tuple[float, float]:
    """Queries/s of ``CLIENTS`` threads sharing ``total`` searches, and this process's
    CPU milliseconds per query meanwhile (with Ray: the coordinator's share)."""
    lock = threading.Lock()
    next_i = [0]
    errors: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= total:
                return
            try:
                _search(p, w, i)
            except BaseException as exc:  # re-raised below
                errors.append(exc)
                return

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return (total / (time.perf_counter() - t0),
            (time.process_time() - c0) / total * 1e3)


def _same(a: list[Any], b: list[Any]) -> bool:
    return [d for d, _ in a] == [d for d, _ in b] and all(
        math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12) for (_, x), (_, y) in zip(a, b,
                                                                                  strict=True))


def _shard_seconds(p: Any) -> list[tuple[int, float]]:
    return [(s["num_shard_searches"], s["search_seconds"]) for s in p.stats()["shards"]]


def measure(p: Any, w: Workload, expected: list[list[Any]] | None, build_s: float,
            repeat: int) -> dict[str, Any]:
    """One configuration's figures (``expected``: the baseline's answers, or None)."""
    for i in range(min(5, len(w.queries))):  # warm-up: JIT, Ray's first calls
        _search(p, w, i)
    before = _shard_seconds(p) if hasattr(p, "num_shards") else None
    latency = harness.latency_percentiles_ms(lambda i: _search(p, w, i),
                                             range(len(w.queries) * max(1, repeat // 5)))
    row: dict[str, Any] = {"build_s": build_s, "p50_ms": latency["p50"],
                           "p95_ms": latency["p95"], "mean_ms": latency["mean"]}
    if before is not None:
        after = _shard_seconds(p)
        per = [(s1 - s0) / max(1, n1 - n0) * 1e3
               for (n0, s0), (n1, s1) in zip(before, after, strict=True)]
        row["shard_search_ms"] = float(np.mean(per))
        row["shard_search_ms_max"] = float(np.max(per))
    row["qps_8_clients"], row["cpu_ms_per_query_here"] = _throughput(
        p, w, max(len(w.queries), CLIENTS * 10))
    if expected is not None:
        row["identical"] = all(_same(e, _search(p, w, i, w.check_weight))
                               for i, e in enumerate(expected))
    return row


# ------------------------------------------------------------------ configurations
def start_ray() -> tuple[Any, bool] | str:
    """``(ray, started_here)``, or why Ray is unusable. Uses a running Ray; else starts a
    local one on loopback (stopped by :func:`run` at the end)."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed; pip install 'llmds[ray]'"
    from llmds.dist._shards import local_ray_env

    local_ray_env()
    import ray

    if ray.is_initialized():
        return ray, False
    try:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # a Ray that cannot start here: a skip with the reason
        return f"ray.init failed: {type(exc).__name__}: {str(exc)[:200]}"
    return ray, True


class _Echo:
    """A Ray actor answering what a shard answers a one-query search (100 keys and
    scores per side, pickled, as ``RayShards.broadcast`` carries it), with no work:
    the cost of the fan-out itself."""

    def __init__(self) -> None:
        side = (np.arange(100, dtype=np.int64)[None], np.ones((1, 100)), np.array([100]))
        self.answer = pickle.dumps((side, side, 0.0), protocol=5)

    def call(self, blob: bytes) -> bytes:
        return self.answer


def fan_out(ray: Any, repeat: int) -> list[dict[str, Any]]:
    """p50/p95 of one call to 1, 2 and 4 actors at once (answers gathered), as the
    sharded pipeline makes it; the anchor of the Ray overhead."""
    rows = []
    actor = ray.remote(_Echo).options(num_cpus=0)
    for n in SHARDS:
        actors = [actor.remote() for _ in range(n)]
        try:
            ray.get([a.call.remote(b"warm") for a in actors])
            def once(i: int, actors: list[Any] = actors) -> None:
                blob = pickle.dumps(("candidates", (f"query {i}",)), protocol=5)
                ray.get([a.call.remote(blob) for a in actors])

            lat = harness.latency_percentiles_ms(once, range(100 * max(1, repeat // 5)))
        finally:
            for a in actors:
                ray.kill(a)
        rows.append({"impl": "Ray fan-out (no work)", "corpus": "-", "backend": "ray",
                     "shards": n, "p50_ms": lat["p50"], "p95_ms": lat["p95"]})
    return rows


def _build(w: Workload, backend: str | None, shards: int, seed: int,
           ) -> tuple[Any, float, float]:
    """A pipeline holding ``w`` (``backend`` None: one RetrievalPipeline), the seconds
    its shards took to start and the seconds ``add_documents`` took."""
    from llmds.dist import ShardedRetrievalPipeline

    kwargs = {"embedding_dim": DIM, "seed": seed, **w.settings}
    t0 = time.perf_counter()
    p: Any = (RetrievalPipeline(**kwargs) if backend is None else
              ShardedRetrievalPipeline(shards, backend=backend, **kwargs))
    t1 = time.perf_counter()
    p.add_documents(w.ids, w.texts, w.vectors)
    return p, t1 - t0, time.perf_counter() - t1


def run_workload(ctx: BenchContext, w: Workload, ray_why: str | None) -> list[dict[str, Any]]:
    """Rows of the baseline and of every sharded configuration on ``w``."""
    base, _, build_s = _build(w, None, 1, ctx.seed)
    expected = [_search(base, w, i, w.check_weight) for i in range(len(w.queries))]
    rows = [{"impl": "RetrievalPipeline", "corpus": w.name, "backend": "one node",
             "shards": 1, **measure(base, w, None, build_s, ctx.repeat)}]
    del base
    for backend in BACKENDS:
        for shards in shard_counts(ctx):
            label = {"impl": "ShardedRetrievalPipeline", "corpus": w.name,
                     "backend": backend, "shards": shards}
            if backend == "ray" and ray_why is not None:
                rows.append({**label, "skipped": ray_why})
                continue
            p, start_s, build_s = _build(w, backend, shards, ctx.seed)
            try:
                rows.append({**label, "start_s": start_s,
                             **measure(p, w, expected, build_s, ctx.repeat)})
            finally:
                p.close()
            ctx.progress(len(rows), 1 + len(BACKENDS) * len(shard_counts(ctx)),
                         f"{w.name} {backend}")
    return rows


def _pick(rows: list[dict[str, Any]], corpus: str, backend: str, shards: int,
          key: str) -> float | None:
    for r in rows:
        if (r["corpus"], r["backend"], r["shards"]) == (corpus, backend, shards) \
                and key in r:
            return float(r[key])
    return None


def ratios(rows: list[dict[str, Any]], corpora: list[str]) -> list[dict[str, Any]]:
    """The issue's goals, per corpus."""
    out: list[dict[str, Any]] = []
    for c in corpora:
        ray_p50, local_p50 = (_pick(rows, c, b, 2, "p50_ms") for b in BACKENDS[::-1])
        overhead = None if ray_p50 is None or local_p50 is None else ray_p50 - local_p50
        out.append({"name": f"{c}: Ray p50 overhead over local at 2 shards (ms)",
                    "value": overhead, "goal": GOAL_RAY_OVERHEAD_MS,
                    "higher_is_better": False})
        one = _pick(rows, c, "one node", 1, "qps_8_clients")
        for backend in BACKENDS:
            qps = _pick(rows, c, backend, 2, "qps_8_clients")
            out.append({"name": f"{c}: 8-client queries/s, {backend} 2 shards / one node",
                        "value": None if qps is None else harness.ratio(qps, one),
                        "goal": GOAL_THROUGHPUT if backend == "ray" else None})
        t1, t2 = (_pick(rows, c, "ray", s, "shard_search_ms") for s in (1, 2))
        out.append({"name": f"{c}: per-shard search time, Ray 2 shards / 1 shard",
                    "value": None if t1 is None or t2 is None else harness.ratio(t2, t1),
                    "goal": GOAL_SHARD_TIME if c == "synthetic" else None,
                    "higher_is_better": False})
    checked = [r["identical"] for r in rows if "identical" in r]
    out.append({"name": "configurations whose answers equal one node's (fraction)",
                "value": sum(checked) / len(checked) if checked else None, "goal": 1.0})
    return out


def run(ctx: BenchContext) -> dict[str, Any]:
    """The benchmark (see the module docstring) as a result record."""
    ray_state = start_ray()
    ray_why = ray_state if isinstance(ray_state, str) else None
    workloads: list[Workload] = []
    notes: list[str] = []
    sci = scifact(ctx)
    if isinstance(sci, str):
        notes.append(f"SciFact skipped: {sci}")
    else:
        workloads.append(sci)
    workloads.append(synthetic(ctx))
    rows: list[dict[str, Any]] = []
    try:
        if not isinstance(ray_state, str):
            rows += fan_out(ray_state[0], ctx.repeat)
        for w in workloads:
            rows += run_workload(ctx, w, ray_why)
    finally:
        if not isinstance(ray_state, str) and ray_state[1]:
            ray_state[0].shutdown()
    if ray_why is not None:
        notes.append(f"Ray rows skipped: {ray_why}")
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"dim": DIM, "top_k": TOP_K, "clients": CLIENTS, "shards": list(shard_counts(ctx)),
                "backends": list(BACKENDS), "fusion": "weighted 0.5", "cache": "off"},
        data="; ".join(w.data for w in workloads),
        rows=rows, ratios=ratios(rows, [w.name for w in workloads]),
        notes=[*notes, *NOTES, f"Machine: {os.cpu_count()} cores shared by every process "
               "here: sharding adds no cores, so Ray shards compete with the client "
               "threads and with each other."],
        plots=[{"title": "8-client queries/s by shard count", "x_label": "shards",
                "y_label": "queries/s", "kind": "line",
                "series": [{"label": f"{c} {b}", "x": list(shard_counts(ctx)),
                            "y": [_pick(rows, c, b, s, "qps_8_clients")
                                  for s in shard_counts(ctx)]}
                           for c in [w.name for w in workloads] for b in BACKENDS
                           if ray_why is None or b != "ray"]}],
    )
