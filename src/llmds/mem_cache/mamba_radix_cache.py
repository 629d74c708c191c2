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

from llmds.errors import CapacityError
from llmds.mem_cache.base_prefix_cache import EvictResult, InsertResult, MatchResult, RadixKey
from llmds.mem_cache.radix_cache import _EMPTY_I64, RadixCache, TreeNode

__all__ = ["MambaPool", "MambaRadixCache", "MambaTreeNode"]


class MambaPool:
    """Fixed pool of ``size`` state slots, each a NumPy array of ``state_shape``.

    ``alloc_track_slot()`` takes a free slot (LIFO free stack, O(1)),
    ``free_track_slot(slot)`` returns it (O(1); double free / unknown slot raise
    ``ValueError``, nothing changes), ``copy_states(src, dst)`` copies slot contents
    (O(state size)). ``states`` is the ``(size, *state_shape)`` array.

    >>> pool = MambaPool(2, state_shape=(3,))
    >>> a = pool.alloc_track_slot(); pool.states[a] = 1.0
    >>> b = pool.alloc_track_slot(); pool.copy_states(a, b); pool.states[b].tolist()
    [1.0, 1.0, 1.0]
    >>> pool.free_track_slot(a); pool.num_free
    1
    """

    __slots__ = ("_free", "_in_use", "states")

    def __init__(
        self, size: int, state_shape: tuple[int, ...] = (1,), dtype: Any = np.float32
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"size must be an int >= 0, got {size!r}")
        self.states = np.zeros((int(size), *state_shape), dtype=dtype)
        self._free = list(range(int(size) - 1, -1, -1))
        self._in_use = np.zeros(int(size), dtype=np.bool_)

    @property
    def size(self) -> int:
        """Number of slots. O(1)."""
        return int(self._in_use.shape[0])

    @property
    def num_free(self) -> int:
        """Free slots. O(1)."""
        return len(self._free)

    def alloc_track_slot(self) -> int:
        """Take a free slot; ``CapacityError`` when none is left. O(1)."""
        if not self._free:
            raise CapacityError(f"no free Mamba state slot (size {self.size})")
        slot = self._free.pop()
        self._in_use[slot] = True
        return slot

    def _valid(self, slot: Any, name: str) -> int:
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)):
            raise TypeError(f"{name} must be an int slot id, got {slot!r}")
        if not 0 <= slot < self.size:
            raise ValueError(f"{name} must be in [0, {self.size}), got {slot}")
        if not self._in_use[slot]:
            raise ValueError(f"{name} {slot} is not allocated")
        return int(slot)

    def free_track_slot(self, slot: int) -> None:
        """Return ``slot`` to the pool. O(1)."""
        s = self._valid(slot, "slot")
        self._in_use[s] = False
        self._free.append(s)

    def copy_states(self, src: int, dst: int) -> None:
        """Copy the state in slot ``src`` into slot ``dst``. O(state size)."""
        s, d = self._valid(src, "src"), self._valid(dst, "dst")
        self.states[d] = self.states[s]


class MambaTreeNode(TreeNode):
    """A :class:`TreeNode` with an optional state slot and an intrusive LRU link.

    ``mamba_value``: the state slot after the node's last token, or ``None``;
    ``mamba_lock_ref``: locks on that state (only the locked node's own state);
    ``m_prev`` / ``m_next``: links in the cache's state LRU list (unlocked states).
    """

    __slots__ = ("m_next", "m_prev", "mamba_lock_ref", "mamba_value")

    def __init__(
        self,
        node_id: int,
        parent: TreeNode | None,
        kb: bytes,
        value: npt.NDArray[np.int64],
        last_access: int,
    ) -> None:
        super().__init__(node_id, parent, kb, value, last_access)
        self.mamba_value: int | None = None
        self.mamba_lock_ref = 0
        self.m_prev: Any = None
        self.m_next: Any = None


class _Sentinel:
    __slots__ = ("m_next", "m_prev")

    def __init__(self) -> None:
        self.m_prev: Any = self
        self.m_next: Any = self


