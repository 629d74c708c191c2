"""TokenLRU: documented behaviour, bad input, and a stateful test against a list LRU."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds.token_lru import TokenLRU
from tests.reference.lru import ListLRU


def make(budget: int = 10) -> TokenLRU[str, str]:
    return TokenLRU(token_budget=budget, token_of=len)


def test_seed_usage_guide_example() -> None:
    cache = TokenLRU(token_budget=1000, token_of=lambda value: len(str(value)))
    cache.put("key1", "value with many tokens")
    cache.put("key2", "another value")
    evicted = cache.evict_until_budget(target_budget=500)
    assert evicted == []
    assert cache.total_tokens() == len("value with many tokens") + len("another value")
    assert cache.evict_until_budget(target_budget=15) == [("key1", "value with many tokens")]
    assert cache.get("key1") is None
    assert cache.get("key2") == "another value"
    cache._check()


def test_put_evicts_lru_first_and_returns_pairs() -> None:
    cache = make(10)
    assert cache.put("a", "aaa") == []
    assert cache.put("b", "bbb") == []
    assert cache.put("c", "ccc") == []
    assert cache.get("a") == "aaa"  # b is now least recently used
    assert cache.put("d", "ddddd") == [("b", "bbb"), ("c", "ccc")]
    assert list(cache.items()) == [("a", "aaa"), ("d", "ddddd")]
    assert cache.total_tokens() == 8
    cache._check()


def test_peek_and_contains_do_not_touch_recency() -> None:
    cache = make(6)
    cache.put("a", "aaa")
    cache.put("b", "bbb")
    assert cache.peek("a") == "aaa"
    assert "a" in cache and "zz" not in cache
    assert cache.peek("zz") is None and cache.peek("zz", "dflt") == "dflt"
    assert cache.put("c", "c") == [("a", "aaa")]


def test_replace_updates_size_and_recency_without_self_eviction() -> None:
    cache = make(10)
    cache.put("a", "aaaa")
    cache.put("b", "bbbb")
    assert cache.put("a", "a" * 10) == [("b", "bbbb")]
    assert cache.total_tokens() == 10 and len(cache) == 1
    assert cache.put("a", "x") == []
    assert cache.total_tokens() == 1
    cache._check()


def test_pop_delete_popitem_clear() -> None:
    cache = make(10)
    cache.put("a", "aa")
    cache.put("b", "bbb")
    assert cache.pop("a") == "aa"
    assert cache.pop("a", None) is None
    with pytest.raises(KeyError):
        cache.pop("a")
    with pytest.raises(KeyError):
        cache.delete("a")
    cache.put("c", "c")
    del cache["c"]
    assert cache.total_tokens() == 3
    assert cache.popitem() == ("b", "bbb")
    with pytest.raises(KeyError):
        cache.popitem()
    cache.put("d", "dd")
    cache.clear()
    assert len(cache) == 0 and cache.total_tokens() == 0
    cache._check()


def test_mapping_dunders_and_size_of() -> None:
    cache = make(10)
    cache["a"] = "aaa"
    assert cache["a"] == "aaa"
    assert cache.size_of("a") == 3
    with pytest.raises(KeyError):
        cache["nope"]
    with pytest.raises(KeyError):
        cache.size_of("nope")
    assert list(cache) == ["a"] and cache.keys() == ["a"]
    assert "TokenLRU(" in repr(cache)
    assert cache.token_budget == 10
    assert cache.fits("x" * 10) and not cache.fits("x" * 11)


def test_none_values_and_zero_size_entries() -> None:
    cache: TokenLRU[str, object] = TokenLRU(3, lambda v: 0 if v is None else 1)
    cache.put("n", None)
    assert "n" in cache and cache.get("n") is None and cache.get("n", 5) is None
    for i in range(100):
        cache.put(f"z{i}", None)
    assert cache.total_tokens() == 0 and len(cache) == 101


def test_exact_budget_fits() -> None:
    cache = make(5)
    assert cache.put("a", "12345") == []
    assert cache.put("b", "12345") == [("a", "12345")]


def test_item_larger_than_budget_is_refused_unchanged() -> None:
    cache = make(5)
    cache.put("a", "aa")
    with pytest.raises(ValueError, match="token_budget"):
        cache.put("big", "x" * 6)
    with pytest.raises(ValueError):
        cache.put("a", "x" * 6)  # replacing does not remove the old entry either
    assert list(cache.items()) == [("a", "aa")] and cache.total_tokens() == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_bad_token_of_results(bad: object) -> None:
    cache: TokenLRU[str, object] = TokenLRU(10, lambda v: bad)  # type: ignore[arg-type,return-value]
    with pytest.raises((TypeError, ValueError), match="token_of"):
        cache.put("a", 1)
    assert len(cache) == 0 and cache.total_tokens() == 0


def test_numpy_int_sizes_are_accepted() -> None:
    cache: TokenLRU[str, object] = TokenLRU(10, lambda v: np.int64(4))
    cache.put("a", 1)
    assert cache.total_tokens() == 4 and type(cache.size_of("a")) is int


def test_token_of_raising_leaves_cache_unchanged() -> None:
    def boom(value: object) -> int:
        raise RuntimeError("boom")

    cache: TokenLRU[str, object] = TokenLRU(10, boom)
    with pytest.raises(RuntimeError):
        cache.put("a", 1)
    assert len(cache) == 0


def test_unhashable_key() -> None:
    cache = make(10)
    cache.put("a", "a")
    with pytest.raises(TypeError):
        cache.put([1], "x")  # type: ignore[arg-type]
    assert cache.total_tokens() == 1 and len(cache) == 1


@pytest.mark.parametrize(
    ("budget", "exc"), [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_budget(budget: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="token_budget"):
        TokenLRU(budget, len)  # type: ignore[arg-type]


def test_bad_token_of_callable() -> None:
    with pytest.raises(TypeError, match="token_of"):
        TokenLRU(10, 5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("target", "exc"), [(-1, ValueError), (2.0, TypeError), (None, TypeError)])
def test_bad_evict_target(target: object, exc: type[Exception]) -> None:
    cache = make(10)
    cache.put("a", "aaa")
    with pytest.raises(exc, match="target_budget"):
        cache.evict_until_budget(target)  # type: ignore[arg-type]
    assert cache.total_tokens() == 3


def test_evict_until_zero_empties() -> None:
    cache = make(10)
    cache.put("a", "a")
    cache.put("b", "bb")
    assert cache.evict_until_budget(0) == [("a", "a"), ("b", "bb")]
    assert cache.evict_until_budget(0) == []


KEYS = st.integers(0, 7)
VALUES = st.text(alphabet="xyz", max_size=12)


class LRUMachine(RuleBasedStateMachine):
    """Every operation on TokenLRU agrees with the list model, step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: TokenLRU[int, str] = TokenLRU(20, len)
        self.model = ListLRU(20, len)

    @rule(key=KEYS, value=VALUES)
    def put(self, key: int, value: str) -> None:
        assert self.cache.put(key, value) == self.model.put(key, value)

    @rule(key=KEYS, value=st.text(alphabet="x", min_size=21, max_size=25))
    def put_too_large(self, key: int, value: str) -> None:
        with pytest.raises(ValueError):
            self.cache.put(key, value)

    @rule(key=KEYS)
    def get(self, key: int) -> None:
        assert self.cache.get(key) == self.model.get(key)

    @rule(key=KEYS)
    def peek(self, key: int) -> None:
        assert self.cache.peek(key) == self.model.peek(key)

    @rule(key=KEYS)
    def pop(self, key: int) -> None:
        assert self.cache.pop(key, None) == self.model.pop(key)

    @rule(budget=st.integers(0, 25))
    def evict(self, budget: int) -> None:
        assert self.cache.evict_until_budget(budget) == self.model.evict_until_budget(budget)

    @precondition(lambda self: len(self.cache) > 0)
    @rule()
    def popitem(self) -> None:
        k, v = self.cache.popitem()
        assert (k, v) == self.model.items()[0]
        self.model.pop(k)

    @invariant()
    def agree(self) -> None:
        self.cache._check()
        assert list(self.cache.items()) == self.model.items()
        assert self.cache.total_tokens() == self.model.total_tokens()
        assert len(self.cache) == len(self.model.items())
        assert self.cache.total_tokens() <= 20


