"""Fair rounds: the order in which things are measured, and what is reported from several rounds.

A neighbour's load, a CPU's clock or a cache warmed by the previous run favours whichever side runs at a
given moment. So every contender runs once per round, the order reverses every round (ABC, CBA, ABC, ...),
there are at least three rounds, and the headline is the median with the whole range beside it, never the
best round.
"""

import statistics
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

MIN_ROUNDS = 3  # fewer do not give a median worth the name


def alternating(contenders: Sequence[T], rounds: int) -> list[list[T]]:
    """The order of each round: as given in rounds 1, 3, 5, ..., reversed in rounds 2, 4, ..."""
    return [list(contenders) if number % 2 == 0 else list(reversed(contenders)) for number in range(rounds)]


def spread(values: Iterable[float], digits: int = 1) -> dict[str, Any]:
    """Median, min and max of one figure over the rounds, with the rounds' values in order."""
    listed = list(values)
    if not listed:
        raise ValueError("no rounds to summarize")
    return {
        "median": round(statistics.median(listed), digits),
        "min": round(min(listed), digits),
        "max": round(max(listed), digits),
        "rounds": [round(v, digits) for v in listed],
    }


def ratio(numerators: Sequence[float], denominators: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """A over B: the ratio of the medians (the headline), and the median and range of the per-round ratios."""
    per_round = [a / b for a, b in zip(numerators, denominators, strict=True) if b]
    return {
        "of_medians": round(statistics.median(numerators) / statistics.median(denominators), digits),
        "per_round": spread(per_round, digits),
    }
