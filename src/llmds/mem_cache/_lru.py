"""Least-recently-used orders of the radix prefix caches (internal).

Two ways to keep nodes in LRU order, each O(1) or O(log h) per change:

* :class:`LazyHeap` (RadixCache, and SWARadixCache's two phases): a binary heap of
  ``(time, node id, node)`` with lazy deletion -- a touch pushes nothing, a stale or
  no-longer-eligible entry is dropped or refiled when it surfaces;
* intrusive doubly linked lists (MambaRadixCache): a circular :class:`Sentinel` and
  links in the node's own slots, one pair of link names per list (``f_*`` for the
  full-KV list, ``m_*`` for the state list). The helpers are written out per list
  rather than through ``setattr`` with the names as arguments, which measured 2.5x
  slower per link (177 ns vs 71 ns) on the hot paths.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

__all__ = [
    "LazyHeap",
    "Sentinel",
    "f_link",
    "f_unlink",
    "m_link",
    "m_unlink",
    "unlocked_leaf",
    "walk",
]


def unlocked_leaf(node: Any) -> bool:
    """Eligible for RadixCache's eviction: in the tree, unlocked, childless. O(1)."""
    return not node.evicted and not node.lock_ref and not node.children


class LazyHeap:
    """Nodes ordered by ``(last_access, id)``, least recent first, deleted lazily.

    ``live(node)`` says whether a node may be popped now. Pushing is O(log h) and
    leaves older entries of the node in place; :meth:`pop` drops entries of nodes
    that are not live and refiles entries older than the node's time, so every
    live node needs one entry no newer than its time (asserted by the caches'
    ``_check``). When the heap grows past ``limit`` (twice its live size, at least
    1024) it is compacted in place to one entry per live node, so a caller may
    keep popping from it while it compacts.

    Thread safety: not thread-safe; its cache guards it.
    """

    __slots__ = ("entries", "limit", "live")

    def __init__(self, live: Callable[[Any], bool]) -> None:
        self.entries: list[tuple[int, int, Any]] = []
        self.limit = 1024
        self.live = live

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, node: Any) -> None:
        """File ``node`` at its current time. O(log h) (O(h) when it compacts)."""
        entries = self.entries
        heapq.heappush(entries, (node.last_access, node.id, node))
        if len(entries) > self.limit:
            self.compact()

    def pop(self) -> Any | None:
        """The least recently used live node, taken off the heap; ``None`` if none.
        O((1 + s) log h) for s stale or dead entries passed over."""
        entries, live = self.entries, self.live
        heappop = heapq.heappop
        while entries:
            stamp, nid, node = heappop(entries)
            if not live(node):
                continue
            if stamp != node.last_access:  # touched since it was filed: refile
                heapq.heappush(entries, (node.last_access, nid, node))
                continue
            return node
        return None

    def compact(self) -> None:
        """Keep one entry per live node, at its current time. O(h)."""
        live = self.live
        keep = {nid: node for _, nid, node in self.entries if live(node)}
        self.entries[:] = [(n.last_access, nid, n) for nid, n in keep.items()]
        heapq.heapify(self.entries)
        self.limit = max(1024, 2 * len(self.entries))

    def times(self) -> dict[int, int]:
        """The oldest time filed for each node id. O(h); for ``_check``."""
        out: dict[int, int] = {}
        for stamp, nid, _node in self.entries:
            out[nid] = min(stamp, out.get(nid, stamp))
        return out

    def dump(self, index: dict[int, int]) -> tuple[int, list[tuple[int, int, int]]]:
        """``(limit, entries)`` with nodes as rows of ``index`` (``id(node) -> row``);
        entries of nodes not in ``index`` (evicted) are left out. O(h)."""
        return self.limit, [(t, nid, index[id(n)]) for t, nid, n in self.entries
                            if id(n) in index]

    def load(self, dumped: tuple[int, list[tuple[int, int, int]]], nodes: list[Any]) -> None:
        """Refill from :meth:`dump`'s output, rows resolved in ``nodes``. O(h)."""
        self.limit, rows = dumped
        self.entries = [(t, nid, nodes[row]) for t, nid, row in rows]
        heapq.heapify(self.entries)


class Sentinel:
    """Head-and-tail of the circular intrusive lists: ``*_next`` is the LRU end,
    ``*_prev`` the MRU end; an empty list links the sentinel to itself.

    Thread safety: not thread-safe; its cache guards it.
    """

    __slots__ = ("f_next", "f_prev", "m_next", "m_prev")

    def __init__(self) -> None:
        self.f_prev: Any = self
        self.f_next: Any = self
        self.m_prev: Any = self
        self.m_next: Any = self


def f_link(n: Any, p: Any, q: Any) -> None:
    """Link ``n`` into the full list between neighbours ``p`` and ``q``. O(1)."""
    n.f_prev, n.f_next = p, q
    p.f_next = n
    q.f_prev = n


def f_unlink(n: Any) -> None:
    """Take ``n`` out of the full list. O(1)."""
    p, q = n.f_prev, n.f_next
    p.f_next = q
    q.f_prev = p
    n.f_prev = n.f_next = None


def m_link(n: Any, p: Any, q: Any) -> None:
    """Link ``n`` into the state list between neighbours ``p`` and ``q``. O(1)."""
    n.m_prev, n.m_next = p, q
    p.m_next = n
    q.m_prev = n


def m_unlink(n: Any) -> None:
    """Take ``n`` out of the state list. O(1)."""
    p, q = n.m_prev, n.m_next
    p.m_next = q
    q.m_prev = p
    n.m_prev = n.m_next = None


def walk(sentinel: Any, nxt: str, prev: str | None = None, limit: int = -1) -> list[Any]:
    """The nodes of a list from its LRU end; with ``prev``, assert its links (and at
    most ``limit`` nodes: no cycle). O(n)."""
    out: list[Any] = []
    n = getattr(sentinel, nxt)
    while n is not sentinel:
        if prev is not None:
            assert getattr(getattr(n, nxt), prev) is n, "broken back link"
            assert getattr(getattr(n, prev), nxt) is n, "broken forward link"
            assert len(out) < limit, "cycle in an LRU list"
        out.append(n)
        n = getattr(n, nxt)
    return out
