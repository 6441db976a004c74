"""Training throughput and peak memory per batch size on the current device.

After one untimed step (so one-time set-up counts for no size), for each batch size, in the order given:
a fresh model and optimizer (as ``imgcls train`` builds them, seeded alike), ``warmup_steps`` untimed
training steps, then ``steps`` timed ones. A training step is forward, backward and optimizer step
(``training.engine.update_parameters``; for lbfgs one step evaluates the loss several times). Every step
reuses one batch sampled from the training images and already normalized on the device, so data
preparation is not timed. The rate stays at the config's learning rate; no policy.

``images_per_second = batch_size × steps / seconds`` (CUDA synchronized before and after the timed steps).

Peak memory (``peak_memory_mib``), what it means depends on the device (``BatchSweep.memory_measure``):

* **CUDA**: ``torch.cuda.max_memory_allocated`` during the size's model building and steps, minus what was
  allocated before: model, gradients, optimizer state, the batch and activations. The caching allocator's
  free blocks and the CUDA context are not counted.
* **CPU, Linux**: growth of the process's peak resident set size (VmHWM in ``/proc/self/status``, reset per
  size by writing 5 to ``/proc/self/clear_refs``) above the resident size just before the size's model was
  built, after a garbage collection and ``malloc_trim``. It counts everything the process touched, including
  allocator caches; memory an earlier size freed but the allocator kept is reused without being counted, so
  read it as an estimate, good for comparing sizes, not an exact requirement.
* **CPU, elsewhere** (no writable clear_refs): growth of ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the
  process's lifetime peak, which only shows memory above every earlier peak; it reads 0 when an earlier size
  peaked higher, so list sizes in increasing order.

A size that runs out of CUDA memory gets a row with status "out of memory" and no numbers; the sweep goes on.
"""

import contextlib
import ctypes
import gc
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch
from torch import nn

from training.assemble import build_model_and_optimizer, uses_channels_last
from training.batches import eval_batches
from training.config import TrainConfig
from training.data import DatasetBundle
from training.engine import update_parameters
from training.errors import InvalidHyperparameter
from training.lr_find import set_up_for_updates
from training.optim import needs_closure
from training.settings import TrainingSettings

# Powers of two and sizes between them (1.5x): whether the powers of two run faster shows directly.
DEFAULT_BATCH_SIZES = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
WARMUP_STEPS = 3
STEPS = 10
MIB = 1024 * 1024


@dataclass(frozen=True)
class BatchMeasurement:
    batch_size: int
    status: Literal["ok", "out of memory"]
    images_per_second: float | None
    step_ms: float | None  # mean wall time of one timed step
    peak_memory_mib: float | None  # see the module docstring

    def to_dict(self) -> dict[str, object]:
        return {
            "batch_size": self.batch_size,
            "status": self.status,
            "images_per_second": None if self.images_per_second is None else round(self.images_per_second, 1),
            "step_ms": None if self.step_ms is None else round(self.step_ms, 3),
            "peak_memory_mib": None if self.peak_memory_mib is None else round(self.peak_memory_mib, 1),
        }


@dataclass(frozen=True)
class BatchSweep:
    device: str  # "cpu (2 threads)", "cuda:0 (NVIDIA H100 80GB HBM3)"
    memory_measure: str  # how peak_memory_mib was measured, in a few words
    model: str
    optimizer: str
    warmup_steps: int
    steps: int
    rows: tuple[BatchMeasurement, ...]


# ---------------------------------------------------------------------------------------------------------
# Peak memory probes
# ---------------------------------------------------------------------------------------------------------


class PeakMemory(Protocol):
    description: str

    def reset(self) -> None:
        """Start a measurement: forget earlier peaks and remember the current level."""

    def peak_mib(self) -> float:
        """The peak since ``reset``, above the level at ``reset``, in MiB."""


