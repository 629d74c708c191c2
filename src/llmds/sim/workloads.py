"""The seeded multi-turn chat trace, and the size caps every simulator workload obeys.

:func:`multi_turn_chat_trace` is the workload with real prefix reuse: shared system
prompts and conversations whose follow-ups repeat their whole history. The simulator
replays it (:func:`llmds.sim.arrivals.trace_workload`, the ``chat*`` scenarios,
``workload.source = "chat_trace"`` in config files) and the KV-memory benchmarks
(``llmds.bench``) use it too; it lives here so that the simulator never imports the
benchmark suite.

Caps, checked before anything is drawn: a workload holds at most :data:`MAX_REQUESTS`
requests (:func:`check_num_requests`), and a chat trace at most about
:data:`MAX_TRACE_TOKENS` token ids (:func:`check_chat_trace_size`, which
:func:`multi_turn_chat_trace` calls itself). Seeds are ints in ``[0, 2**63 - 1]``
(:func:`check_seed`). Everything is drawn from ``numpy.random.default_rng(seed)``
(PCG64): the same arguments give the same trace on every machine.

Thread safety: pure functions; safe from any number of threads.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import INT64_MAX, check_int, check_int_list, check_number, show

__all__ = [
    "MAX_REQUESTS",
    "MAX_TRACE_TOKENS",
    "MAX_TURN_TOKENS",
    "TRACE_PARAMS",
    "ChatRequest",
    "check_chat_trace_size",
    "check_num_requests",
    "check_seed",
    "check_trace_params",
    "multi_turn_chat_trace",
]

#: Most requests one workload may hold: a simulated request costs about 5 KB (synthetic)
#: to 18 KB (chat trace) and 0.3-0.5 ms, so this is ~5-18 GB and minutes. Checked
#: before anything is drawn (``requests: 10**12`` used to allocate until MemoryError).
MAX_REQUESTS = 1_000_000
#: Most token ids a chat trace may hold (int32 in the trace, int64 in its requests:
#: about 3 GiB). See :func:`check_chat_trace_size`.
MAX_TRACE_TOKENS = 1 << 28
#: Longest system prompt, user message, follow-up or output of the chat trace.
MAX_TURN_TOKENS = 1 << 20

#: multi_turn_chat_trace's keyword arguments besides ``seed`` (config files' workload.trace).
TRACE_PARAMS = ("vocab_size", "num_system_prompts", "system_prompt_tokens", "user_tokens",
                "follow_up_prob", "recent_conversations", "follow_up_tokens", "output_tokens")
# multi_turn_chat_trace's integer arguments -> (minimum, maximum); its (low, high)
# token ranges are ints in [1, MAX_TURN_TOKENS] with low <= high.
_TRACE_INTS = {"vocab_size": (1, 2**31 - 1), "num_system_prompts": (1, 1 << 16),
               "system_prompt_tokens": (1, MAX_TURN_TOKENS),
               "recent_conversations": (1, 1 << 20)}
_TRACE_RANGES = ("user_tokens", "follow_up_tokens", "output_tokens")


def check_seed(seed: object) -> int:
    """A workload seed: an int in ``[0, 2**63 - 1]`` (NumPy's generators take no negatives)."""
    return check_int(seed, "seed", minimum=0, maximum=INT64_MAX)


def check_num_requests(num_requests: object, name: str = "num_requests") -> int:
    """A workload size: an int in ``[0, MAX_REQUESTS]``, checked before drawing anything."""
    return check_int(num_requests, name, minimum=0, maximum=MAX_REQUESTS)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request of the multi-turn chat trace.

    ``prompt`` is the full prompt (system prompt + history + new user tokens) and
    ``output`` the tokens the model generates; both are int32 arrays of token ids.
    ``conversation`` numbers the conversation; ``turn`` is 0 for its first request.
    Thread safety: immutable (the arrays are not copied: do not write to them).
    """

    request_id: int
    conversation: int
    turn: int
    prompt: npt.NDArray[np.int32]
    output: npt.NDArray[np.int32]


def check_trace_params(
    params: Mapping[str, Any], name: Callable[[str], str] = str
) -> dict[str, Any]:
    """:func:`multi_turn_chat_trace` keyword arguments, each checked and named by ``name(key)``.

    Returns them with ranges as ``(low, high)`` tuples. The one owner of the trace's
    argument rules: config files name their keys through ``name``
    (``"config key 'workload.trace.output_tokens'"``). O(len(params)).

    >>> check_trace_params({"output_tokens": [5, 9], "follow_up_prob": 1})
    {'output_tokens': (5, 9), 'follow_up_prob': 1.0}
    >>> check_trace_params({"user_tokens": (9, 5)})
    Traceback (most recent call last):
    ValueError: user_tokens must be a (low, high) pair with low <= high, got tuple (9, 5)
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        label = name(key)
        if key in _TRACE_RANGES:
            out[key] = _check_range(value, label)
        elif key == "follow_up_prob":
            out[key] = check_number(value, label, minimum=0.0, maximum=1.0)
        elif key in _TRACE_INTS:
            low, high = _TRACE_INTS[key]
            out[key] = check_int(value, label, minimum=low, maximum=high)
        else:
            raise TypeError(f"multi_turn_chat_trace has no argument {key!r}")
    return out


def _check_range(value: object, name: str) -> tuple[int, int]:
    """An inclusive ``(low, high)`` token range within ``[1, MAX_TURN_TOKENS]``. O(1)."""
    if isinstance(value, Mapping):
        raise TypeError(f"{name} must be a (low, high) pair of ints, got {show(value)}")
    values = check_int_list(value, name, minimum=1, maximum=MAX_TURN_TOKENS)
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, "
                         f"got {show(value)}")
    return values[0], values[1]


