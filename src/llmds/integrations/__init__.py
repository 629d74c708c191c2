"""Drop-in faces of llmds's structures for serving engines and RAG frameworks.

Each submodule is imported on its own and needs its own extra; importing this
package imports no engine and no framework, and a module whose extra is missing
raises ``ImportError`` naming it:

- :mod:`llmds.integrations.sglang`: SGLang's prefix-cache interface (``RadixCache``,
  ``SWARadixCache``, ``MambaRadixCache``, ``ChunkCache``) over llmds's radix caches
  (``pip install 'llmds[torch]'`` for tensors);
- :mod:`llmds.integrations.vllm`: vLLM v1's ``KVCacheManager`` interface over
  :class:`llmds.KVCache` (no dependency; vLLM's own objects are duck-typed);
- :mod:`llmds.integrations.langchain`: ``LLMDSRetriever``, a LangChain ``BaseRetriever``
  (``pip install 'llmds[langchain]'``);
- :mod:`llmds.integrations.llamaindex`: ``LLMDSRetriever``, a LlamaIndex ``BaseRetriever``
  (``pip install 'llmds[llamaindex]'``);
- :mod:`llmds.integrations.haystack`: ``LLMDSRetriever``, a Haystack component
  (``pip install 'llmds[haystack]'``).

The retrievers wrap a :class:`~llmds.retrieval_pipeline.RetrievalPipeline` and return
their framework's document type with the pipeline's fused scores and metadata.
"""

from __future__ import annotations

__all__ = ["haystack", "langchain", "llamaindex", "sglang", "vllm"]


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        return importlib.import_module(f"llmds.integrations.{name}")
    raise AttributeError(f"module 'llmds.integrations' has no attribute {name!r}")
