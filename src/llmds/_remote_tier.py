"""A remote second tier for the local KV caches: the store protocol and the write-back.

:class:`~llmds.kv_cache.KVCache` and :class:`~llmds.mem_cache.RadixCache` take
``remote=`` (a page store, or a :class:`RemoteTier` around one). On a local miss they
look up the longest continuation the store holds and insert it locally; pages they
complete are written back. Both caches name a page by the same identity, the
:mod:`llmds.page_hash` chain (SHA-256, format v1) over the same tokens, namespace
(``extra_key``) and the **store's** page size, so replicas built on either cache share
one store. This module is the part that does not depend on which cache is attached
(the per-cache hooks are in :mod:`llmds._remote_hooks`) and never imports a store's
client library: ``import llmds`` does not import redis.

**The store protocol** (:class:`PageStore`; :class:`llmds.dist.RedisPageStore`
implements it): ``page_size`` (tokens per page), ``contains_prefix(digests) -> int``
(how many leading pages are stored), ``get_many(digests) -> list`` (each payload, or
``None``), ``put_many(digests, pages) -> int`` (pages accepted). A page travels as a
NumPy array of shape ``(page_size, *token_shape)`` and the cache's dtype; a store may
return it as such an array or as its raw bytes. Optional attributes ``page_shape``
and ``dtype``, when present, must match the cache's page (checked at construction).

**Failure model.** A remote failure is a miss, never an error and never wrong KV:
every exception from the store in the serving path is counted (``errors``,
``last_error``) and turns into "nothing stored" or a dropped write; a payload of the
wrong shape, dtype or length is counted (``rejected_pages``) and ends the fetched
run there. Correctness of a remote hit rests on the identity: the key is the page's
SHA-256 chain digest, so a page is only ever found for exactly its tokens, every
token before it, its namespace and page size (the store adds model, revision, dtype
and tenant, and checks each value's header and checksum).

**Write-back.** ``background=False`` (the default) writes each batch (one sequence's
new pages, one insert's new pages) with one ``put_many`` in the caller's thread.
``background=True`` hands the batch (a copy of the pages) to one daemon thread
through a queue bounded by ``max_pending_pages``; when it is full the new batch is
dropped and counted (``dropped_pages``), the serving path never waits. The thread
merges queued batches into ``put_many`` calls of up to ``batch_pages`` pages.
Shutdown is explicit: :meth:`RemoteTier.close` (``flush=True`` waits until every
queued page was handed to the store, ``flush=False`` drops them, counted), also as a
context manager (which flushes). Pages still queued when the interpreter exits
without ``close`` are lost (the thread is a daemon).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from llmds._validate import check_bool, check_int, check_number, is_int, show

__all__ = ["PageStore", "RemoteTier", "as_tier"]


@runtime_checkable
class PageStore(Protocol):
    """What a remote page store offers a :class:`RemoteTier` (see the module docstring).

    ``page_hashes`` are the 32-byte :mod:`llmds.page_hash` digests of the pages.
    """

    page_size: int

    def contains_prefix(self, page_hashes: Sequence[bytes]) -> int:
        """Number of leading pages of ``page_hashes`` that are stored."""

    def get_many(self, page_hashes: Sequence[bytes]) -> list[Any]:
        """Each page's payload (array or bytes), or ``None`` when not stored."""

    def put_many(self, page_hashes: Sequence[bytes], payloads: Sequence[Any]) -> int:
        """Store every page; the number of pages the store accepted."""


_COUNTERS = ("lookups", "lookup_pages", "found_pages", "hit_pages", "hit_tokens",
             "rejected_pages", "put_pages", "written_pages", "refused_pages", "dropped_pages",
             "errors")


