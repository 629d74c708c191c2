"""The page identity (llmds.page_hash): frozen test vectors, the byte format, and the
tenant-isolation attack it prevents (KVCache's default) and chain64 allows."""

import hashlib
import struct

import numpy as np
import pytest

from llmds import page_hash as ph
from llmds.kv_cache import KVCache
from llmds.mem_cache.base_prefix_cache import hash_token_ids

# ------------------------------------------------------------- frozen vectors
# Version 1 of the format. A change here breaks every remote page tier that shares
# pages with another llmds version: bump FORMAT_VERSION and the domain tag instead.
VECTORS = {
    "root16": "b2510a62b656296f635e4d2bac164da080937c8c0afc2bea57fa1a01cfd24eab",
    "root16_tenant_a": "7ec9b8e2101f2c161660e1104044aa10118ec2ce9d0892a351a0762ee2b1e33e",
    "root4_tuple": "85d3e65a96ec11499bdd976cfac46139fae8c2b61880f3a32bcd040467638296",
    "chain_0_8_ps4": [
        "f2462142bdad872ef718a4df682257d6fc7f5a9bbbbc45c5bbd7e27aff05ac22",
        "7ad558aa2f496bf941cc707cd80aabadd7dad30c35ef0826d3c517795633decc",
    ],
    "chain_max_ps2_x": [
        "9b4f78db69b45e1f365a182f404ffec58e3bb24dae6ad4150f51108b85396d3e",
        "a02f08cfc5e72e28f0cd3f22806f642de9a46e65ed416ff27946704abe74ba5b",
    ],
    "ns_tuple": "040600000002040000006c6f7261010100000007030100000000000101000000ff01090000"
    "00000000000000000001",
}


def test_frozen_vectors():
    assert ph.FORMAT_VERSION == 1 and ph.DIGEST_SIZE == 32
    assert ph.root_digest(16).hex() == VECTORS["root16"]
    assert ph.root_digest(16, "tenant-a").hex() == VECTORS["root16_tenant_a"]
    assert ph.root_digest(4, ("lora", 7, b"\x00", None)).hex() == VECTORS["root4_tuple"]
    got = [d.hex() for d in ph.chain_digests(list(range(8)), 4)]
    assert got == VECTORS["chain_0_8_ps4"]
    got = [d.hex() for d in ph.chain_digests([0, 1, 2**32 - 1, 7], 2, "x")]
    assert got == VECTORS["chain_max_ps2_x"]
    ns = ("lora", 7, b"\x00", None, -1, 2**64)
    assert ph.encode_namespace(ns).hex() == VECTORS["ns_tuple"]


def _spec_encode(x) -> bytes:
    """The documented encoding, written out independently of the module."""
    if x is None:
        return b"\x00"
    if isinstance(x, int):
        n = (x.bit_length() + 8) // 8
        return b"\x01" + struct.pack("<I", n) + x.to_bytes(n, "little", signed=True)
    if isinstance(x, str):
        raw = x.encode("utf-8", "surrogatepass")
        return b"\x02" + struct.pack("<I", len(raw)) + raw
    if isinstance(x, bytes):
        return b"\x03" + struct.pack("<I", len(x)) + x
    return b"\x04" + struct.pack("<I", len(x)) + b"".join(_spec_encode(i) for i in x)


def _spec_chain(tokens, page_size, ns) -> list[bytes]:
    parent = hashlib.sha256(
        b"llmds/page-hash/v1\x00" + struct.pack("<Q", page_size) + _spec_encode(ns)
    ).digest()
    out = []
    for i in range(len(tokens) // page_size):
        page = struct.pack(f"<{page_size}I", *tokens[i * page_size : (i + 1) * page_size])
        parent = hashlib.sha256(parent + page).digest()
        out.append(parent)
    return out


@pytest.mark.parametrize(
    "ns", [None, 0, 1, -1, 127, 128, -128, -129, 2**63, -(2**200), "", "é\ud800", b"",
           b"\xff" * 3, (), (1,), ("a", (b"b", (None,))), np.int64(5)]
)
def test_encoding_follows_the_documented_format(ns):
    plain = int(ns) if isinstance(ns, np.integer) else ns
    assert ph.encode_namespace(ns) == _spec_encode(plain)
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5]
    assert ph.chain_digests(tokens, 3, ns) == _spec_chain(tokens, 3, plain)