TestLRUStateful = LRUMachine.TestCase


def _filled() -> TokenLRU[str, list[str]]:
    cache: TokenLRU[str, list[str]] = TokenLRU(10, len)
    cache.put("a", ["x", "y"])
    cache.put("b", ["z"])
    cache.get("a")  # order: b, a
    return cache


def _assert_independent(orig: TokenLRU, clone: TokenLRU) -> None:
    assert type(clone) is type(orig)
    assert list(clone.items()) == list(orig.items()) and clone.keys() == ["b", "a"]
    assert clone.total_tokens() == orig.total_tokens() == 3
    assert clone.token_budget == orig.token_budget
    clone._check()
    # Writes through every entry point of the clone leave the original alone, and back.
    clone.put("c", ["1"] * 8)
    assert clone.get("b") is None and "b" not in clone  # evicted from the clone only
    clone["d"] = []
    del clone["a"]
    assert orig.keys() == ["b", "a"] and orig.total_tokens() == 3
    orig.put("e", ["q"])
    orig.get("b")
    assert "e" not in clone and clone.keys() == ["c", "d"]
    assert clone.total_tokens() == 8
    orig._check()
    clone._check()


def test_deepcopy_is_independent() -> None:
    orig = _filled()
    clone = copy.deepcopy(orig)
    assert clone.peek("a") == ["x", "y"] and clone.peek("a") is not orig.peek("a")
    _assert_independent(orig, clone)


