"""The feedback store on a real folder: kept predictions, feedback, retention, the byte budget, several
processes at once, and a restart (a new store over the same folder)."""

import multiprocessing
from pathlib import Path

import pytest

from service.feedback import (
    AlreadyReviewed,
    FeedbackNotFound,
    FeedbackStore,
    Guess,
    KeptPrediction,
    PredictionIds,
    PredictionNotFound,
    UnknownLabel,
)
from service.feedback.ids import PREDICTION_ID
from service.feedback.records import Feedback
from service.feedback.store import KEPT_DIR, timestamp

LABELS = ("cat", "dog", "fish")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 92  # 100 bytes: the store never decodes what it keeps


def new_ids(count: int) -> list[str]:
    ids = PredictionIds()
    return [ids.new() for _ in range(count)]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kept(prediction_id: str, *, at: float, low: bool = True, model: str = "pets", top: str = "cat") -> KeptPrediction:
    return KeptPrediction(
        id=prediction_id,
        model=model,
        version=1,
        variant="fp32",
        created_at=timestamp(at),
        top=[Guess(top, 0.4), Guess("dog", 0.35), Guess("fish", 0.25)],
        low_confidence=low,
        image_bytes=len(PNG),
        width=10,
        height=10,
    )


def labels(version: int) -> tuple[str, ...]:
    assert version == 1
    return LABELS


def store_at(root: Path, clock: Clock, *, max_bytes: int = 10**9, retention_s: float = 3600) -> FeedbackStore:
    return FeedbackStore(root, max_bytes=max_bytes, retention_s=retention_s, clock=clock)


def test_prediction_ids_are_unique_across_processes_and_match_their_pattern() -> None:
    first, second = PredictionIds(), PredictionIds()  # two processes: each draws its own prefix
    ids = [first.new() for _ in range(1000)] + [second.new() for _ in range(1000)]
    assert len(set(ids)) == 2000
    assert all(PREDICTION_ID.fullmatch(i) for i in ids)


def test_kept_predictions_wait_for_review_low_confidence_first(tmp_path: Path) -> None:
    clock = Clock()
    store = store_at(tmp_path, clock)
    ids = new_ids(3)
    store.keep(kept(ids[0], at=clock.now - 30, low=False), PNG)
    store.keep(kept(ids[1], at=clock.now - 20), PNG)
    store.keep(kept(ids[2], at=clock.now - 10), PNG)
    assert [p.id for p in store.waiting("pets")] == [ids[1], ids[2], ids[0]]
    assert store.kept_image("pets", ids[1]) == PNG
    assert store.waiting("other") == []
    with pytest.raises(PredictionNotFound, match="never kept"):
        store.kept("pets", "pr_" + "0" * 24)
    with pytest.raises(PredictionNotFound):
        store.kept("pets", "../../etc/passwd")  # never becomes a path


def test_feedback_on_a_kept_prediction_moves_its_image_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    store = store_at(tmp_path, clock)
    (prediction_id,) = new_ids(1)
    store.keep(kept(prediction_id, at=clock.now), PNG)

    with pytest.raises(UnknownLabel, match="its labels are: cat, dog, fish"):
        store.add_for_prediction("pets", prediction_id, "horse", labels)
    assert store.waiting("pets")  # a refused label changes nothing

    feedback = store.add_for_prediction("pets", prediction_id, "dog", labels)
    assert (feedback.kind, feedback.label, feedback.prediction_id) == ("correction", "dog", prediction_id)
    assert feedback.predicted[0].label == "cat"
    assert store.waiting("pets") == []
    with pytest.raises(AlreadyReviewed, match=feedback.id):
        store.add_for_prediction("pets", prediction_id, "cat", labels)

    restarted = store_at(tmp_path, Clock(clock.now + 10 * 365 * 24 * 3600))  # years later: feedback never expires
    assert restarted.feedback("pets") == [feedback]
    assert restarted.get(feedback.id) == feedback
    assert restarted.image_path(feedback.id).read_bytes() == PNG
    assert restarted.sweep().evicted == 0


