"""Copies and invariants of the radix prefix caches (internal): a mixin of RadixCache.

Pickling and ``copy.deepcopy`` carry the tree as flat rows (:func:`dump_tree`, no
recursion, so a deep tree copies without hitting the recursion limit), and the
references into it (the eviction heap; the variants add their lists) as row numbers.
``_check`` asserts the invariants RadixCache's docstring states; the SWA and Mamba
variants extend ``_check_tree`` / ``_check_order`` and ``_dump_refs`` / ``_load_refs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from llmds.mem_cache._keys import EMPTY_I64
from llmds.mem_cache._lru import LazyHeap, unlocked_leaf
from llmds.mem_cache._tree import TreeNode, check_tree, dump_tree, load_tree

__all__ = ["CacheState"]


class CacheState:
    """Copies (``__getstate__``/``__setstate__``) and ``_check`` of a radix cache.

    Thread safety: as the radix caches, not thread-safe: copy or check a cache only
    while no other thread uses it.
    """

    if TYPE_CHECKING:
        _NODE_ATTRS: tuple[str, ...]
        _node_cls: type[TreeNode]
        _roots: dict[Any, TreeNode]
        _log: Any
        _heap: LazyHeap
        _held: Any
        _pb: int
        _evictable: int
        _protected: int
        _num_nodes: int
        root_node: TreeNode

    # ------------------------------------------------------------ copies

    def __getstate__(self) -> dict[str, Any]:
        """The cache's attributes with the tree as flat rows (no recursion). O(tree)."""
        assert self._log is None, "copied in the middle of an eviction"
        tree, index = dump_tree(self._roots, self._node_cls.STATE)
        state = {k: v for k, v in self.__dict__.items() if k not in self._NODE_ATTRS}
        state["_tree"] = tree
        state["_node_refs"] = self._dump_refs(index)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        tree = state.pop("_tree")
        refs = state.pop("_node_refs")
        self.__dict__.update(state)
        self._log = None
        self._roots, nodes = load_tree(self._node_cls, tree, self._node_cls.STATE, self)
        self.root_node = self._roots[None]
        self._load_refs(refs, nodes)

    def _dump_refs(self, index: dict[int, int]) -> dict[str, Any]:
        """The references to nodes outside the tree, as row numbers. Entries of
        evicted nodes are left out of the heap (eviction skips them anyway). O(h)."""
        return {"_heap": self._heap.dump(index)}

    def _load_refs(self, refs: dict[str, Any], nodes: list[TreeNode]) -> None:
        self._heap = LazyHeap(unlocked_leaf)
        self._heap.load(refs["_heap"], nodes)

    # ------------------------------------------------------------ invariants

    def _check(self) -> None:
        """Assert every invariant in the class docstring. O(tree); tests only."""
        self._check_order(self._check_tree())

    def _check_tree(self) -> list[tuple[TreeNode, int]]:
        """Assert the tree and size invariants every variant shares; return ``(node,
        depth)`` for every non-root node. O(tree)."""
        out = check_tree(self._roots, self, self._pb)
        assert self._log is None, "an eviction log left open"
        if self._held is not None:
            vals = [n.value for n, _ in out]
            flat = np.concatenate(vals) if vals else EMPTY_I64
            assert np.unique(flat).size == flat.size, "a KV index held twice"
            assert np.count_nonzero(self._held) == flat.size and self._held[flat].all()
        protected = sum(len(n.value) for n, _ in out if n.lock_ref)
        evictable = sum(len(n.value) for n, _ in out if not n.lock_ref)
        assert evictable == self._evictable, (evictable, self._evictable)
        assert protected == self._protected, (protected, self._protected)
        assert len(out) == self._num_nodes
        return out

    def _check_order(self, nodes: list[tuple[TreeNode, int]]) -> None:
        """Assert the eviction order's invariant: every unlocked leaf has a heap entry
        no newer than its time. O(tree + h)."""
        heap_time = self._heap.times()
        for node, _ in nodes:
            if not node.lock_ref and not node.children:
                assert node.id in heap_time, "unlocked leaf missing from heap"
                assert heap_time[node.id] <= node.last_access
