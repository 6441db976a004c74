"""Domain errors of the feedback store. They carry no HTTP; service/api/errors.py maps them to status codes."""


class FeedbackError(ValueError):
    """Base class: feedback that cannot be recorded, found or turned into a dataset."""


class PredictionNotFound(FeedbackError):
    """No kept prediction with that id: never kept (confident and not sampled, or keeping is off), expired,
    discarded, or deleted."""

    def __init__(self, model: str, prediction_id: str, *, expired: bool = False) -> None:
        shown = prediction_id if len(prediction_id) <= 64 else prediction_id[:64] + "..."
        why = (
            "it has expired (IMGCLS_KEEP_PREDICTIONS_RETENTION_S)"
            if expired
            else "it was never kept (only low-confidence predictions and a sample of the others are, with "
            "IMGCLS_KEEP_PREDICTIONS on), has expired, or was deleted"
        )
        super().__init__(
            f"no kept prediction {shown!r} of model {model!r}: {why}; send the image itself with the label instead"
        )


class FeedbackNotFound(FeedbackError):
    def __init__(self, feedback_id: str) -> None:
        shown = feedback_id if len(feedback_id) <= 64 else feedback_id[:64] + "..."
        super().__init__(f"no feedback with id {shown!r}")


class AlreadyReviewed(FeedbackError):
    """Someone recorded feedback on this kept prediction first (two reviewers, one image)."""


class UnknownLabel(FeedbackError):
    """A label the model does not have; the message lists the ones it has."""

    def __init__(self, model: str, version: int, label: str, labels: tuple[str, ...]) -> None:
        shown = label if len(label) <= 100 else label[:100] + "..."
        super().__init__(f"{model} v{version} has no label {shown!r}; its labels are: {', '.join(labels)}")
        self.labels = labels


class NothingToExport(FeedbackError):
    """from-feedback found no feedback to make a dataset of."""


class BaseDatasetUnavailable(FeedbackError):
    """include_base_dataset for a model whose training images the service cannot read."""
