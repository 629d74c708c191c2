"""HNSW slots: which row of the per-slot arrays an id lives in, and a new slot's level.

An id keeps its slot for life (an update rewrites the slot in place); a deleted id's
slot goes on the free list and the next new id takes it (LIFO), so the arrays only
grow when no freed slot is left. Levels are drawn per new slot from the index's own
RNG, ``floor(-ln(U) * ml)`` capped at ``MAX_LEVEL``, up front for a whole batch, so the
random stream depends on the insertion order only, not on the threads that link them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from llmds._hnsw_file import MAX_LEVEL

__all__ = ["assign_slots", "draw_levels", "upper_starts"]


def assign_slots(ids: list[int], id_to_slot: dict[int, int], free: list[int],
                 ) -> tuple[npt.NDArray[np.int32], list[int], int]:
    """``(slots, fresh, num_free)`` for the unique ``ids``; changes nothing. O(len(ids)).

    A present id keeps its slot; a new one takes the last freed slot, and once those
    run out gets -1 and its position in ``fresh`` (the caller numbers fresh slots).
    ``free[:num_free]`` are the freed slots left over.

    >>> assign_slots([7, 8, 9], {7: 0}, [3])
    (array([ 0,  3, -1], dtype=int32), [2], 0)
    """
    slots = np.empty(len(ids), dtype=np.int32)
    num_free = len(free)
    fresh = []
    for j, i in enumerate(ids):
        s = id_to_slot.get(i)
        if s is None:
            if num_free > 0:
                num_free -= 1
                s = free[num_free]
            else:
                s = -1
                fresh.append(j)
        slots[j] = s
    return slots, fresh, num_free


def draw_levels(rng: np.random.Generator, n: int, ml: float) -> npt.NDArray[np.int32]:
    """``n`` levels ``floor(-ln(U) * ml)``, ``U`` uniform in (0, 1], at most ``MAX_LEVEL``."""
    draws = -np.log1p(-rng.random(n)) * ml
    return np.minimum(draws, MAX_LEVEL).astype(np.int32)


def upper_starts(levels: npt.NDArray[np.int32], first_row: int) -> npt.NDArray[np.int32]:
    """First ``upper_links`` row of each node, rows handed out in order from ``first_row``.

    A node of level ``L >= 1`` gets ``L`` consecutive rows; level 0 gets -1. O(n).

    >>> upper_starts(np.array([0, 2, 1, 0], np.int32), 5).tolist()
    [-1, 5, 7, -1]
    """
    starts = np.full(levels.shape[0], -1, dtype=np.int32)
    up = levels > 0
    starts[up] = first_row + np.concatenate(([0], np.cumsum(levels[up])[:-1]))
    return starts
