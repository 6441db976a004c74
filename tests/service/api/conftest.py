import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from service.settings import ServiceSettings
from tests.service.api.server import running_server


@pytest.fixture
def server(service_settings: ServiceSettings) -> Iterator[str]:
    with running_server(service_settings) as url:
        yield url


def png_bytes(seed: int = 0, size: tuple[int, int] = (28, 28), mode: str = "L") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], *(() if mode == "L" else (3,))))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def png() -> bytes:
    return png_bytes()
