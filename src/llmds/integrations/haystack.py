"""Haystack retriever component over a :class:`~llmds.retrieval_pipeline.RetrievalPipeline`.

``pip install 'llmds[haystack]'`` (haystack-ai). Usage::

    from llmds.integrations.haystack import LLMDSRetriever
    retriever = LLMDSRetriever(pipeline, top_k=5)
    retriever.run(query="what causes cancer?",
                  filters={"field": "meta.year", "operator": ">=", "value": 2015})

``run`` returns ``{"documents": [haystack Document]}`` (``id`` the pipeline's id as a
str, ``content`` the stored text, ``meta`` the stored metadata, ``score`` the fused
score). ``filters`` takes Haystack's filter syntax (``field``/``operator``/``value``
with ``== != > >= < <= in "not in"`` on ``meta.*`` fields, and ``AND``/``OR``/``NOT``
with ``conditions``) or the :mod:`llmds.filters` dict syntax. ``query_embedding``
searches the dense side with a vector computed elsewhere (a Haystack text embedder
in front); without one the pipeline's embedder embeds the query, if it has one.
``save``/``load`` round-trip through the pipeline's files.

Thread safety: as the pipeline.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from llmds._validate import show
from llmds.integrations._common import require, settings, top_k
from llmds.retrieval_pipeline import RetrievalPipeline

require("haystack", "haystack", "haystack-ai")
from haystack import Document, component  # noqa: E402

__all__ = ["LLMDSRetriever", "to_llmds_filter"]

_OPS = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
        "in": "$in", "not in": "$nin"}


def to_llmds_filter(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Haystack filter as an llmds filter (an llmds dict passes through unchanged).

    Raises ValueError naming an unsupported operator or a field outside ``meta``.
    """
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise TypeError(f"filters must be a dict or None, got {show(filters)}")
    if "operator" not in filters:
        return filters  # already llmds syntax
    op = filters["operator"]
    if "conditions" in filters:
        parts = [to_llmds_filter(c) for c in filters["conditions"]]
        if op == "NOT":
            return {"$not": {"$and": parts}}
        if op not in ("AND", "OR"):
            raise ValueError(f"filters: unknown logical operator {op!r} (AND, OR, NOT)")
        return {f"${op.lower()}": parts}
    field = filters.get("field")
    if not isinstance(field, str) or not field.startswith("meta."):
        raise ValueError(f"filters: llmds filters on metadata fields ('meta.<name>'), "
                         f"got field {field!r}")
    if op not in _OPS:
        raise ValueError(f"filters: operator {op!r} is not supported by llmds "
                         f"(supported: {', '.join(_OPS)})")
    return {field[5:]: {_OPS[op]: filters.get("value")}}


@component
class LLMDSRetriever:
    """Haystack component: hybrid (BM25 + HNSW) retrieval from an llmds pipeline."""

    def __init__(self, pipeline: RetrievalPipeline, top_k: int = 10,
                 filters: dict[str, Any] | None = None, fusion_weight: float = 0.5) -> None:
        self.pipeline, self.top_k, self.fusion_weight = settings(pipeline, top_k, fusion_weight)
        self.filters = to_llmds_filter(filters)

    @component.output_types(documents=list[Document])
    def run(self, query: str, filters: dict[str, Any] | None = None, top_k: int | None = None,
            query_embedding: list[float] | None = None) -> dict[str, list[Document]]:
        """Retrieve the ``top_k`` best documents for ``query`` (the component's defaults
        for anything not given)."""
        found = self.pipeline.search(
            query, None if query_embedding is None else np.asarray(query_embedding),
            top_k=self.top_k if top_k is None else _top_k(top_k),
            fusion_weight=self.fusion_weight,
            filter=self.filters if filters is None else to_llmds_filter(filters),
            return_documents=True)
        return {"documents": [Document(id=str(d.id), content=d.text, meta=d.metadata,
                                       score=d.score) for d in found]}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the pipeline (see :meth:`RetrievalPipeline.save`)."""
        self.pipeline.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedder: Any = None,
             **kwargs: Any) -> LLMDSRetriever:
        """A component over a saved pipeline (``embedder``: an llmds Embedder, or None for
        lexical-only text queries)."""
        return cls(RetrievalPipeline.load(path, embedder=embedder), **kwargs)


def _top_k(value: object) -> int:
    return top_k(value, "top_k")
