"""Seeded, stratified index splits (train/validation, and train/test for datasets without an official one)."""

import torch

from training.errors import UnusableData


def train_val_split(labels: torch.Tensor, *, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(labels))`` into (train, val) int64 index tensors, each sorted ascending.

    Stratified: each class gives ``round(val_fraction * n)`` of its ``n`` samples to val (Python-style
    half-to-even rounding), but at least one when ``val_fraction > 0`` and ``n >= 2``, and never all of
    them, so every class with two or more samples appears on both sides. ``val_fraction == 0`` gives
    an empty val. The same labels and seed always give the same split, on any machine.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UnusableData(f"val_fraction must be in [0, 1), got {val_fraction}; use e.g. 0.1")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise UnusableData(f"labels must be a 1-dim integer tensor, got {labels.dtype} of shape {tuple(labels.shape)}")
    labels = labels.to(device="cpu", dtype=torch.int64)
    if len(labels) and int(labels.min()) < 0:
        raise UnusableData(f"labels must be non-negative class indices, found {int(labels.min())}")
    if val_fraction == 0.0 or len(labels) == 0:
        return torch.arange(len(labels)), torch.empty(0, dtype=torch.int64)

    # Shuffle once, then group by class with a stable sort: within each class the order stays random.
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    grouped_labels, order = torch.sort(labels[shuffled], stable=True)
    indices = shuffled[order]

    counts = torch.bincount(labels)
    n_val = torch.round(counts.double() * val_fraction).long()
    n_val = torch.where(counts >= 2, n_val.clamp(min=1), n_val)
    n_val = torch.minimum(n_val, (counts - 1).clamp(min=0))

    class_start = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(len(labels)) - class_start[grouped_labels]
    is_val = rank_in_class < n_val[grouped_labels]
    return indices[~is_val].sort().values, indices[is_val].sort().values
