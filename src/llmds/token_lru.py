"""LRU cache whose capacity is counted in tokens, not entries."""

from __future__ import annotations

import copy as _copy
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, NoReturn, TypeVar, overload

from llmds._validate import check_nonneg_int, check_positive_int, show

__all__ = ["TokenLRU"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_MISSING: Any = object()


class TokenLRU(Generic[K, V]):
    """Least-recently-used cache with a budget counted in tokens.

    ``token_of(value)`` gives an entry's size in tokens (a non-negative int); it
    is called once, on ``put``, and the size is stored next to the value. ``put``
    evicts least-recently-used entries until the new entry fits and returns them,
    oldest first, so the caller can release what they pin (KV pages, buffers).
    ``get`` marks an entry most recently used; ``peek`` and ``in`` do not.

    Invariants (asserted by ``_check``):
      * ``total_tokens() == sum of the stored sizes <= token_budget``, after every
        call, including ``put``;
      * iteration order (``items()``) is least to most recently used.

    Complexity: ``get``, ``peek``, ``pop``, ``delete``, ``in``, ``len`` O(1);
    ``put`` O(1) plus O(1) per evicted entry; ``evict_until_budget`` O(evicted).
    Memory: one ``OrderedDict`` entry (a doubly linked node) plus a
    ``(value, size)`` tuple per entry. Thread safety: not thread-safe; guard it
    with a lock if shared.

    Copies are independent caches: ``copy()``/``copy.copy`` share the keys and
    values (like ``dict.copy``), ``copy.deepcopy`` copies them too; both share
    ``token_of`` (a sizing policy, not state). ``pickle`` works when ``token_of``
    is picklable (``len``, a module-level function, a picklable callable object);
    with a lambda or a nested function the standard ``pickle`` module refuses with
    its own error naming that function (``PicklingError``, or ``AttributeError:
    Can't pickle local object ...``); ``cloudpickle`` can pickle those.

    An entry larger than the whole budget is refused with ``ValueError``, and the
    cache is left unchanged (nothing is evicted for it); ``fits(value)`` asks first.

    Methods: ``get(key, default=None)``, ``put(key, value) -> evicted``,
    ``peek``, ``pop(key[, default])``, ``delete``, ``popitem``,
    ``evict_until_budget(target_budget) -> evicted``, ``total_tokens()``,
    ``items()``, ``keys()``, ``size_of(key)``, ``fits(value)``, ``clear()``, and
    ``len``/``in``/``[]``/``del``. ``get`` and ``put`` are per-instance attributes
    (closures), so ``cache.get`` is already bound and cheap to pass around.

    >>> cache = TokenLRU(token_budget=10, token_of=len)
    >>> cache.put("a", "xxxx")
    []
    >>> cache.put("b", "yyyy")
    []
    >>> cache.get("a")
    'xxxx'
    >>> cache.put("c", "zzzz")  # 12 > 10 tokens: "b" is least recently used
    [('b', 'yyyy')]
    >>> cache.total_tokens(), list(cache.items())
    (8, [('a', 'xxxx'), ('c', 'zzzz')])
    >>> cache.evict_until_budget(4)
    [('a', 'xxxx')]
    """

    __slots__ = ("_budget", "_data", "_state", "_token_of", "get", "put")

    # ``get`` and ``put`` are closures built per instance in ``__init__`` (see
    # ``_make_get``/``_make_put``): reading ``data``/``budget`` from closure cells
    # instead of ``self`` attributes made the 80/20 Zipf benchmark ~20% faster
    # (3.5M -> 4.2M ops/s), with identical behaviour.
    get: Callable[..., Any]
    put: Callable[[K, V], list[tuple[K, V]]]

    def __init__(self, token_budget: int, token_of: Callable[[V], int]) -> None:
        token_budget = check_positive_int(token_budget, "token_budget")
        if not callable(token_of):
            raise TypeError(f"token_of must be callable, got {show(token_of)}")
        self._budget = token_budget
        self._token_of = token_of
        # key -> (value, size), least recently used first.
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._state = [0]  # [total tokens]; a list so the closures can update it
        self.get = _make_get(self._data)
        self.put = _make_put(self._data, self._state, token_budget, token_of)

    # ------------------------------------------------------------------ sizes
    @property
    def token_budget(self) -> int:
        """The budget in tokens that ``put`` never exceeds. O(1)."""
        return self._budget

    def total_tokens(self) -> int:
        """Tokens held by all entries. O(1)."""
        return self._state[0]

    def fits(self, value: V) -> bool:
        """True if ``value`` alone fits in the budget (``put`` would accept it). O(1)."""
        return _checked_size(self._token_of(value)) <= self._budget

    # ------------------------------------------------------------- dict-like
    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        """True if ``key`` is cached; does not touch recency. O(1)."""
        try:
            return key in self._data
        except TypeError:
            _unhashable(key)

    def __iter__(self) -> Iterator[K]:
        """Keys from least to most recently used."""
        return iter(self._data)

    def __repr__(self) -> str:
        return (
            f"TokenLRU(token_budget={self._budget}, entries={len(self._data)}, "
            f"total_tokens={self._state[0]})"
        )

    def items(self) -> Iterator[tuple[K, V]]:
        """Yield ``(key, value)`` from least to most recently used. O(n) in total."""
        for key, (value, _) in self._data.items():
            yield key, value

    def keys(self) -> list[K]:
        """Keys from least to most recently used. O(n)."""
        return list(self._data)

    def size_of(self, key: K) -> int:
        """Stored size in tokens of ``key``'s entry. O(1). Raises KeyError if absent."""
        try:
            return self._data[key][1]
        except KeyError:
            raise KeyError(key) from None
        except TypeError:
            _unhashable(key)

    @overload
    def peek(self, key: K) -> V | None: ...
    @overload
    def peek(self, key: K, default: D) -> V | D: ...

    def peek(self, key: K, default: Any = None) -> Any:
        """Return the value for ``key`` without changing recency. O(1)."""
        try:
            entry = self._data.get(key)
        except TypeError:
            _unhashable(key)
        return default if entry is None else entry[0]

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def __getitem__(self, key: K) -> V:
        """Return the value for ``key`` and mark it most recently used. O(1)."""
        try:
            entry = self._data.get(key)
        except TypeError:
            _unhashable(key)
        if entry is None:
            raise KeyError(key)
        self._data.move_to_end(key)
        return entry[0]

    @overload
    def pop(self, key: K) -> V: ...
    @overload
    def pop(self, key: K, default: D) -> V | D: ...

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value, like ``dict.pop``. O(1).

        Raises KeyError if ``key`` is absent and no ``default`` is given.
        """
        try:
            entry = self._data.pop(key, None)
        except TypeError:
            _unhashable(key)
        if entry is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._state[0] -= entry[1]
        return entry[0]

    def delete(self, key: K) -> None:
        """Remove ``key``. O(1). Raises KeyError if absent."""
        self.pop(key)

    def __delitem__(self, key: K) -> None:
        self.pop(key)

    def clear(self) -> None:
        """Remove every entry. O(n)."""
        self._data.clear()
        self._state[0] = 0

    def popitem(self) -> tuple[K, V]:
        """Remove and return the least recently used ``(key, value)``. O(1).

        Raises KeyError if the cache is empty.
        """
        if not self._data:
            raise KeyError("popitem(): TokenLRU is empty")
        key, (value, size) = self._data.popitem(last=False)
        self._state[0] -= size
        return key, value

    def evict_until_budget(self, target_budget: int) -> list[tuple[K, V]]:
        """Evict LRU entries until ``total_tokens() <= target_budget``. O(evicted).

        Returns the evicted ``(key, value)`` pairs, least recently used first.
        The cache's own ``token_budget`` is not changed.
        """
        target_budget = check_nonneg_int(target_budget, "target_budget")
        evicted: list[tuple[K, V]] = []
        data = self._data
        tokens = self._state[0]
        while tokens > target_budget:
            key, (value, size) = data.popitem(last=False)
            tokens -= size
            evicted.append((key, value))
        self._state[0] = tokens
        return evicted

    # ------------------------------------------------------------ copy / pickle
    # ``get``/``put`` are closures over this instance's dict and total, so the
    # default copy/pickle protocol (copy the slots) would hand the copy closures
    # that still write into the original. Every path below rebuilds them.
    def copy(self) -> TokenLRU[K, V]:
        """A shallow copy: a new cache holding the same keys and values. O(n)."""
        return _restore(type(self), self._budget, self._token_of, self._entries())

    def __copy__(self) -> TokenLRU[K, V]:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenLRU[K, V]:
        new = _restore(type(self), self._budget, self._token_of, ())
        memo[id(self)] = new  # values that refer back to this cache get the copy
        _fill(new, _copy.deepcopy(self._entries(), memo))
        return new

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return _restore, (type(self), self._budget, self._token_of, self._entries())

    def _entries(self) -> list[tuple[K, V, int]]:
        """``(key, value, size)`` of every entry, least recently used first. O(n)."""
        return [(key, value, size) for key, (value, size) in self._data.items()]

    def _check(self) -> None:
        """Assert the class invariants. O(n); tests call it after each step."""
        sizes = [size for _, size in self._data.values()]
        assert all(type(s) is int and s >= 0 for s in sizes), "a stored size is not an int >= 0"
        assert self._state[0] == sum(sizes), "total_tokens drifted from the stored sizes"
        assert 0 <= self._state[0] <= self._budget, "over budget"


def _restore(
    cls: type[TokenLRU[Any, Any]],
    token_budget: int,
    token_of: Callable[[Any], int],
    entries: Iterable[tuple[Any, Any, int]],
) -> TokenLRU[Any, Any]:
    """A ``cls`` cache holding ``entries`` (oldest first), with fresh closures. O(n).

    The target of ``copy``, ``deepcopy`` and unpickling; it re-checks the stored
    sizes and the budget, so a hand-edited pickle cannot build a cache over budget.
    """
    new = cls.__new__(cls)
    TokenLRU.__init__(new, token_budget, token_of)
    _fill(new, entries)
    return new


def _fill(cache: TokenLRU[Any, Any], entries: Iterable[tuple[Any, Any, int]]) -> None:
    data = cache._data
    total = 0
    for key, value, size in entries:
        size = _checked_size(size)
        data[key] = (value, size)
        total += size
    if total > cache._budget:
        raise ValueError(f"entries hold {total} tokens, more than token_budget {cache._budget}")
    cache._state[0] = total


def _unhashable(key: object) -> NoReturn:
    """Raise the TypeError for a key that cannot be hashed (no dict-internal wording)."""
    raise TypeError(f"key must be hashable, got {show(key)}") from None


def _checked_size(size: object) -> int:
    """``size`` (a ``token_of`` result) as an int >= 0, or a clear error. O(1)."""
    return check_nonneg_int(size, "token_of(value)")


def _make_get(data: OrderedDict[Any, tuple[Any, int]]) -> Callable[..., Any]:
    dget = data.get
    move_to_end = data.move_to_end

    def get(key: Any, default: Any = None) -> Any:
        """Return the value for ``key`` and mark it most recently used. O(1).

        Returns ``default`` (``None``) if ``key`` is not cached.
        """
        try:
            entry = dget(key)
        except TypeError:
            _unhashable(key)
        if entry is None:
            return default
        move_to_end(key)
        return entry[0]

    return get


def _make_put(
    data: OrderedDict[Any, tuple[Any, int]],
    state: list[int],
    budget: int,
    token_of: Callable[[Any], int],
) -> Callable[[Any, Any], list[tuple[Any, Any]]]:
    dget = data.get
    move_to_end = data.move_to_end
    popitem = data.popitem

    def put(key: Any, value: Any) -> list[tuple[Any, Any]]:
        """Insert or replace ``key`` as most recently used; evict LRU entries to fit.

        O(1) plus O(1) per evicted entry. Returns the evicted ``(key, value)``
        pairs, least recently used first (the 0.1 API returned ``None``; a list
        is returned so callers can free what evicted entries pin). Replacing a
        key never evicts that key itself. Raises ``ValueError`` if ``value``
        alone is larger than ``token_budget`` and ``TypeError``/``ValueError`` if
        ``token_of`` returns a non-int or a negative number; the cache is then
        unchanged.
        """
        size = token_of(value)
        if type(size) is not int or size < 0:
            size = _checked_size(size)
        if size > budget:
            raise ValueError(
                f"value of key {show(key)} costs {size} tokens, more than the whole "
                f"token_budget of {budget}"
            )
        try:
            old = dget(key)  # hashes key first: an unhashable key fails here, unchanged
        except TypeError:
            _unhashable(key)
        tokens = state[0]
        if old is not None:
            tokens -= old[1]
            move_to_end(key)
        data[key] = (value, size)
        tokens += size
        evicted: list[tuple[Any, Any]] = []
        while tokens > budget:
            old_key, (old_value, old_size) = popitem(False)
            tokens -= old_size
            evicted.append((old_key, old_value))
        state[0] = tokens
        return evicted

    return put
