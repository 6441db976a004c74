"""A fine-tuning job from an imported torchvision base: 1000 ImageNet labels in, a new head for the
dataset's labels out, served with the base's RGB 224 preprocessing."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from service.imaging import preprocess
from service.jobs.hyperparameters import FineTuneConfig
from service.repository import ModelRepository
from service.repository.run_folder import TrialFolder
from tests.training.torchvision_files import colour_photos, imported_base
from training.finetune import FineTuneJob, fine_tune
from training.settings import TrainingSettings

ARCH = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def repository_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    imported_base(root, ARCH, tmp_path_factory.mktemp("downloads"))
    return root


def test_a_job_puts_a_new_head_on_an_imagenet_base(repository_root: Path, tmp_path: Path) -> None:
    photos = colour_photos(tmp_path / "colours", per_class=8)
    settings = TrainingSettings(model_root=repository_root, runs_dir=tmp_path / "runs")
    job = FineTuneJob(
        job_id="job-1",
        base=f"{ARCH}-imagenet",
        base_version=None,
        dataset_dir=photos,
        dataset_id="ds_colours",
        dataset_sha256=None,
        config=FineTuneConfig(epochs=2, batch_size=8, learning_rate=0.01, freeze_backbone_epochs=1),
    )
    result = fine_tune(job, TrialFolder(tmp_path / "job"), settings)

    assert result.status == "completed" and result.published is not None
    assert result.published.name == f"{ARCH}-imagenet-ds_colours"
    repository = ModelRepository(repository_root)
    manifest = repository.verify(result.published.name, result.published.version)
    base = repository.manifest(f"{ARCH}-imagenet", 1)
    assert manifest.labels == ("blue", "green", "red") and manifest.output.shape == (-1, 3)
    assert manifest.preprocessing == base.preprocessing  # RGB, resize 256, crop 224, ImageNet mean/std
    assert (manifest.lineage.base_model, manifest.lineage.base_version) == (f"{ARCH}-imagenet", 1)
    assert manifest.calibration == "temperature" and "test_accuracy" in manifest.metrics
    tuned = torch.load(result.published.path / "weights.pt", weights_only=True)
    original = torch.load(repository.path(f"{ARCH}-imagenet", 1) / "weights.pt", weights_only=True)
    assert tuned["classifier.3.weight"].shape == (3, 1024) and original["classifier.3.weight"].shape == (1000, 1024)
    assert not torch.equal(tuned["features.1.block.0.0.weight"], original["features.1.block.0.0.weight"])  # epoch 2

    # Served like the base: any photo becomes RGB 224x224. (How well random "ImageNet" weights learn is not
    # the point here: mobilenet's BatchNorm statistics follow new images slowly, momentum 0.01; the
    # end-to-end test learns the colours from a resnet18 base.)
    session = ort.InferenceSession(str(result.published.path / "model.onnx"))
    files = sorted(photos.glob("*/*.png"))[:4]
    batch = np.stack([preprocess(Image.open(path), manifest.preprocessing) for path in files])
    assert batch.shape == (4, 3, 224, 224)
    assert session.run(None, {"input": batch})[0].shape == (4, 3)
