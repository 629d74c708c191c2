"""LlamaIndex retriever over a :class:`~llmds.retrieval_pipeline.RetrievalPipeline`.

``pip install 'llmds[llamaindex]'`` (llama-index-core). Usage::

    from llmds.integrations.llamaindex import LLMDSRetriever
    retriever = LLMDSRetriever.from_texts(texts, embed_model, metadatas=metas, top_k=5)
    nodes = retriever.retrieve("what causes cancer?")

Results are ``NodeWithScore`` objects around ``TextNode`` (``id_`` the pipeline's id
as a str, the stored text and metadata) with the pipeline's fused score.
``filters`` takes the :mod:`llmds.filters` dict syntax or LlamaIndex
``MetadataFilters`` (operators ``== != > >= < <= in nin``, conditions ``and``/``or``/
``not``, nested). A ``QueryBundle`` that carries an embedding is searched with it.
Any LlamaIndex ``BaseEmbedding`` serves as the embedder. ``save``/``load`` round-trip
through the pipeline's files.

Thread safety: as the pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmds._validate import show
from llmds.integrations._common import new_ids, require, settings, top_k
from llmds.retrieval_pipeline import RetrievalPipeline

require("llama_index.core", "llamaindex", "llama-index-core")
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.retrievers import BaseRetriever  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters  # noqa: E402

__all__ = ["LLMDSRetriever", "LlamaIndexEmbedder", "to_llmds_filter"]

_OPS = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
        "in": "$in", "nin": "$nin"}


def to_llmds_filter(filters: MetadataFilters | dict[str, Any] | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (or an llmds filter dict, passed through) as an
    llmds filter. Raises ValueError naming an operator llmds does not support."""
    if filters is None or isinstance(filters, dict):
        return filters
    if not isinstance(filters, MetadataFilters):
        raise TypeError(f"filters must be MetadataFilters, a dict or None, got {show(filters)}")
    parts = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            parts.append(to_llmds_filter(f))
            continue
        assert isinstance(f, MetadataFilter)
        op = _OPS.get(getattr(f.operator, "value", f.operator))
        if op is None:
            raise ValueError(f"filter operator {f.operator!r} is not supported by llmds "
                             f"(supported: {', '.join(_OPS)})")
        parts.append({f.key: {op: f.value}})
    cond = getattr(filters.condition, "value", filters.condition) or "and"
    if cond == "not":
        return {"$not": {"$and": parts}}
    return parts[0] if len(parts) == 1 else {f"${cond}": parts}


class LlamaIndexEmbedder:
    """A LlamaIndex ``BaseEmbedding`` as an llmds :class:`~llmds.embed.Embedder`."""

    def __init__(self, model: BaseEmbedding) -> None:
        self.model = model
        self.name = f"llamaindex:{type(model).__name__}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.get_text_embedding_batch(list(texts)), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.model.get_query_embedding(t) for t in texts], dtype=np.float32)


class LLMDSRetriever(BaseRetriever):
    """LlamaIndex ``BaseRetriever`` answering from an llmds hybrid pipeline (BM25 + HNSW)."""

    def __init__(self, pipeline: RetrievalPipeline, top_k: int = 4,
                 filters: MetadataFilters | dict[str, Any] | None = None,
                 fusion_weight: float = 0.5, **kwargs: Any) -> None:
        self.pipeline, self.top_k, self.fusion_weight = settings(pipeline, top_k, fusion_weight)
        self.filters = to_llmds_filter(filters)
        super().__init__(**kwargs)

    @classmethod
    def from_texts(cls, texts: Sequence[str], embed_model: BaseEmbedding | None = None,
                   metadatas: Sequence[dict[str, Any] | None] | None = None,
                   ids: Sequence[str] | None = None, *, top_k: int = 4,
                   filters: MetadataFilters | dict[str, Any] | None = None,
                   fusion_weight: float = 0.5, show_progress: bool = False,
                   **pipeline_kwargs: Any) -> LLMDSRetriever:
        """Index ``texts`` (embedded by ``embed_model``; lexical-only without one)."""
        texts = list(texts)
        embedder = vectors = None
        dim = 1
        if embed_model is not None:
            embedder = LlamaIndexEmbedder(embed_model)
            vectors = embedder.embed(texts) if texts else None
            dim = vectors.shape[1] if vectors is not None else len(
                embed_model.get_query_embedding("x"))
        pipe = RetrievalPipeline(embedding_dim=dim, embedder=embedder, **pipeline_kwargs)
        pipe.add_documents(new_ids(ids, len(texts)), texts, vectors, metadatas,
                           show_progress=show_progress)
        return cls(pipe, top_k=top_k, filters=filters, fusion_weight=fusion_weight)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        emb = query_bundle.embedding
        found = self.pipeline.search(query_bundle.query_str,
                                     None if emb is None else np.asarray(emb),
                                     top_k=self.top_k, fusion_weight=self.fusion_weight,
                                     filter=self.filters, return_documents=True)
        return [NodeWithScore(node=TextNode(id_=str(d.id), text=d.text or "",
                                            metadata=d.metadata), score=d.score)
                for d in found]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the pipeline (see :meth:`RetrievalPipeline.save`)."""
        self.pipeline.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], embed_model: BaseEmbedding | None = None,
             **kwargs: Any) -> LLMDSRetriever:
        """A retriever over a saved pipeline; ``embed_model=None``: lexical-only text queries."""
        embedder = None if embed_model is None else LlamaIndexEmbedder(embed_model)
        return cls(RetrievalPipeline.load(path, embedder=embedder), **kwargs)


def _top_k(value: object) -> int:
    return top_k(value, "top_k")
