"""Hostile-value probe of KVCache and PagedAllocator: every public method, every
argument, a fixed set of hostile values. Each case expects either success (the value
is meaningful) or a clear error (TypeError / ValueError / KeyError / an llmds error)
whose message names the argument, with the structure unchanged and ``_check()`` clean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from llmds.errors import LLMDSError
from llmds.kv_cache import KVCache
from llmds.paged_allocator import PagedAllocator

VALUES: dict[str, Any] = {
    "None": None,
    "True": True,
    "False": False,
    "1.5": 1.5,
    "nan": math.nan,
    "inf": math.inf,
    "'7.5'": "7.5",
    "'x'": "x",
    "b'x'": b"x",
    "2**70": 2**70,
    "-1": -1,
    "0": 0,
    "3": 3,
    "np.int64(3)": np.int64(3),
    "np.float64(2.0)": np.float64(2.0),
    "np.True_": np.True_,
    "[1]": [1],
    "[]": [],
    "[[1, 2]]": [[1, 2]],
    "[1, None]": [1, None],
    "{1: 2}": {1: 2},
    "{1}": {1},
    "object()": object(),
    "int matrix": np.ones((2, 2), dtype=np.int64),
    "float array": np.array([1.5]),
    "uint64 max": np.array([2**64 - 1], dtype=np.uint64),
}


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _count(v: Any, lo: int = 0, hi: float = math.inf) -> bool:
    ok_type = isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)
    return ok_type and lo <= int(v) <= hi


def _names(*labels: str) -> Callable[[Any], bool]:
    wanted = [VALUES[k] for k in labels]
    return lambda v: any(v is w for w in wanted)


def _extra_key(v: Any) -> bool:
    return v is None or isinstance(v, str | bytes) or _count(v, -math.inf)


def _kv() -> KVCache:
    cache = KVCache(page_size=2, max_pages=8)
    cache.allocate("live", [1, 2, 3])
    cache.attach("vals", [1.0, 2.0, 3.0])
    return cache


def _kv_state(cache: KVCache) -> Any:
    seqs = {k: (cache.block_table(k).tolist(), cache.get(k)) for k in cache._seqs}
    return seqs, cache.stats(), dict(cache._pages.table), cache.pool.copy().tolist()


def _alloc() -> PagedAllocator:
    a = PagedAllocator(4)
    a.alloc(2)
    return a


def _alloc_state(a: PagedAllocator) -> Any:
    return list(a._refcount), list(a._free), a.num_shared


# (target, argument name, factory, state, call(obj, v), valid(v))
CASES: list[tuple[str, str, Any, Any, Callable[[Any, Any], Any], Callable[[Any], bool]]] = [
    ("KVCache()", "page_size", None, None,
     lambda _, v: KVCache(page_size=v, max_pages=4), lambda v: _count(v, 1, 2**20)),
    ("KVCache()", "max_pages", None, None,
     lambda _, v: KVCache(page_size=2, max_pages=v), lambda v: _count(v, 1, 2**24)),
    ("KVCache()", "enable_prefix_sharing", None, None,
     lambda _, v: KVCache(2, 4, v), _names("True", "False", "np.True_")),
    ("KVCache()", "token_shape", None, None,
     lambda _, v: KVCache(2, 4, token_shape=v), _names("3", "np.int64(3)", "[1]", "[]")),
    ("KVCache()", "dtype", None, None,
     lambda _, v: KVCache(2, 4, dtype=v), _names("None")),
    ("KVCache()", "hash_algorithm", None, None,
     lambda _, v: KVCache(2, 4, hash_algorithm=v), lambda v: False),
    ("KVCache()", "vocab_size", None, None,
     lambda _, v: KVCache(2, 4, vocab_size=v), lambda v: v is None or _count(v, 1, 2**32)),
    ("attach", "seq_id", _kv, _kv_state, lambda c, v: c.attach(v, [1.0, 2.0]), _hashable),
    ("attach", "kv_tokens", _kv, _kv_state, lambda c, v: c.attach("n", v),
     _names("[1]", "[]", "float array", "uint64 max")),
    ("attach", "prefix_tokens", _kv, _kv_state,
     lambda c, v: c.attach("n", [1.0, 2.0, 3.0], prefix_tokens=v),
     lambda v: v is None or _names("[1]", "[]")(v)),
    ("attach", "extra_key", _kv, _kv_state,
     lambda c, v: c.attach("n", [1.0, 2.0], prefix_tokens=[1, 2], extra_key=v), _extra_key),
    ("allocate", "seq_id", _kv, _kv_state, lambda c, v: c.allocate(v, [1, 2]), _hashable),
    ("allocate", "token_ids", _kv, _kv_state, lambda c, v: c.allocate("n", v),
     _names("[1]", "[]")),
    ("allocate", "extra_key", _kv, _kv_state,
     lambda c, v: c.allocate("n", [1, 2], extra_key=v), _extra_key),
    ("append", "seq_id", _kv, _kv_state, lambda c, v: c.append(v, 1.0), lambda v: False),
    ("append", "kv", _kv, _kv_state, lambda c, v: c.append("vals", v),
     _names("1.5", "2**70", "-1", "0", "3", "np.int64(3)", "np.float64(2.0)", "[1]", "[]",
            "float array", "uint64 max")),
    ("append_tokens", "seq_id", _kv, _kv_state, lambda c, v: c.append_tokens(v, [1]),
     lambda v: False),
    ("append_tokens", "token_ids", _kv, _kv_state, lambda c, v: c.append_tokens("live", v),
     _names("[1]", "[]")),
    ("fork", "parent_id", _kv, _kv_state, lambda c, v: c.fork(v, "child"), lambda v: False),
    ("fork", "child_id", _kv, _kv_state, lambda c, v: c.fork("live", v), _hashable),
    ("detach", "seq_id", _kv, _kv_state, lambda c, v: c.detach(v), lambda v: False),
    ("free", "seq_id", _kv, _kv_state, lambda c, v: c.free(v), lambda v: False),
    ("get", "seq_id", _kv, _kv_state, lambda c, v: c.get(v), _hashable),
    ("get_array", "seq_id", _kv, _kv_state, lambda c, v: c.get_array(v), lambda v: False),
    ("block_table", "seq_id", _kv, _kv_state, lambda c, v: c.block_table(v), lambda v: False),
    ("num_tokens", "seq_id", _kv, _kv_state, lambda c, v: c.num_tokens(v), lambda v: False),
    ("__contains__", "seq_id", _kv, _kv_state, lambda c, v: v in c, lambda v: True),
    ("can_allocate", "num_tokens", _kv, _kv_state, lambda c, v: c.can_allocate(v), _count),
    ("evict", "num_pages", _kv, _kv_state, lambda c, v: c.evict(v),
     lambda v: v is None or _count(v)),
    ("PagedAllocator()", "num_pages", None, None, lambda _, v: PagedAllocator(v),
     lambda v: _count(v, 1, 2**24)),
    ("alloc", "num_pages", _alloc, _alloc_state, lambda a, v: a.alloc(v), lambda v: False),
    ("free", "page_ids", _alloc, _alloc_state, lambda a, v: a.free(v),
     _names("[1]", "[]", "{1}")),
    ("decref", "page_ids", _alloc, _alloc_state, lambda a, v: a.decref(v),
     _names("[1]", "[]", "{1}")),
    ("incref", "page_ids", _alloc, _alloc_state, lambda a, v: a.incref(v),
     _names("[1]", "[]", "{1}")),
    ("refcount", "page_id", _alloc, _alloc_state, lambda a, v: a.refcount(v),
     lambda v: _count(v, 0, 3)),
    ("is_shared", "page_id", _alloc, _alloc_state, lambda a, v: a.is_shared(v),
     lambda v: _count(v, 0, 3)),
    ("can_allocate", "n", _alloc, _alloc_state, lambda a, v: a.can_allocate(v), _count),
]

PARAMS = [
    pytest.param(case, label, id=f"{case[0]}-{case[1]}-{label}")
    for case in CASES
    for label in VALUES
]

def run_case(case: Any, label: str, names: tuple[str, ...] = ()) -> None:
    """Call ``case`` with ``VALUES[label]``: success iff the value is meaningful, else a
    clear error naming the argument (or one of ``names``) and no change."""
    _target, name, factory, state, call, valid = case
    value = VALUES[label]
    obj = factory() if factory else None
    before = state(obj) if state else None
    try:
        call(obj, value)
    except (TypeError, ValueError, KeyError, IndexError, LLMDSError) as exc:
        msg = str(exc)
        capacity = isinstance(exc, LLMDSError) and not isinstance(exc, KeyError)
        if not capacity:  # a full pool is a condition, not a rejected value
            assert not valid(value), f"rejected a meaningful value: {exc!r}"
        assert capacity or any(n in msg for n in (name, *names)), (
            f"the message does not name {name}: {msg!r}"
        )
        if obj is not None:
            assert state(obj) == before, "a failed call changed the structure"
    else:
        assert valid(value), f"accepted a meaningless {name}={label}"
    if obj is not None:
        obj._check()


@pytest.mark.parametrize(("case", "label"), PARAMS)
def test_hostile_value(case: Any, label: str) -> None:
    run_case(case, label)
