"""A version in memory: its manifest, its onnxruntime session, its batcher, and who is using it."""

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.inference.batcher import Batcher, BatchOutcome
from service.inference.errors import VariantNotFound
from service.inference.runtime import Runtime
from service.repository import Manifest
from service.repository.store import ONNX_FILE

log = logging.getLogger(__name__)

FP32 = "fp32"


def model_file(folder: Path, manifest: Manifest, variant: str) -> Path:
    """The ONNX file of ``variant`` ("fp32" or a manifest variant) in a version folder."""
    if variant == FP32:
        return folder / ONNX_FILE
    if variant not in manifest.variants:
        known = ", ".join([FP32, *manifest.variants])
        raise VariantNotFound(f"{manifest.name} v{manifest.version} has no variant {variant!r} (known: {known})")
    return folder / manifest.variants[variant].file


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature), row by row: (N, classes) -> (N, classes)."""
    scaled = logits / np.float32(temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


@dataclass(eq=False)
class LoadedVersion:
    """Requests hold a lease (``in_flight``) while they use it; once retired, it is closed at zero."""

    name: str
    version: int
    variant: str
    manifest: Manifest
    runtime: Runtime
    batcher: Batcher
    pinned: bool = False  # loaded by an admin: stays until unloaded, whatever the aliases say
    in_flight: int = 0
    retired: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.name, self.version, self.variant)

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.variant})"

    async def classify(self, images: np.ndarray) -> BatchOutcome:
        """(n, C, H, W) preprocessed images -> calibrated probabilities (n, classes) and timings."""
        return await self.batcher.submit(images)

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.retired and self.in_flight == 0:
            asyncio.get_running_loop().create_task(self.close())

    def retire(self) -> None:
        """No new requests will find it; it closes when the last one in flight finishes."""
        self.retired = True
        if self.in_flight == 0:
            asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        await self.batcher.close()
        log.info("released %s", self)
