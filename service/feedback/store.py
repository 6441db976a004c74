"""The feedback store: ``<feedback_root>/<model>/kept/<prediction_id>/`` for kept predictions and
``<feedback_root>/<model>/feedback/<feedback_id>/`` for feedback, each folder holding ``record.json`` and
``image.png``.

Every item is a folder of its own, written in a hidden staging folder beside it (its files through
service/files.py) and renamed into place, so several API processes, on one host or on a shared volume,
share one store without locks: a reader sees an item whole or not at all. A rename is also the one step
that claims a kept prediction for feedback and that deletes an item, so two processes never both do it.
Ids and model names are checked against their patterns before any path is built from them.

Kept predictions expire after ``retention_s`` and are evicted oldest first when the store passes
``max_bytes`` (``sweep``); feedback is never evicted, only deleted on request (docs/feedback.md).
"""

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from service.feedback.errors import AlreadyReviewed, FeedbackError, FeedbackNotFound, PredictionNotFound, UnknownLabel
from service.feedback.ids import FEEDBACK_ID, PREDICTION_ID, new_feedback_id
from service.feedback.records import Feedback, KeptPrediction, encode_record, kind_of
from service.files import fsync_dir, write_atomic
from service.repository.store import NAME_PATTERN

KEPT_DIR = "kept"
FEEDBACK_DIR = "feedback"
RECORD_FILE = "record.json"
IMAGE_FILE = "image.png"
STALE_AFTER_S = 3600  # hidden folders this old were left by a process that died mid-write
_HIDDEN_PREFIXES = (".staging-", ".claim-", ".deleting-")


@dataclass(frozen=True)
class Swept:
    expired: int  # kept predictions past their retention, removed
    evicted: int  # kept predictions removed, oldest first, to bring the store under its byte budget
    bytes: int  # the store's size afterwards (kept predictions and feedback)


class Created(msgspec.Struct):
    """The one field of a record the sweep reads."""

    created_at: str


