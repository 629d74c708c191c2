"""What the framework retrievers share: the missing-extra error and argument checks."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from llmds._validate import check_int, show
from llmds.fusion import check_weight

__all__ = ["new_ids", "require", "settings", "top_k"]


def require(module: str, extra: str, package: str) -> ModuleType:
    """Import ``module`` or raise ImportError naming the llmds extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this llmds integration needs {package} ({exc}); "
                          f"pip install 'llmds[{extra}]'") from None


def new_ids(ids: Sequence[Any] | None, n: int) -> list[Any]:
    """``ids`` as a list, or ``n`` fresh random string ids (uuid4, as the frameworks do)."""
    if ids is None:
        return [str(uuid.uuid4()) for _ in range(n)]
    if isinstance(ids, str | bytes):
        raise TypeError(f"ids must be a sequence of ids, got {show(ids)}")
    return list(ids)


def top_k(value: object, name: str = "k") -> int:
    return check_int(value, name, minimum=1)


def settings(pipeline: object, k: object, fusion_weight: object,
             k_name: str = "top_k") -> tuple[Any, int, float]:
    """A retriever's checked ``(pipeline, top_k, fusion_weight)``."""
    from llmds.retrieval_pipeline import RetrievalPipeline

    if not isinstance(pipeline, RetrievalPipeline):
        raise TypeError(f"pipeline must be a RetrievalPipeline, got {show(pipeline)}")
    return pipeline, top_k(k, k_name), check_weight(fusion_weight)
