"""Scale-out: a KV page tier and admission shared through Redis, retrieval sharded on Ray.

* :class:`RedisPageStore` (``llmds.dist.redis_store``): KV pages in Redis, one key per
  page, identity-checked, batched; a Redis failure is a miss, never an error.
* :class:`RedisAdmissionController` (``llmds.dist.redis_admission``): the
  :class:`llmds.AdmissionController` API with its two token buckets kept in Redis and
  charged atomically by one Lua script on the server's clock.
* :class:`RemoteTier` (from ``llmds._remote_tier``, no Redis in it): a page store
  used as the second tier of a :class:`llmds.KVCache` or a
  :class:`llmds.mem_cache.RadixCache` (``remote=``), with synchronous or background
  write-back; :class:`PageStore` is the protocol a store implements.
* :class:`ShardedRetrievalPipeline` (``llmds.dist.sharded``): the RetrievalPipeline
  API over shards in Ray actors (or in-process), with one pipeline's exact results;
  ``backend="ray"`` needs the ``ray`` extra (``pip install 'llmds[ray]'``).

The Redis classes need the ``redis`` extra (redis-py and hiredis): ``pip install
'llmds[redis]'``. Importing ``llmds`` or ``llmds.dist`` never imports redis-py; the
first use of a Redis class does, and without the extra raises ``ImportError`` naming it.

>>> from llmds import KVCache
>>> from llmds.dist import RedisPageStore, RemoteTier
>>> store = RedisPageStore("redis://127.0.0.1:6379/0", model="demo", dtype="float32",
...                        page_size=16, page_shape=(16, 8))
>>> cache = KVCache(page_size=16, max_pages=64, token_shape=(8,), dtype="float32",
...                 remote=RemoteTier(store, background=True))
>>> cache.remote.page_shape
(16, 8)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llmds._remote_tier import PageStore, RemoteTier

if TYPE_CHECKING:
    from llmds.dist.redis_admission import RedisAdmissionController
    from llmds.dist.redis_store import RedisPageStore
    from llmds.dist.sharded import ShardedRetrievalPipeline, ShardError

__all__ = ["PageStore", "RedisAdmissionController", "RedisPageStore", "RemoteTier",
           "ShardError", "ShardedRetrievalPipeline"]

_MODULES = {
    "RedisAdmissionController": "llmds.dist.redis_admission",
    "RedisPageStore": "llmds.dist.redis_store",
    "ShardError": "llmds.dist.sharded",  # imports no Ray: backend="ray" does, when used
    "ShardedRetrievalPipeline": "llmds.dist.sharded",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'llmds.dist' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        if "llmds[redis]" in str(exc) or not module.startswith("llmds.dist.redis"):
            raise
        raise ImportError(f"llmds.dist.{name} needs redis-py: pip install 'llmds[redis]' "
                          f"({exc})") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
