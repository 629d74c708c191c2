"""The request lifecycle of SGLang's prefix caches (internal to
:mod:`llmds.integrations.sglang`): :class:`Req`, the request fields the caches read,
and :class:`RequestLifecycle`, ``cache_finished_req`` / ``cache_unfinished_req`` over
a facade's own ``insert``, ``match_prefix`` and lock calls.
"""

from __future__ import annotations

from typing import Any

from llmds._torch import require_torch
from llmds.integrations._sglang_records import (
    DecLockRefParams,
    InsertParams,
    MatchPrefixParams,
    RadixKey,
)

__all__ = ["Req", "RequestLifecycle"]

torch = require_torch("llmds.integrations.sglang")


class Req:
    """The request fields the caches read (a stand-in for SGLang's ``Req``).

    ``origin_input_ids`` and ``output_ids`` are token lists, ``fill_ids`` the
    tokens computed so far, ``req_pool_idx`` the request's row in the
    :class:`ReqToTokenPool`, ``prefix_indices`` / ``last_node`` /
    ``cache_protected_len`` what the last match or cache step left, ``extra_key``
    the namespace. O(1).

    Thread safety: not thread-safe.
    """

    def __init__(self, origin_input_ids: Any, req_pool_idx: int = 0,
                 extra_key: Any = None) -> None:
        self.origin_input_ids = list(origin_input_ids)
        self.output_ids: list[int] = []
        self.fill_ids = list(self.origin_input_ids)
        self.req_pool_idx = req_pool_idx
        self.extra_key = extra_key
        self.prefix_indices: Any = torch.empty(0, dtype=torch.int64)
        self.last_node: Any = None
        self.cache_protected_len = 0
        self.swa_uuid_for_lock: Any = None


class RequestLifecycle:
    """``cache_finished_req`` / ``cache_unfinished_req`` for a facade (SGLang's
    :class:`~llmds.integrations.sglang.RadixCache` and its variants) that has
    ``insert``, ``match_prefix``, ``inc_lock_ref``, ``dec_lock_ref``, ``disable``,
    ``page_size``, ``req_to_token_pool`` and ``token_to_kv_pool_allocator``. A
    request's KV indices are read from its ``req_to_token_pool`` row.

    Thread safety: as the facade (not thread-safe).
    """

    disable: bool
    disable_finished_insert: bool
    page_size: int
    req_to_token_pool: Any
    token_to_kv_pool_allocator: Any
    insert: Any
    match_prefix: Any
    inc_lock_ref: Any
    dec_lock_ref: Any

    def _row(self, req: Any, n: int) -> Any:
        row = self.req_to_token_pool.req_to_token[req.req_pool_idx, :n]
        return row if isinstance(row, torch.Tensor) else torch.as_tensor(row)

    @staticmethod
    def _protected(req: Any) -> int:
        n = getattr(req, "cache_protected_len", None)
        return int(n) if n is not None else len(req.prefix_indices)

    def _free(self, indices: Any) -> None:
        if len(indices) and self.token_to_kv_pool_allocator is not None:
            self.token_to_kv_pool_allocator.free(indices)

    def cache_finished_req(self, req: Any, is_insert: bool = True, **kwargs: Any) -> None:
        """A finished request: insert its committed tokens (prompt + output), free the
        duplicates of cached KV and the unaligned tail, release its lock. O(d + n)."""
        if hasattr(req, "pop_committed_kv_cache"):
            committed = req.pop_committed_kv_cache()
        else:  # the last token has no KV yet
            committed = len(req.origin_input_ids) + len(req.output_ids) - 1
        token_ids = (list(req.origin_input_ids) + list(req.output_ids))[:committed]
        kv = self._row(req, len(token_ids))
        if self.disable:
            self._free(kv)
            return
        if self.disable_finished_insert:
            is_insert = False
        aligned = len(token_ids) - len(token_ids) % self.page_size
        protected = self._protected(req)
        if is_insert:
            key = RadixKey(token_ids[:aligned], getattr(req, "extra_key", None))
            done = self.insert(InsertParams(key=key, value=kv[:aligned].to(torch.int64, copy=True)))
            self._free(kv[protected : done.prefix_len])
        else:
            self._free(kv[protected:aligned])
        self._free(kv[aligned:])
        self._unlock(req, req.last_node)

    def cache_unfinished_req(self, req: Any, chunked: bool = False, **kwargs: Any) -> None:
        """A running request: insert what it computed so far, point its row at the
        cached indices, move its lock to the new last node. O(d + n)."""
        if self.disable:
            return
        token_ids = list(req.fill_ids)
        kv = self._row(req, len(token_ids))
        aligned = len(token_ids) - len(token_ids) % self.page_size
        protected = self._protected(req)
        key = RadixKey(token_ids[:aligned], getattr(req, "extra_key", None))
        done = self.insert(InsertParams(key=key, value=kv[:aligned].to(torch.int64, copy=True)))
        self._free(kv[protected : done.prefix_len])
        m = self.match_prefix(MatchPrefixParams(key=key))
        new = m.device_indices
        self.req_to_token_pool.write((req.req_pool_idx, slice(protected, len(new))),
                                     new[protected:])
        req.cache_protected_len = len(new)
        self._unlock(req, req.last_node)
        receipt = self.inc_lock_ref(m.last_device_node)
        req.swa_uuid_for_lock = receipt.swa_uuid_for_lock
        req.prefix_indices = torch.cat([new, kv[len(new):].to(new.device)]) \
            if len(new) < len(kv) else new
        req.last_node = m.last_device_node

    def _unlock(self, req: Any, node: Any) -> None:
        if node is not None and node.parent is not None:
            self.dec_lock_ref(node, DecLockRefParams(
                swa_uuid_for_lock=getattr(req, "swa_uuid_for_lock", None)))
