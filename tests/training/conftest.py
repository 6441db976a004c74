from pathlib import Path

import pytest

from tests.conftest import FASHION_MNIST
from training.config import TrainConfig
from training.settings import TrainingSettings


@pytest.fixture
def settings(tmp_path: Path) -> TrainingSettings:
    return TrainingSettings(model_root=tmp_path / "models", runs_dir=tmp_path / "runs", fashion_mnist_dir=FASHION_MNIST)


@pytest.fixture
def small_config() -> TrainConfig:
    """A few seconds of training on a slice of Fashion-MNIST."""
    return TrainConfig(
        model="lenet5",
        epochs=2,
        batch_size=64,
        train_subset=1024,
        test_subset=300,
        val_fraction=0.05,
        optimizer="adam",
        learning_rate=0.01,
        lr_policy="fixed",
        threads=2,
    )