class RemoteTier:
    """A page store used as the second tier of one or more local caches.

    Holds the store, checks that the caches bound to it agree with it on the page
    (size, shape, dtype), fetches leading runs of pages (:meth:`fetch`) and writes
    pages back, synchronously or from one background thread (:meth:`submit`).
    Passing a bare store as ``remote=`` wraps it in ``RemoteTier(store)``
    (synchronous write-back).

    Invariants (``_check``): ``put_pages == written_pages + refused_pages +
    dropped_pages + pending_pages``; ``hit_pages + rejected_pages <= found_pages``
    (a found page can also be gone by the time it is read); every counter >= 0;
    ``pending_pages <= max_pending_pages``.

    Complexity: :meth:`fetch` one ``contains_prefix`` and, when something is
    stored, one ``get_many`` (two round trips), O(bytes) to check the payloads;
    :meth:`submit` one ``put_many`` (synchronous) or O(1) (background, plus the copy
    the caller made); :meth:`stats` O(1). Memory: at most ``max_pending_pages``
    queued pages (background), O(1) otherwise.

    Thread safety: safe; the counters and the queue are guarded by an internal
    lock, and the store must itself be safe for concurrent callers when
    ``background=True`` (RedisPageStore is). After ``os.fork`` the child's tier
    starts with an empty queue and, when needed, its own writer thread (the parent's
    queued pages count as dropped in the child: the parent writes them).
    Cannot be pickled or copied (it holds a connection and a thread).
    """

    __slots__ = ("__weakref__", "_closed", "_cond", "_counts", "_dtype", "_inflight",
                 "_page_shape", "_queue", "_queued", "_stopping", "_store", "_thread",
                 "background", "batch_pages", "last_error", "max_pending_pages")

    def __init__(
        self,
        store: PageStore,
        *,
        background: bool = False,
        max_pending_pages: int = 4096,
        batch_pages: int = 64,
    ) -> None:
        if isinstance(store, RemoteTier):
            raise TypeError("store must be a page store, got a RemoteTier (pass it as "
                            "remote= directly)")
        for method in ("contains_prefix", "get_many", "put_many"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"store must have a {method}() method (the page store "
                                f"protocol, llmds._remote_tier.PageStore), got {show(store)}")
        size = getattr(store, "page_size", None)
        if not is_int(size) or int(size) < 1:  # type: ignore[arg-type]
            raise TypeError(f"store must have an int page_size >= 1, got {show(size)}")
        self.background = check_bool(background, "background")
        self.max_pending_pages = check_int(max_pending_pages, "max_pending_pages", minimum=1)
        self.batch_pages = check_int(batch_pages, "batch_pages", minimum=1)
        self._store = store
        self._page_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype[Any] | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self.last_error = ""
        self._cond = threading.Condition()
        self._queue: deque[tuple[list[bytes], npt.NDArray[Any]]] = deque()
        self._queued = 0  # pages in the queue
        self._inflight = 0  # pages the writer thread is handing to the store
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        _LIVE.add(self)

    # ------------------------------------------------------------ the page
    @property
    def store(self) -> PageStore:
        """The page store. O(1)."""
        return self._store

    @property
    def page_size(self) -> int:
        """Tokens per remote page (the store's ``page_size``). O(1)."""
        return int(self._store.page_size)

    @property
    def page_shape(self) -> tuple[int, ...] | None:
        """Shape of one page, ``(page_size, *token_shape)``, once a cache is bound. O(1)."""
        return self._page_shape

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """Dtype of the pages, once a cache is bound. O(1)."""
        return self._dtype

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: fetches find nothing, writes are dropped. O(1)."""
        return self._closed

    def bind(self, page_shape: tuple[int, ...], dtype: np.dtype[Any], what: str) -> None:
        """Check that ``what`` (a cache's pages) fits this tier and the store. O(1).

        Raises ``ValueError`` when the page shape or dtype disagrees with the store's
        declared ``page_shape``/``dtype`` or with a cache bound before.
        """
        shape = tuple(int(d) for d in page_shape)
        dt = np.dtype(dtype)
        if shape[0] != self.page_size:
            raise ValueError(f"{what}: pages of {shape[0]} tokens, but the store's page_size "
                             f"is {self.page_size}")
        store_shape = getattr(self._store, "page_shape", None)
        if store_shape is not None and tuple(store_shape) != shape:
            raise ValueError(f"{what} are pages of shape {shape}, but the store's page_shape "
                             f"is {tuple(store_shape)}")
        if hasattr(self._store, "dtype"):
            store_dt = self._store.dtype
            if store_dt is None or np.dtype(store_dt) != dt:
                name = getattr(self._store, "dtype_name", store_dt)
                raise ValueError(f"{what} hold {dt}, but the store's dtype is {name!r} (the "
                                 "tier sends NumPy pages of the cache's dtype)")
        if self._page_shape is not None and (self._page_shape, self._dtype) != (shape, dt):
            raise ValueError(f"{what} are pages of shape {shape} and {dt}, but this tier "
                             f"already serves pages of {self._page_shape} and {self._dtype}")
        self._page_shape, self._dtype = shape, dt

    # ------------------------------------------------------------ reading
    def fetch(self, page_hashes: list[bytes]) -> list[npt.NDArray[Any]]:
        """The leading run of stored pages of ``page_hashes`` (maybe empty). Never raises.

        Each page is checked (shape, dtype or byte length); the run ends at the first
        page that is missing or does not fit. Pages may be read-only views.
        """
        n = len(page_hashes)
        if not n or self._closed:
            return []
        store = self._store
        got: Sequence[Any] = ()
        found = 0
        try:
            found = min(max(int(store.contains_prefix(page_hashes)), 0), n)
            if found:
                got = store.get_many(page_hashes[:found])
        except Exception as exc:  # any store failure is a miss (module docstring)
            self._error(exc)
            got = ()
        pages: list[npt.NDArray[Any]] = []
        rejected = 0
        for payload in list(got)[:found]:
            if payload is None:
                break
            page = self._decode(payload)
            if page is None:
                rejected = 1
                break
            pages.append(page)
        self._count(lookups=1, lookup_pages=n, found_pages=found, hit_pages=len(pages),
                    rejected_pages=rejected)
        return pages

    def _decode(self, payload: Any) -> npt.NDArray[Any] | None:
        shape, dt = self._page_shape, self._dtype
        assert shape is not None and dt is not None, "fetch before bind"
        if isinstance(payload, np.ndarray):
            return payload if payload.shape == shape and payload.dtype == dt else None
        if isinstance(payload, (bytes, bytearray, memoryview)):
            raw = memoryview(payload).cast("B")
            if raw.nbytes != int(np.prod(shape)) * dt.itemsize:
                return None
            return np.frombuffer(raw, dtype=dt).reshape(shape)
        return None

    def note_hit_tokens(self, num_tokens: int) -> None:
        """Count ``num_tokens`` tokens a cache took from fetched pages. O(1)."""
        self._count(hit_tokens=num_tokens)

    # ------------------------------------------------------------ writing
    def submit(self, page_hashes: list[bytes], pages: npt.NDArray[Any]) -> None:
        """Write ``pages[i]`` (shape ``(n, *page_shape)``) under ``page_hashes[i]``. Never
        raises. Background mode keeps a reference: ``pages`` must be the caller's own
        copy (a fancy-indexed gather is)."""
        n = len(page_hashes)
        if not n:
            return
        if self._closed:
            self._count(put_pages=n, dropped_pages=n)
            return
        if not self.background:
            self._count(put_pages=n)
            self._put(page_hashes, list(pages))
            return
        with self._cond:
            self._counts["put_pages"] += n
            if self._queued + self._inflight + n > self.max_pending_pages:
                self._counts["dropped_pages"] += n
                return
            self._queue.append((page_hashes, pages))
            self._queued += n
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llmds-remote-tier",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _put(self, page_hashes: list[bytes], payloads: list[npt.NDArray[Any]]) -> None:
        n = len(page_hashes)
        try:
            stored = min(max(int(self._store.put_many(page_hashes, payloads)), 0), n)
        except Exception as exc:  # a failed write is a dropped write (module docstring)
            self._error(exc)
            stored = 0
        self._count(written_pages=stored, refused_pages=n - stored)

    def _run(self) -> None:
        """The writer thread: drain the queue in batches of up to ``batch_pages``."""
        cond = self._cond
        while True:
            with cond:
                while not self._queue and not self._stopping:
                    cond.wait()
                if not self._queue:
                    return
                hashes: list[bytes] = []
                payloads: list[npt.NDArray[Any]] = []
                while self._queue and (not hashes or
                                       len(hashes) + len(self._queue[0][0]) <= self.batch_pages):
                    h, p = self._queue.popleft()
                    hashes += h
                    payloads += list(p)
                self._queued -= len(hashes)
                self._inflight = len(hashes)
            try:
                self._put(hashes, payloads)
            finally:
                with cond:
                    self._inflight = 0
                    cond.notify_all()

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue and writer thread are not the child's,
        and the lock may have been held by a parent thread at the fork; their pages
        count as dropped here (the parent writes them). O(1)."""
        self._cond = threading.Condition()
        self._counts["dropped_pages"] += self._queued + self._inflight
        self._queue = deque()
        self._queued = self._inflight = 0
        self._thread = None

    @property
    def pending_pages(self) -> int:
        """Pages queued or being written by the background thread. O(1)."""
        return self._queued + self._inflight

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued page was handed to the store. True when the queue
        is empty (at once in synchronous mode), False after ``timeout_s`` seconds."""
        if timeout_s is not None:
            timeout_s = check_number(timeout_s, "timeout_s", minimum=0.0)
        with self._cond:
            return self._cond.wait_for(lambda: not self.pending_pages, timeout_s)

    def close(self, flush: bool = True, timeout_s: float | None = None) -> None:
        """Stop the tier: ``flush=True`` first writes every queued page (waiting up to
        ``timeout_s``), ``flush=False`` drops them (counted in ``dropped_pages``).
        Then the writer thread ends; later fetches find nothing and writes are
        dropped. Does not close the store. Idempotent."""
        flush = check_bool(flush, "flush")
        if self._closed:
            return
        if flush:
            self.flush(timeout_s)
        with self._cond:
            self._closed = True
            self._stopping = True
            dropped = self._queued
            self._queue.clear()
            self._queued = 0
            self._counts["dropped_pages"] += dropped
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def __enter__(self) -> RemoteTier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(flush=True)

    # ------------------------------------------------------------ counters
    def _count(self, **deltas: int) -> None:
        with self._cond:
            counts = self._counts
            for name, delta in deltas.items():
                counts[name] += delta

    def _error(self, exc: BaseException) -> None:
        with self._cond:
            self._counts["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def stats(self) -> dict[str, Any]:
        """Counters. O(1).

        Reads: ``lookups`` (fetches that asked the store), ``lookup_pages`` (pages
        asked for), ``found_pages`` (pages ``contains_prefix`` reported),
        ``hit_pages`` (pages handed to a cache), ``hit_tokens`` (tokens the caches
        took from them), ``rejected_pages`` (payloads of the wrong shape, dtype or
        length). Writes: ``put_pages`` (pages submitted), ``written_pages`` (accepted
        by the store), ``refused_pages`` (not accepted: store full, store error),
        ``dropped_pages`` (never sent: queue full, closed), ``pending_pages``.
        ``errors`` / ``last_error``: store calls that raised; ``background``,
        ``closed``.
        """
        with self._cond:
            out: dict[str, Any] = dict(self._counts)
            out["pending_pages"] = self.pending_pages
            out["last_error"] = self.last_error
        out["background"] = self.background
        out["closed"] = self._closed
        return out

    def _check(self) -> None:
        """Assert the counter invariants. O(1); tests only."""
        with self._cond:
            c = self._counts
            assert all(v >= 0 for v in c.values()), c
            assert c["put_pages"] == (c["written_pages"] + c["refused_pages"]
                                      + c["dropped_pages"] + self.pending_pages), c
            assert c["hit_pages"] + c["rejected_pages"] <= c["found_pages"] <= c["lookup_pages"]
            assert self.pending_pages <= self.max_pending_pages
            assert self._queued == sum(len(h) for h, _ in self._queue)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a RemoteTier (and a cache with remote=) cannot be pickled or "
                        "copied: it holds a store connection and a writer thread; build a "
                        "new tier in the process that needs one")

    def __repr__(self) -> str:
        mode = "background" if self.background else "sync"
        return (f"RemoteTier({self._store!r}, {mode}, page_size={self.page_size}, "
                f"page_shape={self._page_shape}, dtype={self._dtype})")


_LIVE: weakref.WeakSet[RemoteTier] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for tier in list(_LIVE):
        tier._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


def as_tier(remote: Any, name: str = "remote") -> RemoteTier:
    """``remote`` as a :class:`RemoteTier`: a tier as is, a store wrapped. O(1)."""
    if isinstance(remote, RemoteTier):
        return remote
    try:
        return RemoteTier(remote)
    except TypeError as exc:
        raise TypeError(f"{name} must be a RemoteTier or a page store: {exc}") from None
