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
    "LLMDSError": "llmds.errors",
    "CapacityError": "llmds.errors",
    "CorruptFileError": "llmds.errors",
    "UnknownSequenceError": "llmds.errors",
    "Timer": "llmds.utils",
    "MemoryProfiler": "llmds.utils",
    "MetricsCollector": "llmds.utils",
    "memory_profiler": "llmds.utils",
    "compute_percentiles": "llmds.utils",
    "calculate_statistics": "llmds.utils",
}

__all__ = [
    "CapacityError",
    "CorruptFileError",
    "LLMDSError",
    "MemoryProfiler",
    "MetricsCollector",
    "Timer",
    "UnknownSequenceError",
    "calculate_statistics",
    "compute_percentiles",
    "memory_profiler",
]

if TYPE_CHECKING:
    from llmds.errors import CapacityError, CorruptFileError, LLMDSError, UnknownSequenceError
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
