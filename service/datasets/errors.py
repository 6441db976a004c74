"""Domain errors of uploaded datasets. They carry no HTTP; the API maps them to status codes.

Messages say what was wrong and what to do about it, so a client can fix the zip and send it again.
"""


class DatasetError(ValueError):
    """Base class: an uploaded dataset cannot be stored, or a stored one cannot be found."""


class DatasetRejected(DatasetError):
    """A safe archive whose content cannot train a classifier (one class, too few images, none at all).

    ``problems`` lists every problem found, not only the first, so one round trip shows them all.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the dataset cannot train a classifier: " + "; ".join(problems))
        self.problems = tuple(problems)


class UnsafeArchive(DatasetError):
    """Not a zip, or a zip that could write outside its folder or hide its content (absolute paths,
    ``..``, links, encrypted entries)."""


class ArchiveTooLarge(DatasetError):
    """Over a cap: upload bytes, entry count, total uncompressed size or compression ratio (zip bombs)."""


class DatasetNotFound(DatasetError):
    def __init__(self, dataset_id: str) -> None:
        shown = dataset_id if len(dataset_id) <= 64 else dataset_id[:64] + "..."
        super().__init__(f"no dataset with id {shown!r}")
        self.dataset_id = dataset_id


class DatasetInUse(DatasetError):
    """A dataset an unfinished fine-tuning job still reads cannot be deleted."""
