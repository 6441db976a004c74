"""Hot-path observations held in this process and written to their prometheus_client series in bulk.

In multiprocess mode (``imgcls serve --workers N``) every prometheus_client write takes a lock, reads
the process id and packs a value into an mmap'd file, about 2 µs; a classify request made eleven of them,
about 5 % of its CPU time with the small model. Requests append to plain lists and counts here instead,
and ``flush`` writes each series once: every second, and before /metrics answers, so a scrape sees at
most one second's lag from the other processes and none from its own.

Used from the event-loop thread only (the batcher reports from it too), so it needs no lock.
"""

from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

FLUSH_INTERVAL_S = 1.0  # the API's flush loop; /metrics flushes its own process as well


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for every value, in one write per bucket touched and one for the sum.

    Reaches into prometheus_client's Histogram (``_upper_bounds``, ``_buckets``, ``_sum``, stable since
    its first releases); tests/service/api/fastpath/test_tally.py compares the result with ``observe`` one by one, so
    a release that changes them fails there. The bucket is the first upper bound >= the value, as in
    ``Histogram.observe``.
    """
    bounds = histogram._upper_bounds
    for index, count in Counter(bisect_left(bounds, value) for value in values).items():
        histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(values))


class Tally:
    def __init__(self) -> None:
        self._observed: defaultdict[Any, list[float]] = defaultdict(list)  # histogram series -> values
        self._counted: Counter[Any] = Counter()  # counter series -> increments

    def observe(self, histogram: Any, value: float) -> None:
        self._observed[histogram].append(value)

    def count(self, counter: Any, amount: int = 1) -> None:
        self._counted[counter] += amount

    def flush(self) -> None:
        observed, self._observed = self._observed, defaultdict(list)
        counted, self._counted = self._counted, Counter()
        for histogram, values in observed.items():
            observe_many(histogram, values)
        for counter, amount in counted.items():
            counter.inc(amount)
