"""AdmissionController: behaviour, bad input, concurrency, stateful test vs a naive bucket."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from llmds.admissions import (
    ADMITTED,
    RATE_LIMITED_REQUESTS,
    RATE_LIMITED_TOKENS,
    REASONS,
    REQUEST_TOO_LARGE,
    AdmissionController,
    AdmissionDecision,
)
from tests.reference.admissions import NaiveAdmission


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_seed_usage_guide_example() -> None:
    controller = AdmissionController(qps_target=10.0, token_rate_limit=10000)
    should_admit, reason = controller.should_admit(estimated_tokens=100)
    assert should_admit and reason == "admitted"
    controller.record_request(tokens=100)
    stats = controller.stats()
    assert stats["admitted"] == 1 and stats["recorded_requests"] == 1
    assert stats["recorded_tokens"] == 100


def test_reasons_are_stable_strings() -> None:
    assert REASONS == (
        "admitted", "rate_limited_requests", "rate_limited_tokens", "request_too_large"
    )


def test_defaults() -> None:
    ac = AdmissionController()
    assert ac.qps_target == 10.0 and ac.token_rate_limit == 10000
    assert ac.request_burst == 10.0 and ac.token_burst == 10000
    assert AdmissionController(qps_target=0.5).request_burst == 1.0
    assert "AdmissionController(" in repr(ac)


def test_request_bucket_limits_and_refills() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=2, token_rate_limit=1000, request_burst=3, clock=clock)
    assert [ac.try_admit(1)[0] for _ in range(4)] == [True, True, True, False]
    decision = ac.check(1)
    assert decision == AdmissionDecision(False, RATE_LIMITED_REQUESTS, 0.5)
    clock.t = 0.5
    assert ac.try_admit(1) == (True, ADMITTED)
    assert ac.try_admit(1) == (False, RATE_LIMITED_REQUESTS)
    assert ac.last_retry_after == 0.5
    clock.t = 100.0  # refill caps at the burst
    assert ac.stats()["request_level"] == 3


def test_token_bucket_and_retry_after() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=100, token_rate_limit=100, token_burst=200, clock=clock)
    assert ac.try_admit(150) == (True, ADMITTED)
    d = ac.check(100)
    assert d.reason == RATE_LIMITED_TOKENS and d.retry_after_s == pytest.approx(0.5)
    clock.t = 0.5
    assert ac.check(100, record=True).admitted
    assert ac.stats()["token_level"] == 0


def test_retry_after_covers_both_buckets() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=1, token_rate_limit=10, token_burst=10, clock=clock)
    assert ac.try_admit(10)[0]
    d = ac.check(10)
    assert d.reason == RATE_LIMITED_REQUESTS and d.retry_after_s == pytest.approx(1.0)
    ac2 = AdmissionController(qps_target=10, token_rate_limit=1, token_burst=10,
                              request_burst=1, clock=clock)
    assert ac2.try_admit(10)[0]
    d = ac2.check(10)
    assert d.reason == RATE_LIMITED_REQUESTS and d.retry_after_s == pytest.approx(10.0)


def test_request_too_large() -> None:
    ac = AdmissionController(token_rate_limit=100, clock=FakeClock())
    assert ac.should_admit(101) == (False, REQUEST_TOO_LARGE)
    assert math.isinf(ac.last_retry_after)
    assert ac.check(101).retry_after_s == math.inf
    assert ac.stats()["rejected_by_reason"][REQUEST_TOO_LARGE] == 2


def test_should_admit_takes_nothing_record_takes_debt() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=1, token_rate_limit=100, clock=clock)
    for _ in range(5):
        assert ac.should_admit(100) == (True, ADMITTED)
    ac.record_request(250)  # actual usage beyond the bucket: debt
    s = ac.stats()
    assert s["token_level"] == -150 and s["request_level"] == 0
    assert ac.should_admit(0) == (False, RATE_LIMITED_REQUESTS)
    clock.t = 1.0
    assert ac.should_admit(1) == (False, RATE_LIMITED_TOKENS)  # 100 refilled, still -50
    clock.t = 1.5
    assert ac.should_admit(0)[0]


def test_clock_going_back_adds_nothing() -> None:
    clock = FakeClock(10.0)
    ac = AdmissionController(qps_target=1, token_rate_limit=100, clock=clock)
    assert ac.try_admit(0)[0]
    clock.t = 5.0
    assert not ac.try_admit(0)[0]
    clock.t = 10.5
    assert not ac.try_admit(0)[0]
    clock.t = 11.0
    assert ac.try_admit(0)[0]


def test_stats_and_reset() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=1, token_rate_limit=10, clock=clock)
    ac.try_admit(5)
    ac.try_admit(5)
    ac.should_admit(50)
    s = ac.stats()
    assert s["admitted"] == 1 and s["rejected"] == 2 and s["decisions"] == 3
    assert s["rejected_by_reason"] == {RATE_LIMITED_REQUESTS: 1, RATE_LIMITED_TOKENS: 0,
                                       REQUEST_TOO_LARGE: 1}
    assert s["admit_rate"] == pytest.approx(1 / 3)
    ac.reset()
    s = ac.stats()
    assert s["admitted"] == 0 and s["rejected"] == 0 and s["admit_rate"] == 0.0
    assert s["request_level"] == 1 and s["token_level"] == 10
    ac._check()


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
def test_bad_token_values(bad: float) -> None:
    ac = AdmissionController(clock=FakeClock())
    for call in (ac.should_admit, ac.try_admit, ac.record_request, ac.check):
        with pytest.raises(ValueError, match="tokens"):
            call(bad)
    s = ac.stats()
    assert s["decisions"] == 0 and s["recorded_requests"] == 0


@pytest.mark.parametrize("bad", ["5", None, True, [1]])
def test_bad_token_types(bad: object) -> None:
    ac = AdmissionController(clock=FakeClock())
    for call in (ac.should_admit, ac.try_admit, ac.record_request, ac.check):
        with pytest.raises(TypeError, match="tokens"):
            call(bad)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"qps_target": 0}, ValueError, "qps_target"),
        ({"qps_target": -1.0}, ValueError, "qps_target"),
        ({"qps_target": float("nan")}, ValueError, "qps_target"),
        ({"qps_target": float("inf")}, ValueError, "qps_target"),
        ({"qps_target": "10"}, TypeError, "qps_target"),
        ({"token_rate_limit": 0}, ValueError, "token_rate_limit"),
        ({"token_rate_limit": -5}, ValueError, "token_rate_limit"),
        ({"token_rate_limit": float("nan")}, ValueError, "token_rate_limit"),
        ({"request_burst": 0}, ValueError, "request_burst"),
        ({"request_burst": 0.5}, ValueError, "request_burst"),
        ({"token_burst": -1}, ValueError, "token_burst"),
        ({"token_burst": float("nan")}, ValueError, "token_burst"),
        ({"clock": 5}, TypeError, "clock"),
        ({"clock": lambda: "now"}, TypeError, "clock"),
    ],
)
def test_bad_construction(kwargs: dict, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        AdmissionController(**kwargs)


def test_concurrent_try_admit_never_over_admits() -> None:
    clock = FakeClock()
    ac = AdmissionController(qps_target=5, token_rate_limit=1000, request_burst=50,
                             token_burst=1000, clock=clock)
    results: list[list[tuple[bool, str]]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        out = results[i]
        for _ in range(500):
            out.append(ac.try_admit(7))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [r for rs in results for r in rs]
    admitted = sum(ok for ok, _ in flat)
    # Capacity: 50 requests and floor(1000 / 7) = 142 token-sized requests.
    assert admitted == 50
    s = ac.stats()
    assert s["admitted"] == admitted and s["decisions"] == len(flat) == 4000
    assert s["recorded_requests"] == 50 and s["recorded_tokens"] == 350
    assert s["request_level"] == 0 and s["token_level"] == 650
    ac._check()


TIMES = st.integers(0, 64)  # clock steps in 1/64 s: exact in binary floating point
TOKENS = st.one_of(st.integers(0, 40), st.sampled_from([0.5, 2.25]))


class AdmissionMachine(RuleBasedStateMachine):
    """Decisions agree with a naive Fraction-based pair of buckets on the same clock."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(3.0)
        self.ac = AdmissionController(qps_target=4, token_rate_limit=32, request_burst=3,
                                      token_burst=48, clock=self.clock)
        self.model = NaiveAdmission(4, 32, 3, 48, 3.0)

    @rule(dt=TIMES)
    def advance(self, dt: int) -> None:
        self.clock.t += dt / 64

    @rule(tokens=TOKENS)
    def try_admit(self, tokens: float) -> None:
        got = self.ac.try_admit(tokens)
        assert got == self.model.decide(tokens, self.clock.t, record=True)

    @rule(tokens=TOKENS)
    def should_admit(self, tokens: float) -> None:
        got = self.ac.should_admit(tokens)
        assert got == self.model.decide(tokens, self.clock.t, record=False)

    @rule(tokens=st.integers(0, 60))
    def record(self, tokens: int) -> None:
        self.ac.record_request(tokens)
        self.model.record(tokens, self.clock.t)

    @rule(tokens=TOKENS)
    def check(self, tokens: float) -> None:
        d = self.ac.check(tokens)
        assert (d.admitted, d.reason) == self.model.decide(tokens, self.clock.t, record=False)
        assert (d.retry_after_s == 0.0) == d.admitted
        assert d.retry_after_s >= 0

    @invariant()
    def agree(self) -> None:
        self.ac._check()
        s = self.ac.stats()  # refills to now, like the model's refill below
        self.model.req.refill(self.clock.t)
        self.model.tok.refill(self.clock.t)
        assert s["admitted"] == self.model.admitted
        assert s["rejected_by_reason"] == self.model.rejected
        assert s["request_level"] == self.model.req.level
        assert s["token_level"] == self.model.tok.level


TestAdmissionStateful = pytest.mark.slow(AdmissionMachine.TestCase)