def test_namespaces_never_alias():
    keys = [None, 0, 1, -1, "1", b"1", (1,), ("1",), ((1,),), "", b"", (), (None,),
            ("a", "b"), ("ab",), ("a", ("b",))]
    encodings = {ph.encode_namespace(k) for k in keys}
    assert len(encodings) == len(keys)
    roots = {ph.root_digest(4, k) for k in keys}
    assert len(roots) == len(keys)
    assert ph.root_digest(4) != ph.root_digest(8)  # the page size is part of the identity


@pytest.mark.parametrize("bad", [True, np.True_, 1.0, float("nan"), [1], {"a": 1}, {1},
                                 bytearray(b"x"), object(), (1, [2]), (1.5,)])
def test_non_canonical_namespaces_are_rejected(bad):
    with pytest.raises(TypeError, match="extra_key must be None, int, str, bytes or a tuple"):
        ph.encode_namespace(bad)


def test_objects_with_equal_repr_cannot_share_a_namespace():
    class Tenant:
        def __init__(self, name):
            self.name = name

        def __repr__(self):
            return "Tenant"

    # the old root came from repr(extra_key): these two aliased
    with pytest.raises(TypeError):
        KVCache(page_size=2, max_pages=4).allocate(1, [1, 2], extra_key=Tenant("a"))


def test_deep_namespace_is_bounded():
    key: tuple = ()
    for _ in range(40):
        key = (key,)
    with pytest.raises(ValueError, match="nest at most 32"):
        ph.encode_namespace(key)


@pytest.mark.parametrize(
    ("tokens", "exc"),
    [([-1], ValueError), ([2**32], ValueError), ([1.5], TypeError), ([True], TypeError),
     (np.array([1.0]), TypeError), ([[1, 2]], ValueError), ("12", TypeError),
     ([2**70], ValueError), ([1, [2]], TypeError), (np.array([-5], dtype=np.int8), ValueError),
     (np.array([2**63], dtype=np.uint64), ValueError)],
)
def test_token_ids_are_validated_never_wrapped(tokens, exc):
    with pytest.raises(exc, match="token_ids"):
        ph.token_bytes(tokens)


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<i4", ">i4", "<i8", ">i8", "i1"])
def test_signed_token_arrays_of_any_byte_order(dtype):
    """The one-reduction fast path keeps the array's byte order: a big-endian -256
    read little-endian would be a small valid id and wrap."""
    info = np.iinfo(np.dtype(dtype))
    for bad in (-1, info.min, max(info.min, -256), max(info.min, -(2**56))):
        with pytest.raises(ValueError, match="token_ids must hold values >= 0"):
            ph.token_array(np.array([3, bad], dtype=dtype))
    good = np.array([0, 5, info.max if info.max < 2**32 else 2**32 - 1], dtype=dtype)
    assert ph.token_array(good).tolist() == [int(v) for v in good]
    assert ph.token_array(good).dtype == np.uint32


def test_vocab_size_and_token_forms_agree():
    assert ph.token_bytes([1, 2]) == np.array([1, 2], dtype="<u4").tobytes()
    for arr in (np.array([1, 2], dtype=np.int8), np.array([1, 2], dtype=np.uint64), (1, 2),
                np.array([1, 2], dtype=np.int32)[::1]):
        assert ph.token_bytes(arr) == ph.token_bytes([1, 2])
    assert ph.token_bytes(np.arange(6, dtype=np.int64)[::2]) == ph.token_bytes([0, 2, 4])
    with pytest.raises(ValueError, match="<= 9"):
        ph.token_bytes([10], vocab_size=10)
    assert ph.token_bytes([], vocab_size=3) == b""


def test_page_digest_and_continuing_a_chain():
    tokens = list(range(12))
    full = ph.chain_digests(tokens, 4, "t")
    assert ph.chain_digests(tokens[4:], 4, parent=full[0]) == full[1:]
    assert ph.page_digest(full[0], ph.token_bytes(tokens[4:8])) == full[1]
    assert ph.chain_digests(tokens[:11], 4, "t") == full[:2]  # a partial page has no identity
    with pytest.raises(ValueError, match="32-byte digest"):
        ph.page_digest(b"short", ph.token_bytes([1]))
    with pytest.raises(ValueError, match="uint32 token bytes"):
        ph.page_digest(full[0], b"abc")
    with pytest.raises(ValueError, match="32-byte digest"):
        ph.chain_digests(tokens, 4, parent="00" * 32)  # type: ignore[arg-type]


