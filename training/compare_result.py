"""One row of ``imgcls compare``: what a variant trained with and what came of it."""

from dataclasses import dataclass
from typing import Literal

RateSource = Literal["given", "default", "range test"]
Status = Literal["completed", "diverged", "failed"]


@dataclass(frozen=True)
class VariantResult:
    variant: str
    optimizer: str
    lr_policy: str
    learning_rate: float | None  # None: failed before training (its range test gave no rate)
    learning_rate_source: RateSource  # given (--learning-rates), default (DEFAULT_LEARNING_RATES), range test
    batch_size: int
    status: Status  # diverged: NaN while training; failed: no rate to train at (--auto-lr)
    test_accuracy: float | None
    ece: float | None  # after temperature scaling, on the test set
    best_val_accuracy: float | None
    train_seconds: float  # the epochs' training time, from metrics.jsonl
    wall_seconds: float  # the whole variant: range test (when run), data, training, calibration, export
    run_dir: str
    message: str | None = None  # why it diverged or failed
    suggested_rate: float | None = None  # --auto-lr: the range test's suggestion (steepest descent)
    min_loss_rate: float | None = None  # --auto-lr: the rate at the range test's lowest smoothed loss
