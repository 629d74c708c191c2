"""Seeded workloads shared by benchmarks and the simulator.

Every generator takes a ``seed`` and returns the same data for the same arguments on
every machine (NumPy ``default_rng``, PCG64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ChatRequest", "multi_turn_chat_trace", "zipf_keys"]


def zipf_keys(n: int, num_keys: int, s: float = 1.1, seed: int = 0) -> npt.NDArray[np.int64]:
    """``n`` keys in ``[0, num_keys)`` with P(rank r) proportional to ``1 / r**s``.

    Ranks are shuffled onto key ids so hot keys are spread over the id space.
    """
    if n < 0 or num_keys < 1:
        raise ValueError(f"need n >= 0 and num_keys >= 1, got n={n}, num_keys={num_keys}")
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_keys + 1, dtype=np.float64) ** s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(n), side="right")
    ranks = np.minimum(ranks, num_keys - 1)
    perm = rng.permutation(num_keys)
    return perm[ranks].astype(np.int64)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One request of the multi-turn chat trace.

    ``prompt`` is the full prompt (system prompt + history + new user tokens) and
    ``output`` the tokens the model generates; both are int32 arrays of token ids.
    ``conversation`` numbers the conversation; ``turn`` is 0 for its first request.
    """

    request_id: int
    conversation: int
    turn: int
    prompt: npt.NDArray[np.int32]
    output: npt.NDArray[np.int32]


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
    """The seeded multi-turn chat trace of the KV-memory benchmarks.

    A new conversation is one of ``num_system_prompts`` system prompts of
    ``system_prompt_tokens`` tokens plus a user message of U[``user_tokens``] tokens.
    With probability ``follow_up_prob`` a request instead continues one of the last
    ``recent_conversations`` conversations: its previous prompt + previous output +
    U[``follow_up_tokens``] new tokens. Every request outputs U[``output_tokens``]
    tokens. Ranges are inclusive. Token ids are uniform in ``[0, vocab_size)``.

    >>> trace = multi_turn_chat_trace(100, seed=1)
    >>> len(trace), trace[0].turn
    (100, 0)
    >>> all(len(r.prompt) >= 550 for r in trace)
    True
    """
    if num_requests < 0:
        raise ValueError(f"num_requests must be >= 0, got {num_requests}")
    if not 0.0 <= follow_up_prob <= 1.0:
        raise ValueError(f"follow_up_prob must be in [0, 1], got {follow_up_prob}")
    rng = np.random.default_rng(seed)
    systems = [
        rng.integers(0, vocab_size, system_prompt_tokens, dtype=np.int32)
        for _ in range(num_system_prompts)
    ]
    trace: list[ChatRequest] = []
    last: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # conv -> (prompt, output, turn)
    recent: list[int] = []
    next_conv = 0
    for rid in range(num_requests):
        if recent and rng.random() < follow_up_prob:
            conv = recent[int(rng.integers(0, len(recent)))]
            prev_prompt, prev_output, prev_turn = last[conv]
            new = rng.integers(0, vocab_size, int(rng.integers(*follow_up_tokens, endpoint=True)),
                               dtype=np.int32)
            prompt = np.concatenate([prev_prompt, prev_output, new])
            turn = prev_turn + 1
            recent.remove(conv)
        else:
            conv = next_conv
            next_conv += 1
            system = systems[int(rng.integers(0, num_system_prompts))]
            user = rng.integers(0, vocab_size, int(rng.integers(*user_tokens, endpoint=True)),
                                dtype=np.int32)
            prompt = np.concatenate([system, user])
            turn = 0
        output = rng.integers(0, vocab_size, int(rng.integers(*output_tokens, endpoint=True)),
                              dtype=np.int32)
        last[conv] = (prompt, output, turn)
        recent.append(conv)
        if len(recent) > recent_conversations:
            recent.pop(0)
        trace.append(ChatRequest(rid, conv, turn, prompt, output))
    return trace