class MambaRadixCache(RadixCache):
    """Radix prefix cache whose nodes may carry a Mamba state slot.

    ``mamba_pool``: anything with ``alloc_track_slot()``, ``free_track_slot(slot)``
    and ``copy_states(src, dst)`` (e.g. :class:`MambaPool`); evicted states go back
    through ``free_track_slot``.

    * ``match_prefix``: the longest cached prefix that ends at a node with a state
      (``prefix_len``, ``indices``, ``last_node``); ``mamba_branching_seqlen`` = the
      tokens before the first node without a state on the matched KV path (``None``
      when every node on it has a state or nothing matched).
    * ``insert(key, value=None, *, mamba_value=None)``: inserts the KV as
      RadixCache does; with ``mamba_value`` (a slot id) the state is attached to the
      node where the key ends. ``mamba_exist`` is True when that node already had a
      state: the cache keeps its own and the caller frees ``mamba_value``.
    * ``evict(num_tokens, swa_num_tokens)``: phase 1 evicts LRU unlocked leaves
      (``num_tokens`` KV tokens; their states go too); phase 2 frees
      ``swa_num_tokens`` *states*, least recently used first: an unlocked leaf
      leaves the tree, any other node just loses its state.
    * ``inc_lock_ref(node)`` locks the KV path and the node's own state (if any); it
      returns a token (True if a state was locked) for ``dec_lock_ref(node, token)``.

    Invariants (``_check``): RadixCache's; ``lock_ref >= mamba_lock_ref`` per node;
    a node with ``mamba_lock_ref > 0`` has a state; the state LRU list holds exactly
    the nodes with an unlocked state; ``mamba_evictable_size() +
    mamba_protected_size() == mamba_total_size()`` (states).

    Complexity: as RadixCache, plus O(d) list moves per match (O(1) each, intrusive
    doubly linked list); state eviction O(1) per state; sizes O(1).
    """

    _node_cls = MambaTreeNode

    def __init__(
        self,
        page_size: int = 1,
        token_to_kv_pool_allocator: Any = None,
        mamba_pool: Any = None,
        on_node_evict: Any = None,
    ) -> None:
        if mamba_pool is not None and not callable(getattr(mamba_pool, "free_track_slot", None)):
            raise TypeError("mamba_pool must have free_track_slot(slot) (see MambaPool)")
        self.mamba_pool = mamba_pool
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
        self._lru = _Sentinel()
        super().reset()

    # ------------------------------------------------------------ LRU list

    def _lru_unlink(self, n: Any) -> None:
        n.m_prev.m_next = n.m_next
        n.m_next.m_prev = n.m_prev
        n.m_prev = n.m_next = None

    def _lru_push_mru(self, n: Any) -> None:
        tail = self._lru
        n.m_prev = tail.m_prev
        n.m_next = tail
        tail.m_prev.m_next = n
        tail.m_prev = n

    # ---------------------------------------------------------------- public

    def match_prefix(self, key: RadixKey | Any) -> MatchResult:
        """Longest cached prefix ending at a state; O(d + n)."""
        r = super().match_prefix(key)
        node: Any = r.last_node
        if r.prefix_len == 0:
            return r
        path: list[Any] = []
        while node.parent is not None:
            path.append(node)
            node = node.parent
        path.reverse()
        branching: int | None = None
        off = 0
        best = 0
        best_node: Any = node  # the root
        for n in path:
            if n.mamba_value is None:
                if branching is None:
                    branching = off
            else:
                if n.mamba_lock_ref == 0:  # touch: move to MRU, O(1)
                    self._lru_unlink(n)
                    self._lru_push_mru(n)
                best = off + n.num_tokens
                best_node = n
            off += n.num_tokens
        if best == 0:
            return MatchResult(
                indices=_EMPTY_I64.copy(), last_node=best_node, mamba_branching_seqlen=branching
            )
        return MatchResult(
            indices=r.indices[:best].copy() if best < r.prefix_len else r.indices,
            last_node=best_node,
            prefix_len=best,
            mamba_branching_seqlen=branching,
        )

    def insert(
        self,
        key: RadixKey | Any,
        value: npt.ArrayLike | None = None,
        *,
        mamba_value: int | None = None,
        **kwargs: Any,
    ) -> InsertResult:
        """Insert KV (as RadixCache) and optionally a state at the key's end. O(d + n).

        Raises ``ValueError`` for a ``mamba_value`` with an empty or not
        page-aligned key, ``TypeError`` for a non-int slot; nothing changes then.
        """
        if mamba_value is not None:
            if isinstance(mamba_value, bool) or not isinstance(mamba_value, (int, np.integer)):
                raise TypeError(f"mamba_value must be an int slot id, got {mamba_value!r}")
            n = len(key)
            if n == 0 or n % self.page_size:
                raise ValueError(
                    f"mamba_value needs a non-empty key of whole pages, got {n} tokens "
                    f"(page_size {self.page_size})"
                )
        r = super().insert(key, value)
        if mamba_value is None:
            return r
        node: Any = r.last_node
        if node.mamba_value is not None:
            if node.mamba_lock_ref == 0:
                self._lru_unlink(node)
                self._lru_push_mru(node)
            return InsertResult(prefix_len=r.prefix_len, last_node=node, mamba_exist=True)
        node.mamba_value = int(mamba_value)
        self._m_evictable += 1
        self._lru_push_mru(node)
        return r

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Phase 1: ``num_tokens`` KV tokens of LRU leaves; phase 2: ``swa_num_tokens``
        states, LRU first. Returns ``full_evicted`` tokens and ``mamba_evicted`` states."""
        v = swa_num_tokens
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"swa_num_tokens must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"swa_num_tokens must be >= 0, got {v}")
        self._m_count = 0
        r = super().evict(num_tokens, 0)
        full = r.full_evicted
        states = self._m_count
        lru = self._lru
        freed: list[npt.NDArray[np.int64]] = []
        while states < swa_num_tokens and lru.m_next is not lru:
            n: Any = lru.m_next
            if not n.children and n.lock_ref == 0:
                full += len(n.value)
                freed.append(n.value)
                self._delete_leaf(n)  # frees the state and counts it
                states = self._m_count
            else:
                self._drop_state(n)
                states += 1
                self._m_count = states
        if freed:
            self._free_indices(np.concatenate(freed))
        return EvictResult(full_evicted=full, mamba_evicted=states)

    def inc_lock_ref(self, node: TreeNode | None) -> bool | None:  # type: ignore[override]
        """Lock ``node``'s KV path and its own state. Returns the token for dec. O(d)."""
        if node is None:
            return None
        super().inc_lock_ref(node)
        n: Any = node
        if n.parent is None or n.mamba_value is None:
            return False
        if n.mamba_lock_ref == 0:
            self._lru_unlink(n)
            self._m_evictable -= 1
            self._m_protected += 1
        n.mamba_lock_ref += 1
        return True

    def dec_lock_ref(self, node: TreeNode | None, token: bool | None = None, **kwargs: Any) -> None:
        """Undo ``inc_lock_ref(node)`` that returned ``token``. O(d).

        Raises ``ValueError`` (nothing changes) if ``node`` is not locked or
        ``token`` says a state was locked but the node holds no state lock.
        """
        if node is None:
            return
        self._own(node)
        n: Any = node
        if n.parent is None:
            return
        if n.lock_ref <= 0:
            raise ValueError(f"dec_lock_ref: {node!r} is not locked")
        if token and n.mamba_lock_ref <= 0:
            raise ValueError(f"dec_lock_ref: the state of {node!r} is not locked")
        if not token and n.lock_ref <= n.mamba_lock_ref:
            raise ValueError(
                f"dec_lock_ref: {node!r} holds a state lock; pass the token inc_lock_ref "
                f"returned (its full lock count may not drop below its state lock count)"
            )
        super().dec_lock_ref(node)
        if token:
            n.mamba_lock_ref -= 1
            if n.mamba_lock_ref == 0:
                self._m_protected -= 1
                self._m_evictable += 1
                self._lru_push_mru(n)

    # ------------------------------------------------------ extension points

    def _delete_leaf(self, node: TreeNode) -> None:
        n: Any = node
        if n.mamba_value is not None:
            self._drop_state(n)
            self._m_count = getattr(self, "_m_count", 0) + 1
        super()._delete_leaf(node)

    # -------------------------------------------------------------- internals

    def _drop_state(self, n: Any) -> None:
        assert n.mamba_lock_ref == 0
        self._lru_unlink(n)
        slot = n.mamba_value
        n.mamba_value = None
        self._m_evictable -= 1
        if self.mamba_pool is not None:
            self.mamba_pool.free_track_slot(slot)

    def _check(self) -> None:
        """Assert RadixCache's invariants and the state ones. O(tree); tests only."""
        super()._check()
        in_list: set[int] = set()
        n: Any = self._lru.m_next
        while n is not self._lru:
            assert n.m_next.m_prev is n
            in_list.add(n.id)
            n = n.m_next
        ev = prot = 0
        for node in self._iter_nodes():
            m: Any = node
            assert m.lock_ref >= m.mamba_lock_ref >= 0
            if m.mamba_value is None:
                assert m.mamba_lock_ref == 0 and m.id not in in_list
            elif m.mamba_lock_ref:
                prot += 1
                assert m.id not in in_list
            else:
                ev += 1
                assert m.id in in_list
        assert len(in_list) == ev == self._m_evictable, (len(in_list), ev, self._m_evictable)
        assert prot == self._m_protected
