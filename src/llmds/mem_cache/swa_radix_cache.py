"""Sliding-window (SWA) radix prefix cache with tombstones, for hybrid attention models.

Models that mix full-attention layers with sliding-window-attention layers keep two
kinds of KV per token: full KV (needed for every earlier token) and SWA KV (needed
only for the last ``W`` tokens). :class:`SWARadixCache` extends
:class:`~llmds.mem_cache.radix_cache.RadixCache` so a node can lose its SWA KV alone
and stay in the tree as a *tombstone*: its full KV is still there, so a later request
whose window does not reach back into it can still reuse the prefix.

Eviction has two phases (``evict(num_tokens, swa_num_tokens)``):
  1. full: least-recently-used unlocked leaves leave the tree (full and SWA KV freed);
  2. SWA: least-recently-used nodes whose SWA KV is unlocked lose it -- a leaf that is
     also fully unlocked leaves the tree, any other node becomes a tombstone.
A tombstone never stays a leaf: when its last child leaves the tree it goes too (its
full KV is freed), unless it is locked, and so on up the path (SGLang does the same).
A match is cut back to the last position with at least ``W`` non-tombstoned tokens
behind it (or no tombstone at all on the way from the root).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_int
from llmds.mem_cache._keys import EMPTY_I64, evict_counts
from llmds.mem_cache._lru import LazyHeap
from llmds.mem_cache._tree import TreeNode
from llmds.mem_cache.base_prefix_cache import EvictResult, InsertResult, MatchResult
from llmds.mem_cache.radix_cache import RadixCache

__all__ = ["SWARadixCache", "SWATreeNode"]


class SWATreeNode(TreeNode):
    """A :class:`TreeNode` with sliding-window state.

    ``swa_tombstone``: the node's SWA KV was freed (full KV kept);
    ``swa_lock_ref``: SWA locks held through this node;
    ``swa_boundary``: a lock boundary id, set on the topmost node of a SWA lock.

    Thread safety: not thread-safe; guard it (with its cache) when shared.
    """

    __slots__ = ("swa_boundary", "swa_lock_ref", "swa_tombstone")

    STATE = (*TreeNode.STATE, "swa_tombstone", "swa_lock_ref", "swa_boundary")

    def __init__(self, *args: Any) -> None:
        """TreeNode's arguments; live (not a tombstone), no SWA lock. O(1)."""
        TreeNode.__init__(self, *args)
        self.swa_tombstone = False
        self.swa_lock_ref = 0
        self.swa_boundary: int | None = None

    def __repr__(self) -> str:
        return (
            f"SWATreeNode(id={self.id}, tokens={len(self.kb) >> 2}, lock_ref={self.lock_ref}, "
            f"swa_lock_ref={self.swa_lock_ref}, tombstone={self.swa_tombstone}, "
            f"children={len(self.children)}, evicted={self.evicted})"
        )


def _swa_unlocked(node: Any) -> bool:
    """Eligible for the SWA phase: in the tree, not a tombstone, no SWA lock. O(1)."""
    return not node.evicted and not node.swa_tombstone and not node.swa_lock_ref


