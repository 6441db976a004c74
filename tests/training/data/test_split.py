import pytest
import torch

from training.data.split import train_val_split
from training.errors import UnusableData

# 50 of class 0, 30 of class 1, 20 of class 2, 2 of class 3, 1 of class 4, interleaved.
LABELS = torch.tensor([0] * 50 + [1] * 30 + [2] * 20 + [3] * 2 + [4])[torch.randperm(103)]


def test_partition_is_complete_disjoint_and_sorted() -> None:
    train, val = train_val_split(LABELS, val_fraction=0.2, seed=3)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(LABELS)))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_stratified_per_class() -> None:
    _, val = train_val_split(LABELS, val_fraction=0.2, seed=0)
    # round(0.2 n) per class; a class of 2 still gives one; a class of 1 stays in train.
    assert torch.bincount(LABELS[val], minlength=5).tolist() == [10, 6, 4, 1, 0]


def test_deterministic_for_a_seed() -> None:
    first = train_val_split(LABELS, val_fraction=0.3, seed=7)
    second = train_val_split(LABELS, val_fraction=0.3, seed=7)
    other = train_val_split(LABELS, val_fraction=0.3, seed=8)
    assert torch.equal(first[1], second[1]) and torch.equal(first[0], second[0])
    assert not torch.equal(first[1], other[1])


def test_zero_fraction_gives_empty_val() -> None:
    train, val = train_val_split(LABELS, val_fraction=0.0, seed=0)
    assert torch.equal(train, torch.arange(len(LABELS))) and val.numel() == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_fraction_outside_range(fraction: float) -> None:
    with pytest.raises(UnusableData, match=r"val_fraction must be in \[0, 1\)"):
        train_val_split(LABELS, val_fraction=fraction, seed=0)


def test_rejects_non_label_tensors() -> None:
    with pytest.raises(UnusableData, match="1-dim integer tensor"):
        train_val_split(torch.zeros(4), val_fraction=0.5, seed=0)
    with pytest.raises(UnusableData, match="non-negative"):
        train_val_split(torch.tensor([0, -1]), val_fraction=0.5, seed=0)
