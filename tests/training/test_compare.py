import json
from pathlib import Path

import pytest

from training.compare import DEFAULT_LEARNING_RATES, LBFGS_BATCH_SIZE, compare, plan_variants
from training.config import ConfigError, TrainConfig
from training.errors import InvalidHyperparameter, OutputExists, UnknownOptimizer, UnknownPolicy
from training.optim import optimizer_names
from training.settings import TrainingSettings

# digits with lenet5: each variant trains, calibrates and exports in about two seconds
TINY = TrainConfig(
    model="lenet5",
    dataset="digits",
    epochs=1,
    batch_size=64,
    train_subset=256,
    test_subset=200,
    lr_policy="fixed",
    threads=2,
)


def test_two_optimizers_give_one_figure_and_one_table(settings: TrainingSettings, tmp_path: Path) -> None:
    lines: list[str] = []
    result = compare(
        TINY,
        settings=settings,
        output_dir=tmp_path / "cmp",
        optimizers=["sgd", "adam"],
        learning_rates={"adam": 0.003},
        announce=lines.append,
    )

    assert [r.variant for r in result.results] == ["sgd", "adam"]
    assert [r.learning_rate for r in result.results] == [DEFAULT_LEARNING_RATES["sgd"], 0.003]
    assert [r.learning_rate_source for r in result.results] == ["default", "given"]
    for row in result.results:
        assert row.status == "completed"
        assert row.test_accuracy is not None and 0 <= row.test_accuracy <= 1
        assert row.ece is not None and 0 <= row.ece <= 1
        assert row.wall_seconds >= row.train_seconds > 0
        assert (Path(row.run_dir) / "metrics.jsonl").is_file()  # every variant keeps its full run folder
        assert (Path(row.run_dir) / "model.onnx").is_file()
    assert result.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = result.table_markdown.read_text()
    assert "| sgd | sgd | fixed | 0.1 |" in table and "| adam | adam | fixed | 0.003 |" in table
    rows = json.loads(result.table_json.read_text())
    assert [(r["variant"], r["test_accuracy"]) for r in rows] == [(r.variant, r.test_accuracy) for r in result.results]
    assert lines[0].startswith("[1/2] sgd") and lines[1] == "    learning rate 0.1 (default)" and len(lines) == 6
    assert not settings.model_root.exists()  # nothing published


def test_per_variant_defaults_and_overrides() -> None:
    varying, variants = plan_variants(
        TINY, optimizers=optimizer_names(), batch_sizes={"sgd": 32}, variant_options={"momentum": {"momentum": 0.5}}
    )
    assert varying == "optimizer"
    by_name = {v.name: v.config for v in variants}
    assert {name: c.learning_rate for name, c in by_name.items()} == DEFAULT_LEARNING_RATES
    assert by_name["lbfgs"].batch_size == LBFGS_BATCH_SIZE and by_name["sgd"].batch_size == 32
    assert by_name["adam"].batch_size == TINY.batch_size
    assert by_name["momentum"].optimizer_options == {"momentum": 0.5} and by_name["nesterov"].optimizer_options == {}
    assert all(c.weight_decay is None and not c.publish for c in by_name.values())  # run() resolves weight decay
    assert by_name["ftrl"].lr_policy == TINY.lr_policy  # it keeps its weights when the rate changes
    assert by_name["adam"].lr_policy == TINY.lr_policy

    varying, variants = plan_variants(TINY, policies=["fixed", "cosine"], learning_rates={"cosine": 0.5})
    assert varying == "lr_policy"
    assert [(v.config.lr_policy, v.config.optimizer, v.config.learning_rate) for v in variants] == [
        ("fixed", TINY.optimizer, TINY.learning_rate),
        ("cosine", TINY.optimizer, 0.5),
    ]


