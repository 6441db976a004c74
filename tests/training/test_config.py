from pathlib import Path

import pytest

from service.jobs.hyperparameters import FineTuneConfig, Hyperparameters
from training.config import ConfigError, TrainConfig, build_config, read_config_file


def test_layers_merge_with_later_winning_and_none_skipped() -> None:
    config = build_config({"epochs": 3, "model": "lenet5"}, {"epochs": 5, "model": None})
    assert (config.epochs, config.model) == (5, "lenet5")


def test_yaml_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("epochs: 2\nlearning-rate: 0.05\noptimizer_options:\n  momentum: 0.8\n")
    (tmp_path / "b.toml").write_text('epochs = 4\nlr_policy = "cosine"\n')
    assert build_config(read_config_file(tmp_path / "a.yaml")) == TrainConfig(
        epochs=2, learning_rate=0.05, optimizer_options={"momentum": 0.8}
    )
    assert build_config(read_config_file(tmp_path / "b.toml")).lr_policy == "cosine"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"learning_rate": -1}, "learning_rate: Input should be greater than 0"),
        ({"learning_rate": 0}, "learning_rate: Input should be greater than 0"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"epoch": 3}, "epoch: Extra inputs are not permitted .* known options: epochs, batch_size"),
        ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
    ],
)
def test_bad_values_name_the_field(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "none.yaml")
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(ConfigError, match=r"use a \.yaml, \.yml or \.toml file"):
        read_config_file(tmp_path / "c.ini")
    (tmp_path / "d.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        read_config_file(tmp_path / "d.yaml")


def test_to_dict_is_json_safe_and_round_trips() -> None:
    config = TrainConfig(lr_multipliers={"head*": 1.0, "*": 0.1})
    assert TrainConfig(**config.to_dict()) == config


def test_the_shared_hyperparameters_are_the_services_with_this_recipes_defaults() -> None:
    shared = set(Hyperparameters.model_fields)
    assert shared <= set(TrainConfig.model_fields) and shared <= set(FineTuneConfig.model_fields)
    assert (TrainConfig().optimizer, FineTuneConfig().optimizer) == ("nesterov", "adamw")
    with pytest.raises(ConfigError, match=r"optimizer: unknown optimizer 'adamax' \(known: sgd, momentum"):
        build_config({"optimizer": "adamax"})
    with pytest.raises(ConfigError, match="lr_policy: unknown lr_policy 'warm'"):
        build_config({"lr_policy": "warm"})
    assert build_config({"batch_size": 60_000}).batch_size == 60_000  # full batch: the job's cap is not here


def test_augment_by_name_and_as_the_old_bool() -> None:
    assert build_config({}).augment is None  # the dataset's default, resolved when the run starts
    assert build_config({"augment": "photo+randaugment"}).augment == "photo+randaugment"
    assert build_config({"augment": True}).augment == "crop-flip"  # recipes and configs written before names
    assert build_config({"augment": False}).augment == "none"
    assert FineTuneConfig(augment=True).augment == "crop-flip"
    with pytest.raises(ConfigError, match=r"augment: unknown augment 'mixup' \(known: none, crop-flip, photo"):
        build_config({"augment": "mixup"})
