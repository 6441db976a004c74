"""Training-side settings from the environment (``IMGCLS_`` prefix); CLI options override them.

The fine-tuning worker reads the jobs' settings (``JobSettings``) from here too.
"""

from pathlib import Path

from service.settings import JobSettings


class TrainingSettings(JobSettings):
    # IMGCLS_FASHION_MNIST_DIR: the four IDX files (Debian package dataset-fashion-mnist puts them here)
    fashion_mnist_dir: Path = Path("/usr/share/datasets/fashion-mnist")
    # IMGCLS_RUNS_DIR: one folder per training run (checkpoints, metrics, plots, TensorBoard events)
    runs_dir: Path = Path("var/runs")
