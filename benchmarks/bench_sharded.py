"""Seed-style entry point over :mod:`llmds.bench.bench_sharded`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_sharded
from llmds.bench.datasets import find_data_dir
from llmds.bench.harness import BenchContext


def benchmark_sharded(
    quick: bool = True, full: bool = False, repeat: int = 5, seed: int = 0,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Run the sharded-retrieval benchmark (ShardedRetrievalPipeline vs one pipeline).

    Returns its result record: per corpus (SciFact when found under ``data_dir``,
    default ``$LLMDS_DATA`` or ``../shared/datasets``; and a seeded synthetic corpus),
    for one RetrievalPipeline and for 1, 2 and 4 shards on the ``local`` and ``ray``
    backends: build time, p50/p95 latency of one query, queries/s with 8 concurrent
    clients, per-shard search time measured inside the shards, and whether every
    answer equals one node's. Uses the running Ray, else starts (and stops) a local
    one; without Ray the Ray rows are skipped with the reason.
    """
    ctx = BenchContext(quick=quick, full=full, repeat=repeat, seed=seed,
                       data_dir=find_data_dir(data_dir))
    return bench_sharded.run(ctx)


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(benchmark_sharded()["ratios"], indent=1))
