"""A progress bar for long loops: tqdm's when it is installed, else a small one of our own.

tqdm is optional (never a dependency of llmds): ``pip install tqdm`` gives its bar;
without it, :class:`Progress` writes ``"desc: 1,024/5,183 (20%)"`` lines to stderr,
rewritten in place on a terminal and at most every 2 seconds otherwise.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, desc, enabled) as bar: bar.update(n)``. O(1) per update.

    Thread safety: not thread-safe (one loop drives it).
    """

    __slots__ = ("_bar", "_desc", "_done", "_enabled", "_last", "_out", "_total")

    def __init__(self, total: int, desc: str, enabled: bool, out: TextIO | None = None) -> None:
        self._total, self._desc, self._enabled = total, desc, enabled
        self._done = 0
        self._last = 0.0
        self._out = out
        self._bar: Any = None

    def __enter__(self) -> Progress:
        if not self._enabled:
            return self
        if self._out is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self._total, desc=self._desc, unit="doc")
                return self
        self._write(force=True)
        return self

    def update(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._enabled:
            self._write(force=self._done >= self._total)

    def _write(self, force: bool) -> None:
        out = self._out or sys.stderr
        tty = out.isatty() if hasattr(out, "isatty") else False
        now = time.monotonic()
        if not force and not tty and now - self._last < 2.0:
            return
        self._last = now
        pct = 100 * self._done // max(self._total, 1)
        line = f"{self._desc}: {self._done:,}/{self._total:,} ({pct}%)"
        out.write(("\r" + line) if tty else (line + "\n"))
        out.flush()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and (self._out or sys.stderr).isatty():
            (self._out or sys.stderr).write("\n")
