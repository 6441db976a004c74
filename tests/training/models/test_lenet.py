import pytest
import torch
import torch.nn.functional as F

from training.models.lenet import LeNet5


def test_28px_is_a_first_conv_padded_by_2():
    torch.manual_seed(0)
    model = LeNet5(in_channels=1, num_classes=10).eval()
    images = torch.randn(2, 1, 28, 28)
    conv1 = model.features[0]
    with torch.no_grad():
        padded_conv = F.conv2d(images, conv1.weight, conv1.bias, padding=2)
        assert torch.allclose(model.features[:1](F.pad(images, (2, 2, 2, 2))), padded_conv, atol=1e-6)
        assert model(images).shape == (2, 10)


@pytest.mark.parametrize("size", [28, 29, 30, 32])
def test_28_to_32px_reach_c5_at_5x5(size):
    model = LeNet5(in_channels=3, num_classes=4).eval()
    assert model(torch.randn(2, 3, size, size)).shape == (2, 4)


def test_larger_than_32px_is_refused():
    with pytest.raises(ValueError, match="at most 32x32"):
        LeNet5(in_channels=1, num_classes=10)(torch.randn(2, 1, 33, 33))
