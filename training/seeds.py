"""``imgcls train --seeds 0,1,2``: the same config once per seed, and the spread of what it reaches.

One group folder (``--output-dir``, default ``<runs_dir>/<name>-<model>-seeds-<UTC time>``) holds a run folder
per seed (``seed-<n>/``, laid out as every run folder) and ``seeds.json``: each run's test accuracy and ECE
(and with ``--ema`` the trained weights' accuracy), their mean and sample standard deviation (n - 1), and
the run published, if any.

Publishing: none of the runs publishes by itself. ``publish_median`` publishes the run whose test accuracy
is the median (for an even count, the lower of the two middle ones): the figure a user should expect from
this recipe, not its luckiest draw.
"""

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.files import write_json_atomic
from training.config import ConfigError, TrainConfig
from training.errors import OutputExists
from training.publish import publish_run
from training.settings import TrainingSettings
from training.train import RunResult, model_name_for, run

SUMMARY_FILE = "seeds.json"
SPREAD_METRICS = ("test_accuracy", "ece", "raw_test_accuracy", "test_accuracy_without_tta")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); at least two distinct non-negative integers, else ``ConfigError`` (one line)."""
    seeds: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part.isdigit():
            raise ConfigError(f"--seeds {text!r}: {part!r} is not a non-negative integer (e.g. --seeds 0,1,2)")
        seeds.append(int(part))
    duplicates = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if duplicates:
        raise ConfigError(f"--seeds {text!r}: seed {', '.join(map(str, duplicates))} given twice; each seed once")
    if len(seeds) < 2:
        raise ConfigError(f"--seeds {text!r}: give at least two seeds for a spread (one run: --seed N)")
    return tuple(seeds)


@dataclass(frozen=True)
class SeedRun:
    seed: int
    run_dir: Path
    metrics: dict[str, float]
    best_epoch: int
    wall_seconds: float


def spread(runs: list[SeedRun]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each of ``SPREAD_METRICS`` that every run has."""
    figures: dict[str, dict[str, float]] = {}
    for key in SPREAD_METRICS:
        values = [r.metrics[key] for r in runs if key in r.metrics]
        if len(values) == len(runs) and len(values) >= 2:
            figures[key] = {"mean": round(statistics.mean(values), 5), "std": round(statistics.stdev(values), 5)}
    return figures


def median_run(runs: list[SeedRun]) -> SeedRun:
    """The run with the median test accuracy (the lower middle one for an even count; first seed on ties)."""
    target = statistics.median_low([r.metrics["test_accuracy"] for r in runs])
    return next(r for r in runs if r.metrics["test_accuracy"] == target)


def default_group_dir(settings: TrainingSettings, config: TrainConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = config.name or model_name_for(config.dataset)
    return settings.runs_dir / f"{name}-{config.model}-seeds-{stamp}"


def run_seeds(
    config: TrainConfig,
    seeds: tuple[int, ...],
    *,
    settings: TrainingSettings,
    output_dir: Path | None,
    publish_median: bool,
    should_stop: Callable[[], bool],
    progress: bool,
    echo: bool,
) -> tuple[dict[str, Any], RunResult | None]:
    """Train ``config`` once per seed (never publishing), then write and return the summary. Stops at the
    first run that is interrupted and returns it as the second value (its folder resumes as any run's)."""
    group = output_dir or default_group_dir(settings, config)
    if group.exists():
        raise OutputExists(f"output folder {group} already exists: choose another --output-dir")
    runs: list[SeedRun] = []
    for seed in seeds:
        if echo:
            print(f"# seed {seed} ({len(runs) + 1}/{len(seeds)})", file=sys.stderr)
        started = time.perf_counter()
        result = run(
            config.model_copy(update={"seed": seed, "publish": False}),
            settings=settings,
            output_dir=group / f"seed-{seed}",
            should_stop=should_stop,
            progress=progress,
            echo=echo,
        )
        if result.status == "interrupted":
            return {}, result
        runs.append(SeedRun(seed, result.run_dir, result.metrics, result.best_epoch, time.perf_counter() - started))
    summary: dict[str, Any] = {
        "config": {k: v for k, v in config.to_dict().items() if k != "seed"} | {"seeds": list(seeds)},
        "runs": [
            {
                "seed": r.seed,
                "run_dir": str(r.run_dir),
                "best_epoch": r.best_epoch,
                "wall_seconds": round(r.wall_seconds, 1),
                **{k: r.metrics[k] for k in SPREAD_METRICS if k in r.metrics},
            }
            for r in runs
        ],
        "spread": spread(runs),
        "std": "sample standard deviation (n - 1)",
        "published": None,
    }
    if publish_median:
        chosen = median_run(runs)
        published = publish_run(chosen.run_dir, repository_root=settings.model_root, redis_url=settings.redis_url)
        summary["published"] = {
            "seed": chosen.seed,
            "name": published.name,
            "version": published.version,
            "path": str(published.path),
        }
    write_json_atomic(group / SUMMARY_FILE, summary)
    summary["summary_file"] = str(group / SUMMARY_FILE)
    return summary, None


def spread_table(summary: dict[str, Any]) -> str:
    """The runs and their spread as a small text table, for the terminal."""
    keys = [k for k in SPREAD_METRICS if k in summary["spread"]]
    lines = ["seed  " + "  ".join(f"{k:>25}" for k in keys) + "  wall s"]
    for row in summary["runs"]:
        cells = "  ".join(f"{row[k]:>25.4f}" for k in keys)
        lines.append(f"{row['seed']:<4}  {cells}  {row['wall_seconds']:>6.0f}")
    spreads = [f"{summary['spread'][k]['mean']:.4f} ± {summary['spread'][k]['std']:.4f}" for k in keys]
    lines.append("mean  " + "  ".join(f"{c:>25}" for c in spreads))
    return "\n".join(lines)
