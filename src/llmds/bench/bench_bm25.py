"""InvertedIndex (BM25): quality, speed and size vs bm25s, tantivy and rank_bm25.

Data: every BEIR-layout collection under ``<data>/ir/`` (scifact, cranfield, cisi,
medline, cacm, adi) via :func:`llmds.bench.ir_data.load_beir`; without a data folder,
a seeded synthetic Zipf-text collection (queries sampled from one document each,
that document judged relevant), and the record says so.

Quality (all collections): nDCG@10 and Recall@100 with the project's own
:mod:`llmds.bench.ir_eval`, for

* llmds ``InvertedIndex()`` defaults (lowercase, ``\\w\\w+``, Lucene's 33 English
  stopwords, Snowball English via PyStemmer, k1=1.5, b=0.75);
* bm25s (``method="lucene"``, k1=1.5, b=0.75, ``stopwords="en"``, the same PyStemmer
  stemmer, numba backend when numba is importable) — the same token stream;
* rank_bm25 ``BM25Okapi`` on llmds' token stream (its own idf with an epsilon floor);
* tantivy with its default ``en_stem`` tokenizer (no stopwords, k1=1.2, b=0.75).

Speed (SciFact, or the quick collection): single thread (``numba.set_num_threads(1)``),
top-100, queries per CPU-second. "per query": one call per query including
tokenisation; "batch": all queries in one call (tokenisation included). rank_bm25
scores every document per query, so it is timed on a subset of the queries. tantivy
is timed on ``searcher.search`` (returning doc addresses, no stored-field fetch).
Speed is timed in three alternating rounds (llmds, bm25s, tantivy, llmds, ...) and
each implementation keeps its best round, because the machines are shared.

Size: llmds postings + directory bytes per posting (``stats()``), and the saved
file (vocabulary, doc arrays included) per posting; bm25s' in-memory score matrix
(data + indices + indptr); tantivy's on-disk index folder. Build time (CPU s)
and peak RSS from ``harness.measure``. Incremental: index 90% with
``add_documents``, then add the last 10% one ``add_document`` at a time (adds per
CPU-second), then search; the results must equal a bulk-built index's.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from llmds.analysis import Analyzer
from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.bench.ir_data import IRCollection, load_beir
from llmds.bench.ir_eval import mean_ndcg, mean_recall
from llmds.inverted_index import InvertedIndex

NAME = "bm25"
TITLE = "InvertedIndex BM25: nDCG, Recall, queries/CPU-s and size vs bm25s, tantivy, rank_bm25"

COLLECTIONS = ("scifact", "cranfield", "cisi", "medline", "cacm", "adi")
REFERENCE_NDCG = {"scifact": 0.686, "cranfield": 0.373, "cisi": 0.386, "medline": 0.696,
                  "cacm": 0.493}
K1, B, TOP_K = 1.5, 0.75, 100


def synthetic_collection(num_docs: int, num_queries: int, seed: int) -> IRCollection:
    """Zipf-distributed fake words; each query is 3-8 words of one document (its qrel)."""
    rng = np.random.default_rng(seed)
    vocab_size = 20_000
    weights = 1.0 / np.arange(1, vocab_size + 1) ** 1.07
    cdf = np.cumsum(weights) / weights.sum()
    words = np.array([f"w{i:x}q" for i in rng.permutation(vocab_size)])
    docs = []
    for _ in range(num_docs):
        n = int(rng.integers(30, 250))
        idx = np.minimum(np.searchsorted(cdf, rng.random(n)), vocab_size - 1)
        docs.append(" ".join(words[idx].tolist()))
    qids, queries, qrels = [], [], {}
    for q in range(num_queries):
        d = int(rng.integers(num_docs))
        toks = docs[d].split()
        pick = rng.choice(len(toks), size=min(len(toks), int(rng.integers(3, 9))), replace=False)
        qids.append(str(q))
        queries.append(" ".join(toks[i] for i in sorted(pick)))
        qrels[str(q)] = {str(d): 1}
    return IRCollection("synthetic-zipf", [str(i) for i in range(num_docs)], docs, qids,
                        queries, qrels)


def _quality(c: IRCollection, ranked: list[list[int]]) -> dict[str, float]:
    results = {q: [c.doc_ids[d] for d in r] for q, r in zip(c.query_ids, ranked, strict=True)}
    return {"ndcg@10": mean_ndcg(results, c.qrels, 10),
            "recall@100": mean_recall(results, c.qrels, 100)}


# ------------------------------------------------------------------ implementations
class _Ours:
    name = "llmds"

    def __init__(self, c: IRCollection) -> None:
        self.c = c
        self.index = InvertedIndex(K1, B)

    def build(self) -> None:
        self.index = InvertedIndex(K1, B)
        self.index.add_documents(enumerate(self.c.docs))
        self.index.seal()

    def one(self, q: str) -> list[int]:
        return [d for d, _ in self.index.search(q, TOP_K)]

    def batch_arrays(self, qs: list[str]) -> Any:
        return self.index.search_batch(qs, TOP_K, as_arrays=True)

    def batch(self, qs: list[str]) -> list[list[int]]:
        ids, _, counts = self.batch_arrays(qs)
        return [row[:n] for row, n in zip(ids.tolist(), counts.tolist(), strict=True)]


class _Bm25s:
    name = "bm25s"

    def __init__(self, c: IRCollection, bm25s: Any, stemmer: Any, backend: str) -> None:
        self.c, self.bm25s, self.stemmer, self.backend = c, bm25s, stemmer, backend
        self.retriever: Any = None

    def _tok(self, texts: list[str]) -> Any:
        return self.bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer,
                                   return_ids=False, show_progress=False)

    def build(self) -> None:
        r = self.bm25s.BM25(k1=K1, b=B, method="lucene", backend=self.backend)
        r.index(self._tok(self.c.docs), show_progress=False)
        self.retriever = r

    def _retrieve(self, tokens: Any) -> np.ndarray:
        k = min(TOP_K, len(self.c.docs))
        docs, _ = self.retriever.retrieve(tokens, k=k, n_threads=1, show_progress=False)
        return np.asarray(docs)

    def one(self, q: str) -> list[int]:
        return self._retrieve(self._tok([q]))[0].tolist()

    def batch(self, qs: list[str]) -> list[list[int]]:
        return self._retrieve(self._tok(qs)).tolist()

    def nbytes(self) -> int:
        s = self.retriever.scores
        return int(sum(np.asarray(s[k]).nbytes for k in ("data", "indices", "indptr")))


class _RankBM25:
    name = "rank_bm25"

    def __init__(self, c: IRCollection, rank_bm25: Any) -> None:
        self.c, self.mod = c, rank_bm25
        self.analyzer = Analyzer()
        self.model: Any = None

    def build(self) -> None:
        self.model = self.mod.BM25Okapi([self.analyzer(d) for d in self.c.docs], k1=K1, b=B)

    def one(self, q: str) -> list[int]:
        scores = self.model.get_scores(self.analyzer(q))
        k = min(TOP_K, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[scores[top] > 0]
        return top[np.lexsort((top, -scores[top]))].tolist()


_QUERY_SYNTAX = re.compile(r"[^\w\s]+")


class _Tantivy:
    name = "tantivy"

    def __init__(self, c: IRCollection, tantivy: Any, folder: Path) -> None:
        self.c, self.mod, self.folder = c, tantivy, folder
        self.index: Any = None
        self.searcher: Any = None
        self.doc_of: list[int] | None = None

    def build(self) -> None:
        t = self.mod
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        sb = t.SchemaBuilder()
        sb.add_integer_field("id", stored=True, indexed=False, fast=True)
        sb.add_text_field("body", stored=False, tokenizer_name="en_stem")
        self.index = t.Index(sb.build(), path=str(self.folder))
        writer = self.index.writer(heap_size=100_000_000, num_threads=1)
        for i, text in enumerate(self.c.docs):
            writer.add_document(t.Document(id=i, body=text))
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def _query(self, q: str) -> Any:
        text = _QUERY_SYNTAX.sub(" ", q).strip() or "xxxxxxxx"
        return self.index.parse_query(text, ["body"])

    def hits(self, q: str) -> Any:
        return self.searcher.search(self._query(q), TOP_K).hits

    def one(self, q: str) -> list[int]:
        doc = self.searcher.doc
        return [doc(addr)["id"][0] for _, addr in self.hits(q)]

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())


# ------------------------------------------------------------------ the run
def _no_arg(fn: Any) -> Any:
    """``harness.measure`` passes a state argument; most timed calls ignore it."""
    return lambda _: fn()


def _rate_row(impl: str, mode: str, m: harness.Measurement, **extra: Any) -> dict[str, Any]:
    return {"impl": impl, "mode": mode, "queries_per_cpu_s": m.ops_per_cpu_s,
            "queries_per_s": m.ops_per_s, "median_cpu_s": m.median_cpu_s,
            "peak_rss_mb": m.peak_rss_mb, **extra}


def run(ctx: BenchContext) -> dict[str, Any]:
    numba = harness.peer("numba")
    if numba is not None:
        numba.set_num_threads(1)
    bm25s = harness.peer("bm25s")
    stemmer_mod = harness.peer("Stemmer")
    rank_bm25 = harness.peer("rank_bm25")
    tantivy = harness.peer("tantivy")
    stemmer = stemmer_mod.Stemmer("english") if stemmer_mod is not None else None
    backend = "numba" if numba is not None else "numpy"
    repeat = ctx.repeat if ctx.quick else max(ctx.repeat, 5)

    ir_root = ctx.dataset("ir")
    collections: list[IRCollection] = []
    if ir_root is not None:
        names = ("adi",) if ctx.quick else COLLECTIONS
        for name in names:
            if (ir_root / name).is_dir():
                collections.append(load_beir(ir_root / name))
    if collections:
        data = f"{ir_root} ({', '.join(c.name for c in collections)})"
    else:
        n_docs, n_q = (500, 50) if ctx.quick else (5000, 300)
        collections = [synthetic_collection(n_docs, n_q, ctx.seed)]
        data = f"synthetic Zipf text, seed {ctx.seed}, {n_docs} docs, {n_q} queries (no ir data)"
    speed_coll = next((c for c in collections if c.name == "scifact"), collections[0])

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    quality: dict[str, dict[str, dict[str, float]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="llmds_bm25_"))
    total = len(collections) + 4
    step = 0
    try:
        # ---------------------------------------------------------- quality
        for c in collections:
            ctx.progress(step, total, f"quality {c.name}")
            step += 1
            quality[c.name] = {}
            ours = _Ours(c)
            ours.build()
            quality[c.name]["llmds"] = _quality(c, ours.batch(c.queries))
            if bm25s is not None and stemmer is not None:
                p = _Bm25s(c, bm25s, stemmer, backend)
                p.build()
                quality[c.name]["bm25s"] = _quality(c, p.batch(c.queries))
            if rank_bm25 is not None:
                r = _RankBM25(c, rank_bm25)
                r.build()
                quality[c.name]["rank_bm25"] = _quality(c, [r.one(q) for q in c.queries])
            if tantivy is not None:
                t = _Tantivy(c, tantivy, tmp / f"tantivy_{c.name}")
                t.build()
                quality[c.name]["tantivy"] = _quality(c, [t.one(q) for q in c.queries])
        for cname, per_impl in quality.items():
            for impl, q in per_impl.items():
                rows.append({"impl": impl, "mode": "quality", "collection": cname,
                             "num_docs": len(next(c for c in collections if c.name == cname).docs),
                             **q, "reference_ndcg@10_bm25s": REFERENCE_NDCG.get(cname)})
        for module, impl in ((bm25s, "bm25s"), (rank_bm25, "rank_bm25"), (tantivy, "tantivy")):
            if module is None:
                rows.append({"impl": impl, "skipped": harness.skipped(impl)})

        # ---------------------------------------------------------- build + size
        c = speed_coll
        qs = c.queries
        ctx.progress(step, total, f"build {c.name}")
        step += 1
        ours = _Ours(c)
        m_build = harness.measure(lambda _: ours.build(), ops=len(c.docs), repeat=repeat)
        st = ours.index.stats()
        file_bytes = ours.index.save(tmp / "llmds.idx")
        postings = st["segment_postings"]
        rows.append({"impl": "llmds", "mode": "build", "collection": c.name,
                     "build_cpu_s": m_build.median_cpu_s, "docs_per_cpu_s": m_build.ops_per_cpu_s,
                     "peak_rss_mb": m_build.peak_rss_mb, "postings": postings,
                     "bytes_per_posting": st["bytes_per_posting"],
                     "file_bytes": file_bytes, "file_bytes_per_posting": file_bytes / postings,
                     "num_terms": st["num_terms"], "num_segments": st["num_segments"]})
        peers: dict[str, Any] = {}
        if bm25s is not None and stemmer is not None:
            peers["bm25s"] = _Bm25s(c, bm25s, stemmer, backend)
        if tantivy is not None:
            peers["tantivy"] = _Tantivy(c, tantivy, tmp / "tantivy_speed")
        if rank_bm25 is not None:
            peers["rank_bm25"] = _RankBM25(c, rank_bm25)
        for name, p in peers.items():
            m = harness.measure(_no_arg(p.build), ops=len(c.docs),
                                repeat=repeat if name != "rank_bm25" else 1)
            row = {"impl": name, "mode": "build", "collection": c.name,
                   "build_cpu_s": m.median_cpu_s, "docs_per_cpu_s": m.ops_per_cpu_s,
                   "peak_rss_mb": m.peak_rss_mb}
            if hasattr(p, "nbytes"):
                row["index_bytes"] = p.nbytes()
                row["bytes_per_posting"] = p.nbytes() / postings
            rows.append(row)
        if "tantivy" in peers:
            notes.append("tantivy build uses one indexing thread and includes writing its "
                         "index folder (its size is the whole on-disk index)")

        # ---------------------------------------------------------- speed
        ctx.progress(step, total, f"speed {c.name}")
        step += 1
        rates: dict[str, float] = {}

        def per_query(fn: Any) -> Any:
            return lambda _: [fn(q) for q in qs]

        # (impl, mode, timed fn, number of queries, row extras)
        timers: list[tuple[str, str, Any, int, dict[str, Any]]] = [
            ("llmds", "per query", per_query(lambda q: ours.index.search(q, TOP_K)), len(qs),
             {}),
            ("llmds", "batch", lambda _: ours.batch_arrays(qs), len(qs), {"output": "arrays"}),
            ("llmds", "batch (lists)", lambda _: ours.index.search_batch(qs, TOP_K), len(qs),
             {"output": "lists of (doc_id, score)"}),
        ]
        if "bm25s" in peers:
            pb = peers["bm25s"]
            timers.append(("bm25s", "per query", per_query(pb.one), len(qs),
                           {"backend": backend}))
            timers.append(("bm25s", "batch", lambda _: pb.batch(qs), len(qs),
                           {"backend": backend}))
        if "tantivy" in peers:
            timers.append(("tantivy", "per query", per_query(peers["tantivy"].hits), len(qs),
                           {}))
        # The machines are shared and noisy: time everything in alternating rounds and
        # keep each implementation's best round (its median over `repeat` runs).
        best: dict[str, harness.Measurement] = {}
        for _round in range(1 if ctx.quick else 3):
            for impl, mode, fn, ops, _extra in timers:
                m = harness.measure(fn, ops=ops, repeat=repeat)
                key = f"{impl} {mode}"
                if key not in best or m.ops_per_cpu_s > best[key].ops_per_cpu_s:
                    best[key] = m
        for impl, mode, _fn, _ops, extra in timers:
            key = f"{impl} {mode}"
            rates[key] = best[key].ops_per_cpu_s
            rows.append(_rate_row(impl, mode, best[key], collection=c.name, **extra))
        rows[-len(timers)]["latency_ms"] = harness.latency_percentiles_ms(
            lambda q: ours.index.search(q, TOP_K), qs)
        if "rank_bm25" in peers:
            pr = peers["rank_bm25"]
            sub = qs[: 10 if ctx.quick else 30]
            m = harness.measure(lambda _: [pr.one(q) for q in sub], ops=len(sub),
                                repeat=repeat if ctx.quick else 2)
            rates["rank_bm25 per query"] = m.ops_per_cpu_s
            rows.append(_rate_row("rank_bm25", "per query", m, collection=c.name,
                                  queries_timed=len(sub)))

        # ---------------------------------------------------------- incremental
        ctx.progress(step, total, f"incremental {c.name}")
        step += 1
        cut = int(len(c.docs) * 0.9)
        inc = InvertedIndex(K1, B)
        inc.add_documents(enumerate(c.docs[:cut]))
        inc.seal()
        t0 = time.process_time()
        for i in range(cut, len(c.docs)):
            inc.add_document(i, c.docs[i])
        add_cpu = time.process_time() - t0
        t0 = time.process_time()
        inc_results = [inc.search(q, TOP_K) for q in qs]
        search_cpu = time.process_time() - t0
        same = inc_results == [ours.index.search(q, TOP_K) for q in qs]
        if not all(
            [d for d, _ in a] == [d for d, _ in b_] and np.allclose(
                [s for _, s in a], [s for _, s in b_], rtol=1e-9)
            for a, b_ in zip(inc_results, [ours.index.search(q, TOP_K) for q in qs], strict=True)
        ):
            raise AssertionError("incrementally built index disagrees with the bulk-built one")
        ist = inc.stats()
        rows.append({"impl": "llmds", "mode": "incremental", "collection": c.name,
                     "bulk_docs": cut, "added_one_at_a_time": len(c.docs) - cut,
                     "adds_per_cpu_s": (len(c.docs) - cut) / add_cpu if add_cpu else None,
                     "queries_per_cpu_s_after": len(qs) / search_cpu if search_cpu else None,
                     "num_segments": ist["num_segments"], "buffer_docs": ist["buffer_docs"],
                     "results_bitwise_equal_bulk": same})
        ctx.progress(total, total, "done")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # ---------------------------------------------------------- ratios, plots
    ratios = [
        {"name": "per-query queries/CPU-s, llmds / bm25s (numba)",
         "value": harness.ratio(rates["llmds per query"], rates.get("bm25s per query")),
         "goal": 1.5},
        {"name": "batch queries/CPU-s, llmds / bm25s (numba)",
         "value": harness.ratio(rates["llmds batch"], rates.get("bm25s batch")), "goal": 1.5},
        {"name": "per-query queries/CPU-s, llmds / tantivy",
         "value": harness.ratio(rates["llmds per query"], rates.get("tantivy per query")),
         "goal": None},
        {"name": "per-query queries/CPU-s, llmds / rank_bm25",
         "value": harness.ratio(rates["llmds per query"], rates.get("rank_bm25 per query")),
         "goal": None},
        {"name": f"bytes per posting (llmds postings + directory, {c.name})",
         "value": st["bytes_per_posting"], "goal": 2.5, "higher_is_better": False},
        {"name": f"bytes per posting (llmds whole saved file, {c.name})",
         "value": file_bytes / postings, "goal": None, "higher_is_better": False},
    ]
    for cname, per_impl in quality.items():
        if "bm25s" in per_impl:
            ratios.append({"name": f"nDCG@10 llmds / bm25s ({cname})",
                           "value": harness.ratio(per_impl["llmds"]["ndcg@10"],
                                                  per_impl["bm25s"]["ndcg@10"]),
                           "goal": 0.99})
    impls = ["llmds", "bm25s", "rank_bm25", "tantivy"]
    plots: list[dict[str, Any]] = [
        {"title": "nDCG@10 by collection", "x_label": "collection", "y_label": "nDCG@10",
         "kind": "bar",
         "series": [{"label": impl, "x": [cn for cn in quality if impl in quality[cn]],
                     "y": [quality[cn][impl]["ndcg@10"] for cn in quality if impl in quality[cn]]}
                    for impl in impls]},
        {"title": f"queries per CPU-second ({c.name}, top-{TOP_K}, one thread)",
         "x_label": "implementation / mode", "y_label": "queries per CPU-second",
         "kind": "bar", "log_y": True,
         "series": [{"label": "qps", "x": list(rates), "y": list(rates.values())}]},
    ]
    notes.append(f"k1={K1}, b={B} for llmds, bm25s and rank_bm25 (bm25s' defaults, with which "
                 "the README reference figures were measured); tantivy keeps its own BM25 "
                 "(k1=1.2, b=0.75) and en_stem analyzer")
    notes.append("llmds per query uses the seed API (a list of (doc_id, score) tuples); "
                 "batch uses search_batch(as_arrays=True), arrays like bm25s' retrieve; the "
                 "list-of-tuples batch is reported as its own row")
    notes.append("Recall@100 of bm25s on collections smaller than 100 docs counts "
                 "non-matching documents it pads its results with; llmds returns only matches")
    notes.append("bm25s backend: " + backend + "; numba.set_num_threads(1) and n_threads=1")
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"top_k": TOP_K, "k1": K1, "b": B, "speed_collection": c.name,
                "num_queries": len(qs), "collections": [x.name for x in collections]},
        data=data, rows=rows, ratios=ratios, notes=notes, plots=plots,
        extra={"quality": quality, "rates": rates, "pid": os.getpid()},
    )
