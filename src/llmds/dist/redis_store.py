"""RedisPageStore: KV pages shared by engine processes and machines through one Redis.

Key format (version 1)
----------------------
Every page is ONE Redis string, so eviction (``allkeys-lru``, TTLs) removes a page
whole and can never separate a payload from its description::

    llmds:kv1:<identity>:<page>

* ``<page>``: the page's digest in lowercase hex, as the caches compute it (a
  collision-resistant chain hash over the page's tokens and every page before it;
  16-64 bytes, e.g. SHA-256's 32). The store treats it as opaque.
* ``<identity>``: 32 hex digits, the first 16 bytes of SHA-256 over the canonical
  encoding of the store's identity: the ASCII tag ``llmds-page-identity`` and a NUL,
  then for each field in this order, ``name`` and ``value`` as UTF-8, each preceded by
  its byte length as a 4-byte little-endian integer::

      format=1, model, revision, dtype, page_size, page_shape, namespace

  ``dtype`` is NumPy's ``dtype.str`` (``'<f2'``: kind, size and byte order) or, for
  a dtype NumPy does not know (``'bfloat16'``), the name as given; ``page_size`` is
  decimal; ``page_shape`` is the dimensions joined by ``,`` or ``bytes`` for opaque
  payloads. No Python ``hash`` or ``repr`` is involved, so the key is identical
  across processes, machines and Python versions, and two stores share pages only
  when every field matches.

Value format (version 1)
------------------------
A header of ``H`` bytes (a multiple of 16, so the payload is aligned), then the
payload. All integers little-endian::

    0   4   magic b"LLKV"          24  8  payload length in bytes
    4   1   version (1)            32  8  XXH64 of the payload, seeded with the first
    5   1   kind (0 bytes, 1 array)       8 bytes of the page digest XOR the first
    6   1   ndim                          8 bytes of the identity digest
    7   1   len(dtype name)        40  .. dtype name (ASCII), then ndim x uint64
    8   16  identity digest               shape, then zero padding to H

A value whose header, length or checksum does not match this store's expectation
(torn, truncated, written by another program or another identity, or moved to a
different key) is counted as ``corrupt`` and returned as a miss. The checksum finds
accidents, not forgeries: anyone who can write to the Redis can write pages (use
Redis ACLs to keep tenants apart).

Failure model
-------------
The serving-path methods (``contains_prefix``, ``get_many``, ``put_many``) never
raise Redis errors: a connection error or timeout is counted in ``errors``, turns
into a miss (``0``, ``None``) or a dropped write, and starts a short back-off
(``error_backoff_s``) during which calls skip Redis at once (``skipped``). A write
refused because Redis is full (``OOM command not allowed when used memory >
'maxmemory'``, the ``noeviction`` policy) is counted in ``oom_skipped`` and skipped.
Bad arguments (page hashes that are not digests, payloads of the wrong shape or
dtype) raise ``TypeError``/``ValueError`` before any I/O, as everywhere in llmds.

Redis Cluster is not supported yet: ``MGET`` and the prefix script address keys of
many hash slots; use a standalone Redis server.
"""

from __future__ import annotations

import hashlib
import re
import struct
import threading
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from llmds._kernels.xxh64 import xxh64
from llmds._validate import check_number, check_positive_int, check_str, show
from llmds.dist._client import Breaker, RedisError, ResponseError, connect, is_oom, redact

__all__ = ["RedisPageStore"]

_KEY_PREFIX = b"llmds:kv1:"
_MAGIC = b"LLKV"
_VERSION = 1
_KIND_BYTES, _KIND_ARRAY = 0, 1
_FIXED = struct.Struct("<4sBBBB16sQQ")  # magic..checksum: 40 bytes
_CHECKSUM_AT = 32
_MAX_VALUE = 512 * 2**20  # Redis's largest string
_MIN_DIGEST, _MAX_DIGEST = 16, 64
_MAX_NDIM = 8
_MSET_MAX_VALUE = 6000  # redis-py's buffer cutoff: larger values are sent unpacked
_OPAQUE_DTYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_NO_JIT = bool(getattr(numba.config, "DISABLE_JIT", 0))

Payload = bytes | npt.NDArray[Any]


