from typing import Any

import pytest

from service.jobs.errors import InvalidHyperparameters
from service.jobs.hyperparameters import (
    SWEEPABLE,
    FineTuneConfig,
    build_finetune_config,
    expand_sweep,
    finetune_schema,
)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": 0}, r"epochs: Input should be greater than or equal to 1 \(got 0\)"),
        ({"learning_rte": 0.1}, "learning_rte: Extra inputs are not permitted — known hyperparameters: epochs"),
        ({"epochs": 2, "freeze_backbone_epochs": 3}, r"freeze_backbone_epochs \(3\) is more than epochs \(2\)"),
        ({"backbone_lr_multiplier": 0}, "backbone_lr_multiplier: Input should be greater than 0"),
        ({"optimizer": "adamax"}, r"unknown optimizer 'adamax' \(known: sgd, momentum"),
        ({"lr_policy": "warm"}, r"unknown lr_policy 'warm' \(known: fixed, step"),
        ({"learning_rate": 100}, "learning_rate: Input should be less than or equal to 10"),
        ({"label_smoothing": 1.0}, r"label_smoothing: Input should be less than 1 \(got 1.0\)"),
        ({"label_smoothing": -0.1}, "label_smoothing: Input should be greater than or equal to 0"),
        ({"early_stopping_patience": -1}, "early_stopping_patience: Input should be greater than or equal to 0"),
        ({"early_stopping_patience": 1001}, "early_stopping_patience: Input should be less than or equal to 1000"),
        ({"early_stopping_patience": 1.5}, "early_stopping_patience: Input should be a valid integer"),
    ],
)
def test_bad_hyperparameters_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidHyperparameters, match=message):
        build_finetune_config(values)


def test_unset_values_take_the_defaults() -> None:
    config = build_finetune_config({"epochs": None, "learning_rate": 0.01})
    assert (config.epochs, config.learning_rate, config.optimizer) == (8, 0.01, "adamw")


def test_the_defaults_are_the_transfer_learning_recipe() -> None:
    config = FineTuneConfig()
    assert (config.freeze_backbone_epochs, config.backbone_lr_multiplier) == (1, 0.3)  # warm-up, then slower
    assert (config.lr_policy, config.label_smoothing, config.early_stopping_patience) == ("cosine", 0.1, 3)
    # null is the default, as for every hyperparameter of a job; 0 turns early stopping off
    assert build_finetune_config({"early_stopping_patience": None}).early_stopping_patience == 3
    assert build_finetune_config({"early_stopping_patience": 0}).early_stopping_patience == 0
    # a job recorded before early stopping was on by default (None: off) reads back as it was
    assert FineTuneConfig(early_stopping_patience=None).early_stopping_patience is None


def test_a_sweep_is_one_trial_per_combination_in_a_stable_order() -> None:
    trials = expand_sweep({"learning_rate": [0.1, 0.01], "optimizer": ["sgd", "adam"], "epochs": 3}, max_trials=16)
    assert [(t.learning_rate, t.optimizer, t.epochs) for t in trials] == [
        (0.1, "sgd", 3),
        (0.1, "adam", 3),
        (0.01, "sgd", 3),
        (0.01, "adam", 3),
    ]
    assert len(expand_sweep({"epochs": 3}, max_trials=1)) == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": [1, 2]}, "hyperparameter epochs cannot take a list of values; sweepable: learning_rate"),
        ({"learning_rate": []}, "give 1-16 distinct values"),
        ({"learning_rate": [0.1, 0.1]}, "give 1-16 distinct values"),
        ({"learning_rate": [0.1, 0.01], "batch_size": [8, 16, 32]}, r"6 trials \(2 learning_rate x 3 batch_size\)"),
        ({"learning_rate": [0.1, -1.0]}, "learning_rate: Input should be greater than 0"),
    ],
)
def test_bad_sweeps_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidHyperparameters, match=message):
        expand_sweep(values, max_trials=4)


def test_the_schema_a_client_reads_describes_the_default_config() -> None:
    schema = finetune_schema()
    assert FineTuneConfig(**{field.name: field.default for field in schema.hyperparameters}) == FineTuneConfig()
    assert [field.name for field in schema.hyperparameters if field.sweepable] == sorted(
        SWEEPABLE, key=list(FineTuneConfig.model_fields).index
    )
