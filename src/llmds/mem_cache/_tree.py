"""The radix tree shared by the prefix caches (internal): node, walk, flat copy.

:class:`TreeNode` is the node of :class:`~llmds.mem_cache.radix_cache.RadixCache`
(the SWA and Mamba variants subclass it). :func:`find` is the one read-only walk
every cache's ``match_prefix`` and ``insert`` start from; what each cache does with
the path it returns (touch it, split where the match ends, cut the match back) is
its own hook. :func:`dump_tree` / :func:`load_tree` turn a forest into flat rows and
back without recursion, so pickling or deep-copying a cache works at any tree depth
(a 10,000-deep chain would otherwise exceed Python's recursion limit).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "TreeNode", "check_tree", "dump_tree", "find", "first_diff", "iter_nodes", "load_tree",
]

_U32 = np.dtype("<u4")


class TreeNode:
    """One node of a :class:`~llmds.mem_cache.radix_cache.RadixCache`: a run of tokens
    and their KV indices.

    ``kb`` holds the node's token ids as little-endian uint32 bytes (``key`` gives
    them as an array); ``value`` is the int64 KV index of each of those tokens.
    ``children`` maps the bytes of a child's first page to the child.
    ``lock_ref`` counts the locks held on this node or on a descendant;
    ``self_lock_ref`` the locks taken on exactly this node (``inc_lock_ref(node)``),
    which are the only ones ``dec_lock_ref(node)`` may release;
    ``last_access`` is the logical time of the last match/insert through it;
    ``evicted`` becomes True when the node leaves the tree.

    A node pickles (and deep-copies) as a reference into its cache: with the cache
    in the same pickle, it comes back as the copied cache's node at the same place;
    alone, it brings a copy of its cache along. An evicted node, or one of a cache
    that was reset, comes back detached (no parent, no children, same flags).

    Thread safety: not thread-safe; guard it (with its cache) when shared.
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

    # what dump_tree copies per node besides the links (subclasses extend it)
    STATE: tuple[str, ...] = ("id", "kb", "lock_ref", "self_lock_ref", "last_access")

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
            f"{type(self).__name__}(id={self.id}, tokens={len(self.kb) >> 2}, "
            f"lock_ref={self.lock_ref}, children={len(self.children)}, evicted={self.evicted})"
        )

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        owner = self.root._owner
        if owner is not None and not self.evicted:
            ns = next(k for k, r in owner._roots.items() if r is self.root)
            steps = []
            node = self
            pb = owner._pb
            while node.parent is not None:
                steps.append(node.kb[:pb])
                node = node.parent
            steps.reverse()
            return _node_at, (owner, ns, steps)
        fields = {f: getattr(self, f) for f in type(self).STATE}
        return _detached, (type(self), fields, self.value, self.evicted)


def _node_at(owner: Any, ns: Hashable, steps: list[bytes]) -> TreeNode:
    """The node of ``owner`` reached from namespace ``ns`` by the first-page keys ``steps``."""
    node = owner._roots[ns]
    for step in steps:
        node = node.children[step]
    return node


def _detached(
    cls: type[TreeNode], fields: dict[str, Any], value: npt.NDArray[np.int64], evicted: bool
) -> TreeNode:
    node = cls(fields["id"], None, fields["kb"], value, fields["last_access"])
    for name, v in fields.items():
        setattr(node, name, v)
    node.evicted = evicted
    return node


def first_diff(ckb: bytes, kb: bytes, pos: int, nb: int, page_size: int) -> int:
    """Bytes of node key ``ckb`` matched by ``kb[pos:nb]``, rounded down to whole pages.

    Called only when the whole node does not match, so the result is < len(ckb);
    the first page matched (it selected the child), so the result is >= a page.
    Vectorised with NumPy: no Python loop per token.

    >>> a = np.array([1, 2, 3, 4, 5, 6], dtype="<u4").tobytes()
    >>> b = np.array([1, 2, 3, 9], dtype="<u4").tobytes()
    >>> first_diff(a, b, 0, len(b), 2) // 4   # token 3 differs -> 1 whole page
    2
    """
    count = min(len(ckb), nb - pos) >> 2
    a = np.frombuffer(ckb, dtype=_U32, count=count)
    b = np.frombuffer(kb, dtype=_U32, count=count, offset=pos)
    neq = a != b
    i = int(neq.argmax())
    if not neq[i]:
        i = count
    return (i - i % page_size) << 2


