"""Fine-tuning a published lenet5 (seven Fashion-MNIST classes) onto folders of PNG files, as a job would."""

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from service.cli import cli
from service.imaging import preprocess
from service.jobs.hyperparameters import LR_POLICIES, OPTIMIZERS, FineTuneConfig, build_finetune_config
from service.repository import ModelRepository
from service.repository.run_folder import TrialFolder
from tests.conftest import EXPLAINABLE_MODEL, FASHION_MNIST
from training.config import TrainConfig
from training.data import DatasetBundle, load_dataset
from training.errors import InvalidHyperparameter
from training.finetune import (
    FineTuneJob,
    FineTuneResult,
    IncompatibleBase,
    JobRunning,
    fine_tune,
    job_lock,
    prepare,
    publish_trial,
    train_trial,
)
from training.models import HEADS, MODELS, create_model, model_names
from training.optim import optimizer_names, policy_names
from training.settings import TrainingSettings
from training.train import run

# Fashion-MNIST class -> folder name; the base learns the first seven, the new dataset holds the last three.
OLD_CLASSES = {0: "top", 1: "trouser", 2: "pullover", 3: "dress", 4: "coat", 5: "sandal", 6: "shirt"}
NEW_CLASSES = {7: "sneaker", 8: "bag", 9: "ankle-boot"}
DATASET_ID = "ds_0123456789abcdef"
SHA = "ab" * 32
FAST = FineTuneConfig(epochs=2, batch_size=16, learning_rate=0.01)


@pytest.fixture(scope="module")
def fashion() -> DatasetBundle:
    return load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)


