"""The RAG frameworks' own hybrids against llmds behind its LangChain retriever, and the
latency of filtered searches. Part of :mod:`llmds.bench.bench_retrieval`.

Same documents, same MiniLM vectors, top 10, one thread:

* **llmds (LangChain retriever)**: :class:`llmds.integrations.langchain.LLMDSRetriever`
  over a :class:`RetrievalPipeline` (string ids, metadata, defaults: weighted fusion
  0.5, 100 candidates per side), called through LangChain's ``invoke``;
* **LangChain EnsembleRetriever**: ``BM25Retriever`` (rank_bm25, LangChain's default
  whitespace tokens) and a ``FAISS`` vector store (flat inner product), 100 each,
  weighted RRF 0.5/0.5 (LangChain's ensemble), first 10;
* **LlamaIndex QueryFusionRetriever**: ``BM25Retriever`` (bm25s, English stemmer and
  stopwords) and a ``VectorStoreIndex`` (its in-memory store), 100 each, fused by
  ``mode="relative_score"`` 0.5/0.5 (one query, no LLM rewriting), first 10.

"Embedding excluded": every framework gets an embeddings object that looks the query
vector up (precomputed), so latency is retrieval only. "Embedding included": the same
objects wrap MiniLM, so each query is embedded inside the call (a sample of queries).

Filtered search: the same pipeline with a ``bucket`` field uniform in 0..99, searched
with ``{"bucket": {"$lt": s}}`` for 1%, 10% and 50% selectivity, against no filter.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.ir_data import IRCollection
from llmds.bench.ir_eval import mean_ndcg
from llmds.retrieval_pipeline import RetrievalPipeline

DEPTH = 100
TOP = 10
SELECTIVITY = (1, 10, 50)
LLMDS = "llmds (LangChain retriever)"
LC = "LangChain EnsembleRetriever (BM25Retriever + FAISS)"
LI = "LlamaIndex QueryFusionRetriever (BM25Retriever + VectorStoreIndex)"


def _lookup(q_texts: Sequence[str], q_vecs: np.ndarray, model: Any) -> Callable[[str], list[float]]:
    """text -> query vector: precomputed when ``model`` is None, else MiniLM's."""
    table = {t: v.tolist() for t, v in zip(q_texts, q_vecs, strict=True)}
    if model is None:
        return table.__getitem__
    return lambda text: model.embed([text])[0].tolist()


