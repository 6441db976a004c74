"""What a rollout measured: one process's ``Tally`` (kept in memory, written to a file every second), the
merge of every process's tallies, and the ``Figures`` the API answers.

Latencies go into fixed log-spaced buckets (each 10 % wider than the last), so tallies from any number of
processes merge exactly and a percentile is read to within 10 %. The confusion between the two versions'
answers is kept sparse ("serving,candidate" -> images): a 1000-class model fills only the cells it uses.
"""

from bisect import bisect_left

import msgspec
import numpy as np

LATENCY_BOUNDS = tuple(1e-5 * 1.1**i for i in range(170))  # 10 µs .. about 110 s


class RoleTally(msgspec.Struct):
    """One version's side of the comparison in one process."""

    images: int = 0
    confidence_sum: float = 0.0  # of the top-1 probability
    latency: dict[int, int] = {}  # bucket index -> requests; the time in its batcher (queue + compute)
    failures: int = 0
    last_error: str = ""

    def observe_latency(self, seconds: float) -> None:
        index = bisect_left(LATENCY_BOUNDS, seconds)
        self.latency[index] = self.latency.get(index, 0) + 1


class Tally(msgspec.Struct):
    """Counts of one process, cumulative since it joined the rollout."""

    requests: int = 0  # classify requests the rollout saw
    sampled: int = 0  # of them, in its sample (shadowed, or answered by the canary)
    compared: int = 0  # requests answered by both versions
    dropped: int = 0  # comparisons dropped under load (shadow work goes first)
    images: int = 0  # images answered by both versions
    agreed: int = 0  # of them, with the same top-1 label
    confusion: dict[str, int] = {}  # "serving index,candidate index" -> images
    serving: RoleTally = msgspec.field(default_factory=RoleTally)
    candidate: RoleTally = msgspec.field(default_factory=RoleTally)

    def compare(self, serving: np.ndarray, candidate: np.ndarray, serving_s: float, candidate_s: float) -> np.ndarray:
        """Record one request answered by both: (n, classes) probabilities and each one's seconds. Returns the
        (n, 2) top-1 indices (serving, candidate)."""
        tops = np.stack([serving.argmax(axis=1), candidate.argmax(axis=1)], axis=1)
        self.compared += 1
        self.images += len(tops)
        self.agreed += int((tops[:, 0] == tops[:, 1]).sum())
        for row in tops.tolist():
            cell = f"{row[0]},{row[1]}"
            self.confusion[cell] = self.confusion.get(cell, 0) + 1
        sides = ((self.serving, serving, serving_s), (self.candidate, candidate, candidate_s))
        for role, probabilities, seconds in sides:
            role.images += len(probabilities)
            role.confidence_sum += float(probabilities.max(axis=1).sum())
            role.observe_latency(seconds)
        return tops


def merge(tallies: list[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        for field in ("requests", "sampled", "compared", "dropped", "images", "agreed"):
            setattr(total, field, getattr(total, field) + getattr(tally, field))
        for cell, count in tally.confusion.items():
            total.confusion[cell] = total.confusion.get(cell, 0) + count
        for mine, theirs in ((total.serving, tally.serving), (total.candidate, tally.candidate)):
            mine.images += theirs.images
            mine.confidence_sum += theirs.confidence_sum
            mine.failures += theirs.failures
            mine.last_error = theirs.last_error or mine.last_error
            for index, count in theirs.latency.items():
                mine.latency[index] = mine.latency.get(index, 0) + count
    return total


def percentile_ms(latency: dict[int, int], q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile, in milliseconds (None: nothing measured)."""
    total = sum(latency.values())
    if not total:
        return None
    seen = 0
    for index in sorted(latency):
        seen += latency[index]
        if seen >= q * total:
            return round(LATENCY_BOUNDS[min(index, len(LATENCY_BOUNDS) - 1)] * 1000, 3)
    raise AssertionError("unreachable: the counts add up to the total")


# ------------------------------------------------------------------------------------ what the API answers


class RoleFigures(msgspec.Struct):
    version: int
    images: int
    mean_confidence: float | None
    p50_ms: float | None  # time in its batcher (queue + compute), per request
    p99_ms: float | None
    failures: int
    last_error: str
    accuracy: float | None  # on the compared images that have a feedback label
    labelled: int  # how many those are


class ClassAgreement(msgspec.Struct):
    label: str  # as the serving version answered
    images: int
    agreement: float


class ConfusionCell(msgspec.Struct):
    serving: str
    candidate: str
    images: int


class Figures(msgspec.Struct):
    requests: int
    sampled: int
    compared: int
    dropped: int
    images: int
    agreement: float | None  # top-1, over the compared images
    p99_ratio: float | None  # candidate p99 / serving p99
    per_class: list[ClassAgreement]
    confusion: list[ConfusionCell]  # every pair of answers seen, most frequent first
    serving: RoleFigures
    candidate: RoleFigures


def role_figures(role: RoleTally, version: int, accuracy: tuple[int, int]) -> RoleFigures:
    correct, labelled = accuracy
    return RoleFigures(
        version=version,
        images=role.images,
        mean_confidence=round(role.confidence_sum / role.images, 4) if role.images else None,
        p50_ms=percentile_ms(role.latency, 0.5),
        p99_ms=percentile_ms(role.latency, 0.99),
        failures=role.failures,
        last_error=role.last_error,
        accuracy=round(correct / labelled, 4) if labelled else None,
        labelled=labelled,
    )


def figures(
    tally: Tally,
    labels: tuple[str, ...],
    *,
    serving_version: int,
    candidate_version: int,
    accuracy: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
) -> Figures:
    """The API's view of a merged tally; ``accuracy``: (correct, labelled) of the serving, then the candidate."""
    rows: dict[int, list[int]] = {}
    cells = []
    for cell, count in tally.confusion.items():
        serving, candidate = (int(part) for part in cell.split(","))
        row = rows.setdefault(serving, [0, 0])
        row[0] += count
        row[1] += count if serving == candidate else 0
        cells.append(ConfusionCell(labels[serving], labels[candidate], count))
    serving_figures = role_figures(tally.serving, serving_version, accuracy[0])
    candidate_figures = role_figures(tally.candidate, candidate_version, accuracy[1])
    ratio = None
    if serving_figures.p99_ms and candidate_figures.p99_ms is not None:
        ratio = round(candidate_figures.p99_ms / serving_figures.p99_ms, 3)
    return Figures(
        requests=tally.requests,
        sampled=tally.sampled,
        compared=tally.compared,
        dropped=tally.dropped,
        images=tally.images,
        agreement=round(tally.agreed / tally.images, 4) if tally.images else None,
        p99_ratio=ratio,
        per_class=[ClassAgreement(labels[i], n, round(same / n, 4)) for i, (n, same) in sorted(rows.items())],
        confusion=sorted(cells, key=lambda c: -c.images),
        serving=serving_figures,
        candidate=candidate_figures,
    )
