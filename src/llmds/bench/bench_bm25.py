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

Speed (SciFact, or the quick collection): single thread (``numba.set_num_threads(1)``,
``search_batch(num_threads=1)``), top-100, queries per CPU-second. "per query": one
call per query including tokenisation; "batch": all queries in one call
(tokenisation included). rank_bm25 scores every document per query, so it is timed
on a subset of the queries. tantivy is timed on ``searcher.search`` (returning doc
addresses, no stored-field fetch).
Speed is timed in three alternating rounds (llmds, bm25s, tantivy, llmds, ...) and
each implementation keeps its best round, because the machines are shared.

Threads: batch search at 1 and 2 threads, llmds ``search_batch(num_threads=N)``
against bm25s ``retrieve(n_threads=N)``, in queries per *wall-clock* second (CPU
seconds add up over threads and would hide the speed-up), timed in interleaved
rounds, best round kept.

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

from llmds._threads import cpu_count
from llmds.analysis import Analyzer
from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.bench.ir_data import IRCollection, load_beir
from llmds.bench.ir_eval import mean_ndcg, mean_recall
from llmds.inverted_index import InvertedIndex

NAME = "bm25"
TITLE = ("InvertedIndex BM25: nDCG, Recall, queries/CPU-s, thread scaling and size vs bm25s, "
         "tantivy, rank_bm25")

COLLECTIONS = ("scifact", "cranfield", "cisi", "medline", "cacm", "adi")
REFERENCE_NDCG = {"scifact": 0.686, "cranfield": 0.373, "cisi": 0.386, "medline": 0.696,
                  "cacm": 0.493}
K1, B, TOP_K = 1.5, 0.75, 100
THREADS = (1, 2)  # thread counts of the scaling rows


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

    def batch_arrays(self, qs: list[str], threads: int = 1) -> Any:
        return self.index.search_batch(qs, TOP_K, as_arrays=True, num_threads=threads)

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

    def _retrieve(self, tokens: Any, threads: int = 1) -> np.ndarray:
        k = min(TOP_K, len(self.c.docs))
        docs, _ = self.retriever.retrieve(tokens, k=k, n_threads=threads, show_progress=False)
        return np.asarray(docs)

    def one(self, q: str) -> list[int]:
        return self._retrieve(self._tok([q]))[0].tolist()

    def batch(self, qs: list[str], threads: int = 1) -> list[list[int]]:
        return self._retrieve(self._tok(qs), threads).tolist()

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


