"""Radix-tree prefix cache over token ids (SGLang's RadixAttention design).

A radix tree (compressed trie) maps token-id prefixes to the KV-slot indices that
hold their keys and values. Requests that share a prefix (a system prompt, the
history of a chat) find it with :meth:`RadixCache.match_prefix` and reuse those KV
slots instead of recomputing them. Unused leaves are evicted least-recently-used
first when memory is short; a lock reference protects the path a running request
depends on.

Keys live in each node as the raw little-endian ``uint32`` bytes of its token ids,
so the common step of a walk -- "does this whole node match?" -- is one C-level
``bytes`` comparison, and children are keyed by the bytes of their first page
(their first token when ``page_size == 1``). Only the one step where a match ends
inside a node looks for the first differing token, vectorised with NumPy. No
Python loop ever runs per token. The node and the walk live in
:mod:`llmds.mem_cache._tree`, the key coercion in :mod:`llmds.mem_cache._keys`;
both are shared with the sliding-window and Mamba variants.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._torch import IndexFormat, as_index_format, index_format
from llmds._validate import check_int, is_int, show
from llmds.mem_cache._cache_state import CacheState
from llmds.mem_cache._keys import (
    EMPTY_I64,
    claim_indices,
    evict_counts,
    insert_args,
    key_bytes,
    out_format,
    tensor_match,
)
from llmds.mem_cache._lru import LazyHeap, unlocked_leaf
from llmds.mem_cache._tree import TreeNode, find, iter_nodes
from llmds.mem_cache.base_prefix_cache import (
    BasePrefixCache,
    EvictResult,
    InsertResult,
    MatchResult,
    RadixKey,
)

__all__ = ["MAX_PAGE_SIZE", "RadixCache", "TreeNode"]

MAX_PAGE_SIZE = 1 << 20  # tokens per page, as KVCache


class RadixCache(CacheState, BasePrefixCache):
    """Radix tree mapping token-id prefixes to KV indices, with LRU leaf eviction.

    ``page_size`` tokens form one KV page: stored keys are whole pages and a match
    is truncated to whole pages. ``extra_key`` namespaces (:class:`RadixKey`) get
    separate trees, so they never match each other. ``token_to_kv_pool_allocator``
    (anything with ``free(indices)``) receives the indices of evicted nodes;
    ``on_node_evict(node_id)`` is called for each evicted node.

    Invariants (asserted by ``_check``):
      * every non-root node holds a non-empty whole number of pages and one
        int64 index per token; a child is filed under the bytes of its first page;
      * ``lock_ref`` of a node == its ``self_lock_ref`` + the sum over its
        children (a lock covers the whole path to the root), so it is never
        negative; ``last_access`` of a parent >= its children's;
      * ``evictable_size()`` = tokens in nodes with ``lock_ref == 0``,
        ``protected_size()`` = tokens in locked nodes, and
        ``evictable_size() + protected_size() == total_size()`` at all times;
      * every unlocked leaf has an entry in the eviction heap whose time is <= its
        ``last_access`` (stale entries are refreshed lazily when popped).

    Complexity, for a key of ``n`` tokens on a path of ``d`` nodes:
      * ``match_prefix`` and ``insert``: O(d) dict look-ups and C-level ``bytes``
        comparisons, O(n) NumPy work to convert the key and gather indices, plus
        one vectorised first-difference search when the match ends inside a node
        (which is then split, O(1) nodes);
      * ``inc_lock_ref`` / ``dec_lock_ref``: O(d);
      * ``evict``: O((k + s) log h) for k evicted nodes, s stale heap entries and
        h heap entries; never a scan of the tree;
      * sizes O(1); ``_check`` O(tree).
    Memory: per node ~200 bytes of Python object plus 4 bytes (key) and 8 bytes
    (index) per token; the eviction heap (:class:`~llmds.mem_cache._lru.LazyHeap`)
    holds O(nodes) entries.

    Failures change nothing: ``insert`` validates the key and every KV index
    (:func:`~llmds.mem_cache.base_prefix_cache.kv_indices`: integers, ``>= 0``, below
    the pool's ``size``, allocated in the pool) before touching the tree;
    ``dec_lock_ref(node)`` releases only a lock taken by ``inc_lock_ref(node)`` on
    that very node (an ancestor of a locked node is not itself locked); ``evict``
    takes the victims out of the tree, hands their indices to the pool in one
    ``free`` call and, if the pool refuses, puts every victim back as it was and
    re-raises (``on_node_evict`` runs only after the pool accepted).

    Tensors: keys and KV indices may be torch tensors (int32/int64, any device;
    torch is never imported by llmds itself). The first tensor of KV indices
    ``insert`` receives fixes the cache's *index format* (its device and dtype)
    until :meth:`reset`; from then on ``match_prefix`` returns its indices, and
    ``evict`` hands the pool the indices it frees, as tensors of that format (a
    tensor key alone gives int64 on the key's device). A value on another device
    is rejected. The tree itself keeps int64 NumPy arrays on the host: a CPU
    tensor crosses the boundary without a copy, a CUDA tensor with one copy of
    its indices each way (``match_prefix``: host to device; ``insert``: device
    to host). Measured on the chat replay (page 1, CPU tensors in and out):
    see ``llmds.bench.bench_engines``.

    Copies: the cache pickles and deep-copies to an independent cache with the
    same tree, times, locks and eviction order, at any tree depth (the tree is
    written as flat rows, never recursively). The token pool, ``on_node_evict``
    and any node in the same pickle come along (a node comes back as the copy's
    node at the same place), so the copy is self-consistent; both must be
    picklable (a ``lambda`` callback is not) or deep-copyable.

    Remote tier (``remote=``: a page store such as :class:`llmds.dist.RedisPageStore`,
    or a :class:`llmds.dist.RemoteTier` around one). The tree holds KV *indices*, so
    the tier needs the data: ``kv_buffer`` is the engine's KV by slot index (a NumPy
    array of shape ``(slots, *token_shape)``, or an object with ``row_shape``,
    ``dtype``, ``gather(slots)`` and ``scatter(slots, rows)`` for KV kept elsewhere),
    and ``token_to_kv_pool_allocator`` must have ``alloc(n)``. A remote page is
    ``P`` = the store's ``page_size`` tokens, so ``page_size`` must divide ``P``; its
    payload is the ``(P, *token_shape)`` rows of its slots, its key the
    :mod:`llmds.page_hash` digest over ``P``-token pages and the key's ``extra_key``,
    exactly what a :class:`~llmds.kv_cache.KVCache` with ``page_size=P`` computes, so
    replicas built on either cache share one store. ``match_prefix`` fetches the
    whole remote pages stored past the local match, writes their rows into new slots
    (evicting unlocked leaves if the pool is short) and inserts them; ``insert``
    writes back the remote pages that hold newly inserted tokens (their KV must be in
    ``kv_buffer`` by then). A store failure is a miss or a dropped write, never an
    error (:mod:`llmds._remote_tier`). The sliding-window and Mamba variants take no
    ``remote``: a remote page would also need their window KV or recurrent state.
    A cache with a remote tier cannot be pickled.

    Thread safety: not thread-safe; guard it with a lock when shared.

    Extension points for the sliding-window (tombstone) and Mamba-state variants.
    ``match_prefix`` and ``insert`` are one walk (:func:`~llmds.mem_cache._tree.find`,
    read-only) followed by hooks: ``_descend`` touches the path and splits the node
    the match ends in, ``_match_result`` cuts the match (window rule, last state),
    ``_insert_state`` / ``_finish_insert`` check and attach what an insert adds.
    (Sharing the walk cost 3-5% per request against the former copy inlined in each
    cache: 26.2 -> 27.0 us median on the 2,000-request chat replay at page 1, one
    serving loop for both; kept for one walk instead of four.)
    ``_split_node``, ``_add_leaf``, ``_delete_leaf`` and ``_free_indices`` are the
    only places that change the tree or hand indices back; eviction steps append
    ``(kind, node, ...)`` entries to ``_log`` and ``_undo_entry`` reverts one;
    ``inc_lock_ref`` returns an opaque token (``None`` here) that ``dec_lock_ref``
    accepts; ``_dump_refs`` / ``_load_refs`` copy a variant's own references to
    nodes.

    >>> cache = RadixCache()
    >>> cache.insert(RadixKey([1, 2, 3, 4]), np.array([10, 11, 12, 13])).prefix_len
    0
    >>> r = cache.match_prefix(RadixKey([1, 2, 9]))
    >>> r.prefix_len, r.indices.tolist()
    (2, [10, 11])
    >>> cache.insert(RadixKey([1, 2, 5]), np.array([20, 21, 22])).prefix_len
    2
    >>> cache.evictable_size(), cache.total_size()
    (5, 5)
    """

    _node_cls: type[TreeNode] = TreeNode  # subclasses with extra per-node fields override
    _owns_whole_value = False  # insert checks only the indices past the cached prefix
    # attributes rebuilt from the flat tree by __setstate__ (they hold nodes)
    _NODE_ATTRS: tuple[str, ...] = ("_roots", "root_node", "_heap", "_log")

    def __init__(
        self,
        page_size: int = 1,
        sliding_window_size: int | None = None,
        token_to_kv_pool_allocator: Any = None,
        on_node_evict: Callable[[int], None] | None = None,
        *,
        remote: Any = None,
        kv_buffer: Any = None,
    ) -> None:
        page_size = check_int(page_size, "page_size", minimum=1, maximum=MAX_PAGE_SIZE)
        if sliding_window_size is not None:
            raise NotImplementedError(
                "sliding_window_size: use llmds.mem_cache.SWARadixCache(page_size, "
                "sliding_window_size=W) for the sliding-window (tombstone) variant"
            )
        if token_to_kv_pool_allocator is not None and not callable(
            getattr(token_to_kv_pool_allocator, "free", None)
        ):
            raise TypeError("token_to_kv_pool_allocator must have a free(indices) method, "
                            f"got {show(token_to_kv_pool_allocator)}")
        if on_node_evict is not None and not callable(on_node_evict):
            raise TypeError(f"on_node_evict must be callable, got {show(on_node_evict)}")
        self.page_size = int(page_size)
        self.sliding_window_size = sliding_window_size
        self.token_to_kv_pool_allocator = token_to_kv_pool_allocator
        self.on_node_evict = on_node_evict
        self._pb = 4 * self.page_size  # bytes per page
        self._remote: Any = None  # llmds._remote_hooks.RadixRemote
        if remote is not None:
            from llmds._remote_hooks import RadixRemote
            self._remote = RadixRemote(remote, kv_buffer, token_to_kv_pool_allocator,
                                       self.page_size)
        elif kv_buffer is not None:
            raise ValueError("kv_buffer is only used with remote= (the tier reads and "
                             "writes KV rows there)")
        self._roots: dict[Hashable, TreeNode] = {}
        self.reset()

    # ------------------------------------------------------------------ sizes

    def evictable_size(self) -> int:
        """Tokens in unlocked nodes. O(1)."""
        return self._evictable

    def protected_size(self) -> int:
        """Tokens in locked nodes. O(1)."""
        return self._protected

    def total_size(self) -> int:
        """All cached tokens. O(1)."""
        return self._evictable + self._protected

    @property
    def remote(self) -> Any:
        """The :class:`llmds.dist.RemoteTier` behind ``remote=`` (``None`` without). O(1)."""
        return None if self._remote is None else self._remote.tier

    @property
    def num_nodes(self) -> int:
        """Non-root nodes in the tree. O(1)."""
        return self._num_nodes

    # ---------------------------------------------------------------- public

    def reset(self) -> None:
        """Drop every node (indices are not freed: the caller resets its pool). O(1)."""
        for root in self._roots.values():
            root._owner = None
        self._roots = {}
        self._next_id = 0
        self._tick = 0
        self._evictable = 0
        self._protected = 0
        self._num_nodes = 0
        self._heap = LazyHeap(unlocked_leaf)  # unlocked leaves, LRU first
        self._log: list[tuple[Any, ...]] | None = None  # eviction steps, while evicting
        # which pool slots the tree holds (when the pool has an int ``size``): an index
        # held twice would be freed twice on eviction
        size: Any = getattr(self.token_to_kv_pool_allocator, "size", None)
        self._held = np.zeros(int(size), dtype=np.bool_) if is_int(size) else None
        self._fmt: IndexFormat | None = None  # device and dtype of tensor KV indices
        self.root_node = self._root(None)

    def match_prefix(self, key: RadixKey | Any) -> MatchResult:
        """Longest cached prefix of ``key``, truncated to whole pages. O(d + n).

        Refreshes the LRU time of the matched path. When the match ends inside a
        node, that node is split so ``last_node`` ends exactly at the match (ready
        for ``inc_lock_ref``). ``key`` is a :class:`RadixKey` or a sequence of ints.
        With ``remote=``, the whole remote pages the store holds past the local match
        are fetched and inserted first (see the class docstring).
        """
        if self._remote is not None:
            return self._remote.match(self, key)
        return self._match_local(key)

    def _match_local(self, key: RadixKey | Any) -> MatchResult:
        """:meth:`match_prefix` in this process's tree only. O(d + n)."""
        kb, extra = key_bytes(key)
        nb = len(kb)
        nb -= nb % self._pb
        root = self._roots.get(extra)
        if root is None or nb == 0:
            res = MatchResult(indices=EMPTY_I64.copy(),
                              last_node=root if root is not None else self.root_node)
        else:
            path, pos, cut, m = find(root, kb, nb, self._pb, self.page_size)
            self._descend(root, path, cut, m)
            res = self._match_result(root, path, pos)
        fmt = out_format(key, self._fmt)
        return res if fmt is None else tensor_match(res, fmt)

    def insert(
        self, key: RadixKey | Any, value: npt.ArrayLike | None = None, **kwargs: Any
    ) -> InsertResult:
        """Insert ``key`` with one KV index per token; O(d + n).

        The key is truncated to whole pages (the caller frees the indices of the
        unaligned tail). Returns ``prefix_len``, the number of leading tokens that
        were already cached: ``value[:prefix_len]`` duplicates cached indices and
        the caller frees the part of it it owns. ``last_node`` is the node where
        the key ends. ``value=None`` stores the token ids themselves (tests).

        Raises ``ValueError`` if ``len(value) != len(key)``; nothing changes then.
        """
        state = self._insert_state(key, kwargs) if kwargs else None
        pool, whole = self.token_to_kv_pool_allocator, self._owns_whole_value
        fmt = index_format(value)
        if fmt is not None and self._fmt is not None and fmt[0] != self._fmt[0]:
            raise ValueError(f"value is a tensor on {fmt[0]}, but this cache's KV indices "
                             f"are on {self._fmt[0]} (the device of the first tensor it got)")
        kb, extra, vals = insert_args(key, value, pool, whole)
        if state is not None:
            state = self._check_state(state)
        nb = len(kb)
        nb -= nb % self._pb
        root = self._roots.get(extra)
        path, pos, cut, m = find(root, kb, nb, self._pb, self.page_size)  # read-only
        claim_indices(vals[pos >> 2 : nb >> 2], self._held, pool, not whole)
        if fmt is not None and self._fmt is None:
            self._fmt = fmt  # nothing below raises
        if root is None:
            if nb == 0:
                return InsertResult(prefix_len=0, last_node=self.root_node)
            root = self._root(extra)
        node = self._descend(root, path, cut, m)
        result = self._finish_insert(node, path, pos, kb, nb, vals, state)
        if self._remote is not None:  # write back the remote pages with new tokens
            self._remote.inserted(key, kb, pos, nb, vals)
        return result

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Evict least-recently-used unlocked leaves until ``num_tokens`` are freed.

        Whole nodes are evicted, so slightly more may be freed; fewer only when
        nothing evictable is left. A parent whose last child goes becomes a leaf
        and competes by its own LRU time. O((k + s) log h), see the class doc.
        """
        num_tokens, _ = evict_counts(num_tokens, swa_num_tokens)
        freed: list[npt.NDArray[np.int64]] = []
        log: list[tuple[Any, ...]] = []
        self._log = log
        evicted = self._evict_leaves(num_tokens, freed)
        self._log = None
        if freed:  # one call to the pool per evict, not one per node
            self._commit(log, freed[0] if len(freed) == 1 else np.concatenate(freed))
        return EvictResult(full_evicted=evicted)

    def _evict_leaves(self, num_tokens: int, freed: list[npt.NDArray[np.int64]]) -> int:
        """Evict LRU unlocked leaves (and the tombstones they leave childless, see
        :meth:`_evict_leaf`) until ``num_tokens`` tokens left the tree; append their
        indices to ``freed``. Returns the tokens removed. O((k + s) log h)."""
        pop = self._heap.pop
        evicted = 0
        while evicted < num_tokens:
            node = pop()
            if node is None:
                break
            evicted += self._evict_leaf(node, freed)
        return evicted

    def _commit(self, log: list[tuple[Any, ...]], indices: npt.NDArray[np.int64]) -> None:
        """Hand ``indices`` to the pool; if it refuses, revert ``log`` and re-raise.
        Then notify ``on_node_evict`` of every node that left the tree. O(k)."""
        try:
            self._free_indices(indices)
        except BaseException:
            self._undo(log)
            raise
        self._notify(log)

    def _notify(self, log: list[tuple[Any, ...]]) -> None:
        cb = self.on_node_evict
        if cb is not None:
            for entry in log:
                if entry[0] == "leaf":
                    cb(entry[1].id)

    def _undo(self, log: list[tuple[Any, ...]], kinds: tuple[str, ...] | None = None) -> None:
        """Revert the eviction steps in ``log`` (only those of ``kinds``), last first."""
        for entry in reversed(log):
            if kinds is None or entry[0] in kinds:
                self._undo_entry(entry)

    def _undo_entry(self, entry: tuple[Any, ...]) -> None:
        """Revert one eviction step: ``("leaf", node)`` puts a deleted leaf back."""
        kind, node = entry[0], entry[1]
        assert kind == "leaf", kind
        parent = node.parent
        parent.children[node.kb[: self._pb]] = node
        node.evicted = False
        self._evictable += len(node.value)
        self._num_nodes += 1
        if self._held is not None:
            self._held[node.value] = True
        self._push(node)

    def inc_lock_ref(self, node: TreeNode | None) -> None:
        """Lock ``node`` and its ancestors against eviction. O(depth).

        Moves the tokens of nodes that were unlocked from evictable to protected.
        Returns ``None`` (the opaque token of the plain cache).
        """
        if node is None:
            return None
        self._own(node)
        if node.parent is not None:
            node.self_lock_ref += 1
        moved = 0
        while node.parent is not None:
            if node.lock_ref == 0:
                moved += len(node.value)
            node.lock_ref += 1
            node = node.parent
        self._evictable -= moved
        self._protected += moved
        return None

    def dec_lock_ref(self, node: TreeNode | None, token: Any = None, **kwargs: Any) -> None:
        """Undo one ``inc_lock_ref(node)``. O(depth).

        Raises ``ValueError`` unless ``inc_lock_ref(node)`` locked this very node
        (a lock on a descendant does not count); nothing changes then.
        """
        if node is None:
            return
        self._own(node)
        if node.parent is None:
            return
        self._check_release(node)
        node.self_lock_ref -= 1
        moved = 0
        start = node
        while node.parent is not None:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                moved += len(node.value)
            node = node.parent
        self._evictable += moved
        self._protected -= moved
        if start.lock_ref == 0 and not start.children:
            self._push(start)

    @staticmethod
    def _check_release(node: TreeNode) -> None:
        if node.self_lock_ref <= 0:
            raise ValueError(
                f"dec_lock_ref: {node!r} was not locked by inc_lock_ref (a lock on a "
                "descendant does not count; release the node you locked)"
            )

    def all_values_flatten(self) -> npt.NDArray[np.int64]:
        """Every cached KV index (all namespaces), depth-first order; a tensor in the
        cache's index format when it has one. O(tree)."""
        vals = [n.value for n in self._iter_nodes()]
        return self._out(np.concatenate(vals) if vals else EMPTY_I64.copy())

    def pretty_print(self) -> None:
        """Print the tree (for debugging). O(tree)."""
        for extra, root in self._roots.items():
            print(f"namespace {extra!r}")
            stack = [(root, 0)]
            while stack:
                node, depth = stack.pop()
                if node.parent is not None:
                    toks = node.key[:10].tolist()
                    print(f"{'  ' * depth}[{node.num_tokens}] {toks} lock={node.lock_ref}")
                stack.extend((c, depth + 1) for c in node.children.values())
        print(f"total={self.total_size()} evictable={self._evictable}")

    # ------------------------------------------------------ walk hooks

    def _descend(
        self, root: TreeNode, path: list[TreeNode], cut: TreeNode | None, m: int
    ) -> TreeNode:
        """After :func:`find`: mark ``root`` and ``path`` used now, split ``cut`` after
        ``m`` bytes (the upper half joins ``path``); return the node the walk ends
        at. O(d)."""
        self._tick = tick = self._tick + 1
        root.last_access = tick
        for node in path:
            node.last_access = tick
        if cut is not None:
            node = self._split_node(cut, m)
            node.last_access = tick
            path.append(node)
        return path[-1] if path else root

    def _match_result(self, root: TreeNode, path: list[TreeNode], pos: int) -> MatchResult:
        """The match ``path`` (after :meth:`_descend`) as a result: all of it. O(n)."""
        if not path:
            return MatchResult(indices=EMPTY_I64.copy(), last_node=root)
        values = [n.value for n in path]
        indices = np.concatenate(values) if len(values) > 1 else values[0].copy()
        return MatchResult(indices=indices, last_node=path[-1], prefix_len=pos >> 2)

    def _insert_state(self, key: Any, kwargs: dict[str, Any]) -> Any:
        """What an insert attaches besides KV (Mamba: a state slot), checked before the
        key; ``None`` for nothing. O(1)."""
        return None

    def _check_state(self, state: Any) -> Any:
        """``state`` checked against the cache, after the key and value. O(1)."""
        return state

    def _finish_insert(
        self, node: TreeNode, path: list[TreeNode], pos: int, kb: bytes, nb: int,
        vals: npt.NDArray[np.int64], state: Any,
    ) -> InsertResult:
        """Add the uncached rest ``kb[pos:nb]`` as a leaf under ``node`` (the end of
        the walk over ``path``). O(n)."""
        if pos < nb:
            node = self._add_leaf(node, kb[pos:nb], np.array(vals[pos >> 2 : nb >> 2],
                                                              dtype=np.int64), self._tick)
        return InsertResult(prefix_len=pos >> 2, last_node=node)

    # ------------------------------------------------------ extension points

    def _split_node(self, child: TreeNode, m: int) -> TreeNode:
        """Split ``child`` after ``m`` bytes; return the new upper node. O(1).

        ``parent -> child`` becomes ``parent -> new -> child`` where ``new`` holds
        the first ``m // 4`` tokens. Locks and sizes are unchanged (both halves
        keep ``child``'s lock count; the tokens are the same).
        """
        pb = self._pb
        ckb = child.kb
        parent = child.parent
        assert parent is not None and 0 < m < len(ckb)
        t = m >> 2
        new = self._node_cls(self._next_id, parent, ckb[:m], child.value[:t], child.last_access)
        self._next_id += 1
        new.lock_ref = child.lock_ref
        child.kb = ckb[m:]
        child.value = child.value[t:]
        child.parent = new
        new.children[child.kb[:pb]] = child
        parent.children[ckb[:pb]] = new
        self._num_nodes += 1
        return new

    def _add_leaf(
        self, parent: TreeNode, kb: bytes, value: npt.NDArray[np.int64], tick: int
    ) -> TreeNode:
        """Attach a new unlocked leaf under ``parent``. O(log h)."""
        node = self._node_cls(self._next_id, parent, kb, value, tick)
        self._next_id += 1
        parent.children[kb[: self._pb]] = node
        self._evictable += len(value)
        self._num_nodes += 1  # its indices were claimed in _held by insert
        self._push(node)
        return node

    def _delete_leaf(self, node: TreeNode) -> None:
        """Remove an unlocked leaf and log it; the caller frees its indices and
        notifies once the pool accepted them (:meth:`_commit`). O(log h)."""
        parent = node.parent
        assert parent is not None and not node.children and node.lock_ref == 0
        del parent.children[node.kb[: self._pb]]
        self._evictable -= len(node.value)
        self._num_nodes -= 1
        node.evicted = True
        if self._held is not None:
            self._held[node.value] = False
        self._log.append(("leaf", node))  # type: ignore[union-attr]
        if parent.parent is not None and not parent.children and parent.lock_ref == 0:
            self._push(parent)

    @staticmethod
    def _is_tombstone(node: TreeNode) -> bool:
        """A node that goes when its last child is evicted (none here). O(1)."""
        return False

    def _evict_leaf(self, node: TreeNode, freed: list[npt.NDArray[np.int64]]) -> int:
        """Delete an unlocked leaf, then every unlocked ancestor it leaves childless
        that :meth:`_is_tombstone` says can end no match. Appends the KV indices to
        ``freed``; returns the tokens removed. O(k log h)."""
        parent: Any = node.parent
        freed.append(node.value)
        total = len(node.value)
        self._delete_leaf(node)
        while (parent.parent is not None and self._is_tombstone(parent)
               and not parent.children and parent.lock_ref == 0):
            up = parent.parent
            freed.append(parent.value)
            total += len(parent.value)
            self._delete_leaf(parent)
            parent = up
        return total

    def _free_indices(self, indices: npt.NDArray[np.int64]) -> None:
        """Hand evicted indices back to the pool, if there is one (as a tensor in the
        cache's index format when it has one)."""
        pool = self.token_to_kv_pool_allocator
        if pool is not None and len(indices):
            pool.free(self._out(indices))

    def _out(self, indices: npt.NDArray[np.int64]) -> Any:
        """Host indices in the cache's index format (unchanged without one). O(n)."""
        fmt = self._fmt
        return indices if fmt is None else as_index_format(indices, fmt)

    # -------------------------------------------------------------- internals

    def _root(self, extra: Hashable) -> TreeNode:
        root = self._node_cls(self._next_id, None, b"", EMPTY_I64, self._tick)
        self._next_id += 1
        root._owner = self
        self._roots[extra] = root
        return root

    def _own(self, node: Any) -> None:
        """Check ``node`` is a live node of this cache (O(1)) or raise ValueError."""
        if not isinstance(node, TreeNode):
            raise TypeError(f"node must be a TreeNode, got {show(node)}")
        if node.evicted:
            raise ValueError(f"{node!r} was evicted")
        if node.root._owner is not self:
            raise ValueError(f"{node!r} belongs to another cache (or to before reset())")

    def _push(self, node: TreeNode) -> None:
        """File an unlocked leaf for eviction (Mamba keeps lists instead). O(log h)."""
        self._heap.push(node)

    def _iter_nodes(self) -> Iterator[TreeNode]:
        return iter_nodes(self._roots)
