"""``imgcls models import-torchvision`` and ``imgcls train --init-weights`` through the click entry point,
with weights files made here as torchvision makes its downloads."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from service.cli import cli
from service.imaging import preprocess
from service.repository import ModelRepository
from tests.training.torchvision_files import torchvision_file
from training.models import create_model

ARCH = "mobilenet_v3_small"  # the cheapest importable architecture


def imgcls(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torchvision_file(tmp_path_factory.mktemp("downloads"), ARCH)


@pytest.fixture(scope="module")
def imported(weights_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    root = tmp_path_factory.mktemp("models")
    return root, imgcls("models", "import-torchvision", ARCH, "--weights", weights_file, "--model-root", root)


def test_import_publishes_a_fine_tunable_imagenet_base(weights_file: Path, imported: tuple[Path, Result]) -> None:
    root, result = imported
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": f"{ARCH}-imagenet",
        "version": 1,
        "path": str(root / f"{ARCH}-imagenet" / "1"),
    }
    repository = ModelRepository(root)
    manifest = repository.verify(f"{ARCH}-imagenet", 1)  # every file's sha256, weights.pt included
    assert manifest.architecture == ARCH
    assert manifest.explain is None  # a hidden layer between its pool and its classifier: no activation maps
    assert len(manifest.labels) == 1000 and len(set(manifest.labels)) == 1000
    assert manifest.labels[:3] == ("tench", "goldfish", "great white shark")
    assert (manifest.input.shape, manifest.output.shape) == ((-1, 3, 224, 224), (-1, 1000))
    pre = manifest.preprocessing
    assert (pre.color_mode, pre.resize, pre.input_size, pre.interpolation) == ("RGB", 256, (224, 224), "bilinear")
    assert (pre.mean, pre.std, pre.background) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (255, 255, 255))
    assert (manifest.calibration, manifest.temperature, manifest.metrics) == ("uncalibrated", 1.0, {})
    assert manifest.fine_tunable and (root / f"{ARCH}-imagenet" / "1" / "weights.pt").is_file()
    imported_from = manifest.lineage.imported
    assert imported_from is not None
    assert (imported_from.kind, imported_from.source) == ("torchvision", weights_file.name)
    assert imported_from.sha256.startswith(weights_file.stem.rsplit("-", 1)[1])
    assert imported_from.command == (
        f"imgcls models import-torchvision {ARCH} --weights {weights_file.name} --name {ARCH}-imagenet"
    )
    assert manifest.lineage.config["torchvision_weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert repository.aliases(f"{ARCH}-imagenet") == {"production": 1}


def test_the_published_onnx_computes_what_torch_computes_with_the_files_weights(
    weights_file: Path, imported: tuple[Path, Result], tmp_path: Path
) -> None:
    root, _ = imported
    manifest = ModelRepository(root).manifest(f"{ARCH}-imagenet", 1)
    photos = []
    for index, size in enumerate([(320, 240), (64, 48), (500, 900)]):
        rng = np.random.default_rng(index)
        photos.append(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB"))
    batch = np.stack([preprocess(photo, manifest.preprocessing) for photo in photos])  # (3, 3, 224, 224)
    session = ort.InferenceSession(str(root / f"{ARCH}-imagenet" / "1" / "model.onnx"))
    logits = session.run(None, {"input": batch})[0]
    model = create_model(ARCH, in_channels=3, num_classes=1000).eval()
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-3)


def test_bad_weights_files_exit_2_with_one_line_and_publish_nothing(weights_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    wrong_hash = tmp_path / f"{ARCH}-0badc0de.pth"
    wrong_hash.write_bytes(weights_file.read_bytes())
    pickle = tmp_path / "model.pth"
    torch.save({"model": object()}, pickle)
    cases = {
        wrong_hash: "error: UnusableWeights: mobilenet_v3_small-0badc0de.pth: the name says its sha256 starts with "
        "0badc0de",
        pickle: r"error: UnusableWeights: model.pth: refused by torch.load(weights_only=True)",
    }
    for path, line in cases.items():
        result = imgcls("models", "import-torchvision", ARCH, "--weights", path, "--model-root", root)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, result.stderr
    other_architecture = imgcls(
        "models", "import-torchvision", "resnet18", "--weights", weights_file, "--model-root", root
    )
    assert other_architecture.exit_code == 2
    assert f"{weights_file.name} does not fit resnet18" in other_architecture.stderr
    assert "missing: conv1.weight" in other_architecture.stderr
    unknown = imgcls("models", "import-torchvision", "resnet101", "--weights", weights_file, "--model-root", root)
    assert unknown.exit_code == 2 and "UnknownModel: resnet101 (known: " in unknown.stderr
    assert not root.exists() or ModelRepository(root).models() == []


# ---------------------------------------------------------------------------------------------------------
# imgcls train --init-weights
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of plain-coloured 40x30 photos, 6 each."""
    root = tmp_path_factory.mktemp("photos") / "colours"
    for name, colour in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}.items():
        (root / name).mkdir(parents=True)
        for index in range(6):
            shade = tuple(min(255, channel + 5 * index) for channel in colour)
            Image.new("RGB", (40, 30), shade).save(root / name / f"{index}.png")
    return root


def test_train_starts_from_init_weights_with_a_fresh_head(
    weights_file: Path, colour_folder: Path, tmp_path: Path
) -> None:
    result = imgcls(
        "train",
        *("--model", ARCH, "--dataset", f"folder:{colour_folder}", "--image-size", "32"),
        *("--init-weights", weights_file, "--epochs", "1", "--batch-size", "4", "--threads", "2"),
        *("--optimizer", "sgd", "--learning-rate", "1e-9", "--weight-decay", "0", "--lr-policy", "fixed"),
        *("--output-dir", tmp_path / "run", "--model-root", tmp_path / "models"),
    )
    assert result.exit_code == 0, result.output
    assert f"# init weights: {weights_file.name} (sha256 " in result.stderr
    assert "head classifier.3 not loaded (classifier.3.bias, classifier.3.weight: the file's classes are not" in (
        result.stderr
    )
    published = json.loads(result.stdout.splitlines()[-1])["published"]
    manifest = ModelRepository(tmp_path / "models").manifest(published["name"], published["version"])
    assert manifest.lineage.config["init_weights"] == str(weights_file)
    assert manifest.labels == ("blue", "green", "red")
    trained = torch.load(tmp_path / "models" / published["name"] / "1" / "weights.pt", weights_only=True)
    original = torch.load(weights_file, weights_only=True)
    assert trained["classifier.3.weight"].shape == (3, 1024)  # a new head for three classes
    for key in ("features.0.0.weight", "features.5.block.0.0.weight", "classifier.0.weight"):
        torch.testing.assert_close(trained[key], original[key], atol=1e-6, rtol=0)  # lr 1e-9: barely moved


def test_train_refuses_init_weights_that_do_not_fit(weights_file: Path, colour_folder: Path, tmp_path: Path) -> None:
    result = imgcls(
        "train",
        *("--model", "resnet18", "--dataset", f"folder:{colour_folder}", "--image-size", "32"),
        *("--init-weights", weights_file, "--output-dir", tmp_path / "run", "--model-root", tmp_path / "models"),
    )
    assert result.exit_code == 2
    assert f"error: UnusableWeights: {weights_file.name} does not fit resnet18" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()
