"""What the Redis-backed classes share: the client, URL checks, and the serving-path breaker.

* :func:`connect` turns ``url_or_client`` into a ``redis.Redis``: a URL is checked
  here (scheme, host, port, database number; the password is never echoed in an
  error) and opened with short timeouts and **no retries** (redis-py >= 6 retries a
  failed command 10 times with backoff by default, which would stall the serving
  path for seconds when Redis is down); a client is used as it is.
* :class:`Breaker` turns failures in the serving path into a short back-off: after a
  Redis error no call touches Redis for ``backoff_s`` seconds (they take the
  documented degraded path at once instead of each waiting for a timeout); the
  first call after that tries again. Transitions are logged on ``llmds.dist``
  (one warning when Redis goes away, one info line when it is back).

Importing this module imports redis-py; :mod:`llmds.dist` only does so on first use.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from typing import Any

from llmds._validate import check_number, show

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "llmds.dist needs redis-py (with hiredis): pip install 'llmds[redis]'"
    ) from exc

__all__ = ["Breaker", "NoScriptError", "RedisError", "ResponseError", "connect", "is_oom",
           "redact"]

log = logging.getLogger("llmds.dist")

RedisError = redis.exceptions.RedisError
NoScriptError = redis.exceptions.NoScriptError
ResponseError = redis.exceptions.ResponseError
_OOM = getattr(redis.exceptions, "OutOfMemoryError", None)
_SCHEMES = ("redis", "rediss", "unix")
# 256 KiB reads: a 64 KiB page pipeline ran at 34k GET/s against 30.6k with
# redis-py's 64 KiB default (loopback, hiredis); 1 MiB gained nothing more.
_READ_SIZE = 256 * 1024


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages and logs).

    >>> redact("redis://user:secret@host:6379/0")
    'redis://user:***@host:6379/0'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_url(url: str, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``url`` is a usable Redis URL."""
    shown = redact(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"{name} must be a redis://, rediss:// or unix:// URL, got "
                         f"{shown!r} ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"{name} must be a redis://, rediss:// or unix:// URL, got {shown!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{name} must name a socket path (unix:///path/redis.sock), "
                             f"got {shown!r}")
        return
    if not parts.hostname:
        raise ValueError(f"{name} must name a host (redis://host:6379/0), got {shown!r}")
    if port == 0:
        raise ValueError(f"{name} must have a port in [1, 65535], got {shown!r}")
    db = parts.path.lstrip("/")
    if db and not (db.isdigit() and db.isascii()):
        raise ValueError(f"{name} must end with a database number (/0), got {shown!r}")


def connect(
    url_or_client: object, *, timeout_s: float, name: str = "url_or_client"
) -> tuple[Any, bool]:
    """``(client, owned)``: a ``redis.Redis`` for ``url_or_client``. O(1); no I/O.

    A URL gives a new client (owned: ``close()`` closes it) with ``timeout_s`` for
    connecting and for every reply and no retries; a ``redis.Redis`` is used as is
    (its owner configures timeouts and retries) but must return bytes.
    """
    if isinstance(url_or_client, str):
        _check_url(url_or_client, name)
        timeout = check_number(timeout_s, "timeout_s", minimum=0.0, exclusive_minimum=True)
        try:
            client = redis.Redis.from_url(
                url_or_client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                socket_read_size=_READ_SIZE,
            )
        except ValueError as exc:  # what redis-py itself refuses (bad query options)
            raise ValueError(f"{name} is not a usable Redis URL: {redact(url_or_client)!r} "
                             f"({exc})") from None
        return client, True
    if isinstance(url_or_client, redis.Redis):
        kwargs = url_or_client.get_connection_kwargs()
        if kwargs.get("decode_responses"):
            raise ValueError(f"{name} must be a client with decode_responses=False "
                             "(pages and scripts exchange bytes)")
        return url_or_client, False
    raise TypeError(f"{name} must be a Redis URL (str) or a redis.Redis client, got "
                    f"{show(url_or_client)}")


def is_oom(exc: BaseException) -> bool:
    """True for Redis's "OOM command not allowed when used memory > 'maxmemory'" error."""
    if _OOM is not None and isinstance(exc, _OOM):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("OOM")


class Breaker:
    """Back-off after a Redis error: skip Redis for ``backoff_s`` seconds, then try again.

    ``available()`` is False during the back-off; ``failure(exc)`` starts one;
    ``success()`` ends the outage (logged once). Counters: ``errors`` (failed calls),
    ``skipped`` (calls that did not try because of a back-off).

    Thread safety: safe; state changes happen under an internal lock, and
    ``available()`` reads one float.
    """

    __slots__ = ("_down", "_lock", "_until", "backoff_s", "errors", "label", "last_error",
                 "skipped")

    def __init__(self, backoff_s: float, label: str) -> None:
        self.backoff_s = check_number(backoff_s, "error_backoff_s", minimum=0.0)
        self.label = label
        self._lock = threading.Lock()
        self._until = 0.0
        self._down = False
        self.errors = 0
        self.skipped = 0
        self.last_error = ""

    def available(self) -> bool:
        """True unless a back-off is running (then counts one skipped call). O(1)."""
        if time.monotonic() >= self._until:
            return True
        with self._lock:
            self.skipped += 1
        return False

    def retry_after(self) -> float:
        """Seconds left in the current back-off (0.0 when none). O(1)."""
        return max(0.0, self._until - time.monotonic())

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._down

    def failure(self, exc: BaseException) -> None:
        """Count ``exc`` and start a back-off. O(1)."""
        with self._lock:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._until = time.monotonic() + self.backoff_s
            was_down, self._down = self._down, True
        if not was_down:
            log.warning("%s: Redis unavailable (%s); degrading for %.3g s between retries",
                        self.label, self.last_error, self.backoff_s)

    def success(self) -> None:
        """End an outage (logs once). O(1)."""
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                log.info("%s: Redis available again", self.label)
