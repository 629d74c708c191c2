"""Pytest fixtures that run the real ``redis-server`` (STYLE.md: servers are real and owned).

* ``redis_server`` (session): one server on 127.0.0.1, a free port, a temporary
  directory, no persistence; stopped by pid at the end of the session.
* ``redis_url`` (function): that server's URL, emptied (``FLUSHALL``) first.
* ``make_redis_server`` (function): ``make(**config)`` starts a private server
  (``maxmemory="2mb"``, ...) for a test that stops, restarts or fills it; every one
  is stopped by pid in teardown.

Without the binary the tests are skipped with the reason, except under CI
(``CI`` set), where ``.ci/run`` installs it and a missing binary is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from llmds.dist._redis_server import RedisServer, redis_server_binary


def _require_binary() -> None:
    if redis_server_binary() is None:
        why = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; .ci/run should have installed it")
        pytest.skip(why)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    _require_binary()
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.start()  # no-op unless a test stopped it
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def make_redis_server() -> Iterator[Callable[..., RedisServer]]:
    _require_binary()
    servers: list[RedisServer] = []

    def make(**config: str) -> RedisServer:
        server = RedisServer(**config)
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.close()