def check_chat_trace_size(num_requests: int, **params: Any) -> int:
    """About how many token ids ``multi_turn_chat_trace(num_requests, **params)`` holds. O(1).

    Raises ``ValueError`` above :data:`MAX_TRACE_TOKENS`, before the trace is drawn
    (:func:`multi_turn_chat_trace` calls it first). A follow-up repeats its
    conversation's previous prompt and output, so a request ``d`` turns deep holds
    ``system + user + d * (output + follow_up)`` prompt tokens; with follow-up
    probability ``p`` a conversation is continued ``p / (1 - p)`` times on average,
    which is also the mean depth of a request (``p = 1``: one conversation, mean
    depth ``num_requests / 2``). The estimate uses mean lengths, so the trace holds
    about this many tokens, not at most.

    >>> check_chat_trace_size(1000)  # the defaults: ~1,100 tokens per request
    1115000
    """
    num_requests = check_num_requests(num_requests)
    given = check_trace_params(params)

    def get(key: str) -> Any:
        return given.get(key, _TRACE_DEFAULTS[key])

    def mean(key: str) -> float:
        low, high = get(key)
        return (low + high) / 2.0

    p = float(get("follow_up_prob"))
    depth = num_requests / 2.0 if p >= 1.0 else min(p / (1.0 - p), num_requests / 2.0)
    output = mean("output_tokens")
    per_request = (get("system_prompt_tokens") + mean("user_tokens") + output
                   + depth * (output + mean("follow_up_tokens")))
    total = round(num_requests * per_request)
    if total > MAX_TRACE_TOKENS:
        raise ValueError(
            f"a chat trace of {num_requests} requests would hold about {total:,} token ids, "
            f"more than {MAX_TRACE_TOKENS:,}; use fewer requests, shorter turns or a lower "
            "follow_up_prob"
        )
    return total


