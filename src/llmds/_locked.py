"""Copying and pickling for classes whose state one internal lock guards.

A ``threading.Lock`` cannot be pickled or copied, and a copy must not share the
original's lock anyway. :class:`LockedState` gives such a class ``copy.copy``,
``copy.deepcopy`` and ``pickle`` support: the state (every attribute except the
locks) is deep-copied while holding ``self._lock``, so a copy is a consistent
snapshot even while other threads use the original, and the copy makes its own
locks. Attributes named in ``_SHARED`` (a clock, a policy function: behaviour, not
state) are the same objects in a ``copy``/``deepcopy``; ``pickle`` pickles them by
its own rules (a module-level function or ``time.monotonic`` works, a lambda is
refused with pickle's error naming it).

Used by :class:`~llmds.scheduler.Scheduler`,
:class:`~llmds.admissions.AdmissionController` and
:class:`~llmds.utils.MetricsCollector`.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

__all__ = ["LockedState"]


class LockedState:
    """Mixin: copy/deepcopy/pickle of a class guarded by ``self._lock``. O(state) each.

    Subclasses set ``_LOCKS`` (attributes never copied, made again by
    ``_new_locks``) and ``_SHARED``, and implement ``_new_locks``. Works with
    ``__slots__`` classes (the mixin adds no slots) and ``__dict__`` classes.

    Thread safety: a copy or pickle may be taken while other threads use the object.
    """

    __slots__ = ()
    _LOCKS: ClassVar[tuple[str, ...]] = ("_lock",)
    _SHARED: ClassVar[tuple[str, ...]] = ()

    def _new_locks(self) -> None:
        """Create this object's locks (and reset what belonged to the original's threads)."""
        raise NotImplementedError

    def _state_names(self) -> list[str]:
        if hasattr(self, "__dict__"):
            return list(self.__dict__)
        return [name for cls in type(self).__mro__ for name in getattr(cls, "__slots__", ())]

    def _snapshot(self, memo: dict[int, Any]) -> dict[str, Any]:
        """The state without the locks, deep-copied under ``_lock``; ``_SHARED`` as is."""
        skip = {*self._LOCKS, *self._SHARED}
        with self._lock:  # type: ignore[attr-defined]
            state = {name: getattr(self, name) for name in self._state_names()
                     if name not in skip and hasattr(self, name)}
            state = copy.deepcopy(state, memo)
        state.update((name, getattr(self, name)) for name in self._SHARED)
        return state

    def __getstate__(self) -> dict[str, Any]:
        return self._snapshot({})

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self._new_locks()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(self._snapshot(memo))
        return new