def test_a_step_is_sglangs_hicache_page_hash():
    """Past the root, a step is SGLang's get_hash_str (our hash_token_ids)."""
    root = ph.root_digest(4, "t")
    page = [7, 8, 9, 2**32 - 1]
    assert ph.page_digest(root, ph.token_bytes(page)).hex() == hash_token_ids(page, root.hex())


def test_kvcache_pages_carry_exactly_this_identity():
    cache = KVCache(page_size=4, max_pages=16, vocab_size=1000)
    tokens = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    cache.allocate("r", tokens, extra_key=("tenant", 3))
    want = ph.chain_digests(tokens, 4, ("tenant", 3))
    table = cache.block_table("r").tolist()
    assert [cache._pages.page_digest[p] for p in table[:2]] == want
    cache.append_tokens("r", [14, 15, 16])
    want = ph.chain_digests([*tokens, 14, 15, 16], 4, ("tenant", 3))
    assert [cache._pages.page_digest[p] for p in cache.block_table("r").tolist()] == want
    cache._check()
    with pytest.raises(ValueError, match="token_ids must hold values <= 999"):
        cache.allocate("s", [1000])
    with pytest.raises(ValueError, match="token_ids must hold values >= 0"):
        cache.allocate("s", [-1])
    assert "s" not in cache
    cache._check()


# --------------------------------------------------------------- the attack
# chain64's per-token round is s' = rotl(s + t * P2, 31) * P1 (mod 2**64): invertible,
# and almost additive across the rotation. A token delta d at position j changes the
# state by about rotl(d * P2, 31) * P1; the next token can cancel that change when
# (that) * P2^-1 is a valid 32-bit token delta. DELTA was found once by an exhaustive
# search over |d| < 2**32 (a few seconds in numba); the collision below is then exact.
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _rotr(x: int, r: int) -> int:
    return ((x >> r) | (x << (64 - r))) & _M


def _forge(victim: list[int], seed: int, j: int) -> list[int] | None:
    """Tokens != ``victim`` with the same chain64 page hash (changes positions j, j+1)."""
    s = seed ^ 0x85EBCA77C2B2AE63
    for t in victim[:j]:
        s = (_rotl((s + t * _P2) & _M, 31) * _P1) & _M
    p2inv = pow(_P2, -1, 1 << 64)
    p1inv = pow(_P1, -1, 1 << 64)
    # the state after j+1 tokens of the victim; forge token j, then solve token j+1
    a = (_rotl((s + victim[j] * _P2) & _M, 31) * _P1) & _M
    target = _rotr(((_rotl((a + victim[j + 1] * _P2) & _M, 31) * _P1) & _M) * p1inv & _M, 31)
    for d in _DELTAS:
        t = victim[j] + d
        if not 0 <= t < 2**32:
            continue
        b = (_rotl((s + t * _P2) & _M, 31) * _P1) & _M
        u = ((target - b) * p2inv) & _M  # token j+1 that lands on the same state
        if u < 2**32 and (t, u) != (victim[j], victim[j + 1]):
            return [*victim[:j], t, u, *victim[j + 2 :]]
    return None


_DELTAS = [2131755319, 2202935132, -1082452398, -3214207717]


def test_chain64_is_forgeable_and_sha256_is_not():
    victim = [101, 7, 42, 9]
    seed = int.from_bytes(ph.root_digest(4)[:8], "little")  # chain64's documented root
    forged = next(f for j in range(3) if (f := _forge(victim, seed, j)) is not None)
    assert forged != victim and all(0 <= t < 2**32 for t in forged)
    for algo in ("chain64", "sha256"):
        cache = KVCache(page_size=4, max_pages=8, hash_algorithm=algo)
        cache.allocate("attacker", forged)  # the attacker's page is cached first
        cache.free("attacker")
        hit = cache.allocate("victim", victim)  # the victim's next request
        if algo == "chain64":
            assert hit == 4, "chain64: the victim is served the attacker's page"
        else:
            assert hit == 0, "sha256: the forged page is a different identity"
        cache._check()
    # a vocabulary bound rejects these forged ids (it narrows chain64's risk, no more)
    with pytest.raises(ValueError, match="token_ids"):
        KVCache(page_size=4, max_pages=8, hash_algorithm="chain64", vocab_size=32_000).allocate(
            "attacker", forged)
