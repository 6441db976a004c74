"""Reading weights files as torchvision ships them, and refusing every file that does not fit."""

import hashlib
from pathlib import Path

import pytest
import torch

from tests.training.torchvision_files import torchvision_file
from training.errors import UnusableWeights
from training.models import create_model
from training.pretrained import fit_weights, initial_weights, read_weights_file


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torchvision_file(tmp_path_factory.mktemp("weights"), "mobilenet_v3_small")


def test_a_torchvision_file_loads_into_the_registry_model(mobilenet_file: Path) -> None:
    weights = read_weights_file(mobilenet_file)
    assert weights.name == mobilenet_file.name
    assert weights.sha256 == hashlib.sha256(mobilenet_file.read_bytes()).hexdigest()
    assert mobilenet_file.name == f"mobilenet_v3_small-{weights.sha256[:8]}.pth"
    model = create_model("mobilenet_v3_small", in_channels=3, num_classes=1000)
    fitted = fit_weights(weights, model, architecture="mobilenet_v3_small")
    assert fitted.keys() == model.state_dict().keys()
    model.load_state_dict(fitted)
    assert torch.equal(model.state_dict()["features.0.0.weight"], weights.state["features.0.0.weight"])


def test_content_that_does_not_match_the_hash_in_the_name_is_refused(mobilenet_file: Path, tmp_path: Path) -> None:
    data = bytearray(mobilenet_file.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte: a corrupted download
    corrupt = tmp_path / mobilenet_file.name
    corrupt.write_bytes(bytes(data))
    prefix = mobilenet_file.name.rsplit("-", 1)[1].removesuffix(".pth")
    with pytest.raises(UnusableWeights, match=f"the name says its sha256 starts with {prefix}, the file's starts with"):
        read_weights_file(corrupt)
    renamed = tmp_path / "mobilenet_v3_small-00000000.pth"  # right content, wrong hash in the name
    renamed.write_bytes(mobilenet_file.read_bytes())
    with pytest.raises(UnusableWeights, match="download it again"):
        read_weights_file(renamed)


def test_a_name_without_a_hash_is_not_checked(mobilenet_file: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my-mobilenet.pth"  # "mobilenet" is not hex: no hash in this name
    mine.write_bytes(mobilenet_file.read_bytes())
    assert read_weights_file(mine).name == "my-mobilenet.pth"


class Arbitrary:
    """Anything that is not a tensor: unpickling it would run this module's code."""


def test_a_pickle_that_weights_only_refuses(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"model": Arbitrary()}, path)
    with pytest.raises(
        UnusableWeights,
        match=r"model.pth: refused by torch.load\(weights_only=True\), which loads only tensors and plain containers "
        r"\(Unsupported global: GLOBAL tests.training.test_pretrained.Arbitrary\); save a plain state_dict",
    ):
        read_weights_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip, not a pickle", r"refused by torch.load\(weights_only=True\).*\(Unsupported operand 110\)"),
        (None, "holds a list, expected a state_dict"),
    ],
)
def test_files_that_are_not_state_dicts(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(UnusableWeights, match=message):
        read_weights_file(path)
    with pytest.raises(UnusableWeights, match="no such file"):
        read_weights_file(tmp_path / "absent.pth")


def test_keys_and_shapes_of_another_architecture_are_listed(mobilenet_file: Path) -> None:
    weights = read_weights_file(mobilenet_file)
    model = create_model("resnet18", in_channels=3, num_classes=1000)
    with pytest.raises(UnusableWeights) as info:
        fit_weights(weights, model, architecture="resnet18")
    message = str(info.value)
    assert message.startswith(f"{mobilenet_file.name} does not fit resnet18 (")
    assert "missing: conv1.weight, bn1.weight, bn1.bias and " in message
    assert "unexpected: features.0.0.weight, " in message


def test_other_shapes_are_named(mobilenet_file: Path) -> None:
    weights = read_weights_file(mobilenet_file)
    grey = create_model("mobilenet_v3_small", in_channels=1, num_classes=1000)
    with pytest.raises(UnusableWeights, match=r"other shape: features.0.0.weight \(16, 3, 3, 3\) in the file, "):
        fit_weights(weights, grey, architecture="mobilenet_v3_small")
    ten_classes = create_model("mobilenet_v3_small", in_channels=3, num_classes=10)
    with pytest.raises(UnusableWeights, match=r"other shape: classifier.3.weight \(1000, 1024\)"):
        fit_weights(weights, ten_classes, architecture="mobilenet_v3_small")  # no head named: strict


def test_init_weights_leave_out_a_head_for_other_classes_and_say_so(
    mobilenet_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fitted = initial_weights(mobilenet_file, architecture="mobilenet_v3_small", in_channels=3, num_classes=3, echo=True)
    assert "classifier.3.weight" not in fitted and "classifier.3.bias" not in fitted
    assert "classifier.0.weight" in fitted  # the layers before the head are kept
    said = capsys.readouterr().err
    assert f"# init weights: {mobilenet_file.name}" in said
    assert "head classifier.3 not loaded (classifier.3.bias, classifier.3.weight" in said
    everything = initial_weights(
        mobilenet_file, architecture="mobilenet_v3_small", in_channels=3, num_classes=1000, echo=False
    )
    assert "classifier.3.weight" in everything  # the same classes: the head is loaded too


def test_a_truncated_file_without_a_hash_in_its_name(mobilenet_file: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "mobilenet.pth"
    truncated.write_bytes(mobilenet_file.read_bytes()[:100_000])
    with pytest.raises(UnusableWeights, match=r"mobilenet.pth: not a torch weights file \(.+\)"):
        read_weights_file(truncated)
