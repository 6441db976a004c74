"""Transfer learning on photos, timed: docs/models.md's "Figures measured here", as the user runs it.

    .venv/bin/python benchmarks/photos.py [--architectures resnet18,mobilenet_v3_small] [--json out.json]

No ImageNet weights can be downloaded here, so each base is test-made: torchvision's architecture with
random weights and BatchNorm statistics measured on random images (tests/training/torchvision_files.py),
saved under torchvision's file name. The dataset is 120 synthetic photos, 40 per class
(tests/training/synthetic_photos.py: coloured shapes over varied backgrounds, 64x48 to 1600x1200,
JPEG/PNG/WebP, some EXIF-rotated). Then the two documented commands run as subprocesses:

    imgcls models import-torchvision ARCH --weights FILE.pth
    imgcls fine-tune --base ARCH-imagenet --data photos --epochs 3 --freeze-backbone-epochs 1 \\
        --batch-size 16 --learning-rate 0.003

Figures: the wall time of each command, each epoch's seconds from the run's metrics.jsonl (the first one
with the backbone frozen), and the published version's test accuracy. Everything lives under --root.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' photo and weights makers

import record
import tables

from tests.training.synthetic_photos import photo_folder
from tests.training.torchvision_files import torchvision_file

IMGCLS = str(Path(sys.executable).parent / "imgcls")
FINE_TUNE = ["--epochs", "3", "--freeze-backbone-epochs", "1", "--batch-size", "16", "--learning-rate", "0.003"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return round(time.perf_counter() - started, 1), done.stdout


def measure(architecture: str, root: Path, photos: Path) -> dict[str, Any]:
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(root / "models"), "IMGCLS_RUNS_DIR": str(root / "runs")}
    weights = torchvision_file(root / "downloads", architecture)
    import_seconds, _ = timed([IMGCLS, "models", "import-torchvision", architecture, "--weights", str(weights)], env)
    output = root / "runs" / f"photos-{architecture}"
    command = [IMGCLS, "fine-tune", "--base", f"{architecture}-imagenet", "--data", str(photos), *FINE_TUNE]
    fine_tune_seconds, stdout = timed([*command, "--output-dir", str(output)], env)
    summary = json.loads(stdout.strip().splitlines()[-1])
    history = [json.loads(line) for line in (output / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "architecture": architecture,
        "import_seconds": import_seconds,
        "fine_tune_seconds": fine_tune_seconds,
        "epoch_seconds": [row["seconds"] for row in history],  # epoch 1: backbone frozen
        "epoch_images_per_second": [row["images_per_second"] for row in history],
        "val_accuracy": [row["val_accuracy"] for row in history],
        "test_accuracy": summary["metrics"]["test_accuracy"],
        "best_epoch": summary["metrics"]["best_epoch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architectures", default="resnet18,mobilenet_v3_small")
    parser.add_argument("--root", type=Path, default=Path("var/benchmarks/photos"))
    record.add_arguments(parser, "photos")
    args = parser.parse_args()
    begun = record.begin(args.result_name, args)
    photos = args.root / "photos"
    if not photos.is_dir():
        photo_folder(photos, 40, seed=0)
    runs = [measure(name, args.root, photos) for name in args.architectures.split(",")]
    result = {
        "dataset": {"photos": 120, "per_class": 40, "seed": 0},
        "command": ["imgcls", "fine-tune", "--base", "ARCH-imagenet", "--data", "photos", *FINE_TUNE],
        "runs": runs,
    }
    print(tables.render_file(record.save(begun, result, args.results_dir), "photos"))


if __name__ == "__main__":
    main()