def test_shallow_copy_is_independent() -> None:
    orig = _filled()
    for clone in (copy.copy(orig), orig.copy()):
        assert clone.peek("a") is orig.peek("a")  # values shared, like dict.copy
    _assert_independent(orig, orig.copy())


def test_pickle_round_trip_is_independent() -> None:
    orig = _filled()
    clone = pickle.loads(pickle.dumps(orig))
    _assert_independent(orig, clone)


def test_deepcopy_works_with_a_lambda_token_of() -> None:
    cache: TokenLRU[str, str] = TokenLRU(4, lambda v: len(v))
    cache.put("a", "xx")
    clone = copy.deepcopy(cache)
    clone.put("b", "yyy")  # evicts "a" in the clone only
    assert cache.keys() == ["a"] and clone.keys() == ["b"]
    cache._check()
    clone._check()


def test_pickle_with_a_lambda_token_of_names_it() -> None:
    cache: TokenLRU[str, str] = TokenLRU(4, lambda v: len(v))
    # The standard library's own error names the function; a local lambda gives
    # AttributeError("Can't pickle local object ...<lambda>"), a global one PicklingError.
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(cache)
    assert cache.keys() == [] and copy.deepcopy(cache).token_budget == 4


def test_deepcopy_keeps_self_references() -> None:
    cache: TokenLRU[str, object] = TokenLRU(4, lambda v: 1)
    cache.put("me", [cache])
    clone = copy.deepcopy(cache)
    assert clone.peek("me")[0] is clone  # type: ignore[index]


def test_hand_made_pickle_over_budget_is_refused() -> None:
    from llmds.token_lru import _restore

    with pytest.raises(ValueError, match="token_budget"):
        _restore(TokenLRU, 2, len, [("a", "xx", 2), ("b", "y", 1)])
    with pytest.raises(ValueError, match="token_of"):
        _restore(TokenLRU, 2, len, [("a", "xx", -2)])


class CopyMachine(RuleBasedStateMachine):
    """A cache and its copies (deepcopy, copy, pickle) evolve independently, each like a model."""

    def __init__(self) -> None:
        super().__init__()
        self.caches: list[TokenLRU[int, str]] = [TokenLRU(20, len)]
        self.models = [ListLRU(20, len)]

    @rule(which=st.integers(0, 7), key=KEYS, value=VALUES)
    def put(self, which: int, key: int, value: str) -> None:
        i = which % len(self.caches)
        assert self.caches[i].put(key, value) == self.models[i].put(key, value)

    @rule(which=st.integers(0, 7), key=KEYS)
    def get(self, which: int, key: int) -> None:
        i = which % len(self.caches)
        assert self.caches[i].get(key) == self.models[i].get(key)

    @rule(which=st.integers(0, 7), key=KEYS)
    def pop(self, which: int, key: int) -> None:
        i = which % len(self.caches)
        assert self.caches[i].pop(key, None) == self.models[i].pop(key)

    @precondition(lambda self: len(self.caches) < 6)
    @rule(which=st.integers(0, 7), how=st.sampled_from(["deepcopy", "copy", "pickle"]))
    def clone(self, which: int, how: str) -> None:
        i = which % len(self.caches)
        cache = self.caches[i]
        if how == "deepcopy":
            new = copy.deepcopy(cache)
        elif how == "copy":
            new = cache.copy()
        else:
            new = pickle.loads(pickle.dumps(cache))
        model = ListLRU(20, len)
        for k, v in self.models[i].items():
            model.put(k, v)
        self.caches.append(new)
        self.models.append(model)

    @invariant()
    def agree(self) -> None:
        for cache, model in zip(self.caches, self.models, strict=True):
            cache._check()
            assert list(cache.items()) == model.items()
            assert cache.total_tokens() == model.total_tokens()


TestCopyStateful = CopyMachine.TestCase
