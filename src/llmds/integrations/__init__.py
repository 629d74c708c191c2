"""Drop-in faces of llmds structures for the frameworks RAG code lives in (optional extras).

* :mod:`llmds.integrations.langchain`: ``LLMDSRetriever``, a LangChain ``BaseRetriever``
  (``pip install 'llmds[langchain]'``);
* :mod:`llmds.integrations.llamaindex`: ``LLMDSRetriever``, a LlamaIndex ``BaseRetriever``
  (``pip install 'llmds[llamaindex]'``);
* :mod:`llmds.integrations.haystack`: ``LLMDSRetriever``, a Haystack component
  (``pip install 'llmds[haystack]'``).

Each wraps a :class:`~llmds.retrieval_pipeline.RetrievalPipeline` and returns its
framework's document type with the pipeline's fused scores and metadata. Importing
this package imports no framework; each module imports its own, and raises
``ImportError`` naming the extra when it is missing.
"""

from __future__ import annotations

__all__ = ["haystack", "langchain", "llamaindex"]


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        return importlib.import_module(f"llmds.integrations.{name}")
    raise AttributeError(f"module 'llmds.integrations' has no attribute {name!r}")