def _field(name: str, value: str) -> bytes:
    raw_name = name.encode("ascii")
    raw = value.encode("utf-8")
    return len(raw_name).to_bytes(4, "little") + raw_name + len(raw).to_bytes(4, "little") + raw


def _utf8(value: object, name: str, *, nonempty: bool = False) -> str:
    text = check_str(value, name, nonempty=nonempty)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode text (no lone surrogates), "
                         f"got {show(value)}") from None
    return text


def _dtype(value: object, shaped: bool) -> tuple[np.dtype[Any] | None, str]:
    """``(numpy dtype or None, canonical name)`` for the ``dtype`` argument."""
    if value is None:
        raise TypeError("dtype must be a NumPy dtype or a dtype name, got None")
    try:
        dt = np.dtype(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        dt = None
    if dt is not None:
        if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
            raise TypeError(f"dtype must be a numeric NumPy dtype (bool, int, uint, float, "
                            f"complex), got {dt}")
        return dt, dt.str
    if isinstance(value, str) and _OPAQUE_DTYPE.fullmatch(value):
        if shaped:
            raise TypeError(f"dtype {value!r} is unknown to NumPy, so pages cannot be "
                            "arrays: pass page_shape=None (bytes payloads) or a NumPy dtype")
        return None, value
    raise TypeError(f"dtype must be a NumPy dtype or a dtype name such as 'bfloat16', "
                    f"got {show(value)}")


def _shape(value: object) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"page_shape must be a tuple of ints or None, got {show(value)}")
    dims = tuple(check_positive_int(d, f"page_shape[{i}]") for i, d in enumerate(value))
    if not 1 <= len(dims) <= _MAX_NDIM:
        raise ValueError(f"page_shape must have 1 to {_MAX_NDIM} dimensions, got {dims}")
    return dims


