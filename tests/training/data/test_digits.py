import torch

from training.data.digits import DIGITS_LABELS, load_digits_split, load_digits_tensors


def test_all_images() -> None:
    images, labels = load_digits_tensors()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert int(images.min()) == 0 and int(images.max()) == 255  # 0..16 scaled to the full byte range
    assert set(torch.unique(labels).tolist()) == set(range(10))
    assert DIGITS_LABELS == ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


def test_split_is_stratified_and_seeded() -> None:
    train_images, train_labels, test_images, test_labels = load_digits_split(seed=0)
    assert len(train_images) + len(test_images) == 1797
    assert len(test_images) == len(test_labels) == 359
    all_counts = torch.bincount(load_digits_tensors()[1])
    assert torch.all((torch.bincount(test_labels) - all_counts * 0.2).abs() <= 1)

    again = load_digits_split(seed=0)
    assert torch.equal(again[2], test_images) and torch.equal(again[1], train_labels)
    assert not torch.equal(load_digits_split(seed=1)[2], test_images)