def test_every_problem_is_found_before_anything_trains(settings: TrainingSettings, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    with pytest.raises(UnknownOptimizer, match=r"adamax \(known: adadelta"):
        compare(TINY, settings=settings, output_dir=out, optimizers=["sgd", "adamax"])
    with pytest.raises(UnknownPolicy, match="warm"):
        compare(TINY, settings=settings, output_dir=out, policies=["fixed", "warm"])
    with pytest.raises(ConfigError, match="exactly one"):
        compare(TINY, settings=settings, output_dir=out, optimizers=["sgd"], policies=["fixed"])
    with pytest.raises(ConfigError, match="adagrad, which is not a variant"):
        compare(TINY, settings=settings, output_dir=out, optimizers=["sgd", "adam"], learning_rates={"adagrad": 1.0})
    with pytest.raises(InvalidHyperparameter, match="variant rprop: rprop does not apply weight_decay"):
        compare(
            TINY.model_copy(update={"weight_decay": 1e-4}),
            settings=settings,
            output_dir=out,
            optimizers=["sgd", "rprop"],
        )
    with pytest.raises(InvalidHyperparameter, match="variant step: step needs step_size"):
        compare(TINY, settings=settings, output_dir=out, policies=["fixed", "step"])  # step needs step_size
    assert not out.exists()
    out.mkdir()
    with pytest.raises(OutputExists, match="already exists"):
        compare(TINY, settings=settings, output_dir=out, optimizers=["sgd", "adam"])


def test_a_diverging_variant_is_recorded_and_the_others_still_run(settings: TrainingSettings, tmp_path: Path) -> None:
    result = compare(
        TINY,
        settings=settings,
        output_dir=tmp_path / "cmp",
        optimizers=["sgd", "momentum"],
        learning_rates={"sgd": 1e9, "momentum": 1e9},
    )
    assert [(r.variant, r.status, r.test_accuracy) for r in result.results] == [
        ("sgd", "diverged", None),
        ("momentum", "diverged", None),
    ]
    assert all(r.message and "lower the learning rate" in r.message for r in result.results)
    assert "| sgd | sgd | fixed | 1e+09 | given | 64 | — | — |" in result.table_markdown.read_text()
    assert result.figure.is_file()


# the BatchNorm cnn on digits learns within a 60-batch range test (as in test_lr_find.py)
AUTO = TINY.model_copy(update={"model": "cnn", "batch_size": 32, "train_subset": 512})


def test_auto_lr_trains_each_optimizer_at_its_range_tests_rate(settings: TrainingSettings, tmp_path: Path) -> None:
    lines: list[str] = []
    result = compare(
        AUTO,
        settings=settings,
        output_dir=tmp_path / "cmp",
        optimizers=["nesterov", "rprop"],
        auto_lr=True,
        range_test_steps=60,
        announce=lines.append,
    )
    nesterov, rprop = result.results
    assert nesterov.learning_rate_source == "range test" and nesterov.status == "completed"
    assert (
        nesterov.learning_rate == nesterov.suggested_rate
        and nesterov.learning_rate != DEFAULT_LEARNING_RATES["nesterov"]
    )
    assert nesterov.min_loss_rate is not None
    assert (result.output_dir / "lr_find-nesterov.png").is_file()
    assert (rprop.learning_rate, rprop.learning_rate_source) == (DEFAULT_LEARNING_RATES["rprop"], "default")
    assert (
        not (result.output_dir / "lr_find-rprop.png").exists() and not (result.output_dir / "lr_find-adam.png").exists()
    )
    assert any("no range test for rprop" in line for line in lines)
    table = result.table_markdown.read_text()
    assert f"| nesterov | nesterov | fixed | {nesterov.learning_rate:g} | range test |" in table
    assert "| rprop | rprop | fixed | 0.001 | default |" in table


def test_auto_lr_records_a_range_test_that_diverges_as_failed_and_goes_on(
    settings: TrainingSettings, tmp_path: Path
) -> None:
    result = compare(
        AUTO.model_copy(update={"model": "lenet5"}),  # a smaller net than the cnn: what fails is the range test
        settings=settings,
        output_dir=tmp_path / "cmp",
        optimizers=["sgd", "rprop"],
        auto_lr=True,
        range_test_steps=30,
        range_test_bounds=(1e4, 1e8),  # every rate far too high: sgd diverges on the first batches
    )
    sgd, rprop = result.results
    assert (sgd.status, sgd.learning_rate, sgd.test_accuracy, sgd.learning_rate_source) == (
        "failed",
        None,
        None,
        "range test",
    )
    assert sgd.message is not None and "diverged before the loss fell" in sgd.message
    assert "--learning-rates sgd=X" in sgd.message
    assert not Path(sgd.run_dir).exists()  # nothing trained
    assert rprop.status == "completed" and rprop.test_accuracy is not None  # the others go on
    assert "| sgd | sgd | fixed | — | range test | 32 | — |" in result.table_markdown.read_text()
    assert result.figure.is_file()


def test_auto_lr_is_for_optimizers(settings: TrainingSettings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--auto-lr picks a rate per optimizer"):
        compare(TINY, settings=settings, output_dir=tmp_path / "c", policies=["fixed", "cosine"], auto_lr=True)
