"""What the feedback store holds, one JSON file per item (``record.json``), and what the API answers."""

from typing import Literal

import msgspec


class Guess(msgspec.Struct, frozen=True):
    """A label with its probability; other fields are ignored, so a client may send the answer's ``top`` as is."""

    label: str
    probability: float  # calibrated, as the classify answer gave it


class KeptPrediction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A prediction whose input was kept (IMGCLS_KEEP_PREDICTIONS), waiting for a person to review it."""

    id: str  # the prediction_id of the classify answer
    model: str
    version: int
    variant: str
    created_at: str  # ISO 8601, UTC
    top: list[Guess]  # the model's top 3 (all labels when it has fewer), highest first
    low_confidence: bool  # kept because top-1 was under the threshold; false: kept as part of the sample
    image_bytes: int  # the kept PNG
    width: int
    height: int


FeedbackKind = Literal["correction", "confirmation", "label"]


class Feedback(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A person's label for an image the model classified (or was sent to classify)."""

    id: str  # fb_<16 hex>
    model: str
    version: int  # the version that made the prediction; for an upload, the version serving then
    label: str  # the right label, one of the model's
    # correction: the model said otherwise; confirmation: the model was right; label: what it said is unknown
    kind: FeedbackKind
    created_at: str  # ISO 8601, UTC
    source: Literal["kept prediction", "upload"]  # the kept input, or an image sent with the feedback
    prediction_id: str | None = None  # the prediction it is about, when known
    predicted: list[Guess] = []  # the model's top 3 for a kept prediction; the label the client saw otherwise
    image_bytes: int = 0
    width: int = 0
    height: int = 0


def encode_record(record: KeptPrediction | Feedback) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"


def kind_of(label: str, predicted: str | None) -> FeedbackKind:
    if predicted is None:
        return "label"
    return "confirmation" if predicted == label else "correction"