class CudaPeak:
    description = "torch.cuda.max_memory_allocated above the allocation before the size"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0

    def reset(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)

    def peak_mib(self) -> float:
        torch.cuda.synchronize(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - self.base) / MIB


class ResidentPeak:
    """VmHWM, reset through /proc/self/clear_refs (Linux)."""

    description = "growth of peak resident set size (VmHWM, reset per size) above the resident size before"
    STATUS = Path("/proc/self/status")
    CLEAR_REFS = Path("/proc/self/clear_refs")

    def __init__(self) -> None:
        self.base = 0

    @classmethod
    def available(cls) -> bool:
        try:
            cls.CLEAR_REFS.write_text("5")
        except OSError:
            return False
        return cls._read("VmHWM:") is not None

    def reset(self) -> None:
        _release_free_memory()
        self.CLEAR_REFS.write_text("5")  # resets VmHWM to the current VmRSS
        self.base = self._read("VmRSS:") or 0

    def peak_mib(self) -> float:
        return max((self._read("VmHWM:") or 0) - self.base, 0) / MIB

    @classmethod
    def _read(cls, field: str) -> int | None:
        """A ``kB`` field of /proc/self/status, in bytes."""
        for line in cls.STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        return None


class LifetimePeak:
    """ru_maxrss: cannot be reset, so only growth above every earlier peak shows."""

    description = (
        "growth of the process's lifetime peak resident set size (ru_maxrss); 0 if an earlier size peaked higher"
    )

    def __init__(self) -> None:
        self.base = 0

    def reset(self) -> None:
        _release_free_memory()
        self.base = self._maxrss()

    def peak_mib(self) -> float:
        return max(self._maxrss() - self.base, 0) / MIB

    @staticmethod
    def _maxrss() -> int:
        value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return value if sys.platform == "darwin" else value * 1024  # bytes on macOS, kB on Linux


def peak_memory_probe(device: torch.device) -> PeakMemory:
    if device.type == "cuda":
        return CudaPeak(device)
    return ResidentPeak() if ResidentPeak.available() else LifetimePeak()


def _release_free_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: hand freed heap pages back, so the next peak is fresh


# ---------------------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------------------


