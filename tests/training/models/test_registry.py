import pytest
import torch

from training.errors import InvalidHyperparameter, UnknownModel
from training.models import create_model, model_names

NAMES = model_names()
SMALLEST_INPUT = {"convnext_tiny": 32}  # its stem and downsamplings have no padding; the others take 28 px


def test_names_cover_the_design():
    assert set(NAMES) == {
        "lenet5",
        "cnn",
        "cnn_wide",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet_small",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_small_images(name, in_channels):
    torch.manual_seed(0)
    size = SMALLEST_INPUT.get(name, 28)
    model = create_model(name, in_channels=in_channels, num_classes=7)
    model.train()  # BatchNorm in training mode needs more than one value per channel: batch of 2
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, size, size)).shape == (2, 7)
        model.eval()
        logits = model(torch.randn(1, in_channels, size, size))
    assert logits.shape == (1, 7)
    assert torch.isfinite(logits).all()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownModel) as info:
        create_model("nope", in_channels=1, num_classes=10)
    message = str(info.value)
    assert message.startswith("nope (known: ")
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize(("in_channels", "num_classes"), [(0, 10), (1, 0)])
def test_sizes_below_one_fail(in_channels, num_classes):
    with pytest.raises(InvalidHyperparameter):
        create_model("lenet5", in_channels=in_channels, num_classes=num_classes)
