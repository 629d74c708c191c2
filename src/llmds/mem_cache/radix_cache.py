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
Python loop ever runs per token.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import kv as _kv
from llmds._validate import check_int, is_int
from llmds.mem_cache.base_prefix_cache import (
    BasePrefixCache,
    EvictResult,
    InsertResult,
    MatchResult,
    RadixKey,
    kv_indices,
)
from llmds.page_hash import encode_namespace

__all__ = ["RadixCache", "TreeNode"]

MAX_PAGE_SIZE = 1 << 20  # tokens per page, as KVCache

_TOKEN_LIMIT = 1 << 32
_EMPTY_I64 = np.empty(0, dtype=np.int64)
_EMPTY_I64.flags.writeable = False
_U32 = np.dtype("<u4")
_I32 = np.dtype("<i4")
_min_reduce = np.minimum.reduce


class TreeNode:
    """One node of a :class:`RadixCache`: a run of tokens and their KV indices.

    ``kb`` holds the node's token ids as little-endian uint32 bytes (``key`` gives
    them as an array); ``value`` is the int64 KV index of each of those tokens.
    ``children`` maps the bytes of a child's first page to the child.
    ``lock_ref`` counts the locks held on this node or on a descendant;
    ``self_lock_ref`` the locks taken on exactly this node (``inc_lock_ref(node)``),
    which are the only ones ``dec_lock_ref(node)`` may release;
    ``last_access`` is the logical time of the last match/insert through it;
    ``evicted`` becomes True when the node leaves the tree.
    """

    __slots__ = (
        "_owner",
        "children",
        "evicted",
        "id",
        "kb",
        "last_access",
        "lock_ref",
        "parent",
        "root",
        "self_lock_ref",
        "value",
    )

    def __init__(
        self,
        node_id: int,
        parent: TreeNode | None,
        kb: bytes,
        value: npt.NDArray[np.int64],
        last_access: int,
    ) -> None:
        self.children: dict[bytes, TreeNode] = {}
        self.parent = parent
        self.kb = kb
        self.value = value
        self.lock_ref = 0
        self.self_lock_ref = 0
        self.last_access = last_access
        self.id = node_id
        self.evicted = False
        self.root: TreeNode = self if parent is None else parent.root
        self._owner: Any = None

    @property
    def key(self) -> npt.NDArray[np.uint32]:
        """The node's token ids (a read-only uint32 view). O(1)."""
        return np.frombuffer(self.kb, dtype=_U32)

    @property
    def num_tokens(self) -> int:
        """Tokens in this node. O(1)."""
        return len(self.kb) >> 2

    def __lt__(self, other: TreeNode) -> bool:
        return (self.last_access, self.id) < (other.last_access, other.id)

    def __repr__(self) -> str:
        return (
            f"TreeNode(id={self.id}, tokens={len(self.kb) >> 2}, lock_ref={self.lock_ref}, "
            f"children={len(self.children)}, evicted={self.evicted})"
        )


