"""Seed-style entry point over :mod:`llmds.bench.bench_retrieval`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_retrieval
from llmds.bench.datasets import find_data_dir
from llmds.bench.harness import BenchContext


def benchmark_retrieval(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Run the RetrievalPipeline benchmark (hybrid quality on SciFact, latency, hot-query cache).

    Returns its result record: nDCG@10 / Recall@100 of BM25, dense, weighted fusion at
    0.1..0.9 and RRF; latency percentiles of each side and of the hybrid search (and of
    the bm25s + hnswlib peer and a naive baseline); the hot-query cache's hit rate and
    speedup on a Zipf query stream. Uses ``data_dir`` (default: ``$LLMDS_DATA`` or
    ``../shared/datasets``) or a seeded synthetic collection when there is none; the
    MiniLM embeddings come from the ``embed`` extra and are cached under
    ``$LLMDS_CACHE`` (default ``~/.cache/llmds``).
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed,
                       data_dir=find_data_dir(data_dir))
    return bench_retrieval.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_retrieval()["ratios"], indent=1))