def sweep_batch_sizes(
    config: TrainConfig,
    *,
    settings: TrainingSettings,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    warmup_steps: int = WARMUP_STEPS,
    steps: int = STEPS,
) -> BatchSweep:
    """Measure every batch size in ``batch_sizes`` for the model and optimizer of ``config``.

    ``config.batch_size``, the policy and the epochs do not apply. Raises InvalidHyperparameter for an
    empty list, a size below 1, or fewer than 1 timed step.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise InvalidHyperparameter(f"batch sizes must be a non-empty list of integers >= 1, got {list(batch_sizes)}")
    if steps < 1 or warmup_steps < 0:
        raise InvalidHyperparameter(f"need steps >= 1 and warmup steps >= 0, got {steps} and {warmup_steps}")
    config, data, (images, labels), device = set_up_for_updates(config, settings=settings)
    probe = peak_memory_probe(device)
    generator = torch.Generator().manual_seed(config.seed)

    # One untimed step first, so one-time set-up (kernel libraries, thread pools, CUDA context and
    # allocator) is charged to no size's time or memory.
    first = torch.randint(len(labels), (min(batch_sizes),), generator=torch.Generator().manual_seed(config.seed))
    _measure(config, data, (images[first], labels[first]), device, probe, 0, 1)

    rows: list[BatchMeasurement] = []
    for batch_size in batch_sizes:
        probe.reset()
        chosen = torch.randint(len(labels), (batch_size,), generator=generator)  # with replacement
        try:
            rows.append(_measure(config, data, (images[chosen], labels[chosen]), device, probe, warmup_steps, steps))
        except torch.OutOfMemoryError:
            rows.append(BatchMeasurement(batch_size, "out of memory", None, None, None))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # this size's model and activations are gone; start the next one clean

    return BatchSweep(
        device=_describe(device),
        memory_measure=probe.description,
        model=config.model,
        optimizer=config.optimizer,
        warmup_steps=warmup_steps,
        steps=steps,
        rows=tuple(rows),
    )


def _measure(
    config: TrainConfig,
    data: DatasetBundle,
    batch: tuple[torch.Tensor, torch.Tensor],  # uint8 images (B, C, H, W), labels (B,)
    device: torch.device,
    probe: PeakMemory,
    warmup_steps: int,
    steps: int,
) -> BatchMeasurement:
    """One batch size: a fresh model and optimizer, warm-up steps, timed steps, then the memory peak."""
    cuda = device.type == "cuda"
    model, optimizer = build_model_and_optimizer(config, data, device)
    inputs, targets = next(
        eval_batches(
            *batch,
            batch_size=len(batch[1]),
            preprocessing=data.preprocessing,
            device=device,
            channels_last=uses_channels_last(config),
        )
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    use_closure = needs_closure(optimizer)

    def train_step() -> None:
        update_parameters(
            model,
            inputs,
            targets,
            optimizer,
            loss_fn=loss_fn,
            device=device,
            amp=cuda,
            grad_clip=config.grad_clip,
            use_closure=use_closure,
        )

    for _ in range(warmup_steps):
        train_step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step()
    _synchronize(device)
    seconds = time.perf_counter() - started
    batch_size = len(targets)
    return BatchMeasurement(
        batch_size=batch_size,
        status="ok",
        images_per_second=batch_size * steps / seconds,
        step_ms=1000.0 * seconds / steps,
        peak_memory_mib=probe.peak_mib(),
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# ---------------------------------------------------------------------------------------------------------
# Table and plot
# ---------------------------------------------------------------------------------------------------------


def format_table(sweep: BatchSweep) -> str:
    """A fixed-width text table, one row per batch size."""
    lines = [f"{'batch':>6}  {'images/s':>10}  {'ms/step':>9}  {'peak MiB':>9}"]
    for row in sweep.rows:
        if row.status != "ok":
            lines.append(f"{row.batch_size:>6}  {row.status}")
            continue
        lines.append(
            f"{row.batch_size:>6}  {row.images_per_second:>10,.0f}  {row.step_ms:>9.2f}  {row.peak_memory_mib:>9.1f}"
        )
    return "\n".join(lines)


def plot_batch_sweep(sweep: BatchSweep, path: Path) -> None:
    """Two panels against batch size (log2 axis): images/second, and peak memory. Powers of two filled."""
    measured = [row for row in sweep.rows if row.status == "ok"]
    figure, (speed_ax, memory_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, key, label, color in (
        (speed_ax, "images_per_second", "images / second (training steps)", "tab:blue"),
        (memory_ax, "peak_memory_mib", "peak memory (MiB)", "tab:orange"),
    ):
        sizes = [row.batch_size for row in measured]
        values = [getattr(row, key) for row in measured]
        axis.plot(sizes, values, "-", color=color, alpha=0.6)
        powers = [(s, v) for s, v in zip(sizes, values, strict=True) if s & (s - 1) == 0]
        others = [(s, v) for s, v in zip(sizes, values, strict=True) if s & (s - 1) != 0]
        if powers:
            axis.plot(*zip(*powers, strict=True), "o", color=color, label="power of two")
        if others:
            axis.plot(*zip(*others, strict=True), "o", color=color, markerfacecolor="white", label="other")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.minorticks_off()
        axis.set_xlabel("batch size")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    for row in sweep.rows:
        if row.status != "ok":
            speed_ax.axvline(row.batch_size, color="tab:red", linestyle=":", label=f"{row.batch_size}: {row.status}")
    memory_ax.set_title(sweep.memory_measure, fontsize=8)
    figure.suptitle(
        f"{sweep.model} · {sweep.optimizer} · {sweep.device} · {sweep.warmup_steps} warm-up + {sweep.steps} timed steps"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
