"""``--tta flip``: the graph averages each image with its mirror, passes the export's parity check, is
recorded in the manifest's config, and the service serves it (a mirrored photo gets the same answer)."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from service.imaging import DecodeLimits
from service.inference.offline import classify_files, load_predictor
from service.repository import ModelRepository
from training.config import ConfigError, TrainConfig, build_config
from training.models import create_model
from training.settings import TrainingSettings
from training.train import run
from training.tta import FlipAveraged, tta_doubt, with_tta


def test_flip_averaging_gives_an_image_and_its_mirror_the_same_logits() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10).eval()
    images = torch.randn(3, 1, 28, 28)
    averaged = FlipAveraged(model)
    with torch.no_grad():
        torch.testing.assert_close(averaged(images), averaged(images.flip(3)))
        torch.testing.assert_close(averaged(images), (model(images) + model(images.flip(3))) / 2)
        assert not torch.allclose(model(images), model(images.flip(3)))  # the plain network does differ
    assert with_tta(model, "none") is model


def test_doubts_are_said_not_enforced() -> None:
    assert tta_doubt("none", augment="none", flip_ok=False) is None
    assert tta_doubt("flip", augment="crop-flip", flip_ok=True) is None
    assert "never saw a mirrored image" in str(tta_doubt("flip", augment="none", flip_ok=True))
    assert "digits" in str(tta_doubt("flip", augment="crop-flip", flip_ok=False))
    with pytest.raises(ConfigError, match="tta"):
        build_config({"tta": "rotate"})


def test_a_flip_averaged_export_is_served_and_a_mirrored_photo_gets_the_same_answer(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    config = small_config.model_copy(
        update={"tta": "flip", "augment": "crop-flip", "epochs": 1, "threads": 1, "name": "flipped"}
    )
    result = run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)
    assert result.published is not None
    assert {"test_accuracy", "test_accuracy_without_tta"} <= result.metrics.keys()

    session = ort.InferenceSession(str(tmp_path / "run" / "model.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).normal(size=(4, 1, 28, 28)).astype(np.float32)
    logits = session.run(None, {"input": images})[0]
    np.testing.assert_allclose(logits, session.run(None, {"input": images[..., ::-1].copy()})[0], atol=1e-5)
    plain = create_model("lenet5", in_channels=1, num_classes=10)
    plain.load_state_dict(torch.load(tmp_path / "run" / "weights.pt", weights_only=True))  # no wrapper inside
    with torch.no_grad():
        want = (plain.eval()(torch.from_numpy(images)) + plain(torch.from_numpy(images).flip(3))) / 2
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-4, rtol=1e-3)

    repository = ModelRepository(settings.model_root)
    manifest, predictor = load_predictor(repository, "flipped", None, "fp32")
    assert manifest.lineage.config["tta"] == "flip"
    pixels = np.random.default_rng(1).integers(0, 256, size=(28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    Image.fromarray(pixels[:, ::-1].copy()).save(tmp_path / "mirrored.png")
    rows = list(
        classify_files(
            [tmp_path / "photo.png", tmp_path / "mirrored.png"],
            manifest,
            predictor,
            top_k=3,
            batch_size=2,
            limits=DecodeLimits(),
        )
    )
    photo, mirrored = (row.result for row in rows)
    assert photo is not None and mirrored is not None
    assert [p.label for p in photo.top] == [p.label for p in mirrored.top]
    assert [p.probability for p in photo.top] == pytest.approx([p.probability for p in mirrored.top], abs=1e-5)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["config"]["tta"] == "flip"
