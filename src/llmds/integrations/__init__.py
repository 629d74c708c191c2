"""Drop-in faces of llmds's structures for serving engines and RAG frameworks.

Each submodule is imported on its own and needs its own extra; nothing here is
imported by ``import llmds`` or by this package itself:

- :mod:`llmds.integrations.sglang`: SGLang's prefix-cache interface (``RadixCache``,
  ``SWARadixCache``, ``MambaRadixCache``, ``ChunkCache``) over llmds's radix caches
  (needs torch: ``pip install 'llmds[torch]'``);
- :mod:`llmds.integrations.vllm`: vLLM v1's ``KVCacheManager`` interface over
  :class:`llmds.KVCache` (no dependency; vLLM's own objects are duck-typed).
"""
