"""Paged memory allocator: a fixed pool of page ids with reference counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmds._validate import check_int, check_size, is_int, show
from llmds.errors import CapacityError

__all__ = ["MAX_NUM_PAGES", "PageStats", "PagedAllocator"]

# A pool costs ~44 bytes of Python objects per page (a list slot for the refcount,
# a list slot plus an int object on the free list), so 2**24 pages take ~0.7 GiB and
# build in ~1 s; 2**31 (the int32 block-table limit) would ask for ~90 GiB and die
# with a bare MemoryError. 2**24 pages of 16 tokens is 268M tokens of KV: larger
# than any single GPU's KV pool today.
MAX_NUM_PAGES = 1 << 24
_INT_ONLY = {int}


@dataclass(frozen=True, slots=True)
class PageStats:
    """A snapshot of a :class:`PagedAllocator`.

    total: pages in the pool; used: pages with refcount >= 1; free: pages with
    refcount 0 (``used + free == total``); shared: pages with refcount >= 2;
    utilisation: ``used / total``; fragmentation: ``1 - largest_free_run / free``,
    where ``largest_free_run`` is the length of the longest run of consecutive
    free page ids. It is 0.0 when the free pages form one contiguous run (or
    there are none) and approaches 1.0 when free pages are scattered one by one
    between used pages.

    Thread safety: frozen.
    """

    total: int
    used: int
    free: int
    shared: int
    utilisation: float
    fragmentation: float

    def __post_init__(self) -> None:
        if self.total < 0 or self.used < 0 or self.free < 0 or self.shared < 0:
            raise ValueError(f"page counts must be >= 0, got {self}")
        if self.used + self.free != self.total:
            raise ValueError(f"used + free must equal total, got {self}")
        if self.shared > self.used:
            raise ValueError(f"shared must be <= used, got {self}")


class PagedAllocator:
    """Fixed pool of ``num_pages`` page ids ``0..num_pages-1`` with refcounts.

    A page is *free* when its refcount is 0 and *used* otherwise. ``alloc``
    hands out free pages with refcount 1; ``incref`` adds a holder (prefix
    sharing); ``free``/``decref`` drop one holder each and return a page to the
    free list when its last holder lets go.

    The free list is a LIFO stack (a Python list): ``alloc`` pops from its end
    and ``free`` pushes onto it, so both are O(1) per page with no scans and no
    ``list.remove``. Initially, and after :meth:`defragment`, the stack is
    ordered so the lowest free id is handed out first.

    Invariants (asserted by :meth:`_check`):
      * a page is on the free list exactly once iff its refcount is 0;
      * ``num_free + num_used == num_pages``;
      * ``num_shared`` equals the number of pages with refcount >= 2.

    Complexity: ``alloc(n)``, ``free(ids)``, ``incref(ids)``, ``decref(ids)``
    O(n) for n pages (O(1) per page); ``can_allocate``, ``num_free``,
    ``num_used``, ``refcount`` O(1); ``stats`` and ``defragment``
    O(num_pages). Memory: one int refcount per page plus the free list.

    Every call validates its whole argument before changing anything, so a
    call that raises leaves the allocator unchanged. Page ids are ints (Python or
    NumPy), never ``bool`` (``True`` is not page 1); ``num_pages`` is capped at
    :data:`MAX_NUM_PAGES`, checked before anything is allocated.

    Names: ``num_pages`` is the pool size (the vocabulary of every llmds page
    pool; ``KVCache(max_pages=...)`` keeps its original name for it). In
    ``alloc(num_pages)`` the same word means the pages asked for, as in the API
    this library started from. ``free`` is that API's name for releasing
    holders; ``decref`` does the same and returns the pages that became free.

    Copies: pickles and deep-copies (refcounts and free list) to an independent
    allocator that hands out the same pages in the same order.

    Thread safety: not thread-safe; guard it with a lock when shared.

    >>> a = PagedAllocator(4)
    >>> a.alloc(3)
    [0, 1, 2]
    >>> a.free([1])
    >>> a.stats().free, a.defragment()
    (2, {2: 1})
    """

    __slots__ = ("_free", "_num_shared", "_refcount")

    def __init__(self, num_pages: int) -> None:
        num_pages = check_size(num_pages, "num_pages", maximum=MAX_NUM_PAGES,
                               why="~44 bytes of Python objects per page")
        self._refcount: list[int] = [0] * num_pages
        # LIFO stack: the end is handed out first, so the lowest id goes first.
        self._free: list[int] = list(range(num_pages - 1, -1, -1))
        self._num_shared = 0

    # ------------------------------------------------------------------ sizes
    @property
    def num_pages(self) -> int:
        """Pages in the pool. O(1)."""
        return len(self._refcount)

    @property
    def num_free(self) -> int:
        """Pages with refcount 0. O(1)."""
        return len(self._free)

    @property
    def num_used(self) -> int:
        """Pages with refcount >= 1. O(1)."""
        return len(self._refcount) - len(self._free)

    @property
    def num_shared(self) -> int:
        """Pages with refcount >= 2. O(1)."""
        return self._num_shared

    def __len__(self) -> int:
        """Number of used pages. O(1)."""
        return self.num_used

    def refcount(self, page_id: int) -> int:
        """Current refcount of ``page_id`` (0 when free). O(1)."""
        return self._refcount[self._index(page_id)]

    def refcounts(self, page_ids: Iterable[int] | None = None) -> list[int]:
        """Refcounts of ``page_ids`` in order (of every page when ``None``). O(n).

        A new list: changing it changes nothing here. Raises like :meth:`free` for
        an id that is not a page.
        """
        if page_ids is None:
            return list(self._refcount)
        refcount = self._refcount
        return [refcount[p] for p in self._ids(page_ids)]

    def is_shared(self, page_id: int) -> bool:
        """True if more than one holder: writing requires copy-on-write. O(1)."""
        return self.refcount(page_id) > 1

    def can_allocate(self, n: int) -> bool:
        """True if ``alloc(n)`` would succeed (``n >= 1`` pages free). O(1).

        Raises ``TypeError`` for a non-int ``n`` and ``ValueError`` for ``n < 0``.
        """
        n = check_int(n, "n", minimum=0)
        return 0 < n <= len(self._free)

    # ------------------------------------------------------------- mutation
    def alloc(self, num_pages: int) -> list[int]:
        """Take ``num_pages`` free pages, each with refcount 1. O(num_pages).

        All or nothing: raises :class:`~llmds.errors.CapacityError` when fewer
        pages are free (nothing is allocated); ``ValueError`` when
        ``num_pages <= 0`` or larger than the whole pool.
        """
        n = check_int(num_pages, "num_pages", minimum=1)
        if n > len(self._refcount):
            raise ValueError(f"num_pages={n} exceeds the pool size {len(self._refcount)}")
        free = self._free
        if n > len(free):
            raise CapacityError(f"requested {n} pages, {len(free)} free")
        pages = free[len(free) - n :]
        del free[len(free) - n :]
        pages.reverse()  # lowest id first when the stack is in its initial order
        refcount = self._refcount
        for page in pages:
            refcount[page] = 1
        return pages

    def free(self, page_ids: Iterable[int]) -> None:
        """Drop one holder of each page in ``page_ids``. O(len(page_ids)).

        A page whose refcount reaches 0 goes back to the free list. A page may
        appear several times (once per holder released). Raises ``ValueError``
        for an unknown id or a double free (more releases than holders); the
        whole list is validated first, so nothing changes on error.
        """
        self._release(page_ids, "free")

    def decref(self, page_ids: Iterable[int]) -> list[int]:
        """Like :meth:`free`, returning the pages that became free. O(len(page_ids))."""
        return self._release(page_ids, "decref")

    def incref(self, page_ids: Iterable[int]) -> None:
        """Add one holder to each (used) page in ``page_ids``. O(len(page_ids)).

        Raises ``ValueError`` for an unknown or free page; nothing changes then.
        """
        ids = self._ids(page_ids)
        refcount = self._refcount
        for page in ids:
            if refcount[page] == 0:
                raise ValueError(f"page {page} is free; only used pages can be shared")
        for page in ids:
            count = refcount[page]
            if count == 1:
                self._num_shared += 1
            refcount[page] = count + 1

    def defragment(self) -> dict[int, int]:
        """Move used pages to the lowest ids, keeping their order. O(num_pages).

        Returns the ``{old_id: new_id}`` mapping of the pages that moved (pages
        already in place are left out) so owners can move their data and fix
        their block tables. Refcounts move with their pages. After the call
        the free pages are ``num_used..num_pages-1`` and fragmentation is 0.
        """
        refcount = self._refcount
        mapping: dict[int, int] = {}
        new_counts = [0] * len(refcount)
        dest = 0
        for page, count in enumerate(refcount):
            if count:
                if page != dest:
                    mapping[page] = dest
                new_counts[dest] = count
                dest += 1
        self._refcount = new_counts
        self._free = list(range(len(refcount) - 1, dest - 1, -1))
        return mapping

    def stats(self) -> PageStats:
        """Snapshot of the pool (see :class:`PageStats`). O(num_pages)."""
        total = len(self._refcount)
        free = len(self._free)
        longest = run = 0
        for count in self._refcount:
            if count == 0:
                run += 1
                if run > longest:
                    longest = run
            else:
                run = 0
        return PageStats(
            total=total,
            used=total - free,
            free=free,
            shared=self._num_shared,
            utilisation=(total - free) / total,
            fragmentation=(1.0 - longest / free) if free else 0.0,
        )

    # -------------------------------------------------------------- helpers
    def _release(self, page_ids: Iterable[int], what: str) -> list[int]:
        ids = self._ids(page_ids)
        refcount = self._refcount
        if len(ids) > 1 and len(set(ids)) < len(ids):  # a page released more than once
            for page, times in Counter(ids).items():
                if times > refcount[page]:
                    raise ValueError(
                        f"double {what}: page {page} released {times} times "
                        f"but has {refcount[page]} holder(s)"
                    )
        elif ids and not all(map(refcount.__getitem__, ids)):  # C-level scan for a 0
            page = next(p for p in ids if refcount[p] == 0)
            raise ValueError(f"double {what}: page {page} is already free")
        freed: list[int] = []
        for page in ids:
            count = refcount[page] - 1
            refcount[page] = count
            if count == 1:
                self._num_shared -= 1
            elif count == 0:
                freed.append(page)
        self._free.extend(freed)
        return freed

    def _index(self, page_id: object, name: str = "page_id") -> int:
        """``page_id`` as a valid Python int page id, or TypeError/ValueError. O(1)."""
        if type(page_id) is not int:
            if not is_int(page_id):
                raise TypeError(f"{name} must be an int, got {show(page_id)}")
            page_id = int(page_id)  # type: ignore[call-overload]
        if not 0 <= page_id < len(self._refcount):  # type: ignore[operator]
            raise ValueError(
                f"unknown page id {page_id} ({name}): valid ids are 0..{len(self._refcount) - 1}"
            )
        return page_id  # type: ignore[return-value]

    def _ids(self, page_ids: object) -> list[int]:
        """``page_ids`` (an iterable of page ids) as a validated list. O(n).

        The common case, a list of in-range Python ints, is checked by three C-level
        passes (types, min, max) and returned as is: ~25 ns per id where checking
        each id through :meth:`_index` cost ~200 ns (the KV cache releases every page
        of a block table through here).
        """
        if type(page_ids) is not list:
            if isinstance(page_ids, str | bytes | dict) or not isinstance(page_ids, Iterable):
                raise TypeError(f"page_ids must be an iterable of ints, got {show(page_ids)}")
            page_ids = list(page_ids)
        ids: list[Any] = page_ids
        if not ids or (set(map(type, ids)) == _INT_ONLY and min(ids) >= 0
                       and max(ids) < len(self._refcount)):
            return ids
        index = self._index
        return [index(p, f"page_ids[{i}]") for i, p in enumerate(ids)]

    def _check(self) -> None:
        """Assert the class invariants. O(num_pages); tests call it after each step."""
        free, refcount = self._free, self._refcount
        assert len(set(free)) == len(free), "a page is on the free list twice"
        assert all(refcount[p] == 0 for p in free), "a free page has holders"
        assert refcount.count(0) == len(free), "a page with refcount 0 is lost"
        assert all(c >= 0 for c in refcount), "negative refcount"
        assert self._num_shared == sum(1 for c in refcount if c >= 2), "shared count drifted"

    def __repr__(self) -> str:
        return (
            f"PagedAllocator(num_pages={len(self._refcount)}, used={self.num_used}, "
            f"shared={self._num_shared})"
        )
