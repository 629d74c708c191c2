"""RedisAdmissionController: one admission budget shared by every process, kept in Redis.

The buckets
-----------
The same two token buckets as :class:`llmds.AdmissionController` (requests/s and
tokens/s, each refilling up to its burst), stored in one Redis string
``llmds:adm1:<name>`` (32 bytes: both levels, the server time they were computed at,
and the key's expiry). Every decision is ONE Lua script (in
``llmds.dist._admission_script``) that reads the server's clock (``TIME``),
refills, checks and charges both buckets atomically, so any number of processes on
any number of machines share one budget without races, and client clocks never
matter. The key expires a minute after the bucket would be full again
(a missing key *is* a full bucket), so idle budgets cost no memory. All processes
sharing a ``name`` must use the same rates and bursts (the script is generated from
them). Redis 6.0 or later (``KEEPTTL``).

From a fresh bucket, the requests admitted by all processes together during
``elapsed`` seconds are at most ``request_burst + qps_target * elapsed`` (and the
same for tokens), exactly as for one local controller.

The lease (``lease=N``)
-----------------------
A round trip costs 60-100 us on loopback. With ``lease=N`` a process takes up to ``N`` requests
(and ``N * token_rate_limit / qps_target`` tokens, at most ``token_burst``, at
least the request's own) in one round trip and admits from that local credit
until it runs out or is ``lease_ttl_s`` old; the next round trip (and ``close()``)
gives the unused credit back. Credit only ever comes out of the shared bucket, so
the bound above still holds from a fresh bucket. What a lease changes is *when*
admissions happen: over any window of ``w`` seconds, ``P`` processes admit at most
``request_burst + qps_target * w + P * N`` requests (``+ P * lease_tokens`` tokens),
because each may hold up to ``N`` requests taken before the window. Credit whose
give-back round trip fails is lost: the budget is under-used, never exceeded.

When Redis fails
----------------
A Redis error (connection refused, timeout, ...) starts a back-off of
``error_backoff_s`` seconds during which no call waits on Redis. Meanwhile:

* ``on_error="reject"`` (default): every decision is a rejection with the reason
  ``"backend_unavailable"`` and the back-off's remaining time as retry-after;
* ``on_error="local"``: decisions come from a per-process
  :class:`~llmds.AdmissionController` with ``1 / expected_replicas`` of every rate
  and burst, so ``expected_replicas`` processes together stay near the budget;
  ``stats()["backend"]`` says ``"local"`` and ``fallback_decisions`` counts them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable
from typing import Any

from llmds._validate import (
    check_choice,
    check_nonneg_int,
    check_number,
    check_positive_int,
    check_str,
    show,
)
from llmds.admissions import (
    ADMITTED,
    RATE_LIMITED_REQUESTS,
    RATE_LIMITED_TOKENS,
    REQUEST_TOO_LARGE,
    AdmissionController,
    AdmissionDecision,
)
from llmds.admissions import REASONS as LOCAL_REASONS
from llmds.dist._admission_script import SCRIPT as _SCRIPT
from llmds.dist._client import Breaker, NoScriptError, RedisError, connect, redact
from llmds.errors import UnknownSequenceError

__all__ = ["BACKEND_UNAVAILABLE", "REASONS", "RedisAdmissionController"]

BACKEND_UNAVAILABLE = "backend_unavailable"
REASONS = (*LOCAL_REASONS, BACKEND_UNAVAILABLE)
_CODES = (ADMITTED, RATE_LIMITED_REQUESTS, RATE_LIMITED_TOKENS, REQUEST_TOO_LARGE)
_KEY_PREFIX = b"llmds:adm1:"
_MAX_PENDING = 100_000



def _tokens(value: object, name: str) -> float:
    if type(value) is int and value >= 0:
        return value
    return check_number(value, name, minimum=0.0)


def _hashable(request_id: object) -> None:
    try:
        hash(request_id)
    except TypeError:
        raise TypeError(f"request_id must be hashable, got {show(request_id)}") from None


class RedisAdmissionController:
    """Requests/s and tokens/s buckets shared through Redis; the AdmissionController API.

    ``qps_target`` and ``token_rate_limit`` are the budget of all processes that use
    the same ``name``; ``burst`` (default ``max(1, qps_target)``) and ``token_burst``
    (default ``token_rate_limit``) are the bucket sizes, as ``request_burst`` and
    ``token_burst`` of :class:`llmds.AdmissionController`. See the module docstring
    for the Lua script, the lease and its bound, and the failure modes.

    API (each one round trip unless a lease covers it):

    * ``should_admit(n)``: would a request of ``n`` estimated tokens be admitted?
      Takes nothing. ``(admitted, reason)``.
    * ``try_admit(n, request_id=None)``: decide and charge atomically;
      ``request_id`` keeps the estimate for ``reconcile``.
    * ``check(n, record=False)``: the :class:`~llmds.AdmissionDecision` with a
      retry-after hint; ``record=True`` is ``try_admit``.
    * ``record_request(tokens)``: charge 1 request and ``tokens`` (may go into debt).
    * ``reconcile(request_id, actual_tokens)``: charge (or refund) the difference
      between the actual tokens and the estimate given to ``try_admit``.
    * ``stats()``: this process's counters plus the shared levels.

    Reasons: those of :data:`llmds.admissions.REASONS` plus ``"backend_unavailable"``
    (Redis down with ``on_error="reject"``).

    Invariants (``_check``): ``admitted + rejected == decisions``; the lease credit
    holds 0..``lease - 1`` requests; at most 100,000 estimates wait for
    ``reconcile`` (the oldest are forgotten first, counted).

    Thread safety: safe for concurrent callers; counters and lease credit sit under
    an internal lock, and one thread at a time refills the lease. Processes share
    nothing but Redis (after ``os.fork`` the child's client reconnects by itself).

    Complexity: O(1) per call; one round trip, or none when the lease covers it.
    Memory: O(1) plus the estimates awaiting ``reconcile``.
    """

    __slots__ = (
        "_blocked_until", "_breaker", "_client", "_counts", "_credit_k", "_credit_r",
        "_credit_until", "_key", "_local", "_lock", "_owned", "_pending", "_refill_lock",
        "_rejected", "_script", "_sha", "expected_replicas", "last_retry_after", "lease",
        "lease_tokens", "lease_ttl_s", "name", "on_error", "qps_target", "request_burst",
        "token_burst", "token_rate_limit", "url",
    )

    def __init__(
        self,
        url_or_client: object,
        qps_target: float,
        token_rate_limit: float,
        *,
        burst: float | None = None,
        name: str,
        lease: int = 0,
        on_error: str = "reject",
        expected_replicas: int = 1,
        token_burst: float | None = None,
        lease_ttl_s: float = 1.0,
        timeout_s: float = 1.0,
        error_backoff_s: float = 1.0,
    ) -> None:
        req_rate = check_number(qps_target, "qps_target", minimum=0.0, exclusive_minimum=True)
        tok_rate = check_number(token_rate_limit, "token_rate_limit", minimum=0.0,
                                exclusive_minimum=True)
        req_burst = max(1.0, req_rate) if burst is None else check_number(burst, "burst",
                                                                           minimum=1.0)
        tok_burst = tok_rate if token_burst is None else check_number(
            token_burst, "token_burst", minimum=0.0, exclusive_minimum=True)
        name = check_str(name, "name", nonempty=True)
        if len(name) > 200:
            raise ValueError(f"name must be at most 200 characters, got {len(name)}")
        lease = check_nonneg_int(lease, "lease")
        on_error = check_choice(on_error, "on_error", ("reject", "local"))
        replicas = check_positive_int(expected_replicas, "expected_replicas")
        lease_ttl = check_number(lease_ttl_s, "lease_ttl_s", minimum=0.0, exclusive_minimum=True)
        breaker = Breaker(error_backoff_s, f"RedisAdmissionController(name={name!r})")
        client, owned = connect(url_or_client, timeout_s=timeout_s)

        self.qps_target = req_rate
        self.token_rate_limit = tok_rate
        self.request_burst = req_burst
        self.token_burst = tok_burst
        self.name = name
        # A lease larger than the bucket could never be granted whole.
        self.lease = min(lease, int(req_burst))
        self.lease_tokens = min(tok_burst, self.lease * tok_rate / req_rate)
        self.lease_ttl_s = lease_ttl
        self.on_error = on_error
        self.expected_replicas = replicas
        self.url = redact(url_or_client) if isinstance(url_or_client, str) else None
        self.last_retry_after = 0.0
        self._client = client
        self._owned = owned
        self._breaker = breaker
        self._key = _KEY_PREFIX + name.encode("utf-8", "surrogatepass")
        self._script = _SCRIPT % {"rr": repr(req_rate), "kr": repr(tok_rate),
                                  "rb": repr(req_burst), "kb": repr(tok_burst)}
        self._sha = client.register_script(self._script).sha
        self._local = AdmissionController(
            req_rate / replicas, tok_rate / replicas,
            request_burst=max(1.0, req_burst / replicas), token_burst=tok_burst / replicas,
        )
        self._lock = threading.Lock()
        self._refill_lock = threading.Lock()
        self._credit_r = 0
        self._credit_k = 0.0
        self._credit_until = 0.0
        self._blocked_until = 0.0
        self._pending: dict[Hashable, float] = {}
        self._rejected = dict.fromkeys(REASONS[1:], 0)
        self._counts: dict[str, float] = dict.fromkeys(
            ("admitted", "recorded_requests", "recorded_tokens", "round_trips",
             "lease_admitted", "lease_rejected", "fallback_decisions", "reconciled",
             "reconcile_forgotten", "unrecorded"), 0)

    # ----------------------------------------------------------------- Redis
    def _eval(self, *args: object) -> list[Any] | None:
        """Run the script with ``args``; its reply, or None after a Redis error (counted)."""
        if not self._breaker.available():
            return None
        client = self._client
        try:
            try:
                reply = client.execute_command("EVALSHA", self._sha, 1, self._key, *args)
            except NoScriptError:  # Redis restarted (or SCRIPT FLUSH): load it again
                client.script_load(self._script)
                reply = client.execute_command("EVALSHA", self._sha, 1, self._key, *args)
        except RedisError as exc:
            self._breaker.failure(exc)
            return None
        self._breaker.success()
        with self._lock:
            self._counts["round_trips"] += 1
        return reply

    # -------------------------------------------------------------- decisions
    def _finish(self, admitted: bool, reason: str, retry: float) -> tuple[bool, str, float]:
        with self._lock:
            if admitted:
                self._counts["admitted"] += 1
            else:
                self._rejected[reason] += 1
        self.last_retry_after = retry
        return admitted, reason, retry

    def _rejection(self, reply: list[Any]) -> tuple[bool, str, float]:
        code = int(reply[0])
        if code == 3:
            return self._finish(False, REQUEST_TOO_LARGE, math.inf)
        if code == 1 and self.lease:
            # No request fits before the request bucket holds 1 again, whatever
            # others do (they can only take, or give back less than they took):
            # reject locally until then instead of asking again.
            self._blocked_until = time.monotonic() + int(reply[2]) * 1e-6
        return self._finish(False, _CODES[code], int(reply[1]) * 1e-6)

    def _fallback(self, tokens: float, record: bool, request_id: Hashable | None
                  ) -> tuple[bool, str, float]:
        """The decision while Redis is unavailable (``on_error``)."""
        retry = self._breaker.retry_after()
        if self.on_error == "reject":
            return self._finish(False, BACKEND_UNAVAILABLE, retry)
        with self._lock:
            self._counts["fallback_decisions"] += 1
        local = self._local
        if local.token_burst < tokens <= self.token_burst:
            # Too large for this process's share, not for the budget: wait for Redis.
            return self._finish(False, RATE_LIMITED_TOKENS, retry)
        d = local.check(tokens, record=record)
        if d.admitted and record:
            with self._lock:
                self._record(tokens, request_id)
        return self._finish(d.admitted, d.reason, d.retry_after_s)

    def _record(self, tokens: float, request_id: Hashable | None) -> None:
        """Count a charged request; keep its estimate for ``reconcile``. Caller holds the lock."""
        self._counts["recorded_requests"] += 1
        self._counts["recorded_tokens"] += tokens
        if request_id is None:
            return
        pending = self._pending
        pending.pop(request_id, None)
        if len(pending) >= _MAX_PENDING:
            del pending[next(iter(pending))]
            self._counts["reconcile_forgotten"] += 1
        pending[request_id] = tokens

    def _leased(self, tokens: float, record: bool, request_id: Hashable | None
                ) -> tuple[bool, str, float] | None:
        """Decide from the lease alone, or None when that takes a round trip.

        Caller holds the lock.
        """
        now = time.monotonic()
        if self._credit_r >= 1 and self._credit_k >= tokens and now < self._credit_until:
            if record:
                self._credit_r -= 1
                self._credit_k -= tokens
                self._record(tokens, request_id)
            self._counts["admitted"] += 1
            self._counts["lease_admitted"] += 1
            self.last_retry_after = 0.0
            return True, ADMITTED, 0.0
        if now < self._blocked_until and tokens <= self.token_burst:
            retry = self._blocked_until - now
            self._rejected[RATE_LIMITED_REQUESTS] += 1
            self._counts["lease_rejected"] += 1
            self.last_retry_after = retry
            return False, RATE_LIMITED_REQUESTS, retry
        return None

    def _decide(self, tokens: float, record: bool, request_id: Hashable | None
                ) -> tuple[bool, str, float]:
        if tokens > self.token_burst:  # never admissible: no need to ask Redis
            return self._finish(False, REQUEST_TOO_LARGE, math.inf)
        if not self.lease:
            reply = self._eval("t" if record else "a", 1, tokens)
            if reply is None:
                return self._fallback(tokens, record, request_id)
            if reply[0] == 0:
                if record:
                    with self._lock:
                        self._record(tokens, request_id)
                return self._finish(True, ADMITTED, 0.0)
            return self._rejection(reply)
        with self._lock:
            decided = self._leased(tokens, record, request_id)
        if decided is not None:
            return decided
        if not record:
            reply = self._eval("a", 1, tokens)
            if reply is None:
                return self._fallback(tokens, False, request_id)
            return self._finish(True, ADMITTED, 0.0) if reply[0] == 0 else \
                self._rejection(reply)
        with self._refill_lock:  # one refill at a time keeps a process at <= lease credit
            with self._lock:
                decided = self._leased(tokens, True, request_id)
                if decided is not None:
                    return decided
                give_r, give_k = self._credit_r, self._credit_k
                self._credit_r, self._credit_k = 0, 0.0
            reply = self._eval("t", 1, tokens, self.lease, max(tokens, self.lease_tokens),
                               give_r, repr(give_k))
            if reply is None:  # the credit is lost: under-admission, never over
                return self._fallback(tokens, True, request_id)
            if reply[0] != 0:
                return self._rejection(reply)
            with self._lock:
                self._credit_r = int(reply[2]) - 1
                self._credit_k = float(reply[3]) - tokens
                self._credit_until = time.monotonic() + self.lease_ttl_s
                self._record(tokens, request_id)
            return self._finish(True, ADMITTED, 0.0)

    def should_admit(self, estimated_tokens: float = 0) -> tuple[bool, str]:
        """Would a request of ``estimated_tokens`` be admitted now? Takes nothing.

        One round trip (none when the lease covers it). ``(admitted, reason)``;
        the retry-after hint is in ``last_retry_after``.
        """
        tokens = _tokens(estimated_tokens, "estimated_tokens")
        return self._decide(tokens, False, None)[:2]

    def try_admit(self, tokens: float = 0, *, request_id: Hashable | None = None
                  ) -> tuple[bool, str]:
        """Decide and, if admitted, charge 1 request and ``tokens``, atomically everywhere.

        One round trip (none when the lease covers it). With ``request_id`` the
        estimate is kept for ``reconcile``. ``(admitted, reason)``.
        """
        t = _tokens(tokens, "tokens")
        if request_id is not None:
            _hashable(request_id)
        return self._decide(t, True, request_id)[:2]

    def check(self, estimated_tokens: float = 0, *, record: bool = False,
              request_id: Hashable | None = None) -> AdmissionDecision:
        """The decision with a retry-after hint; ``record=True`` is ``try_admit``."""
        tokens = _tokens(estimated_tokens, "estimated_tokens")
        if request_id is not None:
            _hashable(request_id)
        admitted, reason, retry = self._decide(tokens, bool(record), request_id)
        return AdmissionDecision(admitted, reason, retry)

    def record_request(self, tokens: float) -> None:
        """Charge 1 request and ``tokens`` (actual usage); never refuses. <= 1 round trip.

        The shared buckets may go into debt, which delays later admissions. With a
        lease the charge comes out of the local credit when that covers it. While
        Redis is unavailable the charge goes to the local fallback bucket
        (``on_error="local"``) or is counted in ``unrecorded``.
        """
        t = _tokens(tokens, "tokens")
        with self._lock:
            if self.lease and self._credit_r >= 1 and self._credit_k >= t:
                self._credit_r -= 1
                self._credit_k -= t
                self._record(t, None)
                return
        if self._eval("c", 1, t) is None:
            if self.on_error != "local":
                with self._lock:
                    self._counts["unrecorded"] += 1
                return
            self._local.record_request(t)
        with self._lock:
            self._record(t, None)

    def reconcile(self, request_id: Hashable, actual_tokens: float) -> float:
        """Correct the estimate given to ``try_admit(..., request_id=...)``; the delta.

        Charges ``actual_tokens - estimate`` to the shared token bucket (a negative
        difference refunds, up to the burst): one round trip, or none with a lease
        (the difference goes to the local credit and reaches Redis with the next
        round trip). Returns the difference. Raises
        :class:`~llmds.errors.UnknownSequenceError` for an id that was not admitted
        here with a ``request_id``, or was reconciled already.
        """
        _hashable(request_id)
        actual = _tokens(actual_tokens, "actual_tokens")
        with self._lock:
            try:
                estimate = self._pending.pop(request_id)
            except KeyError:
                raise UnknownSequenceError(
                    f"request_id {request_id!r} was not admitted by this controller with a "
                    "request_id, or was reconciled already") from None
            delta = actual - estimate
            self._counts["reconciled"] += 1
            self._counts["recorded_tokens"] += delta
            if self.lease:
                self._credit_k -= delta
                return delta
        if delta and self._eval("c", 0, delta) is None:
            with self._lock:
                self._counts["unrecorded"] += 1
        return delta

    # ------------------------------------------------------------------ admin
    def close(self) -> None:
        """Give the unused lease credit back, then close an owned client. Idempotent."""
        with self._refill_lock, self._lock:
            give_r, give_k = self._credit_r, self._credit_k
            self._credit_r, self._credit_k = 0, 0.0
        if give_r or give_k:
            self._eval("p", 0, 0, 0, 0, give_r, repr(give_k))
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisAdmissionController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Refill the shared buckets and zero this process's statistics and credit.

        Deletes the bucket's key: this affects EVERY process sharing ``name``.
        """
        try:
            self._client.delete(self._key)
        except RedisError as exc:
            self._breaker.failure(exc)
        with self._lock:
            self._credit_r, self._credit_k = 0, 0.0
            self._blocked_until = 0.0
            self._pending.clear()
            for counters in (self._counts, self._rejected):
                for key in counters:
                    counters[key] = 0
        self._local.reset()
        self.last_retry_after = 0.0

    @property
    def backend(self) -> str:
        """``"redis"``, or while Redis is failing ``"local"`` / ``"unavailable"``."""
        if not self._breaker.down:
            return "redis"
        return "local" if self.on_error == "local" else "unavailable"

    def stats(self) -> dict[str, Any]:
        """This process's counters and the shared levels (one round trip).

        The keys of :meth:`llmds.AdmissionController.stats` (``request_level`` and
        ``token_level`` are the shared levels, ``None`` while Redis is unavailable)
        plus ``name``, ``backend`` (``"redis"``, ``"local"`` or ``"unavailable"``),
        ``on_error``, ``expected_replicas``, ``errors``, ``skipped``, ``last_error``,
        ``round_trips``, ``fallback_decisions``, ``lease``, ``lease_tokens``,
        ``lease_admitted``, ``lease_rejected``, ``lease_credit_requests``,
        ``lease_credit_tokens``, ``reconciled``, ``pending_reconcile``,
        ``reconcile_forgotten``, ``unrecorded``.
        """
        reply = self._eval("p", 0, 0)
        with self._lock:
            counts = dict(self._counts)
            rejected = dict(self._rejected)
            credit_r, credit_k, pending = self._credit_r, self._credit_k, len(self._pending)
        total_rejected = sum(rejected.values())
        decisions = counts["admitted"] + total_rejected
        breaker = self._breaker
        return {
            "admitted": counts["admitted"],
            "rejected": total_rejected,
            "rejected_by_reason": rejected,
            "decisions": decisions,
            "admit_rate": counts["admitted"] / decisions if decisions else 0.0,
            "recorded_requests": counts["recorded_requests"],
            "recorded_tokens": counts["recorded_tokens"],
            "request_level": None if reply is None else float(reply[2]),
            "token_level": None if reply is None else float(reply[3]),
            "qps_target": self.qps_target,
            "token_rate_limit": self.token_rate_limit,
            "request_burst": self.request_burst,
            "token_burst": self.token_burst,
            "name": self.name,
            "backend": self.backend,
            "on_error": self.on_error,
            "expected_replicas": self.expected_replicas,
            "errors": breaker.errors,
            "skipped": breaker.skipped,
            "last_error": breaker.last_error,
            "round_trips": counts["round_trips"],
            "fallback_decisions": counts["fallback_decisions"],
            "lease": self.lease,
            "lease_tokens": self.lease_tokens,
            "lease_admitted": counts["lease_admitted"],
            "lease_rejected": counts["lease_rejected"],
            "lease_credit_requests": credit_r,
            "lease_credit_tokens": credit_k,
            "reconciled": counts["reconciled"],
            "pending_reconcile": pending,
            "reconcile_forgotten": counts["reconcile_forgotten"],
            "unrecorded": counts["unrecorded"],
        }

    def __repr__(self) -> str:
        return (f"RedisAdmissionController({self.url or 'client'!r}, qps_target="
                f"{self.qps_target}, token_rate_limit={self.token_rate_limit}, burst="
                f"{self.request_burst}, token_burst={self.token_burst}, name={self.name!r}, "
                f"lease={self.lease}, on_error={self.on_error!r})")

    def _check(self) -> None:
        """Assert the invariants. O(1); tests call it after each step."""
        assert 0 <= self._credit_r <= max(0, self.lease - 1), self._credit_r
        assert len(self._pending) <= _MAX_PENDING
        assert set(self._rejected) == set(REASONS[1:])
        assert all(v >= 0 for k, v in self._counts.items() if k != "recorded_tokens")
        assert all(v >= 0 for v in self._rejected.values())
        assert self._counts["lease_admitted"] <= self._counts["admitted"]
        assert self._counts["lease_rejected"] <= sum(self._rejected.values())
        if not self.lease:
            assert self._credit_r == 0 and self._credit_k == 0.0