@dataclass(frozen=True)
class Deleted:
    predictions: int
    feedback: int


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def folder_bytes(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(entry.stat().st_size for entry in entries if entry.is_file())


def check_label(model: str, version: int, label: str, labels: tuple[str, ...]) -> None:
    if label not in labels:
        raise UnknownLabel(model, version, label, labels)


class FeedbackStore:
    def __init__(
        self, root: Path, *, max_bytes: int, retention_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.clock = clock  # seconds since the epoch; tests move it on to expire kept predictions

    # ---------------------------------------------------------------- paths

    def _model(self, model: str) -> Path:
        if not NAME_PATTERN.match(model):
            raise FeedbackError(f"{model[:80]!r} is not a model name (lowercase letters, digits, '.', '_', '-')")
        return self.root / model

    def _kept_path(self, model: str, prediction_id: str) -> Path:
        if not PREDICTION_ID.fullmatch(prediction_id):
            raise PredictionNotFound(model, prediction_id)
        return self._model(model) / KEPT_DIR / prediction_id

    def _feedback_path(self, feedback_id: str) -> Path:
        if FEEDBACK_ID.fullmatch(feedback_id):
            for model in self.models():
                path = self.root / model / FEEDBACK_DIR / feedback_id
                if path.is_dir():
                    return path
        raise FeedbackNotFound(feedback_id)

    def models(self) -> list[str]:
        """Models that have kept predictions or feedback (or had: their folder stays)."""
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir() if NAME_PATTERN.match(entry.name) and entry.is_dir())

    # ---------------------------------------------------------------- writing and removing items

    def _write_item(self, model: str, kind: str, item_id: str, record: KeptPrediction | Feedback, png: bytes) -> None:
        folder = self._model(model)
        staging = folder / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            write_atomic(staging / IMAGE_FILE, png)
            write_atomic(staging / RECORD_FILE, encode_record(record))
            (folder / kind).mkdir(exist_ok=True)
            os.rename(staging, folder / kind / item_id)
            fsync_dir(folder / kind)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _remove(self, path: Path) -> bool:
        """Rename ``path`` out of sight, then remove it; False when it was gone already."""
        doomed = path.parent.parent / f".deleting-{uuid.uuid4().hex}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # ---------------------------------------------------------------- kept predictions

    def keep(self, prediction: KeptPrediction, png: bytes) -> None:
        self._write_item(prediction.model, KEPT_DIR, prediction.id, prediction, png)

    def _expired(self, created_at: str) -> bool:
        return datetime.fromisoformat(created_at).timestamp() < self.clock() - self.retention_s

    def kept(self, model: str, prediction_id: str) -> KeptPrediction:
        """A kept prediction; ``PredictionNotFound`` when there is none or it has expired."""
        path = self._kept_path(model, prediction_id)
        try:
            record = msgspec.json.decode((path / RECORD_FILE).read_bytes(), type=KeptPrediction)
        except FileNotFoundError:
            raise PredictionNotFound(model, prediction_id) from None
        if self._expired(record.created_at):
            raise PredictionNotFound(model, prediction_id, expired=True)
        return record

    def kept_image(self, model: str, prediction_id: str) -> bytes:
        self.kept(model, prediction_id)
        try:
            return (self._kept_path(model, prediction_id) / IMAGE_FILE).read_bytes()
        except FileNotFoundError:
            raise PredictionNotFound(model, prediction_id) from None

    def waiting(self, model: str, limit: int | None = None) -> list[KeptPrediction]:
        """Kept predictions of ``model`` without feedback: low-confidence ones first, oldest first within each."""
        folder = self._model(model) / KEPT_DIR
        if not folder.is_dir():
            return []
        found = []
        for entry in folder.iterdir():
            if PREDICTION_ID.fullmatch(entry.name):
                with contextlib.suppress(PredictionNotFound):  # expired, or claimed while we looked
                    found.append(self.kept(model, entry.name))
        found.sort(key=lambda kept: (not kept.low_confidence, kept.created_at, kept.id))
        return found[:limit]

    def discard(self, model: str, prediction_id: str) -> None:
        """Remove a kept prediction nobody will label (a blank photo, a test image)."""
        if not self._remove(self._kept_path(model, prediction_id)):
            raise PredictionNotFound(model, prediction_id)

    # ---------------------------------------------------------------- feedback

    def add_for_prediction(
        self, model: str, prediction_id: str, label: str, labels: Callable[[int], tuple[str, ...]]
    ) -> Feedback:
        """Feedback on a kept prediction: its image moves to the feedback (never evicted, never expires).

        ``labels(version)`` gives the labels of the version that made the prediction. Raises
        ``PredictionNotFound``, ``UnknownLabel`` (nothing changes) or ``AlreadyReviewed``.
        """
        try:
            kept = self.kept(model, prediction_id)
        except PredictionNotFound as error:
            raise self._reviewed(model, prediction_id) or error from None
        check_label(model, kept.version, label, labels(kept.version))
        folder = self._model(model)
        claimed = folder / f".claim-{uuid.uuid4().hex}"
        try:
            os.rename(self._kept_path(model, prediction_id), claimed)  # one process wins this
        except FileNotFoundError:
            raise self._reviewed(model, prediction_id) or PredictionNotFound(model, prediction_id) from None
        feedback = Feedback(
            id=new_feedback_id(),
            model=model,
            version=kept.version,
            label=label,
            kind=kind_of(label, kept.top[0].label),
            created_at=timestamp(self.clock()),
            source="kept prediction",
            prediction_id=prediction_id,
            predicted=kept.top,
            image_bytes=kept.image_bytes,
            width=kept.width,
            height=kept.height,
        )
        try:
            self._write_item(model, FEEDBACK_DIR, feedback.id, feedback, (claimed / IMAGE_FILE).read_bytes())
        except BaseException:
            with contextlib.suppress(OSError):
                os.rename(claimed, self._kept_path(model, prediction_id))  # waiting for a human again
            raise
        shutil.rmtree(claimed, ignore_errors=True)
        return feedback

    def _reviewed(self, model: str, prediction_id: str) -> AlreadyReviewed | None:
        """The error for a prediction someone recorded feedback on first, if someone did."""
        for item in self.feedback(model):
            if item.prediction_id == prediction_id:
                return AlreadyReviewed(
                    f"prediction {prediction_id} already has feedback {item.id} ({item.label}); "
                    f"DELETE /v1/feedback/{item.id} to record another"
                )
        return None

    def add_upload(self, feedback: Feedback, png: bytes) -> Feedback:
        """Feedback that brought its own image (already checked, labelled and made a PNG by the caller)."""
        self._write_item(feedback.model, FEEDBACK_DIR, feedback.id, feedback, png)
        return feedback

    def feedback(self, model: str | None = None) -> list[Feedback]:
        """Every feedback item (of ``model``), newest first."""
        items = []
        for name in [model] if model is not None else self.models():
            folder = self._model(name) / FEEDBACK_DIR
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if FEEDBACK_ID.fullmatch(entry.name):
                    with contextlib.suppress(FileNotFoundError):  # deleted while we looked
                        items.append(msgspec.json.decode((entry / RECORD_FILE).read_bytes(), type=Feedback))
        return sorted(items, key=lambda item: (item.created_at, item.id), reverse=True)

    def get(self, feedback_id: str) -> Feedback:
        try:
            return msgspec.json.decode((self._feedback_path(feedback_id) / RECORD_FILE).read_bytes(), type=Feedback)
        except FileNotFoundError:
            raise FeedbackNotFound(feedback_id) from None

    def image_path(self, feedback_id: str) -> Path:
        return self._feedback_path(feedback_id) / IMAGE_FILE

    def delete(self, feedback_id: str) -> None:
        if not self._remove(self._feedback_path(feedback_id)):
            raise FeedbackNotFound(feedback_id)

    def delete_model(self, model: str) -> Deleted:
        """Everything kept and recorded for ``model``: its folder renamed out of sight, then removed."""
        folder = self._model(model)
        counts = [
            sum(1 for entry in (folder / kind).iterdir() if pattern.fullmatch(entry.name))
            if (folder / kind).is_dir()
            else 0
            for kind, pattern in ((KEPT_DIR, PREDICTION_ID), (FEEDBACK_DIR, FEEDBACK_ID))
        ]
        doomed = self.root / f".deleting-{model}-{uuid.uuid4().hex}"
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            return Deleted(0, 0)
        shutil.rmtree(doomed, ignore_errors=True)
        return Deleted(*counts)

    # ---------------------------------------------------------------- retention and the byte budget

    def sweep(self) -> Swept:
        """Remove expired kept predictions, then the oldest others until the store is within ``max_bytes``.

        Feedback counts towards the budget but is never removed here: when it alone fills the budget, every
        new kept prediction goes at the next sweep. Also removes what crashed processes left half-written.
        """
        now = self.clock()
        kept: list[tuple[float, str, Path, int]] = []  # (created at, id, folder, bytes)
        total = 0
        for model in self.models():
            folder = self.root / model
            self._remove_stale(folder, now)
            for kind, pattern in ((KEPT_DIR, PREDICTION_ID), (FEEDBACK_DIR, FEEDBACK_ID)):
                if not (folder / kind).is_dir():
                    continue
                for entry in (folder / kind).iterdir():
                    if not pattern.fullmatch(entry.name):
                        continue
                    try:
                        size = folder_bytes(entry)
                        if kind == KEPT_DIR:
                            created = msgspec.json.decode((entry / RECORD_FILE).read_bytes(), type=Created)
                            kept.append(
                                (datetime.fromisoformat(created.created_at).timestamp(), entry.name, entry, size)
                            )
                    except FileNotFoundError:  # removed while we looked
                        continue
                    total += size
        kept.sort()
        expired = evicted = 0
        for created_at, _, path, size in kept:
            if created_at < now - self.retention_s:
                expired += self._remove(path)
            elif total > self.max_bytes:
                evicted += self._remove(path)
            else:
                break
            total -= size
        return Swept(expired, evicted, total)

    def _remove_stale(self, folder: Path, now: float) -> None:
        for entry in folder.iterdir():
            if entry.name.startswith(_HIDDEN_PREFIXES):
                with contextlib.suppress(FileNotFoundError):
                    if entry.lstat().st_mtime < now - STALE_AFTER_S:
                        shutil.rmtree(entry, ignore_errors=True)
