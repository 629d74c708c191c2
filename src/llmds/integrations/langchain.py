"""LangChain retriever over a :class:`~llmds.retrieval_pipeline.RetrievalPipeline`.

``pip install 'llmds[langchain]'`` (langchain-core). Usage::

    from llmds.integrations.langchain import LLMDSRetriever
    retriever = LLMDSRetriever.from_texts(texts, embeddings, metadatas=metas, k=5)
    docs = retriever.invoke("what causes cancer?", filter={"year": {"$gte": 2015}})

Results are LangChain ``Document`` objects (``id`` the pipeline's id as a str,
``page_content`` the stored text, ``metadata`` the stored metadata plus ``"score"``,
the fused score). ``k``, ``filter`` (the :mod:`llmds.filters` syntax) and
``fusion_weight`` are fields, and may be given per call to ``invoke``. Any LangChain
``Embeddings`` object serves as the embedder (``embed_documents`` for documents,
``embed_query`` for queries). ``save``/``load`` round-trip through the pipeline's
files.

Thread safety: as the pipeline (concurrent ``invoke`` calls are safe; adding
documents is serialised with them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmds.integrations._common import new_ids, require, top_k
from llmds.retrieval_pipeline import RetrievalPipeline

_core = require("langchain_core", "langchain", "langchain-core")
from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from pydantic import ConfigDict  # noqa: E402

__all__ = ["LLMDSRetriever", "LangChainEmbedder"]


class LangChainEmbedder:
    """A LangChain ``Embeddings`` as an llmds :class:`~llmds.embed.Embedder`."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        self.name = f"langchain:{type(embeddings).__name__}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray([self.embeddings.embed_query(t) for t in texts], dtype=np.float32)


class LLMDSRetriever(BaseRetriever):
    """LangChain ``BaseRetriever`` answering from an llmds hybrid pipeline (BM25 + HNSW)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: RetrievalPipeline
    k: int = 4
    filter: dict[str, Any] | None = None
    fusion_weight: float = 0.5

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        embedding: Embeddings | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        fusion_weight: float = 0.5,
        show_progress: bool = False,
        **pipeline_kwargs: Any,
    ) -> LLMDSRetriever:
        """Index ``texts`` (embedded with ``embedding``; lexical-only without one) in a new
        pipeline (``pipeline_kwargs`` go to :class:`RetrievalPipeline`). O(corpus)."""
        texts = list(texts)
        vectors = None
        embedder = None
        dim = 1
        if embedding is not None:
            embedder = LangChainEmbedder(embedding)
            vectors = embedder.embed(texts) if texts else None
            dim = vectors.shape[1] if vectors is not None else len(embedding.embed_query("x"))
        pipe = RetrievalPipeline(embedding_dim=dim, embedder=embedder, **pipeline_kwargs)
        pipe.add_documents(new_ids(ids, len(texts)), texts, vectors, metadatas,
                           show_progress=show_progress)
        return cls(pipeline=pipe, k=top_k(k), filter=filter, fusion_weight=fusion_weight)

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[dict[str, Any] | None] |
                  None = None, ids: Sequence[str] | None = None) -> list[Any]:
        """Add documents (embedded by the pipeline's embedder); return their ids."""
        doc_ids = new_ids(ids, len(texts))
        self.pipeline.add_documents(doc_ids, list(texts), metadatas=metadatas)
        return doc_ids

    def add_documents(self, documents: Sequence[Document]) -> list[Any]:
        """Add LangChain documents (their ``id`` when set, else a new uuid4)."""
        ids = [d.id if d.id is not None else None for d in documents]
        fresh = iter(new_ids(None, len(documents)))
        return self.add_texts([d.page_content for d in documents],
                              [dict(d.metadata) for d in documents],
                              [i if i is not None else next(fresh) for i in ids])

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        k = top_k(kwargs.get("k", self.k))
        found = self.pipeline.search(query, top_k=k,
                                     fusion_weight=kwargs.get("fusion_weight",
                                                              self.fusion_weight),
                                     filter=kwargs.get("filter", self.filter),
                                     return_documents=True)
        return [Document(page_content=d.text or "", metadata={**d.metadata, "score": d.score},
                         id=str(d.id)) for d in found]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the pipeline (see :meth:`RetrievalPipeline.save`)."""
        self.pipeline.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], embedding: Embeddings | None = None,
             **kwargs: Any) -> LLMDSRetriever:
        """A retriever over a saved pipeline; ``embedding=None`` means lexical-only text
        queries (explicitly, as :meth:`RetrievalPipeline.load` asks)."""
        embedder = None if embedding is None else LangChainEmbedder(embedding)
        return cls(pipeline=RetrievalPipeline.load(path, embedder=embedder), **kwargs)
