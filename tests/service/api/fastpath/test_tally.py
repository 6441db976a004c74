import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.api.fastpath.tally import Tally

# Values on and around every bound, and beyond the last one: where an off-by-one in the bucket lookup shows.
BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 1.5, 99.0, math.inf]


def exposition(fill: str) -> list[bytes]:
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", ["model"], buckets=BUCKETS, registry=registry).labels("m")
    counter = Counter("c", "c", ["label"], registry=registry).labels("x")
    if fill == "one by one":
        for value in VALUES:
            histogram.observe(value)
        counter.inc(3)
    else:
        tally = Tally()
        for value in VALUES:
            tally.observe(histogram, value)
        for _ in range(3):
            tally.count(counter)
        assert b'h_count{model="m"} 0.0' in generate_latest(registry)  # nothing written before the flush
        tally.flush()
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def test_a_flushed_tally_exposes_what_observing_one_by_one_exposes() -> None:
    assert exposition("tally") == exposition("one by one")


def test_a_flush_writes_only_what_came_since_the_last_one() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h", "h", buckets=BUCKETS, registry=registry)
    tally = Tally()
    tally.observe(histogram, 0.5)
    tally.flush()
    tally.flush()
    tally.observe(histogram, 0.05)
    tally.flush()
    text = generate_latest(registry).decode()
    assert "h_count 2.0" in text and 'h_bucket{le="0.1"} 1.0' in text
    assert float(text.split("h_sum ")[1].split()[0]) == pytest.approx(0.55)