def find(
    node: TreeNode | None, kb: bytes, nb: int, pb: int, page_size: int
) -> tuple[list[TreeNode], int, TreeNode | None, int]:
    """Read-only walk of ``kb[:nb]`` from ``node``: ``(path, pos, cut, m)``.

    ``path``: the nodes matched whole, root side first (not ``node`` itself);
    ``pos``: the bytes matched; ``cut``: the node the match ends inside (``None``
    if none), of which ``m`` bytes matched (included in ``pos``). ``pb`` is the
    page size in bytes. O(d) dict look-ups and C-level ``bytes`` comparisons, plus
    one vectorised :func:`first_diff` when the match ends inside a node.
    """
    path: list[TreeNode] = []
    pos = 0
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
        m = first_diff(ckb, kb, pos, nb, page_size)
        return path, pos + m, child, m
    return path, pos, None, 0


def iter_nodes(roots: dict[Hashable, TreeNode]) -> Iterator[TreeNode]:
    """Every non-root node of the forest ``roots``, depth first, no recursion. O(tree)."""
    for root in roots.values():
        stack = list(root.children.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())


TreeRows = tuple[list[tuple[Any, ...]], npt.NDArray[np.int64]]


def dump_tree(
    roots: dict[Hashable, TreeNode], state: tuple[str, ...]
) -> tuple[TreeRows, dict[int, int]]:
    """The forest as flat rows (parents before children) and one array of all values.

    Row ``i`` is ``(parent row or -1, namespace or None, *fields)`` with the
    fields named by ``state``; ``values`` holds every node's KV indices in row
    order (a node's count is ``len(kb) // 4``). Also returns ``{id(node): row}``
    so a cache can write its other references to nodes (heaps, lists, locks) as
    row numbers. O(tree), no recursion.
    """
    rows: list[tuple[Any, ...]] = []
    values: list[npt.NDArray[np.int64]] = []
    index: dict[int, int] = {}
    for ns, root in roots.items():
        stack: list[tuple[TreeNode, int, Hashable]] = [(root, -1, ns)]
        while stack:
            node, parent, key = stack.pop()
            index[id(node)] = len(rows)
            rows.append((parent, key, *[getattr(node, f) for f in state]))
            values.append(node.value)
            me = len(rows) - 1
            stack.extend((child, me, None) for child in reversed(node.children.values()))
    flat = np.concatenate(values) if values else np.empty(0, dtype=np.int64)
    return (rows, flat.astype(np.int64, copy=False)), index


def load_tree(
    cls: type[TreeNode], tree: TreeRows, state: tuple[str, ...], owner: Any
) -> tuple[dict[Hashable, TreeNode], list[TreeNode]]:
    """Rebuild what :func:`dump_tree` wrote: ``(roots, nodes in row order)``. O(tree).

    Roots get ``owner`` as their cache; children are filed under their first page
    (``owner._pb`` bytes), in the original order. No recursion.
    """
    rows, values = tree
    pb = owner._pb
    roots: dict[Hashable, TreeNode] = {}
    nodes: list[TreeNode] = []
    off = 0
    for parent_row, ns, *fields in rows:
        kb = fields[state.index("kb")]
        n = len(kb) >> 2
        parent = nodes[parent_row] if parent_row >= 0 else None
        node = cls(fields[state.index("id")], parent, kb, values[off : off + n],
                   fields[state.index("last_access")])
        off += n
        for name, v in zip(state, fields, strict=True):
            setattr(node, name, v)
        if parent is None:
            node._owner = owner
            roots[ns] = node
        else:
            parent.children[kb[:pb]] = node
        nodes.append(node)
    return roots, nodes


def check_tree(
    roots: dict[Hashable, TreeNode], owner: Any, pb: int
) -> list[tuple[TreeNode, int]]:
    """Assert the structure of a forest owned by ``owner`` with ``pb``-byte pages;
    return ``(node, depth)`` for every non-root node. O(tree); tests only.

    Every non-root node holds a non-empty whole number of pages and one int64
    index per token, is filed under its first page, links back to its parent and
    root, is no newer than its parent, and has ``lock_ref == self_lock_ref + the
    children's lock_ref``.
    """
    out: list[tuple[TreeNode, int]] = []
    for root in roots.values():
        assert root.parent is None and root._owner is owner and root.root is root
        assert root.lock_ref == 0 and len(root.kb) == 0
        stack: list[tuple[TreeNode, int]] = [(root, 0)]
        while stack:
            node, depth = stack.pop()
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
                out.append((child, depth + 1))
                stack.append((child, depth + 1))
            if node.parent is not None:
                assert node.lock_ref == node.self_lock_ref + child_locks, "lock counts"
    return out
