"""RedisPageStore against a real redis-server (no fakes): identity, batching, eviction,
restarts, corrupt values, processes and threads, and a stateful test against a dict."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from llmds._kernels.xxh64 import xxh64
from llmds.dist import RedisPageStore
from tests.redis_server import run_in_processes

SHAPE = (2, 4, 8)  # a small KV page: (k/v, page_size, head_dim)


def digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def chain(tag: str, n: int) -> list[bytes]:
    """``n`` page digests of one prompt."""
    return [digest(tag, i) for i in range(n)]


def page(tag: str, i: int, dtype: object = np.float16) -> np.ndarray:
    seed = int.from_bytes(digest(tag, i, "payload")[:4], "little")
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(dtype)


def store(url: str, **kw: object) -> RedisPageStore:
    args: dict[str, object] = {"model": "llama-3-8b", "dtype": np.float16, "page_size": 4,
                               "page_shape": SHAPE, "error_backoff_s": 0.05}
    args.update(kw)
    return RedisPageStore(url, **args)  # type: ignore[arg-type]


# ------------------------------------------------------------------ identity
def test_key_format_is_pinned() -> None:
    """The key is a documented wire format: these bytes must never change."""
    s = RedisPageStore("redis://127.0.0.1:1/0", model="llama-3-8b", dtype="float16",
                       page_size=16, page_shape=(2, 16, 8, 128))
    assert s.key(bytes(32)) == (b"llmds:kv1:f25730a8b6b05d76587aeb970dfd5cde:" + b"00" * 32)
    assert s.key("ab" * 16) == s.key_prefix + b"ab" * 16
    assert s.key(bytearray(b"\xab" * 16)) == s.key(memoryview(b"\xab" * 16))
    assert s.identity == {"format": "1", "model": "llama-3-8b", "revision": "",
                          "dtype": "<f2", "page_size": "16", "page_shape": "2,16,8,128",
                          "namespace": ""}


def test_key_is_identical_across_processes() -> None:
    code = ("from llmds.dist import RedisPageStore as S;"
            "print(S('redis://127.0.0.1:1', model='m\u00e9', dtype='float32', page_size=8,"
            " namespace='t').key(bytes(range(32))).decode())")
    keys = set()
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
        keys.add(out.stdout.strip())
    here = RedisPageStore("redis://127.0.0.1:1", model="m\u00e9", dtype="float32",
                          page_size=8, namespace="t").key(bytes(range(32))).decode()
    assert keys == {here}


@pytest.mark.parametrize("change", [
    {"model": "llama-3-70b"}, {"revision": "r2"}, {"dtype": np.float32},
    {"dtype": np.dtype(">f2")}, {"page_size": 8}, {"page_shape": (2, 4, 4, 2)},
    {"page_shape": None}, {"namespace": "tenant-b"},
])
def test_every_identity_field_changes_the_key(change: dict[str, object]) -> None:
    base = store("redis://127.0.0.1:1")
    other = store("redis://127.0.0.1:1", **change)
    assert other.key_prefix != base.key_prefix
    assert store("redis://127.0.0.1:1").key_prefix == base.key_prefix


def test_xxh64_matches_the_reference_implementation() -> None:
    """Outputs of the reference xxHash library (xxhash 4.1.0) for these inputs."""
    data = bytes(range(256)) * 3
    cases = [(b"", 0, 0xEF46DB3751D8E999), (b"abc", 0, 0x44BC2CF5AD770999),
             (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
             (data[:3], 0, 0xE5C7BB4533BC65DD), (data[:31], 1, 0xF031031D65977DFC),
             (data[:32], 2, 0xDB7DA7E2037F63B8), (data[:33], 3, 0x72263567299A03AC),
             (data[:100], 2**63 + 5, 0x8A80FBEAAE4385DF),
             (data, 2**64 - 1, 0x63DE20FFB02CEF5E)]
    for raw, seed, want in cases:
        words = np.frombuffer(raw, "<u8", count=len(raw) // 8)
        with np.errstate(over="ignore"):
            got = int(xxh64(words, np.frombuffer(raw, np.uint8), np.uint64(seed)))
        assert got == want, (len(raw), seed)


def test_import_is_lazy_and_a_missing_extra_names_it() -> None:
    code = ("import sys, llmds, llmds.dist; assert 'redis' not in sys.modules, 'eager';"
            "sys.modules['redis'] = None\n"
            "try:\n    from llmds.dist import RedisPageStore\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'llmds[redis]'" in out.stdout


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("url, match", [
    ("http://127.0.0.1:6379", "redis://, rediss:// or unix://"),
    ("redis://127.0.0.1:notaport", "url_or_client must be"),
    ("redis://127.0.0.1:70000", "url_or_client must be"),
    ("redis://127.0.0.1:0", "port in"),
    ("redis:///0", "must name a host"),
    ("redis://127.0.0.1:6379/db1", "database number"),
    ("unix://", "socket path"),
    ("", "redis://"),
])
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        store(url)


def test_bad_url_never_echoes_the_password() -> None:
    with pytest.raises(ValueError) as err:
        store("redis://user:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_bad_clients() -> None:
    with pytest.raises(TypeError, match="url_or_client must be a Redis URL"):
        store(6379)
    with pytest.raises(ValueError, match="decode_responses=False"):
        store(redis.Redis(decode_responses=True))


@pytest.mark.parametrize("kw, exc, match", [
    ({"model": ""}, ValueError, "model must not be empty"),
    ({"model": 3}, TypeError, "model must be a str"),
    ({"revision": None}, TypeError, "revision must be a str"),
    ({"namespace": "\ud800"}, ValueError, "namespace must be valid Unicode"),
    ({"dtype": None}, TypeError, "dtype must be"),
    ({"dtype": object}, TypeError, "numeric NumPy dtype"),
    ({"dtype": "U8"}, TypeError, "numeric NumPy dtype"),
    ({"dtype": "bfloat16"}, TypeError, "page_shape=None"),
    ({"dtype": "not a dtype!"}, TypeError, "dtype must be"),
    ({"page_size": 0}, ValueError, "page_size must be >= 1"),
    ({"page_size": 2.0}, TypeError, "page_size must be an int"),
    ({"page_shape": (2, 0)}, ValueError, r"page_shape\[1\] must be >= 1"),
    ({"page_shape": ()}, ValueError, "1 to 8 dimensions"),
    ({"page_shape": "2,4"}, TypeError, "page_shape must be a tuple"),
    ({"page_shape": (2**20, 2**20)}, ValueError, "at most"),
    ({"ttl_s": 0}, ValueError, "ttl_s must be >= 0.001"),
    ({"ttl_s": float("nan")}, ValueError, "ttl_s must be a finite number"),
    ({"timeout_s": 0}, ValueError, "timeout_s must be > 0"),
    ({"error_backoff_s": -1}, ValueError, "error_backoff_s must be >= 0"),
])
def test_bad_arguments(kw: dict[str, object], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        store("redis://127.0.0.1:1", **kw)


def test_bad_page_hashes_and_payloads_write_nothing(redis_url: str) -> None:
    s = store(redis_url)
    hs = chain("p", 3)
    good = [page("p", i) for i in range(3)]
    for hashes, exc, match in [
        ("abcd", TypeError, "page_hashes must be a sequence"),
        ([hs[0], 12345], TypeError, r"page_hashes\[1\] must be a digest.*64-bit integer"),
        ([hs[0], b"short"], ValueError, r"page_hashes\[1\] must be a digest of 16-64 bytes"),
        ([hs[0], "zz" * 16], ValueError, r"page_hashes\[1\] must be a digest"),
        ([hs[0], None], TypeError, r"page_hashes\[1\] must be a digest"),
    ]:
        with pytest.raises(exc, match=match):
            s.put_many(hashes, good[:2])
        with pytest.raises(exc, match=match):
            s.get_many(hashes)
        with pytest.raises(exc, match=match):
            s.contains_prefix(hashes)
    bad_payloads = [
        ([good[0], good[1].astype(np.float32), good[2]], TypeError,
         r"payloads\[1\] must have dtype float16"),
        ([good[0], good[1], good[2].reshape(4, 2, 8)], ValueError,
         r"payloads\[2\] must have shape \(2, 4, 8\)"),
        ([good[0], b"\x00" * 10, good[2]], ValueError, r"payloads\[1\] must be 128 bytes"),
        ([good[0], [1.0] * 64, good[2]], TypeError, r"payloads\[1\] must be a NumPy array"),
        (good[:2], ValueError, "one page per page hash"),
    ]
    for payloads, exc, match in bad_payloads:
        with pytest.raises(exc, match=match):
            s.put_many(hs, payloads)
    assert s.contains_prefix(hs) == 0  # nothing of a failed call was written
    assert s.stats()["put_pages"] == 0
    s._check()


# ------------------------------------------------------------------ basics
def test_put_get_contains_prefix_arrays(redis_url: str) -> None:
    s = store(redis_url)
    hs = chain("a", 8)
    pages = [page("a", i) for i in range(8)]
    assert s.put_many(hs[:5], pages[:5]) == 5
    assert s.contains_prefix(hs) == 5
    assert s.contains_prefix([hs[0], hs[6], hs[1]]) == 1
    assert s.contains_prefix([]) == 0 and s.get_many([]) == [] and s.put_many([], []) == 0
    got = s.get_many(hs)
    for i, g in enumerate(got):
        if i < 5:
            assert g is not None and g.dtype == np.float16 and g.shape == SHAPE
            assert g.tobytes() == pages[i].tobytes() and not g.flags.writeable
        else:
            assert g is None
    # hex digests name the same pages; a non-contiguous array stores the same bytes
    assert s.contains_prefix([h.hex() for h in hs]) == 5
    wide = np.zeros((2, 4, 16), np.float16)
    wide[:, :, ::2] = pages[6]
    assert s.put_many([hs[6]], [wide[:, :, ::2]]) == 1
    assert s.get_many([hs[6]])[0].tobytes() == pages[6].tobytes()
    stats = s.stats()
    assert stats["hits"] == 6 and stats["misses"] == 3 and stats["corrupt"] == 0
    assert stats["stored"] == 6 and stats["available"] and stats["errors"] == 0
    s._check()


def test_bytes_pages_and_opaque_dtype(redis_url: str) -> None:
    s = RedisPageStore(redis_url, model="m", dtype="bfloat16", page_size=16)
    hs = chain("b", 4)
    payloads = [b"", b"x", bytes(range(256)) * 7, bytearray(b"abc")]
    assert s.put_many(hs, payloads) == 4
    assert s.get_many(hs) == [bytes(p) for p in payloads]
    with pytest.raises(TypeError, match=r"payloads\[0\] must be bytes"):
        s.put_many(hs[:1], [np.zeros(3, np.uint16)])
    s._check()


def test_ttl_is_set_on_write(redis_url: str) -> None:
    s = store(redis_url, ttl_s=30)
    s.put_many(chain("t", 1), [page("t", 0)])
    ttl = redis.Redis.from_url(redis_url).pttl(s.key(chain("t", 1)[0]))
    assert 0 < ttl <= 30_000


def test_corrupt_and_foreign_values_are_misses(redis_url: str) -> None:
    s = store(redis_url)
    raw = redis.Redis.from_url(redis_url)
    hs = chain("c", 6)
    s.put_many(hs, [page("c", i) for i in range(6)])
    good = raw.get(s.key(hs[0]))
    assert good is not None
    flipped = bytearray(good)
    flipped[-1] ^= 1
    other = store(redis_url, namespace="other")
    other.put_many(hs[5:], [page("c", 5)])
    raw.set(s.key(hs[1]), b"garbage")
    raw.set(s.key(hs[2]), good[:-2])  # truncated
    raw.set(s.key(hs[3]), bytes(flipped))  # one payload bit
    raw.set(s.key(hs[4]), good)  # a valid page moved to another key
    raw.set(s.key(hs[5]), raw.get(other.key(hs[5])))  # another identity's page
    got = s.get_many(hs)
    assert got[0] is not None and all(g is None for g in got[1:])
    assert s.stats()["corrupt"] == 5
    s._check()


# ------------------------------------------------------------ across processes
def test_four_processes_share_one_store(redis_url: str) -> None:
    n = 6
    run_in_processes(_write_prefix, [(redis_url, r, n) for r in range(4)])
    results = run_in_processes(_read_all, [(redis_url, r, n) for r in range(4)])
    want = {w: [hashlib.sha256(page(f"w{w}", i).tobytes()).hexdigest() for i in range(n)]
            for w in range(4)}
    for rank, (seen, prefix_lens, foreign) in enumerate(results):
        assert seen == want, rank  # every prefix written by one is a byte-identical hit
        assert prefix_lens == [n] * 4
        assert foreign == [0] * 4, rank  # other model/revision/dtype/namespace: no hits


def _write_prefix(url: str, rank: int, n: int) -> None:
    store(url).put_many(chain(f"w{rank}", n), [page(f"w{rank}", i) for i in range(n)])


def _read_all(url: str, rank: int, n: int) -> tuple[dict, list[int], list[int]]:
    s = store(url)
    seen, prefix_lens = {}, []
    for w in range(4):
        hs = chain(f"w{w}", n)
        prefix_lens.append(s.contains_prefix(hs))
        seen[w] = [None if g is None else hashlib.sha256(g.tobytes()).hexdigest()
                   for g in s.get_many(hs)]
    foreign = []
    for change in ({"model": "other"}, {"revision": "r2"}, {"dtype": np.float32},
                   {"namespace": f"tenant{rank}"}):
        o = store(url, **change)
        hits = sum(o.contains_prefix(chain(f"w{w}", n)) for w in range(4))
        hits += sum(g is not None for w in range(4) for g in o.get_many(chain(f"w{w}", n)))
        foreign.append(hits)
    return seen, prefix_lens, foreign


def test_threads_read_what_a_serial_run_reads(redis_url: str) -> None:
    s = store(redis_url)
    hs = chain("th", 32)
    s.put_many(hs[::2], [page("th", i) for i in range(0, 32, 2)])
    batches = [hs[i:i + 8] for i in range(0, 32, 4)]

    def read(batch: list[bytes]) -> list[bytes | None]:
        return [None if g is None else g.tobytes() for g in s.get_many(batch)]

    serial = [read(b) for b in batches]
    results: list[list[list[bytes | None]]] = [[] for _ in range(8)]

    def run(t: int) -> None:
        for _ in range(5):
            results[t].append([read(b) for b in batches])

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    differences = sum(r != serial for per_thread in results for r in per_thread)
    assert differences == 0 and all(len(r) == 5 for r in results)
    s._check()


# ------------------------------------------------------------ a full server
def test_allkeys_lru_never_returns_a_page_without_its_header(make_redis_server) -> None:
    server = make_redis_server(maxmemory="2mb", maxmemory_policy="allkeys-lru")
    s = RedisPageStore(server.url, model="m", dtype=np.uint8, page_size=16,
                       page_shape=(4096,))
    hs = chain("lru", 1024)  # 4 MiB of payload into 2 MiB
    pages = [np.frombuffer(digest("lru", i) * 128, np.uint8) for i in range(1024)]
    for i in range(0, 1024, 64):
        assert s.put_many(hs[i:i + 64], pages[i:i + 64]) == 64  # eviction, not refusal
    got = s.get_many(hs)
    hits = [i for i, g in enumerate(got) if g is not None]
    assert 0 < len(hits) < 1024
    assert all(got[i].tobytes() == pages[i].tobytes() for i in hits)
    assert s.stats()["corrupt"] == 0
    s._check()


def test_noeviction_refusals_are_counted_not_raised(make_redis_server) -> None:
    server = make_redis_server(maxmemory="2mb", maxmemory_policy="noeviction")
    s = RedisPageStore(server.url, model="m", dtype=np.uint8, page_size=16,
                       page_shape=(4096,))
    hs = chain("oom", 1024)
    pages = [np.full(4096, i % 251, np.uint8) for i in range(1024)]
    stored = sum(s.put_many(hs[i:i + 64], pages[i:i + 64]) for i in range(0, 1024, 64))
    stats = s.stats()
    assert 0 < stored < 1024 and stats["oom_skipped"] == 1024 - stored
    assert stats["available"]  # a full Redis is not an outage
    got = s.get_many(hs)
    assert all(g is None or g.tobytes() == pages[i].tobytes() for i, g in enumerate(got))
    s._check()


def test_restart_and_outage_only_turn_hits_into_misses(make_redis_server) -> None:
    server = make_redis_server()
    s = store(server.url)
    hs = chain("r", 8)
    pages = [page("r", i) for i in range(8)]
    assert s.put_many(hs, pages) == 8 and s.contains_prefix(hs) == 8
    server.stop()
    assert s.contains_prefix(hs) == 0
    assert s.get_many(hs) == [None] * 8
    assert s.put_many(hs, pages) == 0
    stats = s.stats()
    assert not stats["available"] and stats["errors"] >= 1
    assert stats["errors"] + stats["skipped"] == 3
    server.start()  # same port, empty (no persistence)
    time.sleep(0.06)  # past error_backoff_s
    assert s.get_many(hs) == [None] * 8  # misses, never an error or wrong data
    assert s.contains_prefix(hs) == 0  # the Lua script is loaded again
    assert s.put_many(hs, pages) == 8
    assert [g.tobytes() for g in s.get_many(hs)] == [p.tobytes() for p in pages]
    assert s.contains_prefix(hs) == 8 and s.stats()["available"]
    s._check()


# ---------------------------------------------------------------- stateful
class StoreMachine(RuleBasedStateMachine):
    """RedisPageStore against a dict of digest -> payload bytes."""

    url = ""

    @initialize()
    def setup(self) -> None:
        redis.Redis.from_url(self.url).flushall()
        self.store = store(self.url)
        self.model: dict[bytes, bytes] = {}
        self.pool = chain("sm", 12)

    @rule(idx=st.lists(st.integers(0, 11), max_size=6), salt=st.integers(0, 3))
    def put(self, idx: list[int], salt: int) -> None:
        hs = [self.pool[i] for i in idx]
        pages = [page(f"sm{salt}", i) for i in idx]
        assert self.store.put_many(hs, pages) == len(hs)
        for h, p in zip(hs, pages, strict=True):
            self.model[h] = p.tobytes()

    @rule(idx=st.lists(st.integers(0, 11), max_size=8))
    def get(self, idx: list[int]) -> None:
        hs = [self.pool[i] for i in idx]
        got = self.store.get_many(hs)
        assert [None if g is None else g.tobytes() for g in got] == \
            [self.model.get(h) for h in hs]

    @rule(idx=st.lists(st.integers(0, 11), max_size=8))
    def prefix(self, idx: list[int]) -> None:
        hs = [self.pool[i] for i in idx]
        want = 0
        while want < len(hs) and hs[want] in self.model:
            want += 1
        assert self.store.contains_prefix(hs) == want

    @invariant()
    def check(self) -> None:
        if hasattr(self, "store"):
            self.store._check()


def test_stateful_against_a_dict(redis_url: str) -> None:
    StoreMachine.url = redis_url
    run = StoreMachine.TestCase
    run.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
    run().runTest()