def _langchain(c: IRCollection, doc_vecs: np.ndarray, vec_of: Callable[[str], list[float]],
               pipe: RetrievalPipeline) -> dict[str, Callable[[str], list[str]]]:
    from langchain_classic.retrievers import EnsembleRetriever

    with warnings.catch_warnings():  # langchain-community announces its sunset on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.retrievers import BM25Retriever
        from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings

    from llmds.integrations.langchain import LangChainEmbedder, LLMDSRetriever

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [vec_of(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return vec_of(text)

    pipe.embedder = LangChainEmbedder(Lookup())  # the query vectors of this run
    ours = LLMDSRetriever(pipeline=pipe, k=TOP)
    metas = [{"doc_id": d} for d in c.doc_ids]
    bm25 = BM25Retriever.from_texts(c.docs, metadatas=metas, k=DEPTH)
    faiss = FAISS.from_embeddings(list(zip(c.docs, doc_vecs.tolist(), strict=True)), Lookup(),
                                  metadatas=metas)
    ensemble = EnsembleRetriever(retrievers=[bm25, faiss.as_retriever(search_kwargs={"k": DEPTH})],
                                 weights=[0.5, 0.5])
    return {LLMDS: lambda q: [str(d.id) for d in ours.invoke(q)],
            LC: lambda q: [d.metadata["doc_id"] for d in ensemble.invoke(q)[:TOP]]}


def _llamaindex(c: IRCollection, doc_vecs: np.ndarray, vec_of: Callable[[str], list[float]],
                ) -> dict[str, Callable[[str], list[str]]]:
    import Stemmer
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    class Lookup(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return vec_of(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return vec_of(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return vec_of(text)

    nodes = [TextNode(id_=d, text=t, embedding=v.tolist())
             for d, t, v in zip(c.doc_ids, c.docs, doc_vecs, strict=True)]
    vector = VectorStoreIndex(nodes, embed_model=Lookup()).as_retriever(similarity_top_k=DEPTH)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=DEPTH,
                                       stemmer=Stemmer.Stemmer("english"), language="english")
    fusion = QueryFusionRetriever([bm25, vector], similarity_top_k=TOP, num_queries=1,
                                  mode="relative_score",  # type: ignore[arg-type]
                                  retriever_weights=[0.5, 0.5],
                                  use_async=False, llm=MockLLM())
    return {LI: lambda q: [n.node.id_ for n in fusion.retrieve(q)]}


def _systems(c: IRCollection, doc_vecs: np.ndarray, vec_of: Callable[[str], list[float]],
             pipe: RetrievalPipeline, rows: list[dict[str, Any]],
             ) -> dict[str, Callable[[str], list[str]]]:
    systems: dict[str, Callable[[str], list[str]]] = {}
    for name, build in (("langchain", lambda: _langchain(c, doc_vecs, vec_of, pipe)),
                        ("llamaindex", lambda: _llamaindex(c, doc_vecs, vec_of))):
        try:
            t0 = time.process_time()
            built = build()
        except ImportError as exc:
            rows.append({"impl": name, "mode": "frameworks", "skipped":
                         f"{exc}; pip install 'llmds[bench]'"})
            continue
        for impl in built:
            rows.append({"impl": impl, "mode": "frameworks", "config": "build",
                         "build_cpu_s": time.process_time() - t0})
        systems.update(built)
    return systems


def run(c: IRCollection, doc_vecs: np.ndarray, q_vecs: np.ndarray, seed: int,
        embed_model: Any, sample: int) -> dict[str, Any]:
    """Quality and latency of the three hybrids, and filtered-search latency.

    Returns ``{"rows", "ratios", "notes"}`` for the benchmark record.
    """
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    buckets = rng.integers(0, 100, size=len(c.docs))
    pipe = RetrievalPipeline(embedding_dim=doc_vecs.shape[1], seed=seed, metric="ip")
    pipe.add_documents(c.doc_ids, c.docs, doc_vecs, [{"bucket": int(b)} for b in buckets])
    systems = _systems(c, doc_vecs, _lookup(c.queries, q_vecs, None), pipe, rows)
    qrels = {q: c.qrels[q] for q in c.query_ids}
    idx = list(range(len(c.queries)))
    quality: dict[str, float] = {}
    latency: dict[str, dict[str, float]] = {}
    for impl, fn in systems.items():
        run_ = {q: fn(t) for q, t in zip(c.query_ids, c.queries, strict=True)}
        quality[impl] = mean_ndcg(run_, qrels, 10)
        latency[impl] = harness.latency_percentiles_ms(_by_index(fn, c.queries), idx)
        rows.append({"impl": impl, "mode": "frameworks", "config": "embedding excluded",
                     "ndcg@10": quality[impl], "latency_ms": latency[impl]})
    included: dict[str, dict[str, float]] = {}
    if embed_model is not None and systems:
        real = _systems(c, doc_vecs, _lookup(c.queries, q_vecs, embed_model), pipe, [])
        for impl, fn in real.items():
            included[impl] = harness.latency_percentiles_ms(_by_index(fn, c.queries),
                                                            idx[:sample])
            rows.append({"impl": impl, "mode": "frameworks", "config": "embedding included",
                         "queries": len(idx[:sample]), "latency_ms": included[impl]})
    filtered = _filtered(pipe, c, q_vecs, buckets, rows)
    ratios = []
    for peer in (LC, LI):
        if peer in quality and LLMDS in quality:
            ratios.append({"name": f"nDCG@10 llmds / {peer}", "value": harness.ratio(
                quality[LLMDS], quality[peer]), "goal": 1.0})
            ratios.append({"name": f"latency llmds / {peer} (embedding excluded, mean)",
                           "value": harness.ratio(latency[LLMDS]["mean"],
                                                  latency[peer]["mean"]),
                           "goal": 0.2, "higher_is_better": False})
            if peer in included:
                ratios.append({"name": f"latency llmds / {peer} (embedding included, mean)",
                               "value": harness.ratio(included[LLMDS]["mean"],
                                                      included[peer]["mean"]),
                               "goal": None, "higher_is_better": False})
    for s in SELECTIVITY:
        ratios.append({"name": f"filtered search latency at {s}% selectivity / unfiltered "
                               "(mean)",
                       "value": harness.ratio(filtered[str(s)]["mean"],
                                              filtered["unfiltered"]["mean"]),
                       "goal": None, "higher_is_better": False})
    notes = ["frameworks: top 10 from 100 candidates per side, one thread; quality over all "
             "judged queries; 'embedding included' on the first "
             f"{sample} queries with MiniLM inside every call"]
    return {"rows": rows, "ratios": ratios,
            "notes": notes, "quality": quality, "latency": latency, "included": included,
            "filtered": filtered}


def _by_index(fn: Callable[[str], list[str]], queries: list[str]) -> Callable[[int], object]:
    return lambda i: fn(queries[i])


def _filtered(pipe: RetrievalPipeline, c: IRCollection, q_vecs: np.ndarray, buckets: np.ndarray,
              rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    idx = list(range(len(c.queries)))
    for s in (None, *SELECTIVITY):
        flt = None if s is None else {"bucket": {"$lt": s}}
        label = "unfiltered" if s is None else str(s)

        def one(i: int, flt: Any = flt) -> int:
            return len(pipe.search(c.queries[i], q_vecs[i], top_k=TOP, filter=flt,
                                   use_cache=False))
        counts = [one(i) for i in idx[:20]]  # warm-up; how full the result lists are
        out[label] = harness.latency_percentiles_ms(one, idx)
        rows.append({"impl": "llmds", "mode": "filtered search", "config": label,
                     "selectivity": None if s is None else float((buckets < s).mean()),
                     "mean_results": float(np.mean(counts)), "latency_ms": out[label]})
    return out
