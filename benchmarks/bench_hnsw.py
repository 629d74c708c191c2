"""Seed-style entry point: ``benchmark_hnsw(...)`` over :mod:`llmds.bench.bench_hnsw`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmds.bench import bench_hnsw
from llmds.bench.datasets import find_data_dir
from llmds.bench.harness import BenchContext


def benchmark_hnsw(quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0,
                   data_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the HNSW benchmark (llmds vs hnswlib, faiss, usearch) and return its result record.

    ``quick`` uses 10k base vectors / 1k queries, ``full`` all of Fashion-MNIST; the
    record holds recall@10, queries per CPU-second per ef, build time and memory.
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed,
                       data_dir=find_data_dir(data_dir))
    return bench_hnsw.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_hnsw()["ratios"], indent=1))