class _Run:
    """One benchmark run: the peers, the collections, and the rows as they are measured."""

    def __init__(self, ctx: BenchContext) -> None:
        self.ctx = ctx
        self.numba = harness.peer("numba")
        if self.numba is not None:
            self.numba.set_num_threads(1)
        self.bm25s = harness.peer("bm25s")
        stemmer_mod = harness.peer("Stemmer")
        self.rank_bm25 = harness.peer("rank_bm25")
        self.tantivy = harness.peer("tantivy")
        self.stemmer = stemmer_mod.Stemmer("english") if stemmer_mod is not None else None
        self.backend = "numba" if self.numba is not None else "numpy"
        self.repeat = ctx.repeat if ctx.quick else max(ctx.repeat, 5)
        self.collections, self.data = self._collections()
        self.speed_coll = next((c for c in self.collections if c.name == "scifact"),
                               self.collections[0])
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.quality: dict[str, dict[str, dict[str, float]]] = {}
        self.rates: dict[str, float] = {}
        self.wall_rates: dict[str, float] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="llmds_bm25_"))
        self.steps = len(self.collections) + 5
        self.step = 0

    def _collections(self) -> tuple[list[IRCollection], str]:
        ctx = self.ctx
        ir_root = ctx.dataset("ir")
        collections: list[IRCollection] = []
        if ir_root is not None:
            for name in ("adi",) if ctx.quick else COLLECTIONS:
                if (ir_root / name).is_dir():
                    collections.append(load_beir(ir_root / name))
        if collections:
            return collections, f"{ir_root} ({', '.join(c.name for c in collections)})"
        n_docs, n_q = (500, 50) if ctx.quick else (5000, 300)
        return ([synthetic_collection(n_docs, n_q, ctx.seed)],
                f"synthetic Zipf text, seed {ctx.seed}, {n_docs} docs, {n_q} queries (no ir data)")

    def progress(self, what: str) -> None:
        self.ctx.progress(self.step, self.steps, what)
        self.step += 1

    def bm25s_peer(self, c: IRCollection) -> _Bm25s | None:
        if self.bm25s is None or self.stemmer is None:
            return None
        return _Bm25s(c, self.bm25s, self.stemmer, self.backend)

    # ---------------------------------------------------------- quality
    def quality_rows(self) -> None:
        for c in self.collections:
            self.progress(f"quality {c.name}")
            per_impl = self.quality[c.name] = {}
            ours = _Ours(c)
            ours.build()
            per_impl["llmds"] = _quality(c, ours.batch(c.queries))
            p = self.bm25s_peer(c)
            if p is not None:
                p.build()
                per_impl["bm25s"] = _quality(c, p.batch(c.queries))
            if self.rank_bm25 is not None:
                r = _RankBM25(c, self.rank_bm25)
                r.build()
                per_impl["rank_bm25"] = _quality(c, [r.one(q) for q in c.queries])
            if self.tantivy is not None:
                t = _Tantivy(c, self.tantivy, self.tmp / f"tantivy_{c.name}")
                t.build()
                per_impl["tantivy"] = _quality(c, [t.one(q) for q in c.queries])
            for impl, q in per_impl.items():
                self.rows.append({"impl": impl, "mode": "quality", "collection": c.name,
                                  "num_docs": len(c.docs), **q,
                                  "reference_ndcg@10_bm25s": REFERENCE_NDCG.get(c.name)})
        for module, impl in ((self.bm25s, "bm25s"), (self.rank_bm25, "rank_bm25"),
                             (self.tantivy, "tantivy")):
            if module is None:
                self.rows.append({"impl": impl, "skipped": harness.skipped(impl)})

    # ---------------------------------------------------------- build + size
    def build_rows(self) -> tuple[_Ours, dict[str, Any]]:
        """Build times and sizes; returns our index and the peers, built."""
        c = self.speed_coll
        self.progress(f"build {c.name}")
        ours = _Ours(c)
        m = harness.measure(lambda _: ours.build(), ops=len(c.docs), repeat=self.repeat)
        st = ours.index.stats()
        file_bytes = ours.index.save(self.tmp / "llmds.idx")
        postings = st["segment_postings"]
        self.sizes = (st["bytes_per_posting"], file_bytes / postings)
        self.rows.append({"impl": "llmds", "mode": "build", "collection": c.name,
                          "build_cpu_s": m.median_cpu_s, "docs_per_cpu_s": m.ops_per_cpu_s,
                          "peak_rss_mb": m.peak_rss_mb, "postings": postings,
                          "bytes_per_posting": st["bytes_per_posting"],
                          "file_bytes": file_bytes, "file_bytes_per_posting": file_bytes / postings,
                          "num_terms": st["num_terms"], "num_segments": st["num_segments"]})
        peers: dict[str, Any] = {}
        if (p := self.bm25s_peer(c)) is not None:
            peers["bm25s"] = p
        if self.tantivy is not None:
            peers["tantivy"] = _Tantivy(c, self.tantivy, self.tmp / "tantivy_speed")
        if self.rank_bm25 is not None:
            peers["rank_bm25"] = _RankBM25(c, self.rank_bm25)
        for name, p in peers.items():
            m = harness.measure(_no_arg(p.build), ops=len(c.docs),
                                repeat=self.repeat if name != "rank_bm25" else 1)
            row = {"impl": name, "mode": "build", "collection": c.name,
                   "build_cpu_s": m.median_cpu_s, "docs_per_cpu_s": m.ops_per_cpu_s,
                   "peak_rss_mb": m.peak_rss_mb}
            if hasattr(p, "nbytes"):
                row["index_bytes"] = p.nbytes()
                row["bytes_per_posting"] = p.nbytes() / postings
            self.rows.append(row)
        if "tantivy" in peers:
            self.notes.append("tantivy build uses one indexing thread and includes writing "
                              "its index folder (its size is the whole on-disk index)")
        return ours, peers

    # ---------------------------------------------------------- speed, one thread
    def speed_rows(self, ours: _Ours, peers: dict[str, Any]) -> None:
        c, qs = self.speed_coll, self.speed_coll.queries
        self.progress(f"speed {c.name}")

        def per_query(fn: Any) -> Any:
            return lambda _: [fn(q) for q in qs]

        # (impl, mode, timed fn, row extras)
        timers: list[tuple[str, str, Any, dict[str, Any]]] = [
            ("llmds", "per query", per_query(lambda q: ours.index.search(q, TOP_K)), {}),
            ("llmds", "batch", lambda _: ours.batch_arrays(qs), {"output": "arrays"}),
            ("llmds", "batch (lists)",
             lambda _: ours.index.search_batch(qs, TOP_K, num_threads=1),
             {"output": "lists of (doc_id, score)"}),
        ]
        if "bm25s" in peers:
            pb = peers["bm25s"]
            timers.append(("bm25s", "per query", per_query(pb.one), {"backend": self.backend}))
            timers.append(("bm25s", "batch", lambda _: pb.batch(qs), {"backend": self.backend}))
        if "tantivy" in peers:
            timers.append(("tantivy", "per query", per_query(peers["tantivy"].hits), {}))
        # The machines are shared and noisy: time everything in alternating rounds and
        # keep each implementation's best round (its median over `repeat` runs).
        best: dict[str, harness.Measurement] = {}
        for _round in range(1 if self.ctx.quick else 3):
            for impl, mode, fn, _extra in timers:
                m = harness.measure(fn, ops=len(qs), repeat=self.repeat)
                key = f"{impl} {mode}"
                if key not in best or m.ops_per_cpu_s > best[key].ops_per_cpu_s:
                    best[key] = m
        first = len(self.rows)
        for impl, mode, _fn, extra in timers:
            key = f"{impl} {mode}"
            self.rates[key] = best[key].ops_per_cpu_s
            self.rows.append(_rate_row(impl, mode, best[key], collection=c.name, **extra))
        self.rows[first]["latency_ms"] = harness.latency_percentiles_ms(
            lambda q: ours.index.search(q, TOP_K), qs)
        if "rank_bm25" in peers:
            pr = peers["rank_bm25"]
            sub = qs[: 10 if self.ctx.quick else 30]
            m = harness.measure(lambda _: [pr.one(q) for q in sub], ops=len(sub),
                                repeat=self.repeat if self.ctx.quick else 2)
            self.rates["rank_bm25 per query"] = m.ops_per_cpu_s
            self.rows.append(_rate_row("rank_bm25", "per query", m, collection=c.name,
                                       queries_timed=len(sub)))

    # ---------------------------------------------------------- speed, threads
    def thread_rows(self, ours: _Ours, peers: dict[str, Any]) -> None:
        """Batch search at 1 and 2 threads, wall-clock queries per second.

        CPU seconds add up over threads, so they hide a parallel speed-up: these rows
        rank by wall-clock time (``queries_per_s``), timed in interleaved rounds.
        """
        c, qs = self.speed_coll, self.speed_coll.queries
        self.progress(f"threads {c.name}")
        cases: dict[str, tuple[Any, Any]] = {}
        for t in THREADS:
            cases[f"llmds {t}"] = (lambda _, t=t: ours.batch_arrays(qs, t), None)
            if "bm25s" in peers:
                cases[f"bm25s {t}"] = (lambda _, t=t: peers["bm25s"].batch(qs, t), None)
        best: dict[str, harness.Measurement] = {}
        for _round in range(1 if self.ctx.quick else 3):
            got = harness.measure_interleaved(cases, ops=len(qs), repeat=self.repeat)
            for key, m in got.items():
                if key not in best or m.ops_per_s > best[key].ops_per_s:
                    best[key] = m
        for key, m in best.items():
            impl, threads = key.split()
            self.wall_rates[key] = m.ops_per_s
            self.rows.append(_rate_row(
                impl, f"batch, {threads} thread{'s' if threads != '1' else ''}", m,
                collection=c.name, threads=int(threads),
                rate="wall clock (queries_per_s); CPU-s shown for reference",
                median_wall_s=m.median_wall_s,
                **({"backend": self.backend} if impl == "bm25s" else {"output": "arrays"})))
        if self.numba is not None:
            self.numba.set_num_threads(1)  # bm25s changes it for its parallel calls

    # ---------------------------------------------------------- incremental
    def incremental_row(self, ours: _Ours) -> None:
        c, qs = self.speed_coll, self.speed_coll.queries
        self.progress(f"incremental {c.name}")
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
        bulk = [ours.index.search(q, TOP_K) for q in qs]
        if not all([d for d, _ in a] == [d for d, _ in b_] and np.allclose(
                [s for _, s in a], [s for _, s in b_], rtol=1e-9)
                for a, b_ in zip(inc_results, bulk, strict=True)):
            raise AssertionError("incrementally built index disagrees with the bulk-built one")
        ist = inc.stats()
        self.rows.append({"impl": "llmds", "mode": "incremental", "collection": c.name,
                          "bulk_docs": cut, "added_one_at_a_time": len(c.docs) - cut,
                          "adds_per_cpu_s": (len(c.docs) - cut) / add_cpu if add_cpu else None,
                          "queries_per_cpu_s_after": len(qs) / search_cpu if search_cpu else None,
                          "num_segments": ist["num_segments"], "buffer_docs": ist["buffer_docs"],
                          "results_bitwise_equal_bulk": inc_results == bulk})

    # ---------------------------------------------------------- summary
    def ratios(self) -> list[dict[str, Any]]:
        rates, wall, name = self.rates, self.wall_rates, self.speed_coll.name
        per_posting, file_per_posting = self.sizes
        out: list[dict[str, Any]] = [
            {"name": "per-query queries/CPU-s, llmds / bm25s (numba)",
             "value": harness.ratio(rates["llmds per query"], rates.get("bm25s per query")),
             "goal": 1.5},
            {"name": "batch queries/CPU-s, llmds / bm25s (numba)",
             "value": harness.ratio(rates["llmds batch"], rates.get("bm25s batch")),
             "goal": 1.5},
            {"name": "per-query queries/CPU-s, llmds / tantivy",
             "value": harness.ratio(rates["llmds per query"], rates.get("tantivy per query")),
             "goal": None},
            {"name": "per-query queries/CPU-s, llmds / rank_bm25",
             "value": harness.ratio(rates["llmds per query"], rates.get("rank_bm25 per query")),
             "goal": None},
            {"name": "batch queries/s (wall clock), llmds 2 threads / 1 thread",
             "value": harness.ratio(wall["llmds 2"], wall["llmds 1"]), "goal": 1.7},
            {"name": "batch queries/s (wall clock) at 2 threads, llmds / bm25s (numba)",
             "value": harness.ratio(wall["llmds 2"], wall.get("bm25s 2")), "goal": 1.5},
            {"name": "batch queries/s (wall clock), bm25s 2 threads / 1 thread",
             "value": harness.ratio(wall.get("bm25s 2", 0.0), wall.get("bm25s 1")),
             "goal": None},
            {"name": f"bytes per posting (llmds postings + directory, {name})",
             "value": per_posting, "goal": 2.5, "higher_is_better": False},
            {"name": f"bytes per posting (llmds whole saved file, {name})",
             "value": file_per_posting, "goal": None, "higher_is_better": False},
        ]
        for cname, per_impl in self.quality.items():
            if "bm25s" in per_impl:
                out.append({"name": f"nDCG@10 llmds / bm25s ({cname})",
                            "value": harness.ratio(per_impl["llmds"]["ndcg@10"],
                                                   per_impl["bm25s"]["ndcg@10"]),
                            "goal": 0.99})
        return out

    def plots(self) -> list[dict[str, Any]]:
        quality, name = self.quality, self.speed_coll.name
        impls = ["llmds", "bm25s", "rank_bm25", "tantivy"]
        return [
            {"title": "nDCG@10 by collection", "x_label": "collection", "y_label": "nDCG@10",
             "kind": "bar",
             "series": [{"label": impl, "x": [cn for cn in quality if impl in quality[cn]],
                         "y": [quality[cn][impl]["ndcg@10"] for cn in quality
                               if impl in quality[cn]]} for impl in impls]},
            {"title": f"queries per CPU-second ({name}, top-{TOP_K}, one thread)",
             "x_label": "implementation / mode", "y_label": "queries per CPU-second",
             "kind": "bar", "log_y": True,
             "series": [{"label": "qps", "x": list(self.rates), "y": list(self.rates.values())}]},
            {"title": f"batch queries per wall-clock second by threads ({name}, top-{TOP_K})",
             "x_label": "threads", "y_label": "queries per second (wall clock)", "kind": "bar",
             "series": [{"label": impl, "x": [str(t) for t in THREADS if f"{impl} {t}" in
                                              self.wall_rates],
                         "y": [self.wall_rates[f"{impl} {t}"] for t in THREADS
                               if f"{impl} {t}" in self.wall_rates]}
                        for impl in ("llmds", "bm25s")]},
        ]


