import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as tv
from PIL import Image

from service.repository.manifest import Preprocessing
from tests.training.data.files import random_pixels
from training.data.transforms import (
    decode_for_eval,
    eval_transform,
    normalize,
    resized_size,
    train_augment,
)
from training.errors import UnusableData

# ----------------------------------------------------------------------------------- eval geometry


@pytest.mark.parametrize(
    ("size", "shorter", "expected"),
    [((40, 30), 20, (26, 20)), ((30, 40), 20, (20, 26)), ((50, 50), 7, (7, 7)), ((99, 100), 32, (32, 32))],
)
def test_resized_size_truncates_the_longer_side(size: tuple[int, int], shorter: int, expected: tuple[int, int]) -> None:
    assert resized_size(*size, shorter) == expected


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize(("width", "height"), [(41, 30), (30, 47), (33, 33)])
def test_decode_matches_torchvision_resize_and_center_crop(interpolation: str, width: int, height: int) -> None:
    image = Image.fromarray(random_pixels(width * height, height, width))
    preprocessing = Preprocessing(
        color_mode="RGB",
        input_size=(16, 15),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        resize=17,
        interpolation=interpolation,  # type: ignore[arg-type]
    )
    reference = tv.Compose(
        [
            tv.Resize(17, interpolation=tv.InterpolationMode(interpolation)),
            tv.CenterCrop((16, 15)),
            tv.PILToTensor(),
        ]
    )
    decoded = decode_for_eval(image, preprocessing=preprocessing)
    assert decoded.shape == (3, 16, 15) and decoded.dtype == torch.uint8
    assert torch.equal(decoded, reference(image))


def test_center_crop_rounds_half_to_even() -> None:
    # 9 spare columns: left = round(4.5) = 4; 5 spare rows: top = round(2.5) = 2.
    pixels = np.arange(14 * 19, dtype=np.uint8).reshape(14, 19)
    preprocessing = Preprocessing(color_mode="L", input_size=(9, 10), mean=(0.0,), std=(1.0,))
    decoded = decode_for_eval(Image.fromarray(pixels), preprocessing=preprocessing)
    assert torch.equal(decoded[0], torch.from_numpy(pixels[2:11, 4:14]))


def test_color_mode_conversion() -> None:
    rgba = Image.fromarray(random_pixels(1, 4, 4, channels=4))
    to_rgb = Preprocessing(color_mode="RGB", input_size=(4, 4), mean=(0.0,) * 3, std=(1.0,) * 3)
    assert torch.equal(
        decode_for_eval(rgba, preprocessing=to_rgb),
        torch.from_numpy(np.array(rgba)[:, :, :3]).permute(2, 0, 1),
    )
    gray = Image.fromarray(random_pixels(2, 4, 4, channels=1))
    as_rgb = decode_for_eval(gray, preprocessing=to_rgb)
    assert torch.equal(as_rgb[0], as_rgb[1]) and torch.equal(as_rgb[1], as_rgb[2])
    to_l = Preprocessing(color_mode="L", input_size=(4, 4), mean=(0.0,), std=(1.0,))
    assert decode_for_eval(rgba, preprocessing=to_l).shape == (1, 4, 4)


def test_image_smaller_than_input_size() -> None:
    preprocessing = Preprocessing(color_mode="L", input_size=(28, 28), mean=(0.0,), std=(1.0,))
    with pytest.raises(UnusableData, match=r"image is 20x30 .* smaller than the input size 28x28"):
        decode_for_eval(Image.new("L", (20, 30)), preprocessing=preprocessing)


# ------------------------------------------------------------------------------------------- scaling


