"""The parity test of DESIGN.md: serving's decode + preprocess against training's eval transform, same images.

Needs torch and the Fashion-MNIST files (both present in CI); skipped with the reason where either is missing.
"""

# ruff: noqa: E402  (the training imports follow the skip when torch is absent)

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnxruntime as ort
from PIL import Image

from service.imaging import DecodeLimits, decode_image, decode_into, preprocess, resized_size
from service.repository.manifest import Preprocessing
from tests.conftest import FASHION_MNIST
from tests.service.imaging.images import encode
from training.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    eval_transform,
    load_fashion_mnist,
    normalize,
    open_image,
)
from training.data import resized_size as training_resized_size
from training.errors import UnusableData
from training.export import export_onnx
from training.models import create_model

LIMITS = DecodeLimits()
FASHION = Preprocessing(color_mode="L", input_size=(28, 28), mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,))
TOLERANCE = 1e-5  # max |serving - training| over every normalized value


def fashion_mnist(split: Literal["train", "test"]):
    """uint8 (N, 1, 28, 28) images and int64 labels, or a skip that says how to install the files."""
    try:
        return load_fashion_mnist(FASHION_MNIST, split)
    except UnusableData as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def fashion_test() -> tuple[np.ndarray, np.ndarray]:
    """The first 1,000 test images, uint8 (N, 28, 28), and their labels."""
    images, labels = fashion_mnist("test")
    return images[:1000, 0].numpy(), labels[:1000].numpy()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    """LeNet-5 after 32 Adam steps on 4,096 training images (about 70% accurate), exported to ONNX."""
    images, labels = fashion_mnist("train")
    inputs = normalize(images[:4096], preprocessing=FASHION)
    torch.manual_seed(0)
    model = create_model("lenet5", in_channels=1, num_classes=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for batch in torch.arange(4096).split(128):
        loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    report = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", input_shape=(1, 28, 28))
    return ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])


def test_fashion_mnist_png_uploads_match_training(fashion_test, classifier):
    images, labels = fashion_test
    served = np.empty((len(images), 1, 28, 28), dtype=np.float32)
    for row, image in enumerate(images):  # the service's path: these plain PNGs take libspng's (decode.py)
        decode_into(encode(Image.fromarray(image), "PNG"), LIMITS, FASHION, served[row])

    transform = eval_transform(preprocessing=FASHION)
    reference = torch.stack([transform(Image.fromarray(image)) for image in images]).numpy()
    evaluated = normalize(torch.from_numpy(images[:, None]), preprocessing=FASHION).numpy()  # training's eval batches
    assert served.shape == reference.shape == (1000, 1, 28, 28) and served.dtype == np.float32
    assert np.abs(served - reference).max() <= TOLERANCE
    assert np.abs(served - evaluated).max() <= TOLERANCE

    (served_logits,) = classifier.run(None, {"input": served})
    (reference_logits,) = classifier.run(None, {"input": reference})
    np.testing.assert_array_equal(served_logits.argmax(1), reference_logits.argmax(1))
    assert (served_logits.argmax(1) == labels).mean() > 0.6  # a real classifier, not a constant


# ---------------------------------------------------------------------------------------------------
# Colour, resizing and cropping: synthetic uploads of every shape and mode, through files on both sides
# ---------------------------------------------------------------------------------------------------


def synthetic(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients plus noise: edges and texture, so every interpolation shows its differences."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin((x + y) / 3)], axis=-1)
    return Image.fromarray((base + rng.normal(0, 25, base.shape)).clip(0, 255).astype(np.uint8))


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


UPLOADS = {  # name -> encoded bytes
    "jpeg-landscape": encode(synthetic(61, 40, 0), "JPEG", quality=90),
    "jpeg-portrait-exif-rotated": with_orientation(synthetic(50, 37, 1), 6),
    "jpeg-cmyk": encode(synthetic(45, 45, 2).convert("CMYK"), "JPEG", quality=90),
    "png-rgba": encode(synthetic(33, 70, 3).convert("RGBA"), "PNG"),
    "png-palette": encode(synthetic(64, 48, 4).quantize(colors=32), "PNG"),
    "png-gray-small": encode(synthetic(14, 19, 5).convert("L"), "PNG"),
    "webp-wide": encode(synthetic(120, 36, 6), "WEBP", quality=80),
}
RESIZING = {
    "rgb-32-bilinear": Preprocessing(
        color_mode="RGB", input_size=(32, 32), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), resize=36
    ),
    "rgb-24x32-bicubic": Preprocessing(
        color_mode="RGB",
        input_size=(24, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        resize=34,
        interpolation="bicubic",
    ),
    "gray-28-nearest": Preprocessing(
        color_mode="L", input_size=(28, 28), mean=(0.2,), std=(0.3,), resize=28, interpolation="nearest"
    ),
}


@pytest.mark.parametrize("preprocessing_name", RESIZING)
def test_resized_uploads_match_training(tmp_path: Path, preprocessing_name: str):
    preprocessing = RESIZING[preprocessing_name]
    transform = eval_transform(preprocessing=preprocessing)
    for name, data in UPLOADS.items():
        path = tmp_path / name
        path.write_bytes(data)
        served = preprocess(decode_image(data, LIMITS), preprocessing)
        reference = transform(open_image(path)).numpy()
        assert served.shape == reference.shape, name
        assert np.abs(served - reference).max() <= TOLERANCE, name


def test_imagenet_sized_upload_matches_training(tmp_path: Path):
    preprocessing = Preprocessing(
        color_mode="RGB", input_size=(224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=256
    )
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(synthetic(400, 300, 7), "JPEG", quality=90))
    served = preprocess(decode_image(path.read_bytes(), LIMITS), preprocessing)
    reference = eval_transform(preprocessing=preprocessing)(open_image(path)).numpy()
    assert served.shape == (3, 224, 224)
    assert np.abs(served - reference).max() <= TOLERANCE


def test_resized_size_is_trainings():
    for width in range(1, 120, 7):
        for height in range(1, 120, 5):
            for shorter in (1, 28, 32, 36, 224, 256):
                assert resized_size(width, height, shorter) == training_resized_size(width, height, shorter)
