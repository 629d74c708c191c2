"""Pytest fixtures that run the real ``redis-server`` (STYLE.md: servers are real and owned).

* ``redis_server`` (session): one server on 127.0.0.1, a free port, a temporary
  directory, no persistence; stopped by pid at the end of the session.
* ``redis_url`` (function): that server's URL, emptied (``FLUSHALL``) first.
* ``make_redis_server`` (function): ``make(**config)`` starts a private server
  (``maxmemory="2mb"``, ...) for a test that stops, restarts or fills it; every one
  is stopped by pid in teardown.
* :func:`run_in_processes`: one forked worker process per argument tuple.

Without the binary the tests are skipped with the reason, except under CI
(``CI`` set), where ``.ci/run`` installs it and a missing binary is a failure.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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


def run_in_processes(target: Callable[..., Any], args: Sequence[tuple[Any, ...]],
                     timeout_s: float = 60.0) -> list[Any]:
    """``target(*a)`` in one forked process per ``a`` in ``args``; the return values.

    Runs them at the same time; a worker's exception fails the test with its
    traceback, and a worker still alive after ``timeout_s`` is killed by pid.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child(i: int, a: tuple[Any, ...]) -> None:
        try:
            queue.put((i, True, target(*a)))
        except BaseException:
            queue.put((i, False, traceback.format_exc()))

    procs = [ctx.Process(target=child, args=(i, a)) for i, a in enumerate(args)]
    for p in procs:
        p.start()
    try:
        results = {}
        for _ in procs:
            i, ok, value = queue.get(timeout=timeout_s)
            if not ok:
                pytest.fail(f"worker {i} failed:\n{value}")
            results[i] = value
    finally:
        for p in procs:
            p.join(timeout_s)
            if p.is_alive():
                p.kill()
                p.join(timeout_s)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [results[i] for i in range(len(procs))]