class RedisPageStore:
    """KV pages of one model configuration in Redis, one key per page, batched.

    Identity: ``model``, ``revision``, ``dtype``, ``page_size``, ``page_shape`` and
    ``namespace`` (the tenant) are hashed into every key (see the module docstring
    for the exact format), so stores that differ in any of them never see each
    other's pages, and stores that agree share pages across processes and machines.
    ``page_shape`` (an extension of the issue's signature) makes pages NumPy arrays
    of that shape and ``dtype``; ``None`` (the default) stores opaque bytes.

    Operations (``n`` = number of page hashes; one round trip each):

    * ``contains_prefix(page_hashes)``: length of the longest run of stored pages
      from the start, by one Lua script that stops at the first missing key.
      O(n) server steps, O(1) reply. A page it counts can still be evicted before
      ``get_many``; ``get_many`` is the authority.
    * ``get_many(page_hashes)``: one ``MGET``; each value's header and checksum are
      verified. O(total bytes). Arrays come back as read-only views over the
      received bytes (no copy; ``np.array(page)`` for a writable one).
    * ``put_many(page_hashes, payloads)``: validates every payload first (a bad one
      raises and nothing is written), then one ``MSET`` (pages up to 6,000 bytes, no
      TTL) or one pipeline of ``SET`` (``PX`` when ``ttl_s`` is set). O(total
      bytes). Returns the number of pages written.
    * ``stats()``: counters, O(1).

    Invariants (``_check``): ``hits + misses + corrupt == get_pages`` and
    ``stored + oom_skipped + dropped == put_pages``; every counter is >= 0.

    Failure model: Redis errors in those calls never raise (module docstring).

    Thread safety: safe for concurrent callers; redis-py hands each call its own
    pooled connection and the counters are updated under an internal lock. After
    ``os.fork`` the child's client opens new connections by itself.

    Memory: O(1) besides redis-py's connection pool; a call holds its batch.

    >>> store = RedisPageStore("redis://127.0.0.1:6379/0", model="llama-3-8b",
    ...                        dtype="float16", page_size=16, page_shape=(2, 16, 8, 128))
    >>> store.key(bytes(32))[:43]
    b'llmds:kv1:f25730a8b6b05d76587aeb970dfd5cde:'
    """

    __slots__ = (
        "_breaker",
        "_client",
        "_counts",
        "_dtype",
        "_exists_script",
        "_header",
        "_header_len",
        "_identity",
        "_identity_digest",
        "_key_prefix",
        "_lock",
        "_nbytes",
        "_owned",
        "_seed_mask",
        "_shape",
        "_ttl_ms",
        "dtype_name",
        "model",
        "namespace",
        "page_size",
        "revision",
        "url",
    )

    _COUNTERS = ("prefix_lookups", "prefix_pages", "get_pages", "hits", "misses", "corrupt",
                 "put_pages", "stored", "oom_skipped", "dropped", "bytes_read", "bytes_written")

    def __init__(
        self,
        url_or_client: object,
        *,
        model: str,
        revision: str = "",
        dtype: object,
        page_size: int,
        namespace: str = "",
        ttl_s: float | None = None,
        page_shape: Sequence[int] | None = None,
        timeout_s: float = 1.0,
        error_backoff_s: float = 1.0,
    ) -> None:
        model = _utf8(model, "model", nonempty=True)
        revision = _utf8(revision, "revision")
        namespace = _utf8(namespace, "namespace")
        page_size = check_positive_int(page_size, "page_size")
        shape = _shape(page_shape)
        dt, dtype_name = _dtype(dtype, shape is not None)
        ttl_ms = None
        if ttl_s is not None:
            ttl = check_number(ttl_s, "ttl_s", minimum=0.001)
            ttl_ms = max(1, round(ttl * 1000.0))
        nbytes = 0
        if shape is not None:
            assert dt is not None
            nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        breaker = Breaker(error_backoff_s, f"RedisPageStore(model={model!r})")
        name_bytes = dtype_name.encode("ascii")
        header_len = -(-(_FIXED.size + len(name_bytes) + 8 * len(shape or ())) // 16) * 16
        if nbytes and nbytes + header_len > _MAX_VALUE:
            raise ValueError(f"page_shape {shape} of {dtype_name} is {nbytes} bytes; a Redis "
                             f"value holds at most {_MAX_VALUE - header_len} payload bytes")
        client, owned = connect(url_or_client, timeout_s=timeout_s)

        identity = (
            ("format", "1"),
            ("model", model),
            ("revision", revision),
            ("dtype", dtype_name),
            ("page_size", str(page_size)),
            ("page_shape", "bytes" if shape is None else ",".join(map(str, shape))),
            ("namespace", namespace),
        )
        encoded = b"llmds-page-identity\x00" + b"".join(_field(k, v) for k, v in identity)
        digest = hashlib.sha256(encoded).digest()[:16]
        tail = name_bytes + b"".join(d.to_bytes(8, "little") for d in shape or ())
        header = bytearray(header_len)
        _FIXED.pack_into(header, 0, _MAGIC, _VERSION,
                         _KIND_BYTES if shape is None else _KIND_ARRAY, len(shape or ()),
                         len(name_bytes), digest, nbytes, 0)
        header[_FIXED.size:_FIXED.size + len(tail)] = tail

        self.model = model
        self.revision = revision
        self.namespace = namespace
        self.page_size = page_size
        self.dtype_name = dtype_name
        self.url = redact(url_or_client) if isinstance(url_or_client, str) else None
        self._dtype = dt
        self._shape = shape
        self._nbytes = nbytes
        self._ttl_ms = ttl_ms
        self._identity = dict(identity)
        self._identity_digest = digest
        self._key_prefix = _KEY_PREFIX + digest.hex().encode("ascii") + b":"
        self._header = bytes(header)
        self._header_len = header_len
        self._seed_mask = int.from_bytes(digest[:8], "little")
        self._client = client
        self._owned = owned
        self._breaker = breaker
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._COUNTERS, 0)
        # Stops at the first missing key. 1,000 stored keys (bench_redis, loopback):
        # 1.9 ms, against 6.8 ms for a pipeline of EXISTS and 43 ms one at a time.
        self._exists_script = client.register_script(
            "for i = 1, #KEYS do "
            "if redis.call('EXISTS', KEYS[i]) == 0 then return i - 1 end "
            "end return #KEYS"
        )

    # ---------------------------------------------------------------- identity
    @property
    def page_shape(self) -> tuple[int, ...] | None:
        """Shape of an array page, or ``None`` for bytes pages."""
        return self._shape

    @property
    def dtype(self) -> np.dtype[Any] | None:
        """The NumPy dtype of the pages, or ``None`` for a name NumPy does not know
        (``'bfloat16'``: pages are then bytes)."""
        return self._dtype

    @property
    def identity(self) -> dict[str, str]:
        """The identity fields hashed into every key, as strings (see the module doc)."""
        return dict(self._identity)

    @property
    def key_prefix(self) -> bytes:
        """``b"llmds:kv1:<identity>:"``: every key of this store starts with it."""
        return self._key_prefix

    def key(self, page_hash: object) -> bytes:
        """The Redis key of ``page_hash`` (a 16-64 byte digest or its hex). O(len)."""
        return self._key_prefix + self._digest(page_hash, "page_hash").hex().encode("ascii")

    def __repr__(self) -> str:
        where = self.url or "client"
        return (f"RedisPageStore({where!r}, model={self.model!r}, revision={self.revision!r}, "
                f"dtype={self.dtype_name!r}, page_size={self.page_size}, "
                f"page_shape={self._shape}, namespace={self.namespace!r})")

    # ------------------------------------------------------------- validation
    @staticmethod
    def _digest(value: object, name: str) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, (bytearray, memoryview)):
            raw = bytes(value)
        elif isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"{name} must be a digest (bytes) or its hex string, got "
                                 f"{show(value)}") from None
        elif isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be a digest of {_MIN_DIGEST}-{_MAX_DIGEST} bytes, "
                            f"got {show(value)}: 64-bit integer page hashes are not "
                            "collision-resistant enough to share between processes "
                            "(use the caches' SHA-256 page identity)")
        else:
            raise TypeError(f"{name} must be a digest (bytes) or its hex string, got "
                            f"{show(value)}")
        if not _MIN_DIGEST <= len(raw) <= _MAX_DIGEST:
            raise ValueError(f"{name} must be a digest of {_MIN_DIGEST}-{_MAX_DIGEST} bytes, "
                             f"got {len(raw)} bytes")
        return raw

    def _digests(self, page_hashes: object) -> list[bytes]:
        if isinstance(page_hashes, (str, bytes, bytearray)) or not isinstance(
                page_hashes, Sequence | np.ndarray):
            raise TypeError(f"page_hashes must be a sequence of digests, got "
                            f"{show(page_hashes)}")
        digest = self._digest
        return [digest(h, f"page_hashes[{i}]") for i, h in enumerate(page_hashes)]

    def _payload(self, value: object, i: int) -> memoryview:
        """``value`` as a flat byte view after the dtype/shape checks. O(1) or a copy."""
        name = f"payloads[{i}]"
        dt, shape = self._dtype, self._shape
        if isinstance(value, np.ndarray):
            if dt is None:
                raise TypeError(f"{name} must be bytes: dtype {self.dtype_name!r} is not a "
                                f"NumPy dtype, got an array of {value.dtype}")
            if value.dtype != dt:
                raise TypeError(f"{name} must have dtype {dt} ({self.dtype_name!r}), got "
                                f"{value.dtype}")
            if shape is not None and value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            arr = np.ascontiguousarray(value)
            view = arr.reshape(-1).view(np.uint8).data
        elif isinstance(value, (bytes, bytearray, memoryview)):
            view = memoryview(value).cast("B") if isinstance(value, memoryview) else \
                memoryview(value)
            if shape is not None and view.nbytes != self._nbytes:
                raise ValueError(f"{name} must be {self._nbytes} bytes (shape {shape} of "
                                 f"{self.dtype_name}), got {view.nbytes} bytes")
        else:
            kind = "a NumPy array or bytes" if dt is not None else "bytes"
            raise TypeError(f"{name} must be {kind}, got {show(value)}")
        if view.nbytes + self._header_len > _MAX_VALUE:
            raise ValueError(f"{name} must be at most {_MAX_VALUE - self._header_len} "
                             f"bytes (Redis's largest value), got {view.nbytes}")
        return view

    # --------------------------------------------------------------- checksum
    def _checksum(self, buf: Any, offset: int, digest: bytes) -> int:
        """XXH64 of ``buf[offset:]`` seeded by the page and identity digests. O(len)."""
        seed = np.uint64(int.from_bytes(digest[:8], "little") ^ self._seed_mask)
        data = np.frombuffer(buf, np.uint8, offset=offset)
        words = np.frombuffer(buf, "<u8", count=data.shape[0] // 8, offset=offset)
        if _NO_JIT:  # the pure-Python kernel wraps uint64 scalars; NumPy would warn
            with np.errstate(over="ignore"):
                return int(xxh64(words, data, seed))
        return int(xxh64(words, data, seed))

    def _encode(self, digest: bytes, payload: memoryview) -> bytes:
        header = self._header
        if self._shape is None:
            header = header[:24] + payload.nbytes.to_bytes(8, "little") + header[32:]
        checksum = self._checksum(payload, 0, digest).to_bytes(8, "little")
        return b"".join((header[:_CHECKSUM_AT], checksum, header[_CHECKSUM_AT + 8:], payload))

    def _decode(self, value: bytes, digest: bytes) -> Payload | None:
        """The payload of a stored value, or None when anything does not match. O(len)."""
        hl = self._header_len
        header = self._header
        if len(value) < hl or value[:24] != header[:24] or value[40:hl] != header[40:hl]:
            return None
        length = int.from_bytes(value[24:32], "little")
        if length != len(value) - hl or (self._shape is not None and length != self._nbytes):
            return None
        if int.from_bytes(value[32:40], "little") != self._checksum(value, hl, digest):
            return None
        if self._shape is None:
            return value[hl:]
        assert self._dtype is not None
        return np.frombuffer(value, self._dtype, offset=hl).reshape(self._shape)

    # ------------------------------------------------------------ serving path
    def _count(self, **deltas: int) -> None:
        with self._lock:
            counts = self._counts
            for name, delta in deltas.items():
                counts[name] += delta

    def contains_prefix(self, page_hashes: Sequence[object]) -> int:
        """Number of leading pages of ``page_hashes`` stored in Redis. O(n), 1 round trip.

        0 on a Redis error (counted). The answer is a hint: a counted page can be
        evicted before it is read.
        """
        digests = self._digests(page_hashes)
        if not digests:
            return 0
        prefix = self._key_prefix
        keys = [prefix + d.hex().encode("ascii") for d in digests]
        found = 0
        if self._breaker.available():
            try:
                found = int(self._exists_script(keys=keys))
            except RedisError as exc:
                self._breaker.failure(exc)
            else:
                self._breaker.success()
        self._count(prefix_lookups=1, prefix_pages=found)
        return found

    def get_many(self, page_hashes: Sequence[object]) -> list[Payload | None]:
        """The stored payload of each page, or None (missing, corrupt, Redis down). 1 MGET.

        Array pages are read-only views over the received bytes.
        """
        digests = self._digests(page_hashes)
        n = len(digests)
        if not n:
            return []
        out: list[Payload | None] = [None] * n
        if not self._breaker.available():
            self._count(get_pages=n, misses=n)
            return out
        prefix = self._key_prefix
        try:
            values = self._client.mget([prefix + d.hex().encode("ascii") for d in digests])
        except RedisError as exc:
            self._breaker.failure(exc)
            self._count(get_pages=n, misses=n)
            return out
        self._breaker.success()
        hits = corrupt = nbytes = 0
        decode = self._decode
        for i, value in enumerate(values):
            if value is None:
                continue
            page = decode(value, digests[i])
            if page is None:
                corrupt += 1
                continue
            out[i] = page
            hits += 1
            nbytes += len(value)
        self._count(get_pages=n, hits=hits, misses=n - hits - corrupt, corrupt=corrupt,
                    bytes_read=nbytes)
        return out

    def put_many(self, page_hashes: Sequence[object], payloads: Sequence[object]) -> int:
        """Write every page; returns how many Redis accepted. O(total bytes), 1 round trip.

        Every page hash and payload is checked before anything is sent; a bad one
        raises ``TypeError``/``ValueError`` and nothing is written. A write refused
        because Redis is full is counted in ``oom_skipped``; a Redis error drops the
        batch (``dropped``). Neither raises.
        """
        digests = self._digests(page_hashes)
        if isinstance(payloads, (str, bytes, bytearray)) or not isinstance(
                payloads, Sequence | np.ndarray):
            raise TypeError(f"payloads must be a sequence of pages, got {show(payloads)}")
        if len(payloads) != len(digests):
            raise ValueError(f"payloads must have one page per page hash "
                             f"({len(digests)}), got {len(payloads)}")
        views = [self._payload(p, i) for i, p in enumerate(payloads)]
        n = len(digests)
        if not n:
            return 0
        if not self._breaker.available():
            self._count(put_pages=n, dropped=n)
            return 0
        values = [self._encode(d, v) for d, v in zip(digests, views, strict=True)]
        prefix = self._key_prefix
        ttl = self._ttl_ms
        keys = [prefix + d.hex().encode("ascii") for d in digests]
        replies: list[Any]
        try:
            if ttl is None and max(map(len, values)) <= _MSET_MAX_VALUE:
                # Small pages: one MSET instead of a pipeline of SETs, so redis-py packs
                # and parses one command instead of n. Loopback, per page: 64 B pages
                # x256 10.8 us vs 30.4 us; 4 KiB x64 18.8 vs 59.8. Larger values go
                # through the pipeline, which sends them without copying them into one
                # buffer (16 KiB x64: MSET 108 us, pipeline 69 us).
                try:
                    self._client.execute_command(
                        "MSET", *[x for kv in zip(keys, values, strict=True) for x in kv])
                    replies = [True] * n
                except ResponseError as exc:  # OOM refuses the whole command
                    replies = [exc] * n
            else:
                pipe = self._client.pipeline(transaction=False)
                for key, value in zip(keys, values, strict=True):
                    pipe.set(key, value, px=ttl)
                replies = pipe.execute(raise_on_error=False)
        except RedisError as exc:
            self._breaker.failure(exc)
            self._count(put_pages=n, dropped=n)
            return 0
        self._breaker.success()
        stored = oom = nbytes = 0
        other: BaseException | None = None
        for value, reply in zip(values, replies, strict=True):
            if isinstance(reply, BaseException):
                if is_oom(reply):
                    oom += 1
                else:
                    other = reply
            else:
                stored += 1
                nbytes += len(value)
        if other is not None:  # e.g. NOPERM: not an outage, but say so in the stats
            self._breaker.failure(other)
        self._count(put_pages=n, stored=stored, oom_skipped=oom, dropped=n - stored - oom,
                    bytes_written=nbytes)
        return stored

    # ------------------------------------------------------------------ admin
    def ping(self) -> bool:
        """True when Redis answers ``PING`` now (outside the counters). One round trip."""
        try:
            return bool(self._client.ping())
        except RedisError:
            return False

    def stats(self) -> dict[str, Any]:
        """Counters and state. O(1).

        Keys: ``prefix_lookups``, ``prefix_pages`` (pages found by
        ``contains_prefix``), ``get_pages``, ``hits``, ``misses``, ``corrupt``,
        ``hit_rate`` (hits / get_pages), ``put_pages``, ``stored``, ``oom_skipped``,
        ``dropped``, ``bytes_read``, ``bytes_written``, ``errors`` (failed Redis
        calls), ``skipped`` (calls that skipped Redis during a back-off),
        ``available`` (False from an error until the next success), ``last_error``,
        ``key_prefix``.
        """
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out["hit_rate"] = out["hits"] / out["get_pages"] if out["get_pages"] else 0.0
        breaker = self._breaker
        out.update(errors=breaker.errors, skipped=breaker.skipped, available=not breaker.down,
                   last_error=breaker.last_error, key_prefix=self._key_prefix.decode())
        return out

    def close(self) -> None:
        """Close the client's connections if this store created the client. Idempotent."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisPageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        """Assert the counter invariants. O(1); tests call it after each step."""
        c = self._counts
        assert all(v >= 0 for v in c.values()), c
        assert c["hits"] + c["misses"] + c["corrupt"] == c["get_pages"], c
        assert c["stored"] + c["oom_skipped"] + c["dropped"] == c["put_pages"], c
        assert c["prefix_pages"] >= 0 and self._breaker.errors >= 0
        assert len(self._header) == self._header_len and self._header_len % 16 == 0
