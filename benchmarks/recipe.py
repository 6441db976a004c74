"""Train a recipe end to end and print its figures: test accuracy, training time, wall time.

    .venv/bin/python benchmarks/recipe.py                                   # the default recipe
    .venv/bin/python benchmarks/recipe.py --config recipes/fashion-mnist-best-cpu.yaml

"Training time" is the sum of the epochs' training-loop seconds (what the <= 3 minute target is about);
"wall time" adds data loading, validation, calibration, testing and the ONNX export with its parity check.
Nothing is published: the run folder goes to a temporary directory unless --keep is given. The result goes
to benchmarks/results/recipe-<date>.json (--name: e.g. recipe-best-cpu), whose table docs/benchmarks.md shows.
"""

import argparse
import tempfile
import time
from pathlib import Path

import record
import tables

from training.config import build_config, read_config_file
from training.reporting import read_history
from training.settings import TrainingSettings
from training.train import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML/TOML recipe (default: the built-in default recipe)")
    parser.add_argument("--keep", type=Path, help="keep the run folder here")
    record.add_arguments(parser, "recipe")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    config = build_config(read_config_file(args.config) if args.config else {}, {"publish": False})
    scratch = Path(tempfile.mkdtemp(prefix="imgcls-recipe-"))
    run_dir = args.keep or scratch / "run"
    started = time.perf_counter()
    result = run(config, settings=TrainingSettings(model_root=scratch / "models"), output_dir=run_dir, echo=False)
    wall = time.perf_counter() - started
    history = read_history(run_dir)
    figures = {
        "recipe": str(args.config or "default"),
        "model": config.model,
        "epochs": result.epochs_completed,
        "test_accuracy": result.metrics["test_accuracy"],
        "ece": result.metrics["ece"],
        "ece_uncalibrated": result.metrics["ece_uncalibrated"],
        "training_seconds": round(sum(row["seconds"] for row in history), 1),
        "wall_seconds": round(wall, 1),
        "images_per_second": round(sum(row["images_per_second"] for row in history) / len(history), 1),
        "run_dir": str(run_dir),
    }
    print(tables.render_file(record.save(begun, figures, args.results_dir), "recipe"))


if __name__ == "__main__":
    main()
