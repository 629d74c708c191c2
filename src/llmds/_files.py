"""Reading small untrusted text files: simulator config files, benchmark result files.

One function, :func:`read_text_file`, shared by :mod:`llmds.sim.config` and
:mod:`llmds.bench.report`. It opens regular files only
(:func:`llmds._persist.open_regular`: a FIFO or device is refused without blocking),
caps the size before reading and decodes strictly as UTF-8, so every failure is one
``ValueError`` that names the file and what is wrong with it.
"""

from __future__ import annotations

import os

from llmds._persist import open_regular

__all__ = ["read_text_file"]


def read_text_file(path: str | os.PathLike[str], what: str, max_bytes: int) -> str:
    """The UTF-8 text of a small regular file, or ``ValueError`` naming ``what``. O(size).

    A missing, unreadable, non-regular (folder, FIFO, device: never opened in a way
    that blocks) or larger-than-``max_bytes`` file, or one that is not UTF-8, raises
    ``ValueError("<what> '<path>' ...")`` before its contents are read.
    """
    where = os.fspath(path)
    try:
        fd, size = open_regular(where)
    except FileNotFoundError:
        raise ValueError(f"{what} {where!r} does not exist") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {where!r}: {exc.strerror or exc}") from None
    except ValueError:  # CorruptFileError: a folder, FIFO, socket or device
        raise ValueError(f"{what} {where!r} is not a regular file") from None
    try:
        if size > max_bytes:
            raise ValueError(f"{what} {where!r} is {size:,} bytes, more than {max_bytes:,}")
        data = _read_at_most(fd, max_bytes + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise ValueError(f"cannot read {what} {where!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {where!r} is more than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {where!r} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd`` (fewer at end of file), in 1 MiB reads. O(limit)."""
    chunks = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
