"""Start and stop a private ``redis-server`` on loopback (tests and benchmarks only).

:class:`RedisServer` runs the real ``redis-server`` binary on ``127.0.0.1`` with a
free port, its own temporary directory and no persistence (``--save ''``,
``--appendonly no``), and stops it by pid. It never touches a system-wide Redis
service. The library itself never starts servers; this module is what the test
fixtures (``tests/conftest.py``) and ``llmds.bench.bench_redis`` share.

Thread safety: not thread-safe; one owner starts and stops a server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "redis_server_binary"]

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str | None:
    """Path of the ``redis-server`` binary (``$LLMDS_REDIS_SERVER`` or ``PATH``), or None."""
    explicit = os.environ.get("LLMDS_REDIS_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("redis-server")


def _free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(port: int, *args: str, timeout_s: float = 2.0) -> bytes:
    """Send one RESP command to 127.0.0.1:``port``; the first bytes of the reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"".join(parts))
        return s.recv(256)


def _ping(port: int, timeout_s: float) -> bool:
    """True when a RESP ``PING`` on 127.0.0.1:``port`` answers ``+PONG``."""
    try:
        return _command(port, "PING", timeout_s=timeout_s).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private ``redis-server`` process on 127.0.0.1.

    ``start()`` picks a free port (the same port again on a restart), launches the
    binary in a fresh temporary directory with persistence off and waits until it
    answers ``PING``; ``stop()`` sends SIGTERM to the recorded pid, waits, and
    SIGKILLs after 10 s; ``close()`` also removes the directory. ``config`` adds
    ``--name value`` options (``maxmemory``, ``maxmemory-policy``, ...).

    Usable as a context manager. Memory: one child process.
    """

    def __init__(self, binary: str | None = None, **config: str) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(
                "redis-server not found on PATH; install it (Debian/Ubuntu: "
                "apt-get install redis-server) or set LLMDS_REDIS_SERVER"
            )
        self.binary = found
        self.config = {k.replace("_", "-"): str(v) for k, v in config.items()}
        self.port = 0
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="llmds-redis-"))

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Launch the server (on the previous port after a stop) and wait for PING. Returns self."""
        if self.running:
            return self
        attempts = 1 if self.port else 5  # a fresh port can be taken between probe and bind
        for attempt in range(attempts):
            port = self.port or _free_port()
            args = [
                self.binary, "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self._dir),
                "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
                "--logfile", str(self._dir / "redis.log"),
            ]
            for name, value in self.config.items():
                args += [f"--{name}", value]
            with open(self._dir / "stderr.log", "wb") as err_file:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err_file, cwd=self._dir)
            deadline = time.monotonic() + _START_TIMEOUT_S
            while time.monotonic() < deadline and proc.poll() is None:
                if _ping(port, 0.5):
                    self._proc, self.pid, self.port = proc, proc.pid, port
                    return self
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_STOP_TIMEOUT_S)
            if attempt + 1 == attempts:
                tail = " ".join(
                    (self._dir / name).read_text(errors="replace")[-1000:].strip()
                    for name in ("stderr.log", "redis.log") if (self._dir / name).exists()
                )
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}: {tail}")
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """SIGTERM the server by pid and wait (SIGKILL after 10 s). Idempotent."""
        proc, self._proc, self.pid = self._proc, None, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=_STOP_TIMEOUT_S)

    def flushall(self) -> None:
        """Delete every key (``FLUSHALL``)."""
        reply = _command(self.port, "FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def restart(self) -> None:
        """Stop and start again on the same port; the data is gone (no persistence)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"RedisServer(port={self.port}, {state})"
