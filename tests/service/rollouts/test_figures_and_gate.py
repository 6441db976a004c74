"""The arithmetic of a rollout without a server: tallies merge exactly, percentiles are within a bucket,
the gate promotes, aborts or waits, and a request that is not a rollout says why."""

import numpy as np
import pytest

from service.rollouts.errors import InvalidRollout
from service.rollouts.figures import Tally, figures, merge, percentile_ms
from service.rollouts.gate import decide
from service.rollouts.plan import Gate, Rollout, RolloutRequest, Until, new_rollout, parse_request

LABELS = ("cat", "dog", "fish")


def one_hot(indices: list[int], confidence: float = 0.8) -> np.ndarray:
    rows = np.full((len(indices), 3), (1 - confidence) / 2)
    rows[np.arange(len(indices)), indices] = confidence
    return rows


def test_two_processes_tallies_merge_into_the_figures_of_one() -> None:
    first, second = Tally(requests=3, sampled=3), Tally(requests=2, sampled=1)
    first.compare(one_hot([0, 1]), one_hot([0, 2]), 0.001, 0.002)
    first.compare(one_hot([2]), one_hot([2], 0.6), 0.001, 0.004)
    second.compare(one_hot([1]), one_hot([1]), 0.010, 0.020)
    second.candidate.failures, second.candidate.last_error = 1, "RuntimeError: boom"
    found = figures(merge([first, second]), LABELS, serving_version=1, candidate_version=2)
    assert (found.requests, found.sampled, found.compared, found.images) == (5, 4, 3, 4)
    assert found.agreement == 0.75
    assert {(c.serving, c.candidate): c.images for c in found.confusion} == {
        ("cat", "cat"): 1, ("dog", "fish"): 1, ("fish", "fish"): 1, ("dog", "dog"): 1,
    }  # fmt: skip
    assert {c.label: c.agreement for c in found.per_class} == {"cat": 1.0, "dog": 0.5, "fish": 1.0}
    assert found.candidate.mean_confidence == pytest.approx((0.8 * 3 + 0.6) / 4)
    assert found.candidate.failures == 1 and found.candidate.last_error == "RuntimeError: boom"
    assert found.serving.p99_ms == pytest.approx(10, rel=0.1) and found.candidate.p99_ms == pytest.approx(20, rel=0.1)
    assert found.p99_ratio == pytest.approx(2, rel=0.1)


def test_a_percentile_is_the_bucket_that_holds_it_within_ten_percent() -> None:
    tally = Tally()
    for ms in range(1, 101):
        tally.serving.observe_latency(ms / 1000)
    p50, p99 = percentile_ms(tally.serving.latency, 0.5), percentile_ms(tally.serving.latency, 0.99)
    assert p50 is not None and 50 <= p50 <= 55 and p99 is not None and 99 <= p99 <= 109
    assert percentile_ms({}, 0.5) is None


def gated(requests: int = 10) -> Rollout:
    request = RolloutRequest(version=2, until=Until(requests=requests), gate=Gate(min_agreement=0.9, max_p99_ratio=2))
    return new_rollout("pets", 1, request, by="test")


def measured(agree: int, disagree: int, candidate_s: float = 0.001) -> Tally:
    tally = Tally()
    for _ in range(agree):
        tally.compare(one_hot([0]), one_hot([0]), 0.001, candidate_s)
    for _ in range(disagree):
        tally.compare(one_hot([0]), one_hot([1]), 0.001, candidate_s)
    return tally


def test_the_gate_waits_for_until_then_promotes_or_aborts() -> None:
    plan = gated()
    view = lambda tally: figures(tally, LABELS, serving_version=1, candidate_version=2)  # noqa: E731
    assert decide(plan, view(measured(5, 4))) is None  # 9 compared: not yet, however bad
    promoted = decide(plan, view(measured(10, 0)))
    assert promoted is not None and promoted.outcome == "promote" and "gate met" in promoted.reason
    disagreeing = decide(plan, view(measured(8, 2)))
    assert disagreeing is not None and disagreeing.outcome == "abort" and "agreement 0.8000 < 0.9" in disagreeing.reason
    slow = decide(plan, view(measured(10, 0, candidate_s=0.005)))
    assert slow is not None and slow.outcome == "abort" and "p99 ratio" in slow.reason
    failing = measured(1, 0)
    failing.candidate.failures = 3
    aborted = decide(plan, view(failing))
    assert aborted is not None and aborted.outcome == "abort" and "failed 3 times" in aborted.reason


def test_the_gate_decides_after_until_minutes_too() -> None:
    request = RolloutRequest(version=2, until=Until(minutes=1), gate=Gate(min_agreement=0.5))
    plan = new_rollout("pets", 1, request, by="test")
    view = figures(measured(3, 0), LABELS, serving_version=1, candidate_version=2)
    assert decide(plan, view, now=plan.started_at + 59) is None
    decision = decide(plan, view, now=plan.started_at + 61)
    assert decision is not None and decision.outcome == "promote"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"version": 2, "percent": 0}, "percent"),
        ({"version": 2, "percent": 100.5}, "percent"),
        ({"version": 2, "until": {"requests": 5}, "gate": {"min_agreement": 2}}, "between 0 and 1"),
        ({"version": 2, "until": {"requests": 5}, "gate": {"max_p99_ratio": 0}}, "more than 0"),
        ({"version": 2, "until": {"requests": 5}, "gate": {"agreement": 0.9}}, "agreement"),
        ({"version": 2, "until": {}}, "requests, minutes"),
        ({"version": 2, "gate": {"min_agreement": 0.9}}, "until"),
        ({"version": "two"}, "version"),
        ({"mode": "shadow"}, "version"),
    ],
)
def test_a_body_that_is_not_a_rollout_says_why(body: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidRollout, match=words):
        parse_request(body)