def test_kept_predictions_expire_after_the_retention(tmp_path: Path) -> None:
    clock = Clock()
    store = store_at(tmp_path, clock, retention_s=60)
    old, new = new_ids(2)
    store.keep(kept(old, at=clock.now), PNG)
    clock.now += 30
    store.keep(kept(new, at=clock.now), PNG)
    clock.now += 45  # old is 75 s old, new 45 s
    with pytest.raises(PredictionNotFound, match="expired"):
        store.add_for_prediction("pets", old, "cat", labels)
    assert [p.id for p in store.waiting("pets")] == [new]
    swept = store.sweep()
    assert (swept.expired, swept.evicted) == (1, 0)
    assert not (tmp_path / "pets" / KEPT_DIR / old).exists()
    assert (tmp_path / "pets" / KEPT_DIR / new).exists()


def test_over_the_byte_budget_the_oldest_kept_predictions_go_first_and_feedback_stays(tmp_path: Path) -> None:
    clock = Clock()
    unlimited = store_at(tmp_path, clock)
    ids = new_ids(6)
    for age, prediction_id in zip(range(60, 0, -10), ids, strict=True):  # ids[0] oldest
        unlimited.keep(kept(prediction_id, at=clock.now - age), PNG)
    feedback = unlimited.add_for_prediction("pets", ids[0], "cat", labels)  # the oldest, but feedback now
    item_bytes = unlimited.sweep().bytes // 6

    store = store_at(tmp_path, clock, max_bytes=3 * item_bytes + item_bytes // 2)  # room for 3 items
    swept = store.sweep()
    assert swept.evicted == 3 and swept.bytes <= store.max_bytes
    assert [p.id for p in store.waiting("pets")] == ids[4:]  # ids[1..3] were the oldest kept
    assert store.feedback("pets") == [feedback]


def test_delete_one_item_or_everything_of_a_model(tmp_path: Path) -> None:
    clock = Clock()
    store = store_at(tmp_path, clock)
    ids = new_ids(3)
    for prediction_id in ids:
        store.keep(kept(prediction_id, at=clock.now), PNG)
    store.keep(kept(new_ids(1)[0], at=clock.now, model="other"), PNG)
    first = store.add_for_prediction("pets", ids[0], "cat", labels)
    second = store.add_for_prediction("pets", ids[1], "fish", labels)
    store.delete(first.id)
    with pytest.raises(FeedbackNotFound):
        store.delete(first.id)
    assert store.feedback() == [second]
    store.discard("pets", ids[2])
    with pytest.raises(PredictionNotFound):
        store.discard("pets", ids[2])

    store.keep(kept(new_ids(1)[0], at=clock.now), PNG)
    deleted = store.delete_model("pets")
    assert (deleted.predictions, deleted.feedback) == (1, 1)
    assert store.feedback("pets") == [] and store.waiting("pets") == []
    assert len(store.waiting("other")) == 1  # another model's data stays
    assert store.models() == ["other"]


def claim(root: str, prediction_id: str) -> str:
    """In a separate process: try to record feedback on the one kept prediction."""
    store = FeedbackStore(Path(root), max_bytes=10**9, retention_s=3600)
    try:
        return store.add_for_prediction("pets", prediction_id, "dog", lambda version: LABELS).id
    except AlreadyReviewed:
        return "already reviewed"
    except PredictionNotFound:  # lost the race before the winner's feedback was listed
        return "not found"


def test_processes_racing_for_one_kept_prediction_record_it_once(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, max_bytes=10**9, retention_s=3600)
    (prediction_id,) = new_ids(1)
    store.keep(kept(prediction_id, at=store.clock()), PNG)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        outcomes = pool.starmap(claim, [(str(tmp_path), prediction_id)] * 8)
    winners = [outcome for outcome in outcomes if outcome.startswith("fb_")]
    assert len(winners) == 1, outcomes
    assert [item.id for item in store.feedback("pets")] == winners
    assert not [p for p in (tmp_path / "pets").iterdir() if p.name.startswith(".")]  # nothing half-done left


def test_an_upload_is_feedback_without_a_prediction(tmp_path: Path) -> None:
    store = store_at(tmp_path, Clock())
    feedback = Feedback(
        id="fb_0123456789abcdef",
        model="pets",
        version=1,
        label="fish",
        kind="label",
        created_at=timestamp(store.clock()),
        source="upload",
        image_bytes=len(PNG),
    )
    store.add_upload(feedback, PNG)
    assert store_at(tmp_path, Clock()).feedback() == [feedback]
