"""Keeping inputs off the request's path: the policy picks low-confidence images (and a sample of the
others); the background thread writes what the model's preprocessing saw before its crop, as PNG."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from service.feedback import FeedbackStore, Keeper, KeepPolicy, PredictionIds
from service.imaging import DecodeLimits
from service.repository import ModelRepository
from tests.service.api.conftest import png_bytes


def new_ids(count: int) -> list[str]:
    ids = PredictionIds()
    return [ids.new() for _ in range(count)]


def keeper(root: Path, *, sample_rate: float, threshold: float = 0.5) -> Keeper:
    store = FeedbackStore(root, max_bytes=10**9, retention_s=3600)
    return Keeper(store, KeepPolicy(threshold=threshold, thresholds={}, sample_rate=sample_rate), DecodeLimits())


def test_low_confidence_images_are_kept_with_the_top_3_and_confident_ones_only_when_sampled(
    repository: ModelRepository, tmp_path: Path
) -> None:
    manifest = repository.manifest("fashion-mnist", 1)
    images = [png_bytes(seed) for seed in range(3)]
    probabilities = np.full((3, 10), 0.01, dtype=np.float32)
    probabilities[0, 7], probabilities[1, 2], probabilities[2, 4] = 0.91, 0.3, 0.95
    probabilities[1, 5] = 0.25
    ids = new_ids(3)

    never_sampled = keeper(tmp_path / "a", sample_rate=0.0)
    never_sampled.offer(manifest, "fp32", images, [0.91, 0.3, 0.95], probabilities, ids)
    never_sampled.close()
    (kept,) = never_sampled.store.waiting("fashion-mnist")
    assert (kept.id, kept.low_confidence, kept.version, kept.variant) == (ids[1], True, 1, "fp32")
    assert [guess.label for guess in kept.top] == ["Pullover", "Sandal", "T-shirt/top"]  # top 3, ties by index
    image = Image.open(io.BytesIO(never_sampled.store.kept_image("fashion-mnist", ids[1])))
    assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))  # as the model's preprocessing has it
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(images[1]))))  # 28x28 in: unchanged

    always_sampled = keeper(tmp_path / "b", sample_rate=1.0)
    always_sampled.offer(manifest, "fp32", images, [0.91, 0.3, 0.95], probabilities, ids)
    always_sampled.close()
    waiting = always_sampled.store.waiting("fashion-mnist")
    assert [(p.id, p.low_confidence) for p in waiting] == [(ids[1], True), (ids[0], False), (ids[2], False)]


def test_a_photo_is_kept_at_the_models_scale_not_as_sent(repository: ModelRepository, tmp_path: Path) -> None:
    manifest = repository.manifest("fashion-mnist", 1)
    photo = png_bytes(0, size=(300, 200), mode="RGB")
    keeping = keeper(tmp_path, sample_rate=0.0, threshold=1.0)
    (prediction_id,) = new_ids(1)
    keeping.offer(manifest, "fp32", [photo], [0.5], np.full((1, 10), 0.1, dtype=np.float32), [prediction_id])
    keeping.close()
    kept = keeping.store.kept("fashion-mnist", prediction_id)
    shorter = manifest.preprocessing.resize or max(manifest.preprocessing.input_size)
    assert (kept.height, kept.width) == (shorter, shorter * 300 // 200)  # the shorter side resized, not cropped
    assert kept.image_bytes < len(photo)


def test_when_the_writer_is_behind_images_are_dropped_not_queued(repository: ModelRepository, tmp_path: Path) -> None:
    manifest = repository.manifest("fashion-mnist", 1)
    store = FeedbackStore(tmp_path, max_bytes=10**9, retention_s=3600)
    keeping = Keeper(store, KeepPolicy(threshold=1.0, thresholds={}, sample_rate=0.0), DecodeLimits(), max_pending=1)
    keeping._room.acquire()  # the one slot is taken, as by a batch still being written
    keeping.offer(manifest, "fp32", [png_bytes()], [0.5], np.full((1, 10), 0.1, np.float32), new_ids(1))
    keeping._room.release()
    keeping.close()
    assert keeping.dropped == 1 and store.waiting("fashion-mnist") == []
