"""Exceptions raised by llmds.

Each llmds error is also the closest built-in exception, so callers may write
either ``except llmds.CapacityError`` or plain ``except RuntimeError``.
Bad arguments raise the built-ins (``ValueError``, ``TypeError``, ``IndexError``)
directly, with the argument's name and value in the message.
"""

from __future__ import annotations

__all__ = ["CapacityError", "CorruptFileError", "LLMDSError", "UnknownSequenceError"]


class LLMDSError(Exception):
    """Base class of every exception defined by llmds."""


class CapacityError(LLMDSError, RuntimeError):
    """A fixed-capacity structure has no room (no free KV pages, full budget).

    The call that raised it changed nothing; the caller may evict, preempt or retry.
    """


class UnknownSequenceError(LLMDSError, KeyError):
    """A sequence or request id was never added, or was already released."""


class CorruptFileError(LLMDSError, ValueError):
    """A saved index is truncated, corrupted, or of an unsupported format version."""
