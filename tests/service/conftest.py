"""A small published model for every service test: trained once per session (a few seconds of lenet5 on a
slice of Fashion-MNIST), published twice so that hot swaps have two versions to move between."""

import shutil
from pathlib import Path

import pytest

from service.repository import ModelRepository
from service.settings import ServiceSettings

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MODEL = "fashion-mnist"


@pytest.fixture(scope="session")
def trained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only template repository: fashion-mnist v1 (production) and v2."""
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.publish import publish_run
    from training.settings import TrainingSettings
    from training.train import run

    root = tmp_path_factory.mktemp("template")
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs", fashion_mnist_dir=FASHION_MNIST)
    config = TrainConfig(
        model="lenet5", epochs=1, batch_size=64, train_subset=2048, test_subset=500, val_fraction=0.05,
        optimizer="adam", learning_rate=0.01, lr_policy="fixed", threads=2, name=MODEL,
    )  # fmt: skip
    result = run(config, settings=settings)
    assert result.published is not None
    publish_run(result.run_dir, repository_root=root / "models", name=MODEL)
    return root / "models"


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
