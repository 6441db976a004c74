"""Training images/second of every registered model at one batch size (default 128), on this device.

    .venv/bin/python benchmarks/train_throughput.py [--batch-size 128] [--steps 10]

Each figure is forward + backward + optimizer step (the default optimizer) on Fashion-MNIST-sized input
(1x28x28), timed after warm-up by the same code as ``imgcls batch-sweep``; data loading is not timed.
"""

import argparse

import record

from training.batch_sweep import sweep_batch_sizes
from training.config import TrainConfig
from training.models import model_names
from training.settings import TrainingSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default=",".join(model_names()), help="comma-separated model names")
    record.add_arguments(parser, "train-throughput")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    rows = []
    print(f"| model | images/s at batch {args.batch_size} | step ms | device |")
    print("|---|---:|---:|---|")
    for model in args.models.split(","):
        sweep = sweep_batch_sizes(
            TrainConfig(model=model, train_subset=4096),
            settings=TrainingSettings(),
            batch_sizes=[args.batch_size],
            warmup_steps=2,
            steps=args.steps,
        )
        row = sweep.rows[0]
        print(f"| {model} | {row.images_per_second:,.0f} | {row.step_ms:.1f} | {sweep.device} |", flush=True)
        rows.append({"model": model, "images_per_second": row.images_per_second, "step_ms": row.step_ms})
    figures = {"batch_size": args.batch_size, "steps": args.steps, "device": sweep.device, "models": rows}
    record.save(begun, figures, args.results_dir)


if __name__ == "__main__":
    main()
