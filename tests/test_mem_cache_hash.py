"""Hash helpers and RadixKey of llmds.mem_cache: test vectors, edge cases, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from llmds.mem_cache import RadixKey, hash_bytes, hash_to_int64, hash_token_ids

H1 = "4636993d3e1da4e9d6b8f87b79e8f7c6d018580d52661950eabc3845c5897a4d"
H2 = "b33a1d453499d2f2cc40ae1c3579a476f2576432f8dcb7d4c235aa946a68d4bf"


def test_hash_vectors() -> None:
    assert hash_token_ids([1, 2, 3]) == H1
    assert hash_token_ids([4, 5, 6], prior_hash=H1) == H2
    assert hash_to_int64(H1) == 5059399719711515881
    assert hash_to_int64(H2) == -5532077009198787854
    assert hash_bytes(b"abc") == 13436514500253700074


def test_hash_matches_its_definition() -> None:
    raw = b"".join(t.to_bytes(4, "little") for t in [7, 2**32 - 1, 0])
    assert hash_token_ids([7, 2**32 - 1, 0]) == hashlib.sha256(raw).hexdigest()
    chained = hashlib.sha256(bytes.fromhex(H1) + raw).hexdigest()
    assert hash_token_ids([7, 2**32 - 1, 0], prior_hash=H1) == chained


def test_hash_numpy_and_list_agree() -> None:
    toks = [1, 2, 3]
    for dt in (np.int32, np.uint32, np.int64, np.uint64, np.int16):
        assert hash_token_ids(np.array(toks, dtype=dt)) == H1
    assert hash_token_ids([np.int64(1), np.int32(2), 3]) == H1
    assert hash_token_ids(np.array([4, 5, 6]), prior_hash=H1) == H2


def test_hash_tuple_tokens_feed_elements_in_order() -> None:
    assert hash_token_ids([(1, 2), (3,)]) == H1
    assert hash_token_ids([(1, 2)]) != hash_token_ids([(2, 1)])


def test_hash_empty_and_prior_none_or_empty() -> None:
    empty = hashlib.sha256().hexdigest()
    assert hash_token_ids([]) == empty
    assert hash_token_ids(np.array([], dtype=np.int64)) == empty
    assert hash_token_ids([1, 2, 3], prior_hash="") == H1
    assert hash_token_ids([1, 2, 3], prior_hash=None) == H1


@pytest.mark.parametrize("bad", [[-1], [2**32], [1, 2**40], [(1, -2)]])
def test_hash_rejects_out_of_range_tokens(bad: list) -> None:
    with pytest.raises(ValueError, match="2\\*\\*32"):
        hash_token_ids(bad)


@pytest.mark.parametrize("arr", [np.array([-1, 2]), np.array([2**32], dtype=np.int64)])
def test_hash_rejects_out_of_range_numpy(arr: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2\\*\\*32"):
        hash_token_ids(arr)


@pytest.mark.parametrize("bad", [[1.5], ["a"], [True], [None]])
def test_hash_rejects_non_int_tokens(bad: list) -> None:
    with pytest.raises(TypeError):
        hash_token_ids(bad)


def test_hash_rejects_float_array_and_bad_prior() -> None:
    with pytest.raises(TypeError):
        hash_token_ids(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="prior_hash"):
        hash_token_ids([1], prior_hash="not-hex")


def test_hash_to_int64_and_hash_bytes_bad_input() -> None:
    assert hash_to_int64("ffffffffffffffff") == -1
    assert hash_to_int64("7fffffffffffffff" + "00") == 2**63 - 1
    with pytest.raises(ValueError):
        hash_to_int64("abc")
    with pytest.raises(ValueError):
        hash_to_int64("zzzzzzzzzzzzzzzzzz")
    with pytest.raises(TypeError):
        hash_bytes("abc")  # type: ignore[arg-type]
    assert hash_bytes(bytearray(b"abc")) == hash_bytes(b"abc")


def test_radix_key_behaviour() -> None:
    k = RadixKey([5, 6, 7, 8], extra_key="lora")
    assert len(k) == 4 and list(k) == [5, 6, 7, 8]
    s = k[1:3]
    assert isinstance(s, RadixKey) and s.token_ids == [6, 7] and s.extra_key == "lora"
    one = k[-1]
    assert isinstance(one, RadixKey) and one.token_ids == [8] and one.extra_key == "lora"
    assert k[np.int64(0)].token_ids == [5]
    with pytest.raises(IndexError):
        k[4]
    with pytest.raises(TypeError):
        k["a"]  # type: ignore[index]
    assert not hasattr(k, "__dict__")
    assert RadixKey([1]).extra_key is None


def test_radix_key_numpy_and_repr() -> None:
    k = RadixKey(np.arange(20, dtype=np.int32))
    assert len(k[5:]) == 15 and isinstance(k[3].token_ids, np.ndarray)
    r = repr(k)
    assert r == "RadixKey(extra_key=None, token_ids=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]...)"
    assert repr(RadixKey([1, 2], "x")) == "RadixKey(extra_key='x', token_ids=[1, 2])"
