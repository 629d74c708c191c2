"""Prefix caches for KV-cache reuse (the SGLang/pymllm ``mem_cache`` API).

- :mod:`~llmds.mem_cache.base_prefix_cache`: hash helpers, :class:`RadixKey`, the
  result records and the abstract :class:`BasePrefixCache`;
- :mod:`~llmds.mem_cache.radix_cache`: :class:`RadixCache`, the radix tree;
- :mod:`~llmds.mem_cache.chunk_cache`: :class:`ChunkCache`, the no-op cache;
- :mod:`~llmds.mem_cache.allocator`: :class:`TokenToKVPoolAllocator`, a minimal
  token-granular KV slot pool with the ``free(indices)`` hook the caches call;
- :mod:`~llmds.mem_cache.swa_radix_cache`: :class:`SWARadixCache`, sliding-window
  KV with tombstones;
- :mod:`~llmds.mem_cache.mamba_radix_cache` and :mod:`~llmds.mem_cache.mamba_pool`:
  :class:`MambaRadixCache` (Mamba/SSM state slots) and :class:`MambaPool`.

Internal seams shared by the three radix caches: ``_keys`` (key, namespace and KV
index coercion), ``_tree`` (the node, the one walk, the flat copy used by pickle),
``_lru`` (the lazy LRU heap and the intrusive LRU lists).

Sizes: a pool's size is ``size`` here (SGLang's interface name); cache sizes are in
tokens (``evictable_size()``, ``protected_size()``, ``total_size()``).
"""

from llmds.mem_cache.allocator import TokenToKVPoolAllocator
from llmds.mem_cache.base_prefix_cache import (
    BasePrefixCache,
    EvictResult,
    InsertResult,
    MatchResult,
    RadixKey,
    hash_bytes,
    hash_to_int64,
    hash_token_ids,
)
from llmds.mem_cache.chunk_cache import ChunkCache
from llmds.mem_cache.radix_cache import RadixCache, TreeNode

__all__ = [
    "BasePrefixCache",
    "ChunkCache",
    "EvictResult",
    "InsertResult",
    "MatchResult",
    "RadixCache",
    "RadixKey",
    "TokenToKVPoolAllocator",
    "TreeNode",
    "hash_bytes",
    "hash_to_int64",
    "hash_token_ids",
]

from llmds.mem_cache.mamba_radix_cache import (
    MambaPool,
    MambaRadixCache,
    MambaTreeNode,
)
from llmds.mem_cache.swa_radix_cache import SWARadixCache, SWATreeNode

__all__ += ["MambaPool", "MambaRadixCache", "MambaTreeNode", "SWARadixCache", "SWATreeNode"]
