"""Naive model of Scheduler: a plain list, release rules and order recomputed per call."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class NaiveRequest:
    request_id: int
    tokens: int
    slo_ms: float | None
    arrival: float
    deadline: float
    dispatch_time: float | None = None


@dataclass
class NaiveScheduler:
    """Same contract as llmds.Scheduler's default order (or a priority_fn), no cleverness."""

    max_batch_size: int
    max_wait_ms: float
    max_batch_tokens: int | None = None
    slo_margin_ms: float = 0.0
    priority_fn: object = None
    queue: list[NaiveRequest] = field(default_factory=list)
    in_flight: dict[int, NaiveRequest] = field(default_factory=dict)
    next_id: int = 0

    def submit(self, now: float, tokens: int, slo_ms: float | None) -> int:
        deadline = math.inf if slo_ms is None else now + slo_ms / 1000.0
        self.queue.append(NaiveRequest(self.next_id, tokens, slo_ms, now, deadline))
        self.next_id += 1
        return self.next_id - 1

    def key(self, r: NaiveRequest) -> tuple:
        if self.priority_fn is None:
            return (r.deadline, r.tokens, r.request_id)
        return (-self.priority_fn(r), r.request_id)

    def ordered(self) -> list[NaiveRequest]:
        return sorted(self.queue, key=self.key)

    def reason(self, now: float, force: bool) -> str | None:
        if not self.queue:
            return None
        if force:
            return "force"
        if len(self.queue) >= self.max_batch_size:
            return "full"
        if self.max_batch_tokens is not None and (
            sum(r.tokens for r in self.queue) >= self.max_batch_tokens
        ):
            return "full"
        oldest = min(self.queue, key=lambda r: r.request_id)
        if now >= oldest.arrival + self.max_wait_ms / 1000.0:
            return "max_wait"
        earliest = min(r.deadline for r in self.queue)
        if now >= earliest - self.slo_margin_ms / 1000.0:
            return "slo"
        return None

    def get_batch(self, now: float, force: bool) -> list[int] | None:
        if self.reason(now, force) is None:
            return None
        batch: list[NaiveRequest] = []
        total = 0
        for r in self.ordered():
            if len(batch) == self.max_batch_size:
                break
            if self.max_batch_tokens is not None and total + r.tokens > self.max_batch_tokens:
                break
            batch.append(r)
            total += r.tokens
        for r in batch:
            self.queue.remove(r)
            r.dispatch_time = now
            self.in_flight[r.request_id] = r
        return [r.request_id for r in batch]

    def find(self, rid: int) -> NaiveRequest | None:
        for r in self.queue:
            if r.request_id == rid:
                return r
        return None

    def update(self, rid: int, tokens: int) -> None:
        r = self.find(rid)
        assert r is not None
        r.tokens = tokens

    def cancel(self, rid: int) -> None:
        r = self.find(rid)
        assert r is not None
        self.queue.remove(r)

    def complete(self, ids: list[int]) -> None:
        for rid in ids:
            del self.in_flight[rid]