class SWARadixCache(RadixCache):
    """Radix prefix cache for full + sliding-window attention KV, with tombstones.

    ``sliding_window_size`` (``W`` >= 1) is the attention window in tokens. The
    ``token_to_kv_pool_allocator`` receives ``free(indices)`` when a node leaves the
    tree (its full KV, and its SWA KV unless already freed) and, if it has one,
    ``free_swa(indices)`` when a node becomes a tombstone.

    Match: the longest cached whole-page prefix, cut back to the largest length
    ``L`` such that the ``W`` tokens before ``L`` are all non-tombstoned, or no
    tombstone lies before ``L``. ``last_node`` ends exactly at ``L``.

    Insert: ``prefix_len`` is the number of leading tokens already cached *before the
    first tombstone on the key's path*; the caller frees ``value[:prefix_len]`` as
    usual. Every unlocked tombstone the key passes is restored: it adopts the
    caller's indices for its tokens and the cache frees its old indices; the
    caller's duplicates of live nodes after the first tombstone are freed by the
    cache. A tombstone under a lock (a running request reads its full KV) keeps
    its indices and stays a tombstone; the cache frees the caller's copies.
    Indices equal to the node's own (a caller re-passing ``match_prefix``'s
    indices) are never freed, so the usual replay -- free ``value[m:prefix_len]``
    where ``m`` is the matched length -- is safe.

    Failures change nothing, as in RadixCache; ``evict`` calls the pool's
    ``free_swa`` (tombstones) first and ``free`` second: if ``free_swa`` refuses,
    every step is undone; if ``free`` refuses after ``free_swa`` accepted, the
    deleted nodes are put back and the tombstones stay (their SWA KV is back in
    the pool), so the tree and the pool still agree. When a match or an insert
    splits a node, the lower half is marked just used (SGLang's behaviour).

    Locks: ``inc_lock_ref(node)`` locks the full KV of the whole path and the SWA KV
    of the nearest nodes covering ``W`` tokens (stopping early at a tombstone); the
    topmost of them carries a boundary marker (moved to the upper half on a split).
    It returns a boundary id, unique per lock, that ``dec_lock_ref(node,
    swa_boundary_id)`` needs: an id from another node, an unknown or released id
    raises ``ValueError`` and changes nothing.

    Invariants (``_check``, on top of RadixCache's):
      * ``swa_evictable_size()`` = tokens of non-tombstone nodes with
        ``swa_lock_ref == 0``; ``swa_protected_size()`` = those with
        ``swa_lock_ref > 0``; their sum is ``swa_total_size()`` at all times;
      * ``lock_ref >= swa_lock_ref`` per node; a tombstone has ``swa_lock_ref == 0``
        and at least one child (no tombstone leaves);
      * every SWA-unlocked live node has an entry in the SWA heap.

    Complexity: match/insert O(d + n) as in RadixCache plus O(d) for the window cut;
    locks O(d); ``evict`` O((k + s) log h) over two lazily refreshed heaps (one per
    phase; separate LRU orders), never a tree scan; sizes O(1).

    Copies: as RadixCache (both heaps and the open SWA locks are copied).

    Thread safety: not thread-safe; guard it with a lock when shared.
    """

    _node_cls = SWATreeNode
    _owns_whole_value = True  # a restored tombstone adopts the caller's cached positions too
    _NODE_ATTRS = (*RadixCache._NODE_ATTRS, "_swa_heap", "_swa_locks")

    def __init__(
        self,
        page_size: int = 1,
        sliding_window_size: int = 4096,
        token_to_kv_pool_allocator: Any = None,
        on_node_evict: Any = None,
    ) -> None:
        self._window = check_int(sliding_window_size, "sliding_window_size", minimum=1,
                                 maximum=1 << 40)
        super().__init__(
            page_size=page_size,
            token_to_kv_pool_allocator=token_to_kv_pool_allocator,
            on_node_evict=on_node_evict,
        )
        self.sliding_window_size = self._window  # type: ignore[assignment]

    # ------------------------------------------------------------------ sizes

    def swa_evictable_size(self) -> int:
        """SWA tokens eviction may free (live, SWA-unlocked). O(1)."""
        return self._swa_evictable

    def swa_protected_size(self) -> int:
        """SWA tokens under a SWA lock. O(1)."""
        return self._swa_protected

    def swa_total_size(self) -> int:
        """Tokens whose SWA KV is cached (non-tombstone). O(1)."""
        return self._swa_evictable + self._swa_protected

    def reset(self) -> None:
        """Drop every node (indices are not freed). O(1)."""
        self._swa_evictable = 0
        self._swa_protected = 0
        self._swa_heap = LazyHeap(_swa_unlocked)  # SWA-unlocked live nodes, LRU first
        self._next_boundary = 1
        self._swa_locks: dict[int, tuple[Any, int | None]] = {}
        super().reset()

    # ------------------------------------------------------ walk hooks

    def _match_result(self, root: TreeNode, path: list[TreeNode], pos: int) -> MatchResult:
        """Cut the match back to the largest node end with >= W live tokens since the
        last tombstone on ``path`` (or no tombstone at all). O(d + n)."""
        w = self._window
        best = 0
        since: int | None = None  # live tokens since the last tombstone (None: none seen)
        for i, n in enumerate(path, 1):
            if n.swa_tombstone:  # type: ignore[attr-defined]
                since = 0
                continue
            if since is not None:
                since += n.num_tokens
                if since < w:
                    continue
            best = i
        if not best:
            return MatchResult(indices=EMPTY_I64.copy(), last_node=root)
        vals = [n.value for n in path[:best]]
        indices = np.concatenate(vals) if len(vals) > 1 else vals[0].copy()
        return MatchResult(indices=indices, last_node=path[best - 1], prefix_len=len(indices))

    def _finish_insert(
        self, node: TreeNode, path: list[TreeNode], pos: int, kb: bytes, nb: int,
        vals: npt.NDArray[np.int64], state: Any,
    ) -> InsertResult:
        """Restore the unlocked tombstones on ``path`` with the caller's indices, free
        what the class doc says, then add the uncached rest as a leaf. O(d + n)."""
        first_tomb: int | None = None
        off = 0
        to_free: list[npt.NDArray[np.int64]] = []
        restore: list[tuple[Any, npt.NDArray[np.int64]]] = []
        for n in path:
            t = n.num_tokens
            seg = vals[off : off + t]
            if n.swa_tombstone:  # type: ignore[attr-defined]
                if first_tomb is None:
                    first_tomb = off
                if n.lock_ref:  # a running request reads its full KV: keep it, and
                    to_free.append(seg[seg != n.value])  # the tombstone, as SGLang does
                else:
                    to_free.append(n.value[n.value != seg])  # a caller passing the node's
                    restore.append((n, seg))  # own indices frees nothing
            elif first_tomb is not None:
                to_free.append(seg[seg != n.value])
            off += t
        if to_free:  # before the restores: a pool that refuses leaves the tree as it was
            try:
                self._free_indices(np.concatenate(to_free))
            except BaseException:
                if self._held is not None:  # un-claim the new leaf's indices
                    self._held[vals[pos >> 2 : nb >> 2]] = False
                raise
        held = self._held
        for n, seg in restore:
            if held is not None:
                held[n.value] = False
                held[seg] = True
            n.value = np.array(seg, dtype=np.int64)
            n.swa_tombstone = False
            self._swa_evictable += len(seg)
            self._swa_heap.push(n)
        prefix_len = (pos >> 2) if first_tomb is None else first_tomb
        if pos < nb:
            node = self._add_leaf(
                node, kb[pos:nb], np.array(vals[pos >> 2 : nb >> 2], dtype=np.int64), self._tick
            )
        return InsertResult(prefix_len=prefix_len, last_node=node)

    # ---------------------------------------------------------------- public

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Two-phase eviction: full leaves for ``num_tokens``, then SWA KV for
        ``swa_num_tokens`` (tombstoning internal nodes). O((k + s) log h)."""
        num_tokens, swa_num_tokens = evict_counts(num_tokens, swa_num_tokens)
        full_freed: list[npt.NDArray[np.int64]] = []
        log: list[tuple[Any, ...]] = []
        self._log = log
        live = self._swa_evictable
        full = self._evict_leaves(num_tokens, full_freed)
        swa = live - self._swa_evictable  # the live (non-tombstone) tokens phase 1 took
        pop = self._swa_heap.pop
        swa_freed: list[npt.NDArray[np.int64]] = []
        while swa < swa_num_tokens:
            snode = pop()
            if snode is None:
                break
            t = len(snode.value)
            swa += t
            if not snode.children and snode.lock_ref == 0:
                full += self._evict_leaf(snode, full_freed)
            else:
                snode.swa_tombstone = True
                self._swa_evictable -= t
                swa_freed.append(snode.value)
                log.append(("tomb", snode))
        self._log = None
        pool = self.token_to_kv_pool_allocator
        if swa_freed and pool is not None and callable(getattr(pool, "free_swa", None)):
            try:  # first: if the pool refuses, nothing has been handed back yet
                pool.free_swa(self._out(np.concatenate(swa_freed)))
            except BaseException:
                self._undo(log)
                raise
        if full_freed:
            try:
                self._free_indices(np.concatenate(full_freed))
            except BaseException:
                # the pool took the tombstones' SWA KV: keep them, put the leaves back
                self._undo(log, ("leaf",))
                raise
        self._notify(log)
        return EvictResult(full_evicted=full, swa_evicted=swa)

    def inc_lock_ref(self, node: TreeNode | None) -> int | None:  # type: ignore[override]
        """Lock the full KV of ``node``'s path and the SWA KV of its last ``W`` tokens.

        Returns the SWA boundary id of this lock for :meth:`dec_lock_ref` (``None``
        for the root or ``None``). Raises ``ValueError`` for a tombstone. O(depth).
        """
        if node is None:
            return None
        self._own(node)
        if node.parent is None:
            return None
        if node.swa_tombstone:  # type: ignore[attr-defined]
            raise ValueError(f"inc_lock_ref: {node!r} is a tombstone; lock a matched node")
        super().inc_lock_ref(node)
        w = self._window
        covered = 0
        n: Any = node
        top: Any = None
        moved = 0
        while n.parent is not None and covered < w and not n.swa_tombstone:
            if n.swa_lock_ref == 0:
                moved += len(n.value)
            n.swa_lock_ref += 1
            covered += len(n.value)
            top = n
            n = n.parent
        self._swa_evictable -= moved
        self._swa_protected += moved
        marker: int | None = None
        if n.parent is not None:  # stopped below the root: mark the topmost locked node
            if top.swa_boundary is None:
                top.swa_boundary = self._next_boundary
                self._next_boundary += 1
            marker = top.swa_boundary
        lock_id = self._next_boundary
        self._next_boundary += 1
        self._swa_locks[lock_id] = (node, marker)
        return lock_id

    def dec_lock_ref(  # type: ignore[override]
        self, node: TreeNode | None, swa_boundary_id: int | None = None, **kwargs: Any
    ) -> None:
        """Undo one ``inc_lock_ref(node)`` that returned ``swa_boundary_id``. O(depth).

        Raises ``ValueError`` if ``node`` is not locked or the boundary id is not on
        its SWA-locked path; nothing changes then.
        """
        if node is None:
            return
        self._own(node)
        if node.parent is None:
            return
        self._check_release(node)
        try:
            entry = self._swa_locks.get(swa_boundary_id)  # type: ignore[arg-type]
        except TypeError:  # an unhashable id
            entry = None
        if entry is None or entry[0] is not node:
            raise ValueError(
                f"dec_lock_ref: swa_boundary_id {swa_boundary_id!r} was not returned by "
                f"inc_lock_ref for {node!r} (or was already released)"
            )
        marker = entry[1]
        seg: list[Any] = []
        n: Any = node
        while True:
            if n.parent is None:
                if marker is not None:
                    raise ValueError(
                        f"dec_lock_ref: swa_boundary_id {swa_boundary_id!r} is not on the "
                        f"locked path of {node!r}"
                    )
                break
            if n.swa_tombstone or n.swa_lock_ref <= 0:
                raise ValueError(
                    f"dec_lock_ref: swa_boundary_id {swa_boundary_id!r} does not match the "
                    f"SWA lock of {node!r}"
                )
            seg.append(n)
            if marker is not None and n.swa_boundary == marker:
                break
            n = n.parent
        moved = 0
        for n in seg:
            n.swa_lock_ref -= 1
            if n.swa_lock_ref == 0:
                moved += len(n.value)
                self._swa_heap.push(n)
        del self._swa_locks[swa_boundary_id]  # type: ignore[arg-type]
        self._swa_evictable += moved
        self._swa_protected -= moved
        super().dec_lock_ref(node)

    # ------------------------------------------------------ extension points

    def _split_node(self, child: TreeNode, m: int) -> TreeNode:
        """Split as RadixCache; the lower half (``child``) is marked just used, as
        SGLang's SWARadixCache does (its heap entries refresh lazily). O(log h)."""
        new: Any = super()._split_node(child, m)
        child.last_access = self._tick
        c: Any = child
        new.swa_tombstone = c.swa_tombstone
        new.swa_lock_ref = c.swa_lock_ref
        new.swa_boundary, c.swa_boundary = c.swa_boundary, None  # boundary = top half
        if not new.swa_tombstone and new.swa_lock_ref == 0:
            self._swa_heap.push(new)
        return new

    def _add_leaf(
        self, parent: TreeNode, kb: bytes, value: npt.NDArray[np.int64], tick: int
    ) -> TreeNode:
        node = super()._add_leaf(parent, kb, value, tick)
        self._swa_evictable += len(value)
        self._swa_heap.push(node)
        return node

    def _delete_leaf(self, node: TreeNode) -> None:
        n: Any = node
        if not n.swa_tombstone:
            assert n.swa_lock_ref == 0
            self._swa_evictable -= len(node.value)
        super()._delete_leaf(node)

    def _undo_entry(self, entry: tuple[Any, ...]) -> None:
        """Revert one eviction step: a deleted leaf (RadixCache's) or a tombstoning."""
        node: Any = entry[1]
        if entry[0] == "tomb":
            node.swa_tombstone = False
            self._swa_evictable += len(node.value)
            self._swa_heap.push(node)
            return
        super()._undo_entry(entry)
        if not node.swa_tombstone:
            self._swa_evictable += len(node.value)
            self._swa_heap.push(node)

    # -------------------------------------------------------------- internals

    @staticmethod
    def _is_tombstone(node: Any) -> bool:
        """A tombstoned leaf is useless: no match may end in it (0 live tokens behind
        its end) and an insert over it adopts the caller's indices anyway, so, as in
        SGLang's SWARadixCache, it goes with its last child (:meth:`_evict_leaf`)."""
        return bool(node.swa_tombstone)

    def _dump_refs(self, index: dict[int, int]) -> dict[str, Any]:
        refs = super()._dump_refs(index)
        refs["_swa_heap"] = self._swa_heap.dump(index)
        refs["_swa_locks"] = {k: (index[id(n)], marker)
                              for k, (n, marker) in self._swa_locks.items()}
        return refs

    def _load_refs(self, refs: dict[str, Any], nodes: list[TreeNode]) -> None:
        super()._load_refs(refs, nodes)
        self._swa_heap = LazyHeap(_swa_unlocked)
        self._swa_heap.load(refs["_swa_heap"], nodes)
        self._swa_locks = {k: (nodes[row], marker)
                           for k, (row, marker) in refs["_swa_locks"].items()}

    def _check_order(self, nodes: list[tuple[TreeNode, int]]) -> None:
        """Assert RadixCache's heap invariant and the SWA ones. O(tree); tests only."""
        super()._check_order(nodes)
        ev = prot = 0
        heap_time = self._swa_heap.times()
        for n, _ in nodes:
            s: Any = n
            assert s.lock_ref >= s.swa_lock_ref >= 0
            if s.swa_tombstone:
                assert s.swa_lock_ref == 0, "a tombstone holds a SWA lock"
                assert s.children, "a tombstone leaf was left in the tree"
                continue
            if s.swa_lock_ref:
                prot += len(s.value)
            else:
                ev += len(s.value)
                assert s.id in heap_time and heap_time[s.id] <= s.last_access
        assert ev == self._swa_evictable, (ev, self._swa_evictable)
        assert prot == self._swa_protected, (prot, self._swa_protected)
