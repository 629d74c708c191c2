"""Saving, loading, pickling and copying an :class:`~llmds.inverted_index.InvertedIndex`.

A mixin of InvertedIndex (internal): the file format and its checks live in
:mod:`llmds._index_file`; this is the class's side of it (locks, sealing, the
analyzer rules). The methods are documented on InvertedIndex.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from llmds._index_file import IndexParts, from_state, read_index, to_state, write_index
from llmds._validate import check_bool, check_path, show
from llmds.analysis import Analyzer
from llmds.errors import CorruptFileError

if TYPE_CHECKING:
    from llmds._threads import RWLock

__all__ = ["IndexFiles"]

_Index = TypeVar("_Index", bound="IndexFiles")


class IndexFiles:
    """save / load / pickle / copy for InvertedIndex (holds no state of its own).

    Thread safety: as InvertedIndex: ``save`` holds the write lock while it seals the
    buffer and copies the arrays (not while it writes the file); pickling and copies
    hold the read lock; so all of them may run beside searches.
    """

    __slots__ = ()
    if TYPE_CHECKING:
        _analyzer: Callable[[str], Sequence[str]]
        _lock: RWLock

        def _seal(self) -> None: ...
        def _parts(self) -> IndexParts: ...
        def _install(self, parts: IndexParts) -> None: ...

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to ``path`` atomically (seals the buffer first); return the size.

        O(index bytes). Format: an :mod:`llmds._persist` container (see
        :mod:`llmds._index_file`): versioned, checksummed, no pickle, written to a
        temporary file, fsynced and renamed, so saving over a file another index
        has open with ``mmap=True`` is safe. The analyzer is stored by name and
        options (:meth:`Analyzer.spec`); one that cannot be named (a custom callable,
        tokenizer or token pattern, or an Analyzer subclass) is not stored: pass it
        again to :meth:`load`. Writers wait while the buffer is sealed and the arrays
        are copied, not while the file is written; searches never wait.
        """
        target = Path(check_path(path))
        # fail before sealing: a save that cannot happen leaves the index as it was
        if target.is_dir():
            raise IsADirectoryError(f"cannot save to {os.fspath(path)!r}: it is a folder")
        if not (target.parent if str(target.parent) else Path(".")).is_dir():
            raise FileNotFoundError(f"cannot save to {os.fspath(path)!r}: no folder "
                                    f"{os.fspath(target.parent)!r}")
        with self._lock.writing():
            self._seal()
            parts = self._parts()
        return write_index(path, parts)

    @classmethod
    def load(
        cls: type[_Index], path: str | os.PathLike[str], *, mmap: bool = False,
        analyzer: Analyzer | Callable[[str], Sequence[str]] | None = None,
    ) -> _Index:
        """Read an index written by :meth:`save`, trusting nothing in it. O(file size).

        ``mmap=True`` maps the big arrays copy-on-write instead of reading them. The
        file's checksums and then every structural fact the kernels rely on are
        checked before any search can run (see :mod:`llmds._index_file`); the
        analyzer comes from fixed named options, never a regex or code from the
        file. ``analyzer`` replaces the stored one and is required when the index
        was saved with a custom analyzer. Only regular files are opened.

        Raises CorruptFileError (a ValueError) for a truncated, corrupted, hostile
        or foreign file, or a FIFO, device or folder; FileNotFoundError if missing.
        """
        check_path(path)
        mmap = check_bool(mmap, "mmap")
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"analyzer must be callable or None, got {show(analyzer)}")
        parts = read_index(path, mmap=mmap, analyzer=analyzer)
        if parts.analyzer is None:
            raise CorruptFileError(f"{os.fspath(path)!r} was saved with a custom analyzer; "
                                   "pass analyzer= to load")
        self = cls.__new__(cls)
        self._install(parts)
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickling: the parts as new arrays (the buffer stays unsealed). O(index bytes)."""
        analyzer = self._analyzer
        if not isinstance(analyzer, Analyzer):
            try:
                pickle.dumps(analyzer)
            except Exception as exc:
                raise TypeError(f"cannot pickle this InvertedIndex: its analyzer "
                                f"{show(analyzer)} cannot be pickled ({exc}); use an Analyzer "
                                "or a module-level function") from None
        with self._lock.reading():
            return to_state(self._parts())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._install(from_state(state))

    def __deepcopy__(self: _Index, memo: dict[int, Any]) -> _Index:
        with self._lock.reading():
            state = to_state(self._parts())
        state["analyzer"] = copy.deepcopy(state["analyzer"], memo)
        new = type(self).__new__(type(self))
        new.__setstate__(state)
        return new

    def __copy__(self: _Index) -> _Index:
        """An independent copy, as :func:`copy.deepcopy` (sharing arrays would be unsafe)."""
        return self.__deepcopy__({})