def test_eval_transform_against_hand_computation() -> None:
    pixels = np.array([[[0, 255, 51], [102, 0, 255]], [[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)  # (2,2,3)
    preprocessing = Preprocessing(color_mode="RGB", input_size=(2, 2), mean=(0.2, 0.5, 0.4), std=(0.5, 0.25, 0.2))
    result = eval_transform(preprocessing=preprocessing)(Image.fromarray(pixels))
    expected = torch.tensor(
        [
            [[(0 - 0.2) / 0.5, (0.4 - 0.2) / 0.5], [(1 - 0.2) / 0.5, (0 - 0.2) / 0.5]],  # red
            [[(1 - 0.5) / 0.25, (0 - 0.5) / 0.25], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.25]],  # green
            [[(0.2 - 0.4) / 0.2, (1 - 0.4) / 0.2], [(1 - 0.4) / 0.2, (0 - 0.4) / 0.2]],  # blue
        ]
    )
    assert result.dtype == torch.float32 and result.shape == (3, 2, 2)
    torch.testing.assert_close(result, expected, atol=1e-6, rtol=0)


def test_normalize_is_bit_identical_to_numpy_float32() -> None:
    """The contract the service's numpy preprocessing is held to."""
    batch = torch.from_numpy(random_pixels(5, 6, 7 * 3, channels=1).reshape(2, 3, 3, 7))
    preprocessing = Preprocessing(
        color_mode="RGB", input_size=(3, 7), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    mean = np.array(preprocessing.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(preprocessing.std, dtype=np.float32).reshape(-1, 1, 1)
    expected = (batch.numpy().astype(np.float32) / np.float32(255) - mean) / std
    assert np.array_equal(normalize(batch, preprocessing=preprocessing).numpy(), expected)
    assert np.array_equal(normalize(batch[0], preprocessing=preprocessing).numpy(), expected[0])


def test_normalize_rejects_wrong_input() -> None:
    preprocessing = Preprocessing(color_mode="L", input_size=(2, 2), mean=(0.5,), std=(0.5,))
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(1, 2, 2), preprocessing=preprocessing)
    with pytest.raises(ValueError, match="C=1"):
        normalize(torch.zeros(3, 2, 2, dtype=torch.uint8), preprocessing=preprocessing)


# --------------------------------------------------------------------------------------- augmentation

BATCH = torch.from_numpy(random_pixels(0, 64 * 2 * 6, 7, channels=1).reshape(64, 2, 6, 7))


def augment(seed: int, **options: object) -> torch.Tensor:
    return train_augment(BATCH, generator=torch.Generator().manual_seed(seed), **options)  # type: ignore[arg-type]


def test_augment_is_deterministic_for_a_seed_and_resumable() -> None:
    assert torch.equal(augment(1, crop_padding=2, flip=True), augment(1, crop_padding=2, flip=True))
    assert not torch.equal(augment(1, crop_padding=2, flip=True), augment(2, crop_padding=2, flip=True))

    generator = torch.Generator().manual_seed(5)
    train_augment(BATCH, generator=generator, crop_padding=2, flip=True)
    state = generator.get_state()
    second = train_augment(BATCH, generator=generator, crop_padding=2, flip=True)
    resumed = torch.Generator().set_state(state)
    assert torch.equal(train_augment(BATCH, generator=resumed, crop_padding=2, flip=True), second)


def test_crops_are_shifted_windows_of_the_zero_padded_image() -> None:
    pad = 2
    out = augment(3, crop_padding=pad, flip=False)
    assert out.shape == BATCH.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(BATCH, (pad,) * 4)
    offsets = set()
    for image, source in zip(out, padded, strict=True):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(image, source[:, dy : dy + 6, dx : dx + 7])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 10  # 25 possible offsets, 64 draws: each image gets its own


def test_flips_happen_about_half_the_time() -> None:
    out = augment(4, crop_padding=0, flip=True)
    flipped = [torch.equal(o, b.flip(-1)) for o, b in zip(out, BATCH, strict=True)]
    kept = [torch.equal(o, b) for o, b in zip(out, BATCH, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 16 <= sum(flipped) <= 48


def test_nothing_to_do_returns_the_batch() -> None:
    assert augment(0, crop_padding=0, flip=False) is BATCH


def test_augment_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="crop_padding"):
        augment(0, crop_padding=-1, flip=False)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        train_augment(BATCH[0], generator=torch.Generator(), crop_padding=1, flip=False)
