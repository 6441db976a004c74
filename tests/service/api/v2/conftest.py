"""A server shared by the read-only /v2 tests of a module, a tritonclient for it, and preprocessed inputs."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from service.imaging import DecodeLimits, decode_image, preprocess
from service.repository import Manifest, ModelRepository
from service.settings import ServiceSettings
from tests.service.api.server import running_server

MODEL = "fashion-mnist"


@pytest.fixture(scope="module")
def shared_root(trained_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(trained_repository, tmp_path_factory.mktemp("v2") / "models"))


@pytest.fixture(scope="module")
def shared_server(shared_root: Path) -> Iterator[str]:
    """Tests that use it must leave the server as they found it (v1 serving, nothing else loaded)."""
    settings = ServiceSettings(model_root=shared_root, auth_enabled=False, intra_op_threads=1, watch_interval_s=0.2)
    with running_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def manifest(shared_root: Path) -> Manifest:
    return ModelRepository(shared_root).manifest(MODEL, 1)


def triton_client(server: str, **options: object) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.removeprefix("http://"), **options)


@pytest.fixture
def client(shared_server: str) -> Iterator[triton.InferenceServerClient]:
    with triton_client(shared_server) as connected:
        yield connected


def preprocessed(images: list[bytes], manifest: Manifest) -> np.ndarray:
    """(n, C, H, W) float32: what the server computes from these encoded images, computed here."""
    return np.stack([preprocess(decode_image(data, DecodeLimits()), manifest.preprocessing) for data in images])
