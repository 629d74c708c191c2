"""Naive token-bucket admission model with exact rational arithmetic.

Replays the same fake clock as the AdmissionController under test. Levels are
kept as Fractions, so with dyadic times and integer rates both agree exactly.
"""

from __future__ import annotations

from fractions import Fraction


class Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = Fraction(rate)
        self.burst = Fraction(burst)
        self.level = Fraction(burst)
        self.last = Fraction(now)

    def refill(self, now: float) -> None:
        t = Fraction(now)
        if t > self.last:
            self.level = min(self.burst, self.level + (t - self.last) * self.rate)
            self.last = t


class NaiveAdmission:
    def __init__(self, qps: float, tok_rate: float, req_burst: float, tok_burst: float,
                 now: float) -> None:
        self.req = Bucket(qps, req_burst, now)
        self.tok = Bucket(tok_rate, tok_burst, now)
        self.admitted = 0
        self.rejected = {"rate_limited_requests": 0, "rate_limited_tokens": 0,
                         "request_too_large": 0}

    def decide(self, tokens: float, now: float, record: bool) -> tuple[bool, str]:
        self.req.refill(now)
        self.tok.refill(now)
        n = Fraction(tokens)
        if n > self.tok.burst:
            reason = "request_too_large"
        elif self.req.level < 1:
            reason = "rate_limited_requests"
        elif self.tok.level < n:
            reason = "rate_limited_tokens"
        else:
            if record:
                self.req.level -= 1
                self.tok.level -= n
            self.admitted += 1
            return True, "admitted"
        self.rejected[reason] += 1
        return False, reason

    def record(self, tokens: float, now: float) -> None:
        self.req.refill(now)
        self.tok.refill(now)
        self.req.level -= 1
        self.tok.level -= Fraction(tokens)
