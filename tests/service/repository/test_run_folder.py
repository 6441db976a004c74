"""The run folder's names, and result.json read as a FinishedRun (or refused as unfinished)."""

import json
from pathlib import Path

import msgspec
import pytest

from service.repository.errors import UnfinishedRun
from service.repository.run_folder import EarlyStop, ExportCheck, FinishedRun, RunFolder, TrialFolder
from tests.service.repository.manifests import sample_manifest


def test_a_trial_folder_names_every_file_of_a_job() -> None:
    trial = TrialFolder.of(Path(), "ft_0123", 2)
    assert str(trial.run.last_checkpoint) == "jobs/ft_0123/trial-2/run/checkpoints/last.pt"
    assert (trial.job.name, trial.published.name, trial.run.result.name) == (
        "job.json",
        "published.json",
        "result.json",
    )


def test_an_unfinished_run_is_refused_with_how_to_resume(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.checkpoints.mkdir(parents=True)
    with pytest.raises(UnfinishedRun, match=r"holds no finished run .* imgcls train --resume"):
        folder.read_result()
    folder.model.write_bytes(b"onnx")
    folder.result.write_text("{}")
    with pytest.raises(UnfinishedRun, match="is not a run's result"):
        folder.read_result()


def test_a_result_reads_back_as_written_and_makes_the_manifest(tmp_path: Path) -> None:
    manifest = sample_manifest()
    result = FinishedRun(
        name="fashion-mnist",
        architecture="cnn",
        labels=manifest.labels,
        preprocessing=manifest.preprocessing,
        temperature=1.5,
        metrics=manifest.metrics,
        dataset="fashion-mnist",
        skipped_files=(),
        config={"model": "cnn"},
        export=ExportCheck(opset=18, max_abs_diff=1e-6),
        created_at=manifest.created_at,
        code_version="test",
    )
    folder = RunFolder(tmp_path / "run")
    folder.write_result(result)
    folder.model.write_bytes(b"onnx")
    assert json.loads(folder.result.read_text())["export"] == {"opset": 18, "max_abs_diff": 1e-6}
    assert folder.read_result() == result
    made = result.manifest(name="fashion-mnist", run_dir=folder.path)
    expected = msgspec.structs.replace(
        manifest, lineage=msgspec.structs.replace(manifest.lineage, run_dir=str(folder.path))
    )
    assert made == expected


def test_an_early_stop_is_kept_and_an_older_result_reads_without_one(tmp_path: Path) -> None:
    manifest = sample_manifest()
    stopped = FinishedRun(
        name="fashion-mnist",
        architecture="cnn",
        labels=manifest.labels,
        preprocessing=manifest.preprocessing,
        temperature=1.5,
        metrics={**manifest.metrics, "epochs": 7.0, "best_epoch": 4.0},
        dataset="fashion-mnist",
        skipped_files=(),
        config={"model": "cnn"},
        export=ExportCheck(opset=18, max_abs_diff=1e-6),
        created_at=manifest.created_at,
        code_version="test",
        early_stop=EarlyStop(epoch=7, best_epoch=4, patience=3),
    )
    folder = RunFolder(tmp_path / "run")
    folder.write_result(stopped)
    folder.model.write_bytes(b"onnx")
    assert json.loads(folder.result.read_text())["early_stop"] == {"epoch": 7, "best_epoch": 4, "patience": 3}
    assert folder.read_result() == stopped
    assert stopped.early_stop is not None
    assert stopped.early_stop.reason.startswith("stopped early after epoch 7: no better validation accuracy in the 3")

    older = json.loads(folder.result.read_text())
    del older["early_stop"]  # written before early stopping was recorded
    folder.result.write_text(json.dumps(older))
    assert folder.read_result().early_stop is None