@pytest.fixture(scope="module")
def base_root(fashion: DatasetBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``base`` v1: lenet5 trained for a few seconds on 200 images of each old class.

    Its labels are the folder names in ImageFolder (sorted) order, so a folder of the same classes has the
    same labels."""
    root = tmp_path_factory.mktemp("base")
    labels = tuple(sorted(OLD_CLASSES.values()))
    remap = torch.full((10,), -1, dtype=torch.int64)
    for fashion_class, name in OLD_CLASSES.items():
        remap[fashion_class] = labels.index(name)

    def pick(images: torch.Tensor, targets: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.cat([(targets == c).nonzero().flatten()[:per_class] for c in OLD_CLASSES])
        return images[chosen], remap[targets[chosen]]

    train_images, train_labels = pick(fashion.train_images, fashion.train_labels, 200)
    test_images, test_labels = pick(fashion.test_images, fashion.test_labels, 30)
    data = DatasetBundle(
        name="fashion-mnist-7",
        labels=labels,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        preprocessing=fashion.preprocessing,
        flip_ok=True,
    )
    config = TrainConfig(
        model="lenet5",
        name="base",
        epochs=2,
        batch_size=64,
        optimizer="adam",
        learning_rate=0.01,
        lr_policy="fixed",
        threads=2,
    )
    settings = TrainingSettings(model_root=root / "models", runs_dir=root / "runs")
    result = run(config, settings=settings, output_dir=root / "runs" / "base", data=data, progress=False, echo=False)
    assert result.published is not None and result.published.version == 1
    return root / "models"


def image_folder(fashion: DatasetBundle, folder: Path, classes: dict[int, str], per_class: int) -> Path:
    for fashion_class, name in classes.items():
        (folder / name).mkdir(parents=True)
        for index in (fashion.train_labels == fashion_class).nonzero().flatten()[-per_class:].tolist():
            Image.fromarray(fashion.train_images[index, 0].numpy(), "L").save(folder / name / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def three_classes(fashion: DatasetBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 PNG files of each class the base never saw."""
    return image_folder(fashion, tmp_path_factory.mktemp("new") / "images", NEW_CLASSES, 60)


@pytest.fixture(scope="module")
def seven_classes(fashion: DatasetBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 more PNG files of each of the base's own classes."""
    return image_folder(fashion, tmp_path_factory.mktemp("same") / "images", OLD_CLASSES, 20)


@pytest.fixture
def settings(base_root: Path, tmp_path: Path) -> TrainingSettings:
    """Each test gets its own copy of the repository with the base in it."""
    shutil.copytree(base_root, tmp_path / "models")
    return TrainingSettings(model_root=tmp_path / "models", runs_dir=tmp_path / "runs", fashion_mnist_dir=FASHION_MNIST)


def job_for(dataset: Path, *, job_id: str = "job-1", config: FineTuneConfig = FAST, **given: Any) -> FineTuneJob:
    return FineTuneJob(
        job_id=job_id,
        base="base",
        base_version=None,
        dataset_dir=dataset,
        dataset_id=DATASET_ID,
        dataset_sha256=SHA,
        config=config,
        **given,
    )


def tune(
    settings: TrainingSettings,
    dataset: Path,
    output_dir: Path,
    *,
    job_id: str = "job-1",
    config: FineTuneConfig = FAST,
    publish_name: str | None = None,
    **options: Any,
) -> FineTuneResult:
    job = job_for(dataset, job_id=job_id, config=config, publish_name=publish_name)
    return fine_tune(job, TrialFolder(output_dir), settings, **options)


def weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path / "weights.pt", weights_only=True)
    return state


def test_fine_tuning_publishes_a_new_model_with_a_new_head_and_its_lineage(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = []
    result = tune(settings, three_classes, tmp_path / "job", on_epoch=rows.append)

    assert (result.status, result.epochs_completed) == ("completed", 2)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert result.published is not None
    assert (result.published.name, result.published.version) == (f"base-{DATASET_ID}", 1)
    repository = ModelRepository(settings.model_root)
    manifest = repository.verify(result.published.name, 1)
    assert manifest.labels == ("ankle-boot", "bag", "sneaker")
    assert manifest.output.shape == (-1, 3)
    lineage = manifest.lineage
    assert (lineage.base_model, lineage.base_version) == ("base", 1)
    assert (lineage.dataset, lineage.dataset_sha256, lineage.job_id) == (f"dataset:{DATASET_ID}", SHA, "job-1")
    assert lineage.fine_tune == result.config.to_dict()
    assert lineage.fine_tune is not None and lineage.fine_tune["weight_decay"] == 5e-4  # resolved and recorded
    assert lineage.fine_tune["optimizer_options"]["betas"] == [0.9, 0.999]
    report, _ = repository.report(result.published.name, 1)  # its evaluation report, published with it
    assert report.labels == manifest.labels and report.dataset == f"dataset:{DATASET_ID}"
    assert report.accuracy == manifest.metrics["test_accuracy"] and manifest.report_sha256 is not None
    assert lineage.config["model"] == "lenet5"
    assert lineage.config["lr_multipliers"] == {"classifier.3": 1.0, "*": 0.3}  # head at the full rate
    assert (lineage.config["label_smoothing"], lineage.config["early_stopping_patience"]) == (0.1, 3)  # the recipe
    # The base's input, kept: Fashion-MNIST's mean/std and 28x28 grayscale, plus a resize for larger uploads
    # and a background for photos with transparency.
    base = repository.manifest("base", 1)
    assert manifest.preprocessing == msgspec.structs.replace(base.preprocessing, resize=28, background=(255, 255, 255))
    # A new name: its first version is production; the base model is untouched.
    assert result.promoted and repository.aliases(result.published.name) == {"production": 1}
    assert repository.versions("base") == [1] and repository.aliases("base") == {"production": 1}

    tuned, original = weights(result.published.path), weights(repository.path("base", 1))
    assert tuned["classifier.3.weight"].shape == (3, 84) and original["classifier.3.weight"].shape == (7, 84)
    assert not torch.equal(tuned["features.0.weight"], original["features.0.weight"])  # trained in epoch 2

    session = ort.InferenceSession(str(result.published.path / "model.onnx"), providers=["CPUExecutionProvider"])
    files = sorted(three_classes.glob("*/*.png"))
    batch = np.stack([preprocess(Image.open(path), manifest.preprocessing) for path in files])
    predicted = session.run(None, {"input": batch})[0].argmax(axis=1)
    truth = np.array([manifest.labels.index(path.parent.name) for path in files])
    assert (predicted == truth).mean() > 0.6  # three classes: chance is 1/3


def test_a_fine_tuned_cnn_is_published_with_its_explain_graph(
    explainable_repository: Path, three_classes: Path, tmp_path: Path
) -> None:
    """The job's last step publishes explain.onnx too, for the new head (3 classes where the base had 10)."""
    settings = TrainingSettings(model_root=tmp_path / "models", runs_dir=tmp_path / "runs")
    shutil.copytree(explainable_repository, settings.model_root)
    job = FineTuneJob(
        job_id="job-cnn",
        base=EXPLAINABLE_MODEL,
        base_version=None,
        dataset_dir=three_classes,
        dataset_id=DATASET_ID,
        dataset_sha256=SHA,
        config=FAST,
    )
    result = fine_tune(job, TrialFolder(tmp_path / "job"), settings)
    assert result.published is not None
    manifest = ModelRepository(settings.model_root).verify(result.published.name, result.published.version)
    assert manifest.explain is not None and manifest.explain.map_size == (3, 3)  # explain.onnx's sha256 checked
    session = ort.InferenceSession(str(result.published.path / "explain.onnx"), providers=["CPUExecutionProvider"])
    logits, maps = session.run(None, {"input": np.zeros((2, 1, 28, 28), dtype=np.float32)})
    assert logits.shape == (2, 3) and maps.shape == (2, 3, 3, 3)


def test_a_job_publishes_its_best_epoch_and_stops_early(
    settings: TrainingSettings, seven_classes: Path, tmp_path: Path
) -> None:
    """The base's own classes: in epoch 1 the backbone is frozen and the head's rate is about 0 (a sigmoid
    that rises in epoch 2), so epoch 1 validates as the base does; epoch 2 runs everything at Adam's 1.0,
    which wrecks the network. Epoch 1 is published and patience 1 stops the run after epoch 2."""
    config = build_finetune_config(
        {
            "epochs": 4,
            "batch_size": 16,
            "optimizer": "adam",
            "learning_rate": 1.0,
            "lr_policy": "sigmoid",
            "lr_policy_options": {"gamma": 5.0, "step_size": 8},  # about 0 until step 6, 1 from step 9
            "backbone_lr_multiplier": 1.0,
            "val_fraction": 0.2,
            "early_stopping_patience": 1,
        }
    )
    result = tune(settings, seven_classes, tmp_path / "job", config=config)
    assert (result.status, result.epochs_completed, result.metrics["best_epoch"]) == ("completed", 2, 1)
    run_dir = tmp_path / "job" / "run"
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert history[0]["val_accuracy"] > history[1]["val_accuracy"]
    finished = json.loads((run_dir / "result.json").read_text())
    assert finished["early_stop"] == {"epoch": 2, "best_epoch": 1, "patience": 1}

    assert result.published is not None
    tuned, original = weights(result.published.path), weights(ModelRepository(settings.model_root).path("base", 1))
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    backbone = [key for key in original if not key.startswith("classifier.3.")]
    for key in backbone:  # epoch 1's weights: the backbone as the base has it
        torch.testing.assert_close(tuned[key], original[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(last["features.0.weight"], original["features.0.weight"])  # epoch 2 changed it


def test_a_backbone_frozen_for_every_epoch_keeps_the_base_weights(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    config = FAST.model_copy(update={"freeze_backbone_epochs": 2})
    result = tune(settings, three_classes, tmp_path / "job", config=config)
    assert result.published is not None
    tuned = weights(result.published.path)
    original = weights(ModelRepository(settings.model_root).path("base", 1))
    backbone = [key for key in original if not key.startswith("classifier.3.")]
    assert backbone and tuned.keys() == original.keys()
    for key in backbone:
        torch.testing.assert_close(tuned[key], original[key], rtol=0, atol=0, msg=key)


def test_the_same_labels_keep_the_name_and_auto_promote_passes_the_gate_only(
    settings: TrainingSettings, seven_classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced: list[str] = []
    monkeypatch.setattr("service.repository.notify.announce_change", lambda url, name: announced.append(name))
    repository = ModelRepository(settings.model_root)

    failing = tune(settings, seven_classes, tmp_path / "a", job_id="a", auto_promote=True, min_accuracy=1.0)
    assert failing.published is not None and failing.published[:2] == ("base", 2)  # a new version of the base
    assert failing.metrics["test_accuracy"] < 1.0
    assert not failing.promoted and repository.aliases("base") == {"production": 1}

    passing = tune(settings, seven_classes, tmp_path / "b", job_id="b", auto_promote=True, min_accuracy=0.2)
    assert passing.published is not None and passing.published[:2] == ("base", 3)
    assert passing.promoted and repository.aliases("base") == {"production": 3}
    assert repository.manifest("base", 3).labels == repository.manifest("base", 1).labels
    assert announced == ["base", "base"]  # servers hear of both versions at once


def test_a_job_publishes_once_however_often_it_runs(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    first = tune(settings, three_classes, tmp_path / "job")
    again = tune(settings, three_classes, tmp_path / "job")
    assert again.published == first.published and again.metrics == first.metrics and again.promoted
    # The process died after publishing, before recording it: the repository's lineage says which version.
    (tmp_path / "job" / "published.json").unlink()
    after_crash = tune(settings, three_classes, tmp_path / "job")
    assert after_crash.published == first.published
    repository = ModelRepository(settings.model_root)
    assert repository.versions(f"base-{DATASET_ID}") == [1]
    assert len((tmp_path / "job" / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # trained once
    assert json.loads((tmp_path / "job" / "published.json").read_text())["version"] == 1


def test_a_stopped_job_resumes_from_its_checkpoint_and_publishes_once(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "job" / "run" / "checkpoints" / "last.pt"
    stopped = tune(settings, three_classes, tmp_path / "job", should_stop=checkpoint.exists)
    assert (stopped.status, stopped.epochs_completed, stopped.published) == ("stopped", 1, None)
    repository = ModelRepository(settings.model_root)
    assert repository.models() == ["base"]

    rows: list[dict[str, Any]] = []
    resumed = tune(settings, three_classes, tmp_path / "job", on_epoch=rows.append)
    assert (resumed.status, resumed.epochs_completed) == ("completed", 2)
    assert [row["epoch"] for row in rows] == [2]  # only the epoch this call trained
    assert resumed.published is not None and repository.versions(resumed.published.name) == [1]


def test_a_job_cancelled_after_training_publishes_nothing_until_it_runs_again(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    finished = tmp_path / "job" / "run" / "result.json"
    cancelled = tune(settings, three_classes, tmp_path / "job", should_stop=finished.exists)
    assert (cancelled.status, cancelled.published) == ("stopped", None)
    assert ModelRepository(settings.model_root).models() == ["base"]
    published = tune(settings, three_classes, tmp_path / "job")
    assert published.published is not None and published.status == "completed"


def test_publishing_a_trained_trial_reads_its_job_record_and_result_only(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    """The worker's last step: neither the dataset is decoded again nor the base's files hashed again."""
    dataset = shutil.copytree(three_classes, tmp_path / "images")
    folder = TrialFolder(tmp_path / "job")
    repository = ModelRepository(settings.model_root)
    with job_lock(folder, "job-1"):
        trial = prepare(job_for(dataset), folder, repository)
        trained = train_trial(trial, repository, settings, should_stop=lambda: False, on_epoch=None, echo=False)
    assert trained.status == "completed" and trained.metrics["epochs"] == 2
    shutil.rmtree(dataset)
    (repository.path("base", 1) / "weights.pt").write_bytes(b"not the weights the manifest hashed")

    with job_lock(folder, "job-1"):
        published = publish_trial(
            folder, repository, auto_promote=False, min_accuracy=None, redis_url=None, should_stop=lambda: False
        )
        again = publish_trial(
            folder, repository, auto_promote=False, min_accuracy=None, redis_url=None, should_stop=lambda: False
        )
    assert published is not None and published == again  # published once
    assert (published.version.name, published.version.version, published.promoted) == (f"base-{DATASET_ID}", 1, True)
    assert published.metrics == trained.metrics
    assert repository.manifest(f"base-{DATASET_ID}", 1).lineage.job_id == "job-1"


def test_the_services_names_are_the_training_registries_names() -> None:
    assert list(OPTIMIZERS) == optimizer_names() and list(LR_POLICIES) == policy_names()


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"optimizer": "adam", "optimizer_options": {"beta1": 0.9}}, InvalidHyperparameter, "unknown option 'beta1'"),
        ({"optimizer": "ftrl", "optimizer_options": {"beta": -1}}, InvalidHyperparameter, "beta must be >= 0"),
    ],
)
def test_hyperparameters_that_cannot_run_fail_before_anything_trains(
    settings: TrainingSettings,
    three_classes: Path,
    tmp_path: Path,
    values: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        tune(settings, three_classes, tmp_path / "job", config=build_finetune_config(values))
    assert not (tmp_path / "job" / "job.json").exists() and not (tmp_path / "job" / "run").exists()
    assert ModelRepository(settings.model_root).models() == ["base"]


def test_a_name_that_holds_other_labels_is_refused(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    with pytest.raises(IncompatibleBase, match=r"base v1 classifies coat, dress.*publish under another name"):
        tune(settings, three_classes, tmp_path / "job", publish_name="base")


def test_a_job_folder_serves_one_job(settings: TrainingSettings, three_classes: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "job" / "run" / "checkpoints" / "last.pt"
    tune(settings, three_classes, tmp_path / "job", should_stop=checkpoint.exists)
    with pytest.raises(Exception, match="give each job its own output folder"):
        tune(settings, three_classes, tmp_path / "job", job_id="job-2")


def test_a_job_runs_in_one_process_at_a_time(settings: TrainingSettings, three_classes: Path, tmp_path: Path) -> None:
    with (
        job_lock(TrialFolder(tmp_path / "job"), "job-1"),
        pytest.raises(JobRunning, match="job job-1 is running in another"),
    ):
        tune(settings, three_classes, tmp_path / "job")  # a redelivery while the first delivery still runs


@pytest.mark.parametrize("name", model_names())
def test_every_model_names_its_classifier_head(name: str) -> None:
    assert HEADS.keys() == MODELS.keys()
    head = create_model(name, in_channels=1, num_classes=5).get_submodule(HEADS[name])
    assert isinstance(head, nn.Linear) and head.out_features == 5


def test_the_command_line_runs_a_job_and_refuses_bad_values(
    settings: TrainingSettings, three_classes: Path, tmp_path: Path
) -> None:
    arguments = [
        "fine-tune",
        "--base",
        "base:1",
        "--data",
        str(three_classes),
        "--model-root",
        str(settings.model_root),
        "--output-dir",
        str(tmp_path / "job"),
        "--quiet",
    ]
    result = CliRunner().invoke(
        cli,
        [
            *arguments,
            *("--epochs", "1", "--batch-size", "16", "--lr-policy-option", "min_lr_ratio=0.1"),
            *("--label-smoothing", "0.2", "--early-stopping-patience", "0"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["published"] == {"name": "base-images", "version": 1}  # derived from the folder's name
    assert summary["hyperparameters"]["lr_policy_options"]["min_lr_ratio"] == 0.1
    assert summary["metrics"]["best_epoch"] == 1 and "early_stop" not in summary
    manifest = ModelRepository(settings.model_root).manifest("base-images", 1)
    assert (manifest.lineage.config["label_smoothing"], manifest.lineage.config["early_stopping_patience"]) == (0.2, 0)
    assert manifest.lineage.dataset == f"folder:{three_classes.resolve()}" and manifest.lineage.dataset_sha256 is None

    bad = CliRunner().invoke(cli, [*arguments, "--epochs", "0"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: InvalidHyperparameters: invalid fine-tuning")
    bad = CliRunner().invoke(cli, [*arguments, "--label-smoothing", "1"])
    assert bad.exit_code == 2 and "label_smoothing: Input should be less than 1" in bad.stderr
