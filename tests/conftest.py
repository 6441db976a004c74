"""Session fixtures every test folder may use: a private Redis and a small published model."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import redis_server
from tests.service.importing.onnx_models import OnnxFiles, make_onnx_files
from training.settings import TrainingSettings

# The Fashion-MNIST folder as every command finds it: IMGCLS_FASHION_MNIST_DIR, else the settings' default.
FASHION_MNIST = TrainingSettings().fashion_mnist_dir
MODEL = "fashion-mnist"
EXPLAINABLE_MODEL = "fashion-cnn"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for this test session only."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def trained_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only template repository: fashion-mnist v1 (production) and v2, the same lenet5 published
    twice (a few seconds of training on a slice of Fashion-MNIST), so hot swaps have two versions."""
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.publish import publish_run
    from training.train import run

    root = tmp_path_factory.mktemp("template")
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs", fashion_mnist_dir=FASHION_MNIST)
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=64,
        train_subset=2048,
        test_subset=500,
        val_fraction=0.05,
        optimizer="adam",
        learning_rate=0.01,
        lr_policy="fixed",
        threads=2,
        name=MODEL,
    )
    result = run(config, settings=settings)
    assert result.published is not None
    publish_run(result.run_dir, repository_root=root / "models", name=MODEL)
    return root / "models"


@pytest.fixture(scope="session")
def explainable_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only template repository: fashion-cnn v1, a cnn trained for a few seconds on a slice of
    Fashion-MNIST and published by training with its explain graph (class activation maps)."""
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.train import run

    root = tmp_path_factory.mktemp("explainable")
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs", fashion_mnist_dir=FASHION_MNIST)
    config = TrainConfig(
        model="cnn", epochs=1, train_subset=1024, test_subset=200, val_fraction=0.1, threads=2, name=EXPLAINABLE_MODEL
    )
    assert run(config, settings=settings, progress=False, echo=False).published is not None
    return root / "models"


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> OnnxFiles:
    """ONNX classifiers as users bring them (tests/service/importing/onnx_models.py), made once per session."""
    return make_onnx_files(tmp_path_factory.mktemp("onnx"))