def run(ctx: BenchContext) -> dict[str, Any]:
    r = _Run(ctx)
    try:
        r.quality_rows()
        ours, peers = r.build_rows()
        r.speed_rows(ours, peers)
        r.thread_rows(ours, peers)
        r.incremental_row(ours)
        ctx.progress(r.steps, r.steps, "done")
    finally:
        shutil.rmtree(r.tmp, ignore_errors=True)
    c = r.speed_coll
    r.notes.append(f"k1={K1}, b={B} for llmds, bm25s and rank_bm25 (bm25s' defaults, which "
                   "are also llmds' defaults); tantivy keeps its own BM25 (k1=1.2, b=0.75) and "
                   "en_stem analyzer")
    r.notes.append("llmds per query uses search() (a list of (doc_id, score) tuples); "
                   "batch uses search_batch(as_arrays=True), arrays like bm25s' retrieve; the "
                   "list-of-tuples batch is reported as its own row")
    r.notes.append("Recall@100 of bm25s on collections smaller than 100 docs counts "
                   "non-matching documents it pads its results with; llmds returns only matches")
    r.notes.append(f"bm25s backend: {r.backend}; one-thread rows: numba.set_num_threads(1), "
                   "n_threads=1 and search_batch(num_threads=1), rates per CPU-second")
    r.notes.append("thread rows (mode 'batch, N threads'): llmds search_batch(num_threads=N) "
                   "against bm25s retrieve(n_threads=N) (numba prange), rates per wall-clock "
                   "second (queries_per_s), because CPU seconds add up over threads; the "
                   f"machine has {cpu_count()} usable cores and may be shared")
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"top_k": TOP_K, "k1": K1, "b": B, "speed_collection": c.name,
                "num_queries": len(c.queries), "collections": [x.name for x in r.collections],
                "threads": list(THREADS)},
        data=r.data, rows=r.rows, ratios=r.ratios(), notes=r.notes, plots=r.plots(),
        extra={"quality": r.quality, "rates": r.rates, "wall_rates": r.wall_rates,
               "pid": os.getpid()},
    )
