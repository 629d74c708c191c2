"""llmds: data structures for LLM inference servers and retrieval (RAG) systems.

Public names are re-exported here and imported lazily on first use, so
``import llmds`` stays fast (the numba kernels load with the structure that needs them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> defining module
_EXPORTS: dict[str, str] = {
    "CapacityError": "llmds.errors",
    "CorruptFileError": "llmds.errors",
    "LLMDSError": "llmds.errors",
    "UnknownSequenceError": "llmds.errors",
    "MemoryProfiler": "llmds.utils",
    "MetricsCollector": "llmds.utils",
    "Timer": "llmds.utils",
    "calculate_statistics": "llmds.utils",
    "compute_percentiles": "llmds.utils",
    "memory_profiler": "llmds.utils",
    "IndexedHeap": "llmds.indexed_heap",
    "Scheduler": "llmds.scheduler",
    "TokenLRU": "llmds.token_lru",
    "CountMinSketch": "llmds.cmsketch",
    "AdmissionController": "llmds.admissions",
    "AdmissionDecision": "llmds.admissions",
    "PagedAllocator": "llmds.paged_allocator",
    "PageStats": "llmds.paged_allocator",
    "KVCache": "llmds.kv_cache",
    "BasePrefixCache": "llmds.mem_cache",
    "ChunkCache": "llmds.mem_cache",
    "EvictResult": "llmds.mem_cache",
    "InsertResult": "llmds.mem_cache",
    "MatchResult": "llmds.mem_cache",
    "RadixCache": "llmds.mem_cache",
    "SWARadixCache": "llmds.mem_cache",
    "MambaRadixCache": "llmds.mem_cache",
    "MambaPool": "llmds.mem_cache",
    "RadixKey": "llmds.mem_cache",
    "hash_bytes": "llmds.mem_cache",
    "hash_to_int64": "llmds.mem_cache",
    "hash_token_ids": "llmds.mem_cache",
    "Analyzer": "llmds.analysis",
    "InvertedIndex": "llmds.inverted_index",
    "HNSW": "llmds.hnsw",
    "RetrievalPipeline": "llmds.retrieval_pipeline",
    "Embedder": "llmds.embed",
    "SentenceTransformerEmbedder": "llmds.embed",
}

__all__ = [
    "HNSW",
    "AdmissionController",
    "AdmissionDecision",
    "Analyzer",
    "BasePrefixCache",
    "CapacityError",
    "ChunkCache",
    "CorruptFileError",
    "CountMinSketch",
    "Embedder",
    "EvictResult",
    "IndexedHeap",
    "InsertResult",
    "InvertedIndex",
    "KVCache",
    "LLMDSError",
    "MambaPool",
    "MambaRadixCache",
    "MatchResult",
    "MemoryProfiler",
    "MetricsCollector",
    "PageStats",
    "PagedAllocator",
    "RadixCache",
    "RadixKey",
    "RetrievalPipeline",
    "SWARadixCache",
    "Scheduler",
    "SentenceTransformerEmbedder",
    "Timer",
    "TokenLRU",
    "UnknownSequenceError",
    "calculate_statistics",
    "compute_percentiles",
    "hash_bytes",
    "hash_to_int64",
    "hash_token_ids",
    "memory_profiler",
]

if TYPE_CHECKING:
    from llmds.admissions import AdmissionController, AdmissionDecision
    from llmds.analysis import Analyzer
    from llmds.cmsketch import CountMinSketch
    from llmds.embed import Embedder, SentenceTransformerEmbedder
    from llmds.errors import CapacityError, CorruptFileError, LLMDSError, UnknownSequenceError
    from llmds.hnsw import HNSW
    from llmds.indexed_heap import IndexedHeap
    from llmds.inverted_index import InvertedIndex
    from llmds.kv_cache import KVCache
    from llmds.mem_cache import (
        BasePrefixCache,
        ChunkCache,
        EvictResult,
        InsertResult,
        MambaPool,
        MambaRadixCache,
        MatchResult,
        RadixCache,
        RadixKey,
        SWARadixCache,
        hash_bytes,
        hash_to_int64,
        hash_token_ids,
    )
    from llmds.paged_allocator import PagedAllocator, PageStats
    from llmds.retrieval_pipeline import RetrievalPipeline
    from llmds.scheduler import Scheduler
    from llmds.token_lru import TokenLRU
    from llmds.utils import (
        MemoryProfiler,
        MetricsCollector,
        Timer,
        calculate_statistics,
        compute_percentiles,
        memory_profiler,
    )


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'llmds' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
