"""Count-Min sketch with conservative update, stable hashing, batch updates and aging."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import cmsketch as _k
from llmds._validate import (
    INT64_MAX,
    check_bool,
    check_int,
    check_int_array,
    check_number,
    check_positive_int,
    is_int,
    show,
)

__all__ = ["CountMinSketch"]

Item = str | bytes | int

_UINT64_MOD = 1 << 64
_EMPTY_COUNTS = np.empty(0, dtype=np.int64)
_MAX_WIDTH = (1 << 31) - 1  # the row hash reduces into [0, width) with 32-bit multiply-shift
_MAX_DEPTH = 64
_MAX_CELLS = 1 << 31  # 16 GiB of int64 counters: checked before np.zeros is asked for more


def _row_seeds(seed: int, depth: int) -> npt.NDArray[np.uint64]:
    """``depth`` independent 64-bit row seeds from ``seed`` (SplitMix64 sequence).

    >>> [hex(int(s)) for s in _row_seeds(0, 2)]
    ['0xe220a8397b1dcdaf', '0x6e789e6aa1b965f4']
    """
    out = np.empty(depth, dtype=np.uint64)
    state = seed % _UINT64_MOD
    mask = _UINT64_MOD - 1
    for i in range(depth):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out[i] = z ^ (z >> 31)
    return out


class CountMinSketch:
    """Count-Min sketch (Cormode & Muthukrishnan 2005) with conservative update.

    A ``depth x width`` table of int64 counters; row ``i`` maps an item to one
    column with its own seeded hash. ``estimate(x)`` is the minimum of ``x``'s
    cells. With ``width = ceil(e / epsilon)`` and ``depth = ceil(ln(1 / delta))``
    the estimate exceeds the true count by more than ``epsilon * total`` with
    probability at most ``delta`` (``get_error_bound()`` returns
    ``epsilon * total``). Conservative update (Estan & Varghese 2002, the
    default) raises only the cells that are below ``min + count``; it keeps
    every guarantee and over-estimates less. ``conservative=False`` selects the
    standard update (needed if counts must be exactly mergeable/subtractable).

    Items are ``str`` (counted as their UTF-8 bytes, so ``"a"`` and ``b"a"`` are
    the same item), ``bytes``-like, or ``int`` (taken modulo 2**64, so ``-1`` and
    ``2**64 - 1`` are the same item; NumPy integer arrays are accepted by the
    batch methods). Hashing is stable across processes and machines: FNV-1a 64
    over bytes, then MurmurHash3's ``fmix64`` of ``key ^ seed_i`` per row, with
    row seeds drawn from ``seed`` by SplitMix64; never Python's salted ``hash``.

    Counters and ``total`` saturate at ``2**63 - 1`` (``INT64_MAX``) instead of
    wrapping: a count that would pass it stops there, in ``add``, ``add_many``,
    ``merge`` and ``decay`` alike, so a heavy hitter never turns negative. Counts
    are ints in ``[0, 2**63 - 1]``.

    Invariants (asserted by ``_check``):
      * every counter is in ``[0, INT64_MAX]``; ``total`` is the sum of the added
        counts (halved with ``decay``, summed with ``merge``), capped at ``INT64_MAX``;
      * standard update: each row sums to ``total`` (before any ``decay`` or
        saturation); conservative update: no row sums to more than ``total``
        (unless ``total`` saturated);
      * ``estimate(x) >= min(true count of x, INT64_MAX)`` (never an
        under-estimate; after ``decay`` the true count is the floor-halved count).

    Complexity: ``add``/``estimate``/``is_hot`` O(depth); ``add_many`` and
    ``estimate_many`` O(n * depth) in a compiled loop (plus O(total bytes) for
    str/bytes items); ``merge`` and ``decay`` O(width * depth). Memory:
    ``8 * width * depth`` bytes (at most 2**31 counters). Thread safety: not
    thread-safe; guard it with a lock if shared. Copies (``copy()``, ``copy.copy``,
    ``copy.deepcopy``) and pickles are independent sketches.

    >>> cms = CountMinSketch(width=1024, depth=4)
    >>> cms.add("hello", 3)
    >>> cms.add_many(["hello", "world", "hello"])
    >>> cms.estimate("hello"), cms.estimate("world"), cms.estimate("absent")
    (5, 1, 0)
    >>> cms.is_hot("hello", threshold=5)
    True
    >>> CountMinSketch(epsilon=0.01, delta=0.01).shape
    (5, 272)
    """

    __slots__ = ("_capped", "_conservative", "_one", "_seed", "_seeds", "_table", "_total")

    def __init__(
        self,
        width: int | None = None,
        depth: int | None = None,
        *,
        epsilon: float | None = None,
        delta: float | None = None,
        conservative: bool = True,
        seed: int = 0,
    ) -> None:
        if epsilon is not None or delta is not None:
            if width is not None or depth is not None:
                raise ValueError("give either width/depth or epsilon/delta, not both")
            width, depth = self.size_for(
                0.001 if epsilon is None else epsilon, 0.01 if delta is None else delta
            )
        width = check_positive_int(2048 if width is None else width, "width", maximum=_MAX_WIDTH)
        depth = check_positive_int(4 if depth is None else depth, "depth", maximum=_MAX_DEPTH)
        if width * depth > _MAX_CELLS:
            raise ValueError(
                f"width * depth must be <= {_MAX_CELLS} counters (16 GiB), got "
                f"{width} * {depth} = {width * depth}"
            )
        seed = check_int(seed, "seed")
        conservative = check_bool(conservative, "conservative")
        self._table = np.zeros((depth, width), dtype=np.int64)
        self._seed = seed
        self._seeds = _row_seeds(seed, depth)
        self._conservative = conservative
        self._total = 0
        self._capped = False  # total ever saturated (then row sums may exceed it)
        self._one = np.zeros(1, dtype=np.uint64)

    @staticmethod
    def size_for(epsilon: float, delta: float) -> tuple[int, int]:
        """``(width, depth) = (ceil(e / epsilon), ceil(ln(1 / delta)))``. O(1).

        >>> CountMinSketch.size_for(0.001, 0.01)
        (2719, 5)
        """
        for name, v in (("epsilon", epsilon), ("delta", delta)):
            x = check_number(v, name)
            if not 0.0 < x < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v!r}")
        width = math.e / float(epsilon)
        if width > _MAX_WIDTH:  # also catches e / 5e-324 = inf before math.ceil sees it
            raise ValueError(
                f"epsilon must be >= {math.e / _MAX_WIDTH:.3g} (width <= {_MAX_WIDTH}), "
                f"got {epsilon!r}"
            )
        return math.ceil(width), max(1, math.ceil(math.log(1.0 / float(delta))))

    # ---------------------------------------------------------------- properties
    @property
    def width(self) -> int:
        return int(self._table.shape[1])

    @property
    def depth(self) -> int:
        return int(self._table.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(depth, width)`` of the counter table."""
        return (self.depth, self.width)

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def conservative(self) -> bool:
        return self._conservative

    @property
    def epsilon(self) -> float:
        """Relative error ``e / width``: estimates exceed truth by <= epsilon * total w.h.p."""
        return math.e / self.width

    @property
    def delta(self) -> float:
        """Failure probability ``exp(-depth)`` of the error bound."""
        return math.exp(-self.depth)

    @property
    def total(self) -> int:
        """Sum of all counts added (halved by ``decay``), capped at ``2**63 - 1``. O(1)."""
        return self._total

    def get_error_bound(self) -> float:
        """Additive error bound ``epsilon * total`` (holds with prob. >= 1 - delta). O(1)."""
        return self.epsilon * self._total

    def __repr__(self) -> str:
        mode = "conservative" if self._conservative else "standard"
        return (
            f"CountMinSketch(width={self.width}, depth={self.depth}, {mode}, "
            f"seed={self._seed}, total={self._total})"
        )

    # ------------------------------------------------------------------- hashing
    def _key(self, item: object) -> int:
        """The uint64 key of one item (an int in [0, 2**64)). O(len(item))."""
        buf = self._bytes_of(item)
        if buf is None:
            return self._one_key
        return int(_k.fnv1a64(buf, 0, buf.shape[0]))

    def _bytes_of(self, item: object) -> npt.NDArray[np.uint8] | None:
        """The item's bytes as a uint8 array, or None after storing an int key in ``_one``.

        Exact-type checks first: they cost ~30 ns, the ``isinstance`` chain ~0.5 us.
        """
        t = type(item)
        if t is str:
            return np.frombuffer(item.encode("utf-8"), dtype=np.uint8)  # type: ignore[attr-defined]
        if t is int:
            value = item
        elif t is bytes:
            return np.frombuffer(item, dtype=np.uint8)  # type: ignore[call-overload]
        elif isinstance(item, str):
            return np.frombuffer(item.encode("utf-8"), dtype=np.uint8)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            return np.frombuffer(bytes(item), dtype=np.uint8)
        elif is_int(item):
            value = int(item)  # type: ignore[call-overload]
        else:
            raise TypeError(f"item must be a str, bytes or int, got {show(item)}")
        if not -(1 << 63) <= value < _UINT64_MOD:  # type: ignore[operator]
            raise ValueError(f"int item must be in [-2**63, 2**64), got {value}")
        self._one[0] = value % _UINT64_MOD  # type: ignore[operator]
        return None

    @property
    def _one_key(self) -> int:
        return int(self._one[0])

    def _batch(self, items: Any) -> tuple[str, Any, Any]:
        """Coerce a batch to ``("keys", uint64 keys, None)`` or ``("bytes", buf, offsets)``."""
        if isinstance(items, np.ndarray):
            if items.ndim != 1:
                raise ValueError(f"items must be 1-D, got shape {items.shape}")
            if items.dtype.kind == "i":
                return "keys", np.ascontiguousarray(items, dtype=np.int64).view(np.uint64), None
            if items.dtype.kind == "u":
                return "keys", np.ascontiguousarray(items, dtype=np.uint64), None
            if items.dtype.kind in "US" or items.dtype == object:
                items = items.tolist()
            else:
                raise TypeError(
                    f"items must be an integer, str or bytes array, got dtype {items.dtype}"
                )
        if isinstance(items, Mapping):
            raise TypeError(
                f"items must be a sequence of items, got {show(items)}; for a Counter "
                "pass add_many(list(c), counts=list(c.values()))"
            )
        if isinstance(items, (str, bytes, bytearray)) or not isinstance(items, Iterable):
            raise TypeError(f"items must be a sequence of items, got {show(items)}")
        if not isinstance(items, (list, tuple)):
            items = list(items)
        if len(items) == 0:
            return "keys", np.empty(0, dtype=np.uint64), None
        first = items[0]
        data: bytes | None = None
        if isinstance(first, str):
            try:
                joined = "".join(items)  # TypeError if any item is not a str
            except TypeError:
                pass  # mixed item types: the per-item path below
            else:
                if joined.isascii():
                    data = joined.encode("ascii")
                    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
                else:
                    encoded = [s.encode("utf-8") for s in items]
                    data = b"".join(encoded)
                    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(items))
        elif isinstance(first, (bytes, bytearray, memoryview)):
            if all(type(x) is bytes for x in items):
                data = b"".join(items)
                lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        else:
            try:
                arr = np.asarray(items)
            except (ValueError, OverflowError, TypeError):
                arr = np.asarray(items, dtype=object)
            if arr.dtype.kind in "iu" and arr.ndim == 1:
                if arr.dtype.kind == "i":
                    return "keys", np.ascontiguousarray(arr, dtype=np.int64).view(np.uint64), None
                return "keys", np.ascontiguousarray(arr, dtype=np.uint64), None
        if data is None:
            # Slow path: big ints, bytearrays, mixed types; _key validates every item.
            keys = np.fromiter(map(self._key, items), dtype=np.uint64, count=len(items))
            return "keys", keys, None
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return "bytes", np.frombuffer(data, dtype=np.uint8), offsets

    def _batch_counts(self, n: int, counts: object) -> tuple[npt.NDArray[np.int64], int, int]:
        """``(counts array or empty, scalar count, total to add)`` for a batch of ``n``."""
        if counts is None:
            return _EMPTY_COUNTS, 1, n
        if is_int(counts):
            c = check_int(counts, "count", minimum=0, maximum=INT64_MAX)
            return _EMPTY_COUNTS, c, c * n
        if isinstance(counts, (str, bytes, Mapping)) or not isinstance(counts, Iterable):
            raise TypeError(
                f"counts must be None, an int or a sequence of ints, got {show(counts)}"
            )
        try:
            raw = np.asarray(counts)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"counts must be a sequence of ints, got {show(counts)}") from None
        if raw.dtype.kind == "f" and isinstance(counts, list | tuple) and all(map(is_int, counts)):
            raw = np.asarray(counts, dtype=object)  # NumPy made floats of ints above int64
        if raw.size == 0 and n == 0 and raw.ndim == 1:
            return _EMPTY_COUNTS, 1, 0
        arr64 = check_int_array(raw, "counts", minimum=0, maximum=INT64_MAX)
        if arr64.shape != (n,):
            raise ValueError(f"counts must have shape ({n},) like items, got {arr64.shape}")
        high = int(arr64.max()) if n else 0
        if high <= INT64_MAX // max(n, 1):
            total = int(arr64.sum(dtype=np.int64)) if n else 0  # cannot overflow
        else:
            total = sum(arr64.tolist())  # exact Python ints; saturated by the caller
        return (np.ascontiguousarray(arr64) if n else _EMPTY_COUNTS), 1, total

    # ----------------------------------------------------------------- updates
    def add(self, item: Item, count: int = 1) -> None:
        """Add ``count`` (>= 0) occurrences of ``item``. O(depth) (+ O(len) for str/bytes).

        Each call crosses into compiled code once (~1 us); for many items,
        ``add_many`` is one to two orders of magnitude faster per item.
        """
        if type(count) is not int or count < 0 or count > INT64_MAX:
            count = check_int(count, "count", minimum=0, maximum=INT64_MAX)
        buf = self._bytes_of(item)
        if buf is None:
            _k.add_one(self._table, self._seeds, self._one, count, self._conservative)
        else:
            _k.add_one_bytes(self._table, self._seeds, buf, count, self._conservative)
        total = self._total + count
        if total > INT64_MAX:
            total = INT64_MAX
            self._capped = True
        self._total = total

    def add_many(
        self, items: Sequence[Item] | npt.ArrayLike, counts: int | npt.ArrayLike | None = None
    ) -> None:
        """Add every item of ``items`` (in order), ``counts[j]`` times or once each.

        O(n * depth) in a compiled loop. ``items`` is an integer NumPy array, or a
        list/tuple/array of str, bytes or ints (fastest with one type); ``counts`` is
        ``None`` (1 each), one int for all, or an array of ints >= 0 of the same
        length; item types may be mixed (a slower per-item path). The sketch is
        unchanged if any item or count is invalid. Equal to calling ``add`` for
        each item in order.
        """
        kind, a, b = self._batch(items)
        n = a.shape[0] if kind == "keys" else b.shape[0] - 1
        arr, count, total = self._batch_counts(n, counts)
        if kind == "keys":
            _k.add_keys(self._table, self._seeds, a, arr, count, self._conservative)
        else:
            _k.add_bytes(self._table, self._seeds, a, b, arr, count, self._conservative)
        self._saturate_total(self._total + total)

    def estimate(self, item: Item) -> int:
        """Estimated count of ``item``: never below its true count. O(depth)."""
        buf = self._bytes_of(item)
        if buf is None:
            return int(_k.estimate_one(self._table, self._seeds, self._one))
        return int(_k.estimate_one_bytes(self._table, self._seeds, buf))

    def estimate_many(self, items: Sequence[Item] | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Estimates of every item as an int64 array. O(n * depth), compiled."""
        kind, a, b = self._batch(items)
        if kind == "keys":
            return _k.estimate_keys(self._table, self._seeds, a)
        return _k.estimate_bytes(self._table, self._seeds, a, b)

    def is_hot(self, item: Item, threshold: int) -> bool:
        """True if ``estimate(item) >= threshold``. O(depth)."""
        if not is_int(threshold):  # ints compare exactly; anything else must be a number
            check_number(threshold, "threshold", finite=False)
        return self.estimate(item) >= threshold

    def __getitem__(self, item: Item) -> int:
        return self.estimate(item)

    # ------------------------------------------------------------ combination
    def merge(self, other: CountMinSketch) -> None:
        """Add ``other``'s counters into this sketch. O(width * depth).

        Both sketches must have the same shape and seed (so the same hashes);
        otherwise ``ValueError`` and nothing changes. The result never
        under-estimates the combined stream, also for conservative sketches
        (each conservative cell is >= the count of every item hashed to it).
        """
        if not isinstance(other, CountMinSketch):
            raise TypeError(f"other must be a CountMinSketch, got {show(other)}")
        if other.shape != self.shape:
            raise ValueError(f"cannot merge sketches of shape {other.shape} into {self.shape}")
        if other._seed != self._seed:
            raise ValueError(
                f"cannot merge sketches with different seeds ({other._seed} vs {self._seed})"
            )
        theirs = other._table.copy() if other is self else other._table
        # Saturating add, min(a, MAX - b) + b, in place with one temporary.
        room = np.subtract(INT64_MAX, theirs)
        np.minimum(self._table, room, out=self._table)
        self._table += theirs
        self._capped |= other._capped
        self._saturate_total(self._total + other._total)

    def _saturate_total(self, total: int) -> None:
        if total > INT64_MAX:
            total = INT64_MAX
            self._capped = True
        self._total = total

    def decay(self) -> None:
        """Halve every counter and the total (floor), for aging (TinyLFU reset). O(w * d).

        Recent items then weigh twice as much as items seen before the decay.
        """
        np.right_shift(self._table, 1, out=self._table)
        self._total >>= 1

    def clear(self) -> None:
        """Reset every counter to zero. O(width * depth)."""
        self._table.fill(0)
        self._total = 0
        self._capped = False

    def copy(self) -> CountMinSketch:
        """An independent copy (same shape, seed and mode). O(width * depth)."""
        new = CountMinSketch(
            self.width, self.depth, conservative=self._conservative, seed=self._seed
        )
        new._table[...] = self._table
        new._total = self._total
        new._capped = self._capped
        return new

    __copy__ = copy

    def _check(self) -> None:
        """Assert the class invariants. O(width * depth); tests call it."""
        table = self._table
        assert table.dtype == np.int64 and table.flags.c_contiguous
        assert int(table.min(initial=0)) >= 0, "negative counter"
        assert self._total >= 0
        assert self._total <= INT64_MAX, "total above INT64_MAX"
        assert int(table.max(initial=0)) <= self._total, "a counter holds more than total"
        if not self._capped:  # exact row sums (int64 sums could wrap)
            for row in table:
                assert sum(row.tolist()) <= self._total, "a row holds more than total"