def _token_bytes(token_ids: Any) -> bytes:
    """Validate token ids and return them as little-endian uint32 bytes. O(n).

    >>> _token_bytes([1, 258])
    b'\\x01\\x00\\x00\\x00\\x02\\x01\\x00\\x00'
    """
    arr = token_ids if isinstance(token_ids, np.ndarray) else np.asarray(token_ids)
    if arr.ndim != 1:
        raise TypeError(
            f"token_ids must be a 1-D sequence of ints (tuple/bigram keys are not "
            f"supported by RadixCache), got shape {arr.shape}"
        )
    if arr.size == 0:
        return b""
    dt = arr.dtype
    if dt == _I32:
        lo = _min_reduce(arr)  # the ufunc directly: ndarray.min() adds ~1 us of wrappers
        if lo < 0:
            raise ValueError(f"token_ids must be in [0, 2**32), got {int(lo)}")
        return arr.tobytes()
    if dt == _U32:
        return arr.tobytes()
    if dt.kind not in "iu":
        raise TypeError(f"token_ids must be integers, got dtype {dt}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= _TOKEN_LIMIT:
        raise ValueError(f"token_ids must be in [0, 2**32), got {lo if lo < 0 else hi}")
    return arr.astype(_U32).tobytes()


_NS_TAG = "llmds/ns"


def _namespace(extra: Any) -> Hashable:
    """The tree a namespace key selects: one per canonical value. O(size of the key).

    Namespaces follow :func:`llmds.page_hash.encode_namespace` (None, int, str,
    bytes, tuples of those; anything else is a TypeError), not Python equality, so
    ``True`` never aliases ``1`` (rejected) nor ``1.0`` (rejected), and
    ``np.int64(3)`` is the namespace ``3``. Plain None/int/str/bytes are their own
    key (the common, fast case); a tuple is keyed by its canonical bytes.

    >>> _namespace("lora-1"), _namespace(np.int64(3))
    ('lora-1', 3)
    """
    t = type(extra)
    if extra is None or t is str or t is int or t is bytes:
        return extra
    enc = encode_namespace(extra)  # raises TypeError for a non-canonical key
    if isinstance(extra, tuple):
        return (_NS_TAG, enc)
    if isinstance(extra, str):
        return str(extra)
    if isinstance(extra, bytes):
        return bytes(extra)
    return int(extra)


def _key_bytes(key: Any) -> tuple[bytes, Any]:
    """A :class:`RadixKey` or a token sequence as (uint32 token bytes, namespace). O(n)."""
    if isinstance(key, RadixKey):
        return _token_bytes(key.token_ids), _namespace(key.extra_key)
    return _token_bytes(key), None


def _insert_args(
    key: Any, value: Any, pool: Any, owned: bool = False
) -> tuple[bytes, Any, Any]:
    """``insert``'s arguments checked: the key's token bytes, its extra key, and one
    int64 KV index per token of ``pool`` (:func:`kv_indices`; the token ids themselves
    when ``value`` is None). O(len(key)). Raises ``ValueError``/``TypeError``."""
    kb, extra = _key_bytes(key)
    ntok = len(kb) >> 2
    if value is None:
        value = np.frombuffer(kb, dtype=_U32)
    return kb, extra, kv_indices(value, ntok, pool, owned=owned)


class RadixCache(BasePrefixCache):
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
    (index) per token; the eviction heap holds O(nodes) entries (compacted when it
    grows past twice its live size).

    Failures change nothing: ``insert`` validates the key and every KV index
    (:func:`~llmds.mem_cache.base_prefix_cache.kv_indices`: integers, ``>= 0``, below
    the pool's ``size``, allocated in the pool) before touching the tree;
    ``dec_lock_ref(node)`` releases only a lock taken by ``inc_lock_ref(node)`` on
    that very node (an ancestor of a locked node is not itself locked); ``evict``
    takes the victims out of the tree, hands their indices to the pool in one
    ``free`` call and, if the pool refuses, puts every victim back as it was and
    re-raises (``on_node_evict`` runs only after the pool accepted).

    Thread safety: not thread-safe; guard it with a lock when shared.

    Extension points for the sliding-window (tombstone) and Mamba-state variants:
    ``_split_node``, ``_add_leaf``, ``_delete_leaf`` and ``_free_indices`` are the
    only places that change the tree or hand indices back; eviction steps append
    ``(kind, node, ...)`` entries to ``_log`` and ``_undo_entry`` reverts one;
    ``inc_lock_ref`` returns an opaque token (``None`` here) that ``dec_lock_ref``
    accepts.

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

    def __init__(
        self,
        page_size: int = 1,
        sliding_window_size: int | None = None,
        token_to_kv_pool_allocator: Any = None,
        on_node_evict: Callable[[int], None] | None = None,
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
            raise TypeError("token_to_kv_pool_allocator must have a free(indices) method")
        if on_node_evict is not None and not callable(on_node_evict):
            raise TypeError(f"on_node_evict must be callable, got {on_node_evict!r}")
        self.page_size = int(page_size)
        self.sliding_window_size = sliding_window_size
        self.token_to_kv_pool_allocator = token_to_kv_pool_allocator
        self.on_node_evict = on_node_evict
        self._pb = 4 * self.page_size  # bytes per page
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
        self._heap: list[tuple[int, int, TreeNode]] = []
        self._heap_limit = 1024
        self._log: list[tuple[Any, ...]] | None = None  # eviction steps, while evicting
        # which pool slots the tree holds (when the pool has an int ``size``): an index
        # held twice would be freed twice on eviction
        size: Any = getattr(self.token_to_kv_pool_allocator, "size", None)
        self._held = np.zeros(int(size), dtype=np.bool_) if is_int(size) else None
        self.root_node = self._root(None)

    def match_prefix(self, key: RadixKey | Any) -> MatchResult:
        """Longest cached prefix of ``key``, truncated to whole pages. O(d + n).

        Refreshes the LRU time of the matched path. When the match ends inside a
        node, that node is split so ``last_node`` ends exactly at the match (ready
        for ``inc_lock_ref``). ``key`` is a :class:`RadixKey` or a sequence of ints.
        """
        kb, extra = _key_bytes(key)
        pb = self._pb
        nb = len(kb)
        nb -= nb % pb
        try:
            node = self._roots.get(extra)
        except TypeError:
            raise TypeError(f"extra_key must be hashable, got {extra!r}") from None
        if node is None or nb == 0:
            last = node if node is not None else self.root_node
            return MatchResult(indices=_EMPTY_I64.copy(), last_node=last)
        self._tick = tick = self._tick + 1
        node.last_access = tick
        values = []
        pos = 0
        while pos < nb:
            child = node.children.get(kb[pos : pos + pb])
            if child is None:
                break
            ckb = child.kb
            end = pos + len(ckb)
            if end <= nb and kb[pos:end] == ckb:
                child.last_access = tick
                values.append(child.value)
                node = child
                pos = end
                continue
            m = self._first_diff(ckb, kb, pos, nb)
            node = self._split_node(child, m)
            node.last_access = tick
            values.append(node.value)
            pos += m
            break
        if not values:
            return MatchResult(indices=_EMPTY_I64.copy(), last_node=node)
        indices = np.concatenate(values) if len(values) > 1 else values[0].copy()
        return MatchResult(indices=indices, last_node=node, prefix_len=pos >> 2)

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
        kb, extra, vals = _insert_args(key, value, self.token_to_kv_pool_allocator)
        pb = self._pb
        nb = len(kb)
        nb -= nb % pb
        try:
            node = self._roots.get(extra)
        except TypeError:
            raise TypeError(f"extra_key must be hashable, got {extra!r}") from None
        path, pos, cut, m = self._find(node, kb, nb)  # read-only: validate, then change
        self._check_new(vals[pos >> 2 : nb >> 2])
        if node is None:
            if nb == 0:
                return InsertResult(prefix_len=0, last_node=self.root_node)
            node = self._root(extra)
        self._tick = tick = self._tick + 1
        node.last_access = tick
        for node in path:
            node.last_access = tick
        if cut is not None:
            node = self._split_node(cut, m)
            node.last_access = tick
        if pos < nb:
            node = self._add_leaf(
                node, kb[pos:nb], np.array(vals[pos >> 2 : nb >> 2], dtype=np.int64), tick
            )
            return InsertResult(prefix_len=pos >> 2, last_node=node)
        return InsertResult(prefix_len=pos >> 2, last_node=node)

    def evict(self, num_tokens: int, swa_num_tokens: int = 0) -> EvictResult:
        """Evict least-recently-used unlocked leaves until ``num_tokens`` are freed.

        Whole nodes are evicted, so slightly more may be freed; fewer only when
        nothing evictable is left. A parent whose last child goes becomes a leaf
        and competes by its own LRU time. O((k + s) log h), see the class doc.
        """
        for name, v in (("num_tokens", num_tokens), ("swa_num_tokens", swa_num_tokens)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {v!r}")
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        heap = self._heap
        heappop, heappush = heapq.heappop, heapq.heappush
        freed: list[npt.NDArray[np.int64]] = []
        evicted = 0
        log: list[tuple[Any, ...]] = []
        self._log = log
        while evicted < num_tokens and heap:
            stamp, nid, node = heappop(heap)
            if node.evicted or node.lock_ref or node.children:
                continue
            if stamp != node.last_access:  # touched since it was filed: refile
                heappush(heap, (node.last_access, nid, node))
                continue
            evicted += len(node.value)
            freed.append(node.value)
            self._delete_leaf(node)
        self._log = None
        if freed:  # one call to the pool per evict, not one per node
            self._commit(log, freed[0] if len(freed) == 1 else np.concatenate(freed))
        return EvictResult(full_evicted=evicted)

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
        """Every cached KV index (all namespaces), depth-first order. O(tree)."""
        vals = [n.value for n in self._iter_nodes()]
        return np.concatenate(vals) if vals else _EMPTY_I64.copy()

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
        self._num_nodes += 1  # its indices were claimed in _held by _check_new
        self._push(node)
        return node

    def _find(
        self, node: TreeNode | None, kb: bytes, nb: int
    ) -> tuple[list[TreeNode], int, TreeNode | None, int]:
        """Read-only walk of ``kb[:nb]`` from ``node``: ``(path, pos, cut, m)`` -- the
        nodes matched whole, the matched bytes, and the node the match ends inside
        (``None`` if none) with the bytes of it matched (``m``, included in
        ``pos``). O(d) dict look-ups and bytes comparisons."""
        path: list[TreeNode] = []
        pos = 0
        pb = self._pb
        while node is not None and pos < nb:
            child = node.children.get(kb[pos : pos + pb])
            if child is None:
                break
            ckb = child.kb
            end = pos + len(ckb)
            if end <= nb and kb.startswith(ckb, pos):
                path.append(child)
                node, pos = child, end
                continue
            m = self._first_diff(ckb, kb, pos, nb)
            return path, pos + m, child, m
        return path, pos, None, 0

    def _check_new(self, new: npt.NDArray[np.int64], owned: bool = True) -> None:
        """Before an insert changes anything: ``new``, the indices it would add to
        the tree, must be allocated in the pool (``owned``, when it can tell), held
        by no node and appear once; they are then marked held (the insert must not
        fail after this, or unmark them). O(n), two small numba passes (a NumPy
        version with ``np.unique`` cost ~20 us per insert of 1,000 tokens)."""
        held = self._held
        check = getattr(self.token_to_kv_pool_allocator, "is_allocated", None)
        check = check if owned and callable(check) else None
        if held is None and check is None:
            return
        if check is not None and not check(new):
            raise ValueError(
                "value holds KV indices that are not allocated in token_to_kv_pool_allocator "
                "(free, or never handed out)"
            )
        if held is None or not new.size:
            return
        at = _kv.claim(new, held)  # the tree now holds them (see _add_leaf)
        if at >= 0:
            bad = int(new[at])
            if bad in new[:at]:
                raise ValueError(f"value repeats KV index {bad}; each token needs its own slot")
            raise ValueError(f"value holds KV index {bad}, which the cache already holds "
                             "for another key; each cached token needs its own slot")

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
        """Hand evicted indices back to the pool, if there is one."""
        pool = self.token_to_kv_pool_allocator
        if pool is not None and len(indices):
            pool.free(indices)

    # -------------------------------------------------------------- internals

    def _root(self, extra: Hashable) -> TreeNode:
        root = self._node_cls(self._next_id, None, b"", _EMPTY_I64, self._tick)
        self._next_id += 1
        root._owner = self
        self._roots[extra] = root
        return root

    def _own(self, node: Any) -> None:
        """Check ``node`` is a live node of this cache (O(1)) or raise ValueError."""
        if not isinstance(node, TreeNode):
            raise TypeError(f"node must be a TreeNode, got {type(node).__name__}")
        if node.evicted:
            raise ValueError(f"{node!r} was evicted")
        if node.root._owner is not self:
            raise ValueError(f"{node!r} belongs to another cache (or to before reset())")

    def _first_diff(self, ckb: bytes, kb: bytes, pos: int, nb: int) -> int:
        """Bytes of ``ckb`` matched by ``kb[pos:nb]``, rounded down to whole pages.

        Called only when the whole node does not match, so the result is < len(ckb);
        the first page matched (it selected the child), so the result is >= a page.

        >>> c = RadixCache(page_size=2)
        >>> a = np.array([1, 2, 3, 4, 5, 6], dtype="<u4").tobytes()
        >>> b = np.array([1, 2, 3, 9], dtype="<u4").tobytes()
        >>> c._first_diff(a, b, 0, len(b)) // 4   # token 3 differs -> 1 whole page
        2
        """
        count = min(len(ckb), nb - pos) >> 2
        a = np.frombuffer(ckb, dtype=_U32, count=count)
        b = np.frombuffer(kb, dtype=_U32, count=count, offset=pos)
        neq = a != b
        i = int(neq.argmax())
        if not neq[i]:
            i = count
        ps = self.page_size
        return (i - i % ps) << 2

    def _push(self, node: TreeNode) -> None:
        heap = self._heap
        heapq.heappush(heap, (node.last_access, node.id, node))
        if len(heap) > self._heap_limit:
            self._compact_heap()

    def _compact_heap(self) -> None:
        """Keep one entry per unlocked leaf, at its current time. O(h)."""
        live: dict[int, TreeNode] = {}
        for _, nid, node in self._heap:
            if not node.evicted and not node.lock_ref and not node.children:
                live[nid] = node
        heap = self._heap
        # In place: ``evict`` may be iterating over this very list.
        heap[:] = [(n.last_access, nid, n) for nid, n in live.items()]
        heapq.heapify(heap)
        self._heap_limit = max(1024, 2 * len(heap))

    def _iter_nodes(self) -> Iterator[TreeNode]:
        for root in self._roots.values():
            stack = list(root.children.values())
            while stack:
                node = stack.pop()
                yield node
                stack.extend(node.children.values())

    def _check(self) -> None:
        """Assert every invariant in the class docstring. O(tree); tests only."""
        pb = self._pb
        evictable = protected = nodes = 0
        heap_time: dict[int, int] = {}
        for stamp, nid, _node in self._heap:
            heap_time[nid] = min(stamp, heap_time.get(nid, stamp))
        for _extra, root in self._roots.items():
            assert root.parent is None and root._owner is self and root.root is root
            assert root.lock_ref == 0 and len(root.kb) == 0
            stack = [root]
            while stack:
                node = stack.pop()
                child_locks = 0
                for ck, child in node.children.items():
                    assert ck == child.kb[:pb], "child filed under the wrong first page"
                    assert child.parent is node and child.root is root
                    assert not child.evicted
                    assert len(child.kb) > 0 and len(child.kb) % pb == 0, "not whole pages"
                    assert child.value.dtype == np.int64
                    assert len(child.value) * 4 == len(child.kb), "one index per token"
                    assert child.lock_ref >= 0 and child.self_lock_ref >= 0
                    assert child.last_access <= node.last_access, "parent older than child"
                    child_locks += child.lock_ref
                    nodes += 1
                    if child.lock_ref:
                        protected += len(child.value)
                    else:
                        evictable += len(child.value)
                        if not child.children:
                            assert child.id in heap_time, "unlocked leaf missing from heap"
                            assert heap_time[child.id] <= child.last_access
                    stack.append(child)
                if node.parent is not None:
                    assert node.lock_ref == node.self_lock_ref + child_locks, "lock counts"
        assert self._log is None, "an eviction log left open"
        if self._held is not None:
            vals = [n.value for n in self._iter_nodes()]
            flat = np.concatenate(vals) if vals else _EMPTY_I64
            assert np.unique(flat).size == flat.size, "a KV index held twice"
            assert np.count_nonzero(self._held) == flat.size and self._held[flat].all()
        assert evictable == self._evictable, (evictable, self._evictable)
        assert protected == self._protected, (protected, self._protected)
        assert nodes == self._num_nodes
        assert self._evictable >= 0 and self._protected >= 0
