"""Seed-style entry point over :mod:`llmds.bench.bench_kv_cache`."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_kv_cache
from llmds.bench.harness import BenchContext


def benchmark_kv_cache(
    num_sequences: int = 1000, tokens_per_seq: int = 1000, page_size: int = 512
) -> dict[str, Any]:
    """Attach/get/detach ``num_sequences`` sequences of ``tokens_per_seq`` tokens.

    Every sequence starts with one of 8 shared system prompts of
    ``tokens_per_seq // 2`` tokens (passed as ``prefix_tokens``). Returns
    ``attach_p50_ms``, ``attach_p95_ms``, ``attach_p99_ms`` (same for ``get_`` and
    ``detach_``), ``peak_rss_mb``, ``memory_delta_mb`` and the memory saved by
    prefix sharing against no sharing with all sequences live:
    ``pages_with_sharing``, ``pages_without_sharing``, ``memory_saved_fraction``.
    """
    return bench_kv_cache.seed_benchmark(num_sequences, tokens_per_seq, page_size)


def run(quick: bool = True, repeat: int = 5, seed: int = 0) -> dict[str, Any]:
    """The whole kv_cache benchmark (seed latencies, memory saved, chat-trace replay)."""
    return bench_kv_cache.run(BenchContext(quick=quick, repeat=repeat, seed=seed))


if __name__ == "__main__":  # pragma: no cover
    results = benchmark_kv_cache(num_sequences=1000, tokens_per_seq=1000, page_size=512)
    print(f"P95 latency: {results['attach_p95_ms']:.2f} ms")
    print(f"memory saved by prefix sharing: {results['memory_saved_fraction']:.1%}")
