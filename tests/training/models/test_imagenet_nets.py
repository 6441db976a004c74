import pytest
import torch
from torch import nn
from torchvision import models

from training.models import create_model, head_of

# Every registry name that torchvision publishes ImageNet weights for, with torchvision's own builder.
TORCHVISION_BUILDERS = {
    "resnet18": models.resnet18,
    "resnet34": models.resnet34,
    "resnet50": models.resnet50,
    "mobilenet_v3_small": models.mobilenet_v3_small,
    "mobilenet_v3_large": models.mobilenet_v3_large,
    "efficientnet_b0": models.efficientnet_b0,
    "convnext_tiny": models.convnext_tiny,
}


@pytest.mark.parametrize("name", TORCHVISION_BUILDERS)
def test_state_dict_is_torchvisions_for_3_channels_and_1000_classes(name):
    ours = create_model(name, in_channels=3, num_classes=1000).state_dict()
    theirs = TORCHVISION_BUILDERS[name]().state_dict()
    assert list(ours) == list(theirs)
    assert {key: value.shape for key, value in ours.items()} == {key: value.shape for key, value in theirs.items()}


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"])
def test_one_input_channel_replaces_only_the_first_conv(name):
    grey = create_model(name, in_channels=1, num_classes=4)
    colour = create_model(name, in_channels=3, num_classes=4)
    first = grey.get_submodule("features.0.0")
    assert isinstance(first, nn.Conv2d) and first.in_channels == 1
    assert first.out_channels == colour.get_submodule("features.0.0").out_channels
    differ = [key for key, value in grey.state_dict().items() if value.shape != colour.state_dict()[key].shape]
    assert differ == ["features.0.0.weight"]
    head = grey.get_submodule(head_of(name))
    assert isinstance(head, nn.Linear) and head.out_features == 4
    with torch.no_grad():
        assert grey.eval()(torch.randn(1, 1, 64, 48)).shape == (1, 4)
