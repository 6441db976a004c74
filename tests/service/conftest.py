"""Every service test gets a private copy of the session's small published model (tests/conftest.py)."""

import shutil
from pathlib import Path

import pytest

from service.repository import ModelRepository
from service.settings import ServiceSettings


@pytest.fixture
def model_root(trained_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the template, so a test may move aliases and publish freely."""
    return Path(shutil.copytree(trained_repository, tmp_path / "models"))


@pytest.fixture
def repository(model_root: Path) -> ModelRepository:
    return ModelRepository(model_root)


@pytest.fixture
def service_settings(model_root: Path) -> ServiceSettings:
    return ServiceSettings(model_root=model_root, auth_enabled=False, intra_op_threads=1, watch_interval_s=0.2)
