import pytest
import torch
from torch import nn

from training.errors import CheckpointError, UnknownModel
from training.models import build_resnet, create_model, describe_architecture, load_weights
from training.models.resnet_small import ResNetSmall


def test_registry_uses_the_torchvision_stem():
    model = create_model("resnet18", in_channels=1, num_classes=10)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model.conv1.in_channels == 1
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.fc.out_features == 10


def test_small_input_stem_keeps_resolution():
    model = build_resnet("resnet18", in_channels=1, num_classes=10, small_input=True).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        features = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(2, 1, 28, 28))))))
        assert features.shape == (2, 64, 28, 28)  # the torchvision stem would leave 7x7
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_build_resnet_unknown_name():
    with pytest.raises(UnknownModel, match="resnet101 \\(known: resnet18, resnet34, resnet50\\)"):
        build_resnet("resnet101", in_channels=3, num_classes=10)


def test_resnet_small_halves_resolution_per_later_stage():
    model = ResNetSmall(in_channels=1, num_classes=10, stages=((8, 1), (16, 1), (32, 1))).eval()
    with torch.no_grad():
        features = model.stages(model.stem(torch.randn(2, 1, 28, 28)))
    assert features.shape == (2, 32, 7, 7)


# ---------------------------------------------------------------------------------------------------------
# load_weights
# ---------------------------------------------------------------------------------------------------------


def test_load_weights_round_trip(tmp_path):
    source = create_model("resnet18", in_channels=1, num_classes=10)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = create_model("resnet18", in_channels=1, num_classes=10)
    load_weights(target, tmp_path / "weights.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_weights_of_another_resnet_name_both(tmp_path):
    torch.save(create_model("resnet18", in_channels=1, num_classes=10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("resnet34", in_channels=1, num_classes=10), tmp_path / "w.pt")
    message = str(info.value)
    assert "weights are for resnet18 (1 input channels, 10 classes)" in message
    assert "the model is resnet34 (1 input channels, 10 classes)" in message
    assert "missing: layer1.2." in message


def test_weights_with_other_head_name_the_shapes(tmp_path):
    torch.save(create_model("resnet18", in_channels=1, num_classes=10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"fc\.weight \(10, 512\) vs \(5, 512\)"):
        load_weights(create_model("resnet18", in_channels=1, num_classes=5), tmp_path / "w.pt")


def test_weights_of_a_non_resnet(tmp_path):
    torch.save(create_model("lenet5", in_channels=1, num_classes=10).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"weights are for a non-ResNet model .* the model is resnet18"):
        load_weights(create_model("resnet18", in_channels=1, num_classes=10), tmp_path / "w.pt")


def test_not_a_state_dict(tmp_path):
    torch.save({"epoch": 3}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        load_weights(create_model("lenet5", in_channels=1, num_classes=10), tmp_path / "w.pt")


def test_missing_and_garbage_files(tmp_path):
    model = create_model("lenet5", in_channels=1, num_classes=10)
    with pytest.raises(CheckpointError, match="no such file"):
        load_weights(model, tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a weights file"):
        load_weights(model, tmp_path / "junk.pt")


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": create_model("lenet5", in_channels=1, num_classes=10)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="not a weights file"):
        load_weights(create_model("lenet5", in_channels=1, num_classes=10), tmp_path / "w.pt")


def test_describe_small_input_resnet():
    state = build_resnet("resnet50", in_channels=3, num_classes=4, small_input=True).state_dict()
    assert describe_architecture(state) == "resnet50 (3 input channels, 4 classes, small-input stem)"
