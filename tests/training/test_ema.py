"""``--ema``: the moving average's equation, its BatchNorm buffers, and a run that validates, tests and
exports the averaged weights (and resumes to the same average)."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.ema import WeightAverage
from training.settings import TrainingSettings
from training.train import run


def test_the_average_follows_its_equation_with_the_warm_up_decay() -> None:
    source = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        source.weight.fill_(0.0)
    average = WeightAverage(source, decay=0.5)
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 4.0, 8.0]):
        with torch.no_grad():
            source.weight.fill_(value)
        decay = min(0.5, (1 + step) / (10 + step))  # 0.1, 0.18.., 0.25, 0.3..: below 0.5 for these steps
        expected = decay * expected + (1 - decay) * value
        average.update()
        assert float(average.model.weight) == pytest.approx(expected, rel=1e-6)
    assert average.updates == 4
    assert float(source.weight.detach()) == 8.0  # the trained weights are untouched


def test_batchnorm_statistics_are_averaged_and_the_step_count_copied() -> None:
    source = nn.BatchNorm1d(2)
    average = WeightAverage(source, decay=0.9)
    average.updates = 1000  # past the warm-up: the decay is 0.9
    with torch.no_grad():
        source.running_mean.fill_(1.0)
        source.num_batches_tracked.fill_(7)
    average.update()
    torch.testing.assert_close(average.model.running_mean, torch.full((2,), 0.1))
    assert int(average.model.num_batches_tracked) == 7
    assert not any(p.requires_grad for p in average.model.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage(nn.Linear(1, 1), decay)


def test_a_run_validates_tests_and_exports_the_average(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    config = small_config.model_copy(update={"ema": 0.9, "publish": False, "threads": 1})
    result = run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_accuracy", "ema_val_accuracy", "ema_val_loss"} <= row.keys() for row in rows)
    assert rows[-1]["ema_val_accuracy"] != rows[-1]["val_accuracy"] or rows[-1]["ema_val_loss"] != rows[-1]["val_loss"]
    assert {"test_accuracy", "raw_test_accuracy"} <= result.metrics.keys()

    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best.ema is not None and best.ema["updates"] == best.epoch * 16  # 1024 images / 64: 16 steps per epoch
    exported = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    for key, value in exported.items():
        torch.testing.assert_close(value, best.ema["model"][key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(exported[key], best.model[key]) for key in exported)  # not the trained weights
    assert json.loads((tmp_path / "run" / "result.json").read_text())["config"]["ema"] == 0.9


def test_a_resumed_run_ends_with_the_same_average(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    config = small_config.model_copy(update={"ema": 0.95, "publish": False, "threads": 1})
    run(config, settings=settings, output_dir=tmp_path / "straight", progress=False, echo=False)
    first_checkpoint = tmp_path / "resumed" / "checkpoints" / "last.pt"
    interrupted = run(
        config, settings=settings, output_dir=tmp_path / "resumed", should_stop=first_checkpoint.exists, echo=False
    )
    assert interrupted.status == "interrupted"
    run(config, settings=settings, output_dir=tmp_path / "resumed", resume=True, progress=False, echo=False)
    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "weights.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
