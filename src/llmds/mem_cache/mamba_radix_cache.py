"""Radix prefix cache with Mamba / SSM state slots, and a NumPy-backed state pool.

A state-space (Mamba) layer does not keep per-token KV: it keeps one fixed-size
recurrent state per sequence position it was checkpointed at. A hybrid model can
resume a prefix only at a position where that state was saved, so
:class:`MambaRadixCache` stores, next to the per-token KV indices of
:class:`~llmds.mem_cache.radix_cache.RadixCache`, an optional state slot per node (the
state after the node's last token). A match is cut back to the last node with a
state; states are evicted separately from KV (two phases, two LRU orders).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._torch import is_tensor
from llmds._validate import check_int
from llmds.mem_cache._keys import EMPTY_I64, evict_counts
from llmds.mem_cache._lru import Sentinel, f_link, f_unlink, m_link, m_unlink, walk
from llmds.mem_cache._tree import TreeNode
from llmds.mem_cache.base_prefix_cache import EvictResult, InsertResult, MatchResult
from llmds.mem_cache.mamba_pool import MambaPool
from llmds.mem_cache.radix_cache import RadixCache

__all__ = ["MambaPool", "MambaRadixCache", "MambaTreeNode"]


class MambaTreeNode(TreeNode):
    """A :class:`TreeNode` with an optional state slot and two intrusive LRU links.

    ``mamba_value``: the state slot after the node's last token, or ``None``;
    ``mamba_lock_ref``: locks on that state (only the locked node's own state);
    ``f_prev`` / ``f_next``: links in the cache's full-KV LRU list (unlocked nodes);
    ``m_prev`` / ``m_next``: links in its state LRU list (unlocked states).
    A link is ``None`` while the node is not in that list.

    Thread safety: not thread-safe; guard it (with its cache) when shared.
    """

    __slots__ = ("f_next", "f_prev", "m_next", "m_prev", "mamba_lock_ref", "mamba_value")

    STATE = (*TreeNode.STATE, "mamba_value", "mamba_lock_ref")  # links: rebuilt from lists

    def __init__(self, *args: Any) -> None:
        """TreeNode's arguments; no state, in neither list. O(1)."""
        # TreeNode.__init__ called directly, not through super(): ~50 ns less per node
        TreeNode.__init__(self, *args)
        self.mamba_value: int | None = None
        self.mamba_lock_ref = 0
        self.f_prev: Any = None
        self.f_next: Any = None
        self.m_prev: Any = None
        self.m_next: Any = None


class MambaRadixCache(RadixCache):
    """Radix prefix cache whose nodes may carry a Mamba state slot.

    ``mamba_pool``: anything with ``alloc_track_slot()``, ``free_track_slot(slot)``
    and ``copy_states(src, dst)`` (e.g. :class:`MambaPool`); evicted states go back
    through ``free_track_slot``. ``mamba_cache_chunk_size`` (default 1): states
    can only be checkpointed at multiples of it (the SSM kernel's chunk), which
    aligns ``mamba_branching_seqlen``.

    * ``match_prefix``: the longest cached prefix that ends at a node with a state
      (``prefix_len``, ``indices``, ``last_node``). ``mamba_branching_seqlen``, as
      in SGLang's MambaRadixCache (the longest aligned position that would have
      been a hit had a state been stored there): when the cached KV matches
      further than that last state, the KV-matched length rounded down to
      ``mamba_cache_chunk_size`` -- where the request branches off the tree, i.e.
      the tokens before the first node the request adds (which has no state yet);
      the caller checkpoints a state there so the branch point becomes reusable.
      Otherwise (the KV match ends at a state, nothing matched, or it rounds to
      0) ``None``. Where the issue's wording and SGLang differ: "the tokens before
      the first node without state", read literally, is where the first stateless
      node of the matched path starts (what this class returned before). That is
      always ``<= prefix_len``, so it gives the caller no new checkpoint position;
      SGLang's reading -- where the request's own first (stateless) node will
      start -- is the one kept.
    * ``insert(key, value=None, *, mamba_value=None)``: inserts the KV as
      RadixCache does; with ``mamba_value`` (a slot id, or a one-element integer
      tensor as SGLang passes it) the state is attached to the
      node where the key ends. ``mamba_exist`` is True when that node already had a
      state: the cache keeps its own and the caller frees ``mamba_value``.
    * ``evict(num_tokens, swa_num_tokens)``: phase 1 evicts LRU unlocked leaves
      (``num_tokens`` KV tokens; their states go too); phase 2 frees states until
      ``swa_num_tokens`` *states* are gone (phase 1's count too), least recently
      used first: an unlocked leaf leaves the tree, any other node just loses its
      state.
    * ``inc_lock_ref(node)`` locks the KV path and the node's own state (if any); it
      returns a token (True if a state was locked) for ``dec_lock_ref(node, token)``.
      ``dec_lock_ref`` counts as a use: the path becomes most recently used (the
      serving loop inserts -- touches -- the path just before it unlocks anyway).

    Two intrusive doubly linked LRU lists (one circular sentinel each, links in the
    node's ``__slots__``), as SGLang's MambaRadixCache keeps, one per eviction phase:
      * the *full* list holds exactly the unlocked nodes, sorted by ``last_access``
        with every node after all its descendants (a match/insert moves its path
        to the MRU end deepest-first; a lock unlinks, an unlock relinks). Hence its
        LRU end is always an unlocked leaf: phase 1 pops it in O(1), no heap and no
        skipping of internal or locked nodes;
      * the *state* list holds exactly the nodes with an unlocked state, sorted by
        ``last_access`` and, within one touch, root-side first (a root-side state
        serves only shorter matches, so it goes first, as in SGLang).

    Invariants (``_check``): RadixCache's tree invariants; ``lock_ref >=
    mamba_lock_ref`` per node; a node with ``mamba_lock_ref > 0`` has a state; the
    two lists hold exactly the nodes above, in the orders above, and their links
    are consistent; ``mamba_evictable_size() + mamba_protected_size() ==
    mamba_total_size()`` (states).

    Complexity: match/insert as RadixCache (O(d + n)) plus O(1) list moves per path
    node; locks O(d); ``evict`` O(1) per evicted node or state; sizes O(1).
    Memory: RadixCache's, plus 6 slots per node.

    Copies: as RadixCache (both lists are copied in order; ``mamba_pool`` comes
    along). Names: ``swa_evictable_size`` / ``swa_protected_size`` are the state
    counts under the names of the shared prefix-cache interface.

    Thread safety: not thread-safe; guard it with a lock when shared.
    """

    _node_cls = MambaTreeNode
    _NODE_ATTRS = (*RadixCache._NODE_ATTRS, "_flru", "_mlru", "_slot_owner")

    def __init__(
        self,
        page_size: int = 1,
        token_to_kv_pool_allocator: Any = None,
        mamba_pool: Any = None,
        on_node_evict: Any = None,
        mamba_cache_chunk_size: int = 1,
    ) -> None:
        if mamba_pool is not None and not callable(getattr(mamba_pool, "free_track_slot", None)):
            raise TypeError("mamba_pool must have free_track_slot(slot) (see MambaPool)")
        c = check_int(mamba_cache_chunk_size, "mamba_cache_chunk_size", minimum=1,
                      maximum=1 << 40)
        self.mamba_pool = mamba_pool
        self.mamba_cache_chunk_size = int(c)
        super().__init__(
            page_size=page_size,
            token_to_kv_pool_allocator=token_to_kv_pool_allocator,
            on_node_evict=on_node_evict,
        )

    # ------------------------------------------------------------------ sizes

    def mamba_evictable_size(self) -> int:
        """Unlocked states. O(1)."""
        return self._m_evictable

    def mamba_protected_size(self) -> int:
        """Locked states. O(1)."""
        return self._m_protected

    def mamba_total_size(self) -> int:
        """Cached states. O(1)."""
        return self._m_evictable + self._m_protected

    def swa_evictable_size(self) -> int:
        """Unlocked states: the second eviction phase counts states, as in the reference
        (``evict(num_tokens, swa_num_tokens)`` takes states there). O(1)."""
        return self._m_evictable

    def swa_protected_size(self) -> int:
        """Locked states (see :meth:`swa_evictable_size`). O(1)."""
        return self._m_protected

    def reset(self) -> None:
        """Drop every node (slots are not freed). O(1)."""
        self._m_evictable = 0
        self._m_protected = 0
        self._flru = Sentinel()
        self._mlru = Sentinel()
        self._slot_owner: dict[int, Any] = {}  # state slot -> the node holding it
        super().reset()

    # ------------------------------------------------------ walk hooks

    def _descend(
        self, root: TreeNode, path: list[TreeNode], cut: TreeNode | None, m: int
    ) -> TreeNode:
        """As RadixCache's, and move the path to the MRU end of both lists: the full
        list deepest first, the state list root-side first. O(d)."""
        self._tick = tick = self._tick + 1
        root.last_access = tick
        if cut is not None:
            path.append(self._split_node(cut, m))
        anchor: Any = self._flru  # path nodes go in front of it, deepest first
        touched: list[Any] = []  # unlocked states on the path, root first
        node: Any = root
        for node in path:
            node.last_access = tick
            if node.lock_ref == 0:
                if node.f_next is not anchor:  # move in front of the anchor, O(1)
                    f_unlink(node)
                    f_link(node, anchor.f_prev, anchor)
                anchor = node
            if node.mamba_value is not None and node.mamba_lock_ref == 0:
                touched.append(node)
        if cut is not None:
            self._touch_split_child(cut, node, touched)
        if touched:
            self._m_touch(touched)
        return node

    def _match_result(self, root: TreeNode, path: list[TreeNode], pos: int) -> MatchResult:
        """The longest part of ``path`` that ends at a state, with SGLang's
        ``mamba_branching_seqlen`` (see the class doc). O(d + n)."""
        nbest = len(path)
        while nbest and path[nbest - 1].mamba_value is None:  # type: ignore[attr-defined]
            nbest -= 1
        branching: int | None = None
        if len(path) > nbest:
            ch = self.mamba_cache_chunk_size
            aligned = (pos >> 2) // ch * ch
            branching = aligned if aligned > 0 else None
        if nbest == 0:
            return MatchResult(indices=EMPTY_I64.copy(), last_node=root,
                               mamba_branching_seqlen=branching)
        values = [n.value for n in path[:nbest]]
        indices = np.concatenate(values) if nbest > 1 else values[0].copy()
        return MatchResult(indices=indices, last_node=path[nbest - 1],
                           prefix_len=len(indices), mamba_branching_seqlen=branching)

    def _insert_state(self, key: Any, kwargs: dict[str, Any]) -> Any:
        """``mamba_value``: None, or an int slot with a non-empty, page-aligned key. O(1)."""
        slot = kwargs.get("mamba_value")
        if slot is None:
            return None
        if is_tensor(slot) and slot.numel() == 1 and not slot.is_floating_point():
            slot = int(slot.reshape(-1)[0])  # SGLang passes the slot as a 1-element tensor
        if type(slot) is not int:
            slot = check_int(slot, "mamba_value")
        n = len(key)
        if n == 0 or n % self.page_size:
            raise ValueError(
                f"mamba_value needs a non-empty key of whole pages, got {n} tokens "
                f"(page_size {self.page_size})"
            )
        return slot

    def _check_state(self, slot: Any) -> int:
        """``mamba_value`` checked: a slot id >= 0, allocated in ``mamba_pool`` (when it
        can tell) and held by no node yet. O(1)."""
        if slot < 0:
            check_int(slot, "mamba_value", minimum=0)
        owned = getattr(self.mamba_pool, "is_allocated", None)
        if callable(owned) and not owned(slot):
            raise ValueError(f"mamba_value {slot} is not allocated in mamba_pool")
        holder = self._slot_owner.get(slot)
        if holder is not None:
            raise ValueError(
                f"mamba_value {slot} is already held by {holder!r}; each node needs its own "
                "state slot (the cache frees it on eviction)"
            )
        return slot

    def _finish_insert(
        self, node: TreeNode, path: list[TreeNode], pos: int, kb: bytes, nb: int,
        vals: npt.NDArray[np.int64], state: Any,
    ) -> InsertResult:
        """Add the KV leaf as RadixCache does, then the state ``state`` (a slot or
        None) at the node where the key ends. O(n)."""
        res = super()._finish_insert(node, path, pos, kb, nb, vals, None)
        if state is None:
            return res
        end: Any = res.last_node
        if end.mamba_value is not None:  # already moved to the MRU end by the walk
            return InsertResult(prefix_len=res.prefix_len, last_node=end, mamba_exist=True)
        end.mamba_value = state
        self._slot_owner[state] = end
        self._m_evictable += 1
        # the MRU end, but before a deeper state of this touch (a split's lower half)
        ms = self._mlru
        tick = self._tick
        while ms.m_prev is not self._mlru and ms.m_prev.last_access == tick and (
                ms.m_prev.parent is end):
            ms = ms.m_prev
        m_link(end, ms.m_prev, ms)
        return res

    # ---------------------------------------------------------------- public

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Phase 1: ``num_tokens`` KV tokens of LRU leaves; phase 2: states, LRU first,
        until ``swa_num_tokens`` states are gone. O(1) per evicted node or state.

        Returns ``full_evicted`` tokens and ``mamba_evicted`` states.
        """
        num_tokens, swa_num_tokens = evict_counts(num_tokens, swa_num_tokens)
        freed: list[npt.NDArray[np.int64]] = []
        full = states = 0
        flru = self._flru
        log: list[tuple[Any, ...]] = []
        self._log = log
        while full < num_tokens:
            n: Any = flru.f_next  # always an unlocked leaf (see the class doc)
            if n is flru:
                break
            if n.mamba_value is not None:
                states += 1
            full += self._evict_leaf(n, freed)
        mlru = self._mlru
        while states < swa_num_tokens:
            n = mlru.m_next
            if n is mlru:
                break
            if not n.children and n.lock_ref == 0:
                full += self._evict_leaf(n, freed)  # frees the state too
            else:
                self._drop_state(n)
            states += 1
        self._log = None
        if log:
            self._commit_states(log, freed)
        return EvictResult(full_evicted=full, mamba_evicted=states)

    @staticmethod
    def _is_tombstone(node: Any) -> bool:
        """A stateless node can end no match, so once childless it goes with its last
        child (SGLang's tombstone-leaf cleanup, :meth:`_evict_leaf`)."""
        return node.mamba_value is None

    def _commit_states(self, log: list[tuple[Any, ...]], freed: list[Any]) -> None:
        """Hand the evicted KV indices and state slots to their pools, all or nothing:
        the slots are checked first, then the KV goes in one ``free`` call (undone
        if refused), then the slots. O(k)."""
        slots = [e[2] for e in log if e[0] == "state"]
        pool = self.mamba_pool
        owned = getattr(pool, "is_allocated", None)
        if callable(owned):
            bad = next((slot for slot in slots if not owned(slot)), None)
            if bad is not None:
                self._undo(log)
                raise ValueError(
                    f"state slot {bad} held by the cache is not allocated in mamba_pool "
                    "(freed behind the cache's back?); nothing was evicted"
                )
        if freed:
            try:
                self._free_indices(freed[0] if len(freed) == 1 else np.concatenate(freed))
            except BaseException:
                self._undo(log)
                raise
        if pool is not None:
            for slot in slots:
                pool.free_track_slot(slot)
        self._notify(log)

    def inc_lock_ref(self, node: TreeNode | None) -> bool | None:  # type: ignore[override]
        """Lock ``node``'s KV path and its own state. Returns the token for dec. O(d)."""
        if node is None:
            return None
        self._own(node)
        n: Any = node
        if n.parent is None:
            return False
        n.self_lock_ref += 1
        moved = 0
        while n.parent is not None:
            if n.lock_ref == 0:  # leaves the full list
                moved += len(n.value)
                f_unlink(n)
            n.lock_ref += 1
            n = n.parent
        self._evictable -= moved
        self._protected += moved
        n = node
        if n.mamba_value is None:
            return False
        if n.mamba_lock_ref == 0:
            m_unlink(n)
            self._m_evictable -= 1
            self._m_protected += 1
        n.mamba_lock_ref += 1
        return True

    def dec_lock_ref(self, node: TreeNode | None, token: bool | None = None, **kwargs: Any) -> None:
        """Undo ``inc_lock_ref(node)`` that returned ``token``; the path becomes MRU. O(d).

        Raises ``ValueError`` (nothing changes) if ``node`` is not locked or
        ``token`` says a state was locked but the node holds no state lock.
        """
        if node is None:
            return
        self._own(node)
        n: Any = node
        if n.parent is None:
            return
        self._check_release(n)
        if token and n.mamba_lock_ref <= 0:
            raise ValueError(f"dec_lock_ref: the state of {node!r} is not locked")
        if not token and n.self_lock_ref <= n.mamba_lock_ref:
            raise ValueError(
                f"dec_lock_ref: {node!r} holds a state lock; pass the token inc_lock_ref "
                f"returned (its full lock count may not drop below its state lock count)"
            )
        n.self_lock_ref -= 1
        if token:
            n.mamba_lock_ref -= 1
            if n.mamba_lock_ref == 0:
                self._m_protected -= 1
                self._m_evictable += 1
                n.m_prev = n.m_next = n  # re-linked below, as part of the path
        self._tick = tick = self._tick + 1
        flru = self._flru
        anchor: Any = self._mlru  # states go in front of it, root-side first
        moved = 0
        while n.parent is not None:
            n.lock_ref -= 1
            n.last_access = tick
            if n.lock_ref == 0:  # back into the full list at the MRU end, child first
                moved += len(n.value)
                f_link(n, flru.f_prev, flru)
            if n.mamba_value is not None and n.mamba_lock_ref == 0:
                m_unlink(n)
                m_link(n, anchor.m_prev, anchor)
                anchor = n
            n = n.parent
        n.last_access = tick
        self._evictable += moved
        self._protected -= moved

    # ------------------------------------------------------ extension points

    def _split_node(self, child: TreeNode, m: int) -> TreeNode:
        """Split as RadixCache; the upper half (no state) goes right after ``child``
        in the full list (same time, and it is ``child``'s parent). The walk that
        split it then marks ``child`` just used (:meth:`_touch_split_child`). O(1)."""
        new: Any = super()._split_node(child, m)
        if new.lock_ref == 0:
            c: Any = child
            f_link(new, c, c.f_next)
        return new

    def _touch_split_child(self, child: Any, new: Any, touched: list[Any]) -> None:
        """Mark the lower half of a split just used, as SGLang's MambaRadixCache does:
        its time becomes the walk's, it moves in front of ``new`` (its parent, just
        moved to the MRU end) in the full list, and its unlocked state joins
        ``touched`` (deepest, so last). O(1)."""
        child.last_access = self._tick
        if child.lock_ref == 0 and child.f_next is not new:
            f_unlink(child)
            f_link(child, new.f_prev, new)
        if child.mamba_value is not None and child.mamba_lock_ref == 0:
            touched.append(child)

    def _add_leaf(
        self, parent: TreeNode, kb: bytes, value: npt.NDArray[np.int64], tick: int
    ) -> TreeNode:
        """Attach a new unlocked leaf; in the full list just before its parent (or at
        the MRU end when the parent is locked or the root). O(1)."""
        node: Any = super()._add_leaf(parent, kb, value, tick)
        par: Any = parent
        anchor = par if par.parent is not None and par.lock_ref == 0 else self._flru
        f_link(node, anchor.f_prev, anchor)
        return node

    def _delete_leaf(self, node: TreeNode) -> None:
        """Remove an unlocked leaf (and its state) from the tree and the lists. O(1)."""
        n: Any = node
        self._log.append(("flink", n, n.f_prev, n.f_next))  # type: ignore[union-attr]
        f_unlink(n)
        if n.mamba_value is not None:
            self._drop_state(n)
        super()._delete_leaf(node)

    def _undo_entry(self, entry: tuple[Any, ...]) -> None:
        """Revert one eviction step: a deleted leaf, a dropped state or a full-list
        unlink (the neighbours recorded then are neighbours again). O(1)."""
        kind, n = entry[0], entry[1]
        if kind == "flink":
            f_link(n, entry[2], entry[3])
        elif kind == "state":
            slot = entry[2]
            n.mamba_value = slot
            self._slot_owner[slot] = n
            self._m_evictable += 1
            m_link(n, entry[3], entry[4])
        else:
            super()._undo_entry(entry)

    def _push(self, node: TreeNode) -> None:
        """No heap here: the full LRU list replaces RadixCache's lazy heap."""

    # -------------------------------------------------------------- internals

    def _m_touch(self, nodes: list[Any]) -> None:
        """Make ``nodes`` (root-side first) the MRU end of the state list, in that
        order. O(len(nodes)); a node already in place (the usual case when the same
        path is used again) is not moved."""
        anchor: Any = self._mlru
        for i in range(len(nodes) - 1, -1, -1):
            n = nodes[i]
            if n.m_next is not anchor:
                m_unlink(n)
                m_link(n, anchor.m_prev, anchor)
            anchor = n

    def _drop_state(self, n: Any) -> None:
        """Take an unlocked node's state slot off it and log it; the slot goes back to
        the pool when the eviction commits (:meth:`_commit_states`). O(1)."""
        assert n.mamba_lock_ref == 0
        slot = n.mamba_value
        self._log.append(("state", n, slot, n.m_prev, n.m_next))  # type: ignore[union-attr]
        m_unlink(n)
        n.mamba_value = None
        del self._slot_owner[slot]
        self._m_evictable -= 1

    # ------------------------------------------------------------ copies

    def _dump_refs(self, index: dict[int, int]) -> dict[str, Any]:
        """Both LRU lists as row numbers, LRU end first (the links are not copied). O(n)."""
        return {"full": [index[id(n)] for n in walk(self._flru, "f_next")],
                "state": [index[id(n)] for n in walk(self._mlru, "m_next")]}

    def _load_refs(self, refs: dict[str, Any], nodes: list[TreeNode]) -> None:
        self._flru = flru = Sentinel()
        self._mlru = mlru = Sentinel()
        for row in refs["full"]:
            f_link(nodes[row], flru.f_prev, flru)
        for row in refs["state"]:
            m_link(nodes[row], mlru.m_prev, mlru)
        self._slot_owner = {n.mamba_value: n for n in nodes  # type: ignore[attr-defined]
                            if n.mamba_value is not None}  # type: ignore[attr-defined]

    # ------------------------------------------------------------ invariants

    def _check_order(self, nodes: list[tuple[TreeNode, int]]) -> None:
        """Assert the state counts and both LRU lists (instead of a heap). O(tree)."""
        m_ev = m_prot = 0
        depth: dict[int, int] = {}
        unlocked: set[int] = set()
        free_states: set[int] = set()
        for root in self._roots.values():
            r: Any = root
            assert r.mamba_value is None and r.f_prev is None and r.m_prev is None
        for node, d in nodes:
            c: Any = node
            depth[c.id] = d
            assert c.lock_ref >= c.mamba_lock_ref >= 0 and c.self_lock_ref >= c.mamba_lock_ref
            if c.lock_ref:
                assert c.f_prev is None and c.f_next is None
            else:
                unlocked.add(c.id)
            if c.mamba_value is None:
                assert c.mamba_lock_ref == 0 and c.m_prev is None and c.m_next is None
                continue
            assert self._slot_owner.get(c.mamba_value) is node, "slot owner map"
            if c.mamba_lock_ref:
                m_prot += 1
                assert c.m_prev is None and c.m_next is None
            else:
                m_ev += 1
                free_states.add(c.id)
        assert m_ev == self._m_evictable and m_prot == self._m_protected
        assert len(self._slot_owner) == m_ev + m_prot, "a slot held by no node"
        owned = getattr(self.mamba_pool, "is_allocated", None)
        if callable(owned):
            assert all(owned(slot) for slot in self._slot_owner), "a held slot is free"
        full = walk(self._flru, "f_next", "f_prev", self._num_nodes)
        assert {n.id for n in full} == unlocked and len(full) == len(unlocked)
        rank = {n.id: i for i, n in enumerate(full)}
        for i, n in enumerate(full):
            if i:  # sorted by time; equal times: deeper first
                a = full[i - 1]
                assert (a.last_access, -depth[a.id]) <= (n.last_access, -depth[n.id])
            if n.parent.id in rank:  # a locked parent is not listed
                assert rank[n.parent.id] > i, "a node before one of its descendants"
        if full:
            assert not full[0].children, "the LRU end of the full list is not a leaf"
        st = walk(self._mlru, "m_next", "m_prev", self._num_nodes)
        assert {n.id for n in st} == free_states and len(st) == len(free_states)
        for i in range(1, len(st)):  # sorted by time; equal times: root-side first
            a, n = st[i - 1], st[i]
            assert (a.last_access, depth[a.id]) <= (n.last_access, depth[n.id])
