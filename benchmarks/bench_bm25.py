"""Seed-style entry point over :mod:`llmds.bench.bench_bm25`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_bm25
from llmds.bench.datasets import find_data_dir
from llmds.bench.harness import BenchContext


def benchmark_bm25(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Run the InvertedIndex BM25 benchmark (quality, speed, size vs bm25s, tantivy, rank_bm25).

    Returns its result record: one row per implementation and mode (quality per
    collection, build, per-query and batch queries per CPU-second, incremental adds)
    and the ratios against the peers. Uses ``data_dir`` (default: ``$LLMDS_DATA`` or
    ``../shared/datasets``) or a seeded synthetic collection when there is none.
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed,
                       data_dir=find_data_dir(data_dir))
    return bench_bm25.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_bm25()["ratios"], indent=1))