def multi_turn_chat_trace(
    num_requests: int = 2000,
    *,
    vocab_size: int = 32_000,
    num_system_prompts: int = 8,
    system_prompt_tokens: int = 500,
    user_tokens: tuple[int, int] = (50, 500),
    follow_up_prob: float = 0.4,
    recent_conversations: int = 64,
    follow_up_tokens: tuple[int, int] = (20, 200),
    output_tokens: tuple[int, int] = (20, 300),
    seed: int = 0,
) -> list[ChatRequest]:
    """The seeded multi-turn chat trace of the simulator and the KV-memory benchmarks.

    A new conversation is one of ``num_system_prompts`` system prompts of
    ``system_prompt_tokens`` tokens plus a user message of U[``user_tokens``] tokens.
    With probability ``follow_up_prob`` a request instead continues one of the last
    ``recent_conversations`` conversations: its previous prompt + previous output +
    U[``follow_up_tokens``] new tokens. Every request outputs U[``output_tokens``]
    tokens. Ranges are inclusive. Token ids are uniform in ``[0, vocab_size)``.

    O(total tokens). Every argument is checked, and the trace's size estimated
    (:func:`check_chat_trace_size`), before anything is drawn.

    >>> trace = multi_turn_chat_trace(100, seed=1)
    >>> len(trace), trace[0].turn
    (100, 0)
    >>> all(len(r.prompt) >= 550 for r in trace)
    True
    """
    seed = check_seed(seed)
    params = dict(vocab_size=vocab_size, num_system_prompts=num_system_prompts,
                  system_prompt_tokens=system_prompt_tokens, user_tokens=user_tokens,
                  follow_up_prob=follow_up_prob, recent_conversations=recent_conversations,
                  follow_up_tokens=follow_up_tokens, output_tokens=output_tokens)
    check_chat_trace_size(num_requests, **params)  # checks every argument, then the size
    return _draw_trace(int(num_requests), seed=seed, **check_trace_params(params))


def _draw_trace(
    num_requests: int, *, vocab_size: int, num_system_prompts: int,
    system_prompt_tokens: int, user_tokens: tuple[int, int], follow_up_prob: float,
    recent_conversations: int, follow_up_tokens: tuple[int, int],
    output_tokens: tuple[int, int], seed: int,
) -> list[ChatRequest]:
    """:func:`multi_turn_chat_trace` on checked arguments. O(total tokens)."""
    rng = np.random.default_rng(seed)
    systems = [
        rng.integers(0, vocab_size, system_prompt_tokens, dtype=np.int32)
        for _ in range(num_system_prompts)
    ]

    def tokens(length_range: tuple[int, int]) -> npt.NDArray[np.int32]:
        n = int(rng.integers(*length_range, endpoint=True))
        return rng.integers(0, vocab_size, n, dtype=np.int32)

    trace: list[ChatRequest] = []
    last: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # conv -> (prompt, output, turn)
    # Conversations by recency, oldest first; appending to a full deque drops the oldest.
    recent: deque[int] = deque(maxlen=recent_conversations)
    next_conv = 0
    for rid in range(num_requests):
        if recent and rng.random() < follow_up_prob:
            i = int(rng.integers(0, len(recent)))
            conv = recent[i]
            # By position, no search: O(recent_conversations), 64 by default. The draw
            # above indexes conversations in recency order, so that order is kept.
            del recent[i]
            prev_prompt, prev_output, prev_turn = last[conv]
            prompt = np.concatenate([prev_prompt, prev_output, tokens(follow_up_tokens)])
            turn = prev_turn + 1
        else:
            conv = next_conv
            next_conv += 1
            system = systems[int(rng.integers(0, num_system_prompts))]
            prompt = np.concatenate([system, tokens(user_tokens)])
            turn = 0
        output = tokens(output_tokens)
        last[conv] = (prompt, output, turn)
        recent.append(conv)
        trace.append(ChatRequest(rid, conv, turn, prompt, output))
    return trace


_TRACE_DEFAULTS: dict[str, Any] = {
    key: inspect.signature(multi_turn_chat_trace).parameters[key].default
    for key in TRACE_PARAMS
}
