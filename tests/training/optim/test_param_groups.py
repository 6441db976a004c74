"""parameter_groups: decay on/off by layer kind, lr multipliers by module name, every parameter once."""

import pytest
from torch import nn

from training.errors import InvalidHyperparameter, TrainingError
from training.optim import parameter_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, bias=False),
            nn.BatchNorm2d(4),
            nn.Conv2d(4, 4, 3),
            nn.GroupNorm(2, 4),
            nn.Flatten(),
            nn.Linear(4, 8),
            nn.LayerNorm(8),
        )
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)
        self.shared = self.head  # the same module (and parameters) under a second name


def trainable(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def by_name(groups: list[dict]) -> dict[str, dict]:
    return {g["name"]: g for g in groups}


def test_every_trainable_parameter_in_exactly_one_group() -> None:
    model = Net()
    for kwargs in ({}, {"decay_norm_and_bias": True}, {"lr_multipliers": {"head*": 1.0, "*": 0.1}}):
        groups = parameter_groups(model, weight_decay=0.01, **kwargs)
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == trainable(model)
        assert not {id(p) for p in model.frozen.parameters()} & set(ids)


def test_no_decay_on_norm_layers_and_biases() -> None:
    model = Net()
    groups = by_name(parameter_groups(model, weight_decay=0.05))
    assert set(groups) == {"decay x1", "no_decay x1"}
    assert groups["decay x1"]["weight_decay"] == 0.05
    assert groups["no_decay x1"]["weight_decay"] == 0.0
    decayed = {id(p) for p in groups["decay x1"]["params"]}
    expected = {id(model.backbone[0].weight), id(model.backbone[2].weight), id(model.backbone[5].weight)}
    expected.add(id(model.head.weight))
    assert decayed == expected


def test_decay_norm_and_bias() -> None:
    groups = parameter_groups(Net(), weight_decay=0.05, decay_norm_and_bias=True)
    assert [g["name"] for g in groups] == ["decay x1"]


def test_lr_multipliers_first_match_wins() -> None:
    model = Net()
    groups = by_name(parameter_groups(model, weight_decay=0.01, lr_multipliers={"head*": 1.0, "*": 0.1}))
    assert set(groups) == {"decay x0.1", "no_decay x0.1", "decay x1", "no_decay x1"}
    assert {id(p) for p in groups["decay x1"]["params"]} == {id(model.head.weight)}
    assert {id(p) for p in groups["no_decay x1"]["params"]} == {id(model.head.bias)}
    assert groups["decay x0.1"]["lr_multiplier"] == 0.1


def test_unmatched_modules_get_one() -> None:
    groups = by_name(parameter_groups(Net(), weight_decay=0.0, lr_multipliers={"backbone.0": 0.5}))
    assert len(groups["decay x0.5"]["params"]) == 1
    assert groups["decay x1"]["lr_multiplier"] == 1.0


def test_shadowed_or_misspelled_pattern_is_an_error() -> None:
    with pytest.raises(InvalidHyperparameter, match=r"'haed\*' match no trainable"):
        parameter_groups(Net(), weight_decay=0.0, lr_multipliers={"haed*": 2.0})
    with pytest.raises(InvalidHyperparameter, match=r"'head\*' match no trainable.*first match wins"):
        parameter_groups(Net(), weight_decay=0.0, lr_multipliers={"*": 0.1, "head*": 1.0})


@pytest.mark.parametrize("multiplier", [0.0, -1.0])
def test_bad_multiplier(multiplier: float) -> None:
    with pytest.raises(InvalidHyperparameter, match=r"lr_multipliers\['head'\] must be > 0"):
        parameter_groups(Net(), weight_decay=0.0, lr_multipliers={"head": multiplier})


def test_bad_weight_decay_and_frozen_model() -> None:
    with pytest.raises(InvalidHyperparameter, match="weight_decay must be >= 0, got -1"):
        parameter_groups(Net(), weight_decay=-1)
    with pytest.raises(TrainingError, match="no trainable parameters"):
        parameter_groups(nn.Linear(2, 2).requires_grad_(False), weight_decay=0.0)
