import json
from pathlib import Path

import pytest
import torch

from training.batch_sweep import (
    DEFAULT_BATCH_SIZES,
    BatchSweep,
    ResidentPeak,
    format_table,
    peak_memory_probe,
    plot_batch_sweep,
    sweep_batch_sizes,
)
from training.config import TrainConfig
from training.errors import InvalidHyperparameter, UnknownOptimizer
from training.settings import TrainingSettings

TINY = TrainConfig(model="lenet5", dataset="digits", train_subset=256, threads=2, optimizer="adam")


@pytest.fixture(scope="module")
def sweep() -> BatchSweep:
    settings = TrainingSettings(fashion_mnist_dir=Path("/nonexistent"))  # digits needs no files
    return sweep_batch_sizes(TINY, settings=settings, batch_sizes=(16, 48), warmup_steps=1, steps=2)


def test_every_size_gets_a_row_with_throughput_and_memory(sweep: BatchSweep) -> None:
    assert [row.batch_size for row in sweep.rows] == [16, 48]
    for row in sweep.rows:
        assert row.status == "ok"
        assert row.images_per_second is not None and row.images_per_second > 0
        assert row.step_ms is not None and row.step_ms > 0
        assert row.images_per_second == pytest.approx(row.batch_size * 1000 / row.step_ms)
        assert row.peak_memory_mib is not None and row.peak_memory_mib >= 0
        assert json.loads(json.dumps(row.to_dict()))["batch_size"] == row.batch_size
    assert (sweep.model, sweep.optimizer, sweep.steps, sweep.warmup_steps) == ("lenet5", "adam", 2, 1)
    assert sweep.device.startswith("cpu")
    assert "resident" in sweep.memory_measure  # what the CPU number means travels with it


def test_the_table_and_the_plot(sweep: BatchSweep, tmp_path: Path) -> None:
    lines = format_table(sweep).splitlines()
    assert lines[0].split() == ["batch", "images/s", "ms/step", "peak", "MiB"]
    assert [line.split()[0] for line in lines[1:]] == ["16", "48"]
    plot_batch_sweep(sweep, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cpu_peak_sees_a_large_allocation() -> None:
    probe = peak_memory_probe(torch.device("cpu"))
    if not isinstance(probe, ResidentPeak):
        pytest.skip("needs a writable /proc/self/clear_refs (Linux) to reset the peak")
    probe.reset()
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
    assert float(block.sum()) > 0
    assert probe.peak_mib() >= 60
    del block


def test_defaults_and_bad_values() -> None:
    assert 48 in DEFAULT_BATCH_SIZES and 512 in DEFAULT_BATCH_SIZES  # powers of two and sizes between
    settings = TrainingSettings(fashion_mnist_dir=Path("/nonexistent"))
    with pytest.raises(InvalidHyperparameter, match="batch sizes"):
        sweep_batch_sizes(TINY, settings=settings, batch_sizes=(16, 0))
    with pytest.raises(UnknownOptimizer, match="adamax"):
        sweep_batch_sizes(TINY.model_copy(update={"optimizer": "adamax"}), settings=settings, batch_sizes=(16,))
