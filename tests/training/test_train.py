import json
import re
from pathlib import Path

import pytest
import torch

from service.repository import ModelRepository
from training.config import TrainConfig
from training.errors import CheckpointError, InvalidHyperparameter, OutputExists, UnknownModel, UnknownOptimizer
from training.settings import TrainingSettings
from training.train import Progress, run

# digits with the BatchNorm cnn, 16 steps per epoch. The rate is held near 0.01 x 1.0 for epoch 1 (a warmup
# from 0.01 to the sigmoid's 0.0067 at step 16), then the sigmoid jumps to the full 1.0 in epoch 2, which
# wrecks the network (validation accuracy about 0.89, then about 0.1): a later epoch that validates worse.
WORSE_AFTER_EPOCH_1 = TrainConfig(
    model="cnn",
    dataset="digits",
    epochs=2,
    batch_size=32,
    train_subset=512,
    test_subset=200,
    val_fraction=0.1,
    optimizer="adam",
    learning_rate=1.0,
    lr_policy="sigmoid",
    lr_policy_options={"gamma": 5.0, "step_size": 17, "warmup_start_ratio": 0.01},
    warmup_iters=16,
    threads=2,
)


def test_a_run_trains_calibrates_exports_and_publishes(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    result = run(small_config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)
    assert result.status == "completed"
    assert result.epochs_completed == 2
    assert result.metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "curves.png",
        "confusion_matrix.png",
        "report.json",
        "classes.csv",
        "reliability.png",
        "thresholds.png",
        "model.onnx",
        "weights.pt",
        "result.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    assert result.published is not None
    repo = ModelRepository(settings.model_root)
    manifest = repo.verify("fashion-mnist", result.published.version)
    assert repo.aliases("fashion-mnist") == {"production": 1}  # the first version becomes production
    assert manifest.labels[0] == "T-shirt/top"
    assert manifest.metrics["test_accuracy"] == result.metrics["test_accuracy"]
    assert manifest.temperature > 0
    assert manifest.lineage.config["optimizer_options"]["betas"] == [0.9, 0.999]  # resolved defaults recorded
    assert manifest.lineage.config["augment"] == "none"  # Fashion-MNIST's default: the default recipe unchanged
    assert manifest.input.shape == (-1, 1, 28, 28)
    assert manifest.explain is None and not (tmp_path / "run" / "explain.onnx").exists()  # lenet5 has no CAMs

    # the evaluation report of the test set is published with the version, and says what the manifest says
    report, attached = repo.report("fashion-mnist", result.published.version)
    assert not attached and manifest.report_sha256 is not None  # verify() checked its hash above
    assert (report.dataset, report.images, sum(map(sum, report.confusion_matrix))) == ("fashion-mnist", 300, 300)
    assert report.accuracy == manifest.metrics["test_accuracy"] and report.ece == manifest.metrics["ece"]
    assert {f"accuracy/{row.label}": row.recall for row in report.classes}.items() <= manifest.metrics.items()
    assert report.labels == manifest.labels
    assert report.thresholds[0].coverage == 1.0 and report.thresholds[0].accuracy == report.accuracy


def test_an_interrupted_run_resumes_to_the_same_weights_also_from_a_checkpoint_older_than_ema_and_tta(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    config = small_config.model_copy(update={"epochs": 3, "publish": False})
    straight = run(config, settings=settings, output_dir=tmp_path / "straight", progress=False, echo=False)

    first_checkpoint = tmp_path / "resumed" / "checkpoints" / "last.pt"
    interrupted = run(
        config,
        settings=settings,
        output_dir=tmp_path / "resumed",
        should_stop=first_checkpoint.exists,
        progress=False,
        echo=False,
    )
    assert (interrupted.status, interrupted.epochs_completed) == ("interrupted", 1)
    older = torch.load(first_checkpoint, weights_only=True)  # as written before --ema and --tta existed
    for added in ("ema", "tta"):
        del older["config"][added]
    torch.save(older, first_checkpoint)
    resumed = run(config, settings=settings, output_dir=tmp_path / "resumed", resume=True, progress=False, echo=False)
    assert resumed.status == "completed"

    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "weights.pt", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_an_existing_output_folder_is_refused(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExists, match="already exists: choose another --output-dir"):
        run(small_config, settings=settings, output_dir=tmp_path / "taken", progress=False, echo=False)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"model": "resnet9"}, UnknownModel, r"resnet9 \(known: cnn, cnn_wide, convnext_tiny, "),
        ({"optimizer": "adamax"}, UnknownOptimizer, r"adamax \(known: adadelta"),
        ({"lr_policy": "poly", "lr_policy_options": {"power": -1}}, InvalidHyperparameter, "power"),
    ],
)
def test_bad_names_fail_before_any_folder_is_made(
    settings: TrainingSettings,
    small_config: TrainConfig,
    tmp_path: Path,
    change: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        run(
            small_config.model_copy(update=change),
            settings=settings,
            output_dir=tmp_path / "run",
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_resuming_with_another_architecture_is_refused(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    config = small_config.model_copy(update={"epochs": 1, "publish": False})
    run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)
    with pytest.raises(CheckpointError, match="another config"):
        run(
            config.model_copy(update={"model": "cnn"}),
            settings=settings,
            output_dir=tmp_path / "run",
            resume=True,
            progress=False,
            echo=False,
        )


def test_an_image_folder_trains_and_records_its_preprocessing(settings: TrainingSettings, tmp_path: Path) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label, axis in (("horizontal", 0), ("vertical", 1)):
        (tmp_path / "shapes" / label).mkdir(parents=True)
        for index in range(12):
            rows, columns = (torch.arange(n) // 4 % 2 * 200 for n in (40, 48))
            pixels = (rows[:, None].expand(40, 48) if axis == 0 else columns[None, :].expand(40, 48)).to(torch.uint8)
            noise = torch.randint(0, 40, (40, 48), generator=generator, dtype=torch.uint8)
            rgb = (pixels + noise).unsqueeze(-1).expand(40, 48, 3).contiguous()
            Image.fromarray(rgb.numpy(), "RGB").save(tmp_path / "shapes" / label / f"{index}.png")
    (tmp_path / "shapes" / "vertical" / "broken.png").write_bytes(b"not a png")
    config = TrainConfig(
        model="lenet5",
        dataset=f"folder:{tmp_path / 'shapes'}",
        image_size=28,
        epochs=3,
        batch_size=8,
        optimizer="adam",
        learning_rate=0.003,
        lr_policy="fixed",
        val_fraction=0.2,
    )
    result = run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)
    assert result.published is not None and result.published.name == "shapes"
    manifest = ModelRepository(settings.model_root).verify("shapes", 1)
    assert manifest.labels == ("horizontal", "vertical")
    assert manifest.preprocessing.color_mode == "RGB"
    assert len(manifest.preprocessing.mean) == 3
    assert (manifest.preprocessing.resize, manifest.preprocessing.input_size) == (28, (28, 28))
    assert manifest.preprocessing.background == (255, 255, 255)  # photos with transparency: on white, as trained
    assert manifest.lineage.config["augment"] == "none"  # 28 px: below the photo augmentation's default size
    assert manifest.lineage.dataset == f"folder:{tmp_path / 'shapes'}"
    skipped = json.loads((tmp_path / "run" / "result.json").read_text())["skipped_files"]
    assert [entry["path"] for entry in skipped] == ["vertical/broken.png"]


def test_lbfgs_trains_through_the_same_engine(
    settings: TrainingSettings, small_config: TrainConfig, tmp_path: Path
) -> None:
    """L-BFGS re-evaluates the loss through a closure, on large batches, in the ordinary run."""
    config = small_config.model_copy(
        update={
            "optimizer": "lbfgs",
            "learning_rate": 1.0,
            "batch_size": 512,
            "epochs": 2,
            "publish": False,
            "optimizer_options": {"max_iter": 10},
        },
    )
    result = run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=False)
    assert result.status == "completed"
    assert result.metrics["test_accuracy"] > 0.3  # four L-BFGS steps of up to 10 evaluations each
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [2, 4]
    assert history[1]["train_loss"] < history[0]["train_loss"]


def history_of(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_exported_epoch_1(run_dir: Path) -> None:
    """weights.pt, model.onnx and the metrics are epoch 1's (checkpoints/best.pt), not the last epoch's."""
    history = history_of(run_dir)
    assert history[0]["val_accuracy"] > 0.7 > history[1]["val_accuracy"]  # the premise: epoch 2 is worse
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert (best["epoch"], best["best_epoch"], last["epoch"]) == (1, 1, 2)
    exported = torch.load(run_dir / "weights.pt", weights_only=True)
    for key, value in exported.items():
        torch.testing.assert_close(value, best["model"][key], rtol=0, atol=0, msg=key)
    assert not torch.equal(exported["head.weight"], last["model"]["head.weight"])
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["metrics"]["best_epoch"], result["metrics"]["epochs"]) == (1, 2)
    assert result["metrics"]["val_accuracy"] == history[0]["val_accuracy"]  # measured again on the kept weights
    assert result["metrics"]["test_accuracy"] > 0.7


def test_the_best_epoch_is_published_not_the_last_and_a_resume_keeps_it(
    settings: TrainingSettings, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    stopped = run(
        WORSE_AFTER_EPOCH_1,
        settings=settings,
        output_dir=run_dir,
        should_stop=(run_dir / "checkpoints" / "last.pt").exists,
        progress=False,
        echo=False,
    )
    assert (stopped.status, stopped.epochs_completed) == ("interrupted", 1)
    result = run(WORSE_AFTER_EPOCH_1, settings=settings, output_dir=run_dir, resume=True, progress=False, echo=False)
    assert (result.status, result.epochs_completed, result.best_epoch, result.early_stop) == ("completed", 2, 1, None)
    assert_exported_epoch_1(run_dir)
    assert result.published is not None
    manifest = ModelRepository(settings.model_root).verify("digits", result.published.version)
    assert (manifest.metrics["best_epoch"], manifest.metrics["epochs"]) == (1, 2)
    assert manifest.metrics["test_accuracy"] == result.metrics["test_accuracy"]


def test_early_stopping_ends_the_run_and_says_when_and_why(
    settings: TrainingSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = WORSE_AFTER_EPOCH_1.model_copy(update={"epochs": 4, "early_stopping_patience": 1, "publish": False})
    result = run(config, settings=settings, output_dir=tmp_path / "run", progress=False, echo=True)
    assert (result.status, result.epochs_completed, result.best_epoch) == ("completed", 2, 1)
    assert [row["epoch"] for row in history_of(tmp_path / "run")] == [1, 2]  # every epoch it ran
    stop = {"epoch": 2, "best_epoch": 1, "patience": 1}
    assert json.loads((tmp_path / "run" / "result.json").read_text())["early_stop"] == stop
    assert_exported_epoch_1(tmp_path / "run")
    err = capsys.readouterr().err
    assert "# stopped early after epoch 2: no better validation accuracy in the 1 epoch(s) after epoch 1" in err
    assert re.search(r"# keeping epoch 1 \(best validation accuracy 0\.\d{4}\), not the last epoch 2", err)

    # The process died after the decision, before the run finished: a resume finishes without training on.
    (tmp_path / "run" / "result.json").unlink()
    again = run(config, settings=settings, output_dir=tmp_path / "run", resume=True, progress=False, echo=False)
    assert (again.epochs_completed, again.early_stop, again.best_epoch) == (2, result.early_stop, 1)
    assert len(history_of(tmp_path / "run")) == 2


def test_patience_counts_epochs_since_the_best_and_zero_is_off() -> None:
    rows = [{"epoch": n, "val_loss": 1.0} for n in (1, 2, 3)]
    assert Progress(rows, 0.9, best_epoch=1).patience_ran_out(2)
    assert not Progress(rows, 0.9, best_epoch=2).patience_ran_out(2)
    assert not Progress(rows, 0.9, best_epoch=1).patience_ran_out(0)
    assert not Progress(rows, 0.9, best_epoch=1).patience_ran_out(None)
