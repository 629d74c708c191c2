"""What lets one HNSW serve many threads: per-call scratch arrays (and, from
:mod:`llmds._threads`, the readers-writer lock and the worker pool).

* :class:`Scratch` and :class:`ScratchPool`: the working arrays of one search or one
  build thread (visited tags, heaps, result buffers). A call takes a set from the pool
  and gives it back, so concurrent calls never share one and a set is reused warm
  (its visited tags are epoch-stamped, so reuse costs nothing, while a fresh
  ``visited`` array would cost O(n) per call). The pool holds at most as many sets as
  calls ever ran at once.
* :class:`~llmds._threads.RWLock`, :func:`~llmds._threads.num_threads_for` and
  :func:`~llmds._threads.run_parallel` are re-exported from :mod:`llmds._threads`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llmds._threads import RWLock, num_threads_for, run_parallel

__all__ = ["RWLock", "Scratch", "ScratchPool", "num_threads_for", "run_parallel"]


class Scratch:
    """The working arrays of one search or build thread for a graph of ``size`` slots.

    ``visited`` (uint16 epoch tags) and ``tag``; the candidate heap ``cd``/``ci`` (room
    for every slot); the result heap ``td``/``ti`` (``ef + 1``, grown on demand);
    ``out_ids``/``out_d``, the result row of a single-query search (``k``). Memory:
    ``10 * size`` bytes plus ``8 * (ef + k)``.
    """

    __slots__ = ("cd", "ci", "out_d", "out_ids", "size", "tag", "td", "ti", "visited")

    def __init__(self, size: int) -> None:
        self.size = size
        self.visited = np.zeros(size, dtype=np.uint16)
        self.tag = np.zeros(1, dtype=np.uint16)
        self.cd = np.empty(size, dtype=np.float32)
        self.ci = np.empty(size, dtype=np.int32)
        self.td = np.empty(0, dtype=np.float32)
        self.ti = np.empty(0, dtype=np.int32)
        self.out_ids = np.empty(0, dtype=np.int64)
        self.out_d = np.empty(0, dtype=np.float32)

    def top(self, ef: int) -> None:
        """Make room for ``ef + 1`` results. O(ef) when it grows."""
        if self.td.shape[0] <= ef:
            self.td = np.empty(ef + 1, dtype=np.float32)
            self.ti = np.empty(ef + 1, dtype=np.int32)

    def out(self, k: int) -> None:
        """Size the single-query result row to ``k``. O(k) when it changes."""
        if self.out_ids.shape[0] != k:
            self.out_ids = np.empty(k, dtype=np.int64)
            self.out_d = np.empty(k, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (self.visited, self.cd, self.ci, self.td, self.ti,
                                           self.out_ids, self.out_d))


class ScratchPool:
    """Scratch sets for a graph of ``size`` slots; ``take`` one, ``give`` it back. O(1).

    ``list.pop`` and ``list.append`` are atomic, so no lock is needed. ``resize`` (the
    graph grew; called under the owner's write lock) drops the sets that are too small.
    """

    __slots__ = ("_free", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[Scratch] = []

    def take(self) -> Scratch:
        try:
            return self._free.pop()
        except IndexError:
            return Scratch(self.size)

    def give(self, scratch: Scratch) -> None:
        if scratch.size == self.size:
            self._free.append(scratch)

    def run(self, threads: int, ef: int, call: Callable[[Scratch], object]) -> None:
        """``call(scratch)`` on ``threads`` threads at once (:func:`run_parallel`), each
        with its own set, sized for a beam of ``ef``; returns when all are done."""

        def task(_: int) -> None:
            s = self.take()
            s.top(ef)
            try:
                call(s)
            finally:
                self.give(s)

        run_parallel(task, threads)

    def resize(self, size: int) -> None:
        self.size = size
        self._free = []

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in list(self._free))
