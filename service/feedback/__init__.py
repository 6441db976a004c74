"""Feedback on predictions: kept inputs waiting for review, people's corrections and confirmations, and
datasets made of them for fine-tuning (docs/feedback.md).

``ids.py`` makes prediction ids (on the hot path: a counter); ``keep.py`` keeps inputs off the request's
path; ``store.py`` holds kept predictions and feedback on disk, one folder per item; ``export.py`` turns
feedback into a stored dataset. Nothing here imports torch or knows HTTP.
"""

from service.feedback.errors import (
    AlreadyReviewed,
    BaseDatasetUnavailable,
    FeedbackError,
    FeedbackNotFound,
    NothingToExport,
    PredictionNotFound,
    UnknownLabel,
)
from service.feedback.ids import PredictionIds
from service.feedback.keep import Keeper, KeepPolicy
from service.feedback.records import Feedback, Guess, KeptPrediction
from service.feedback.store import FeedbackStore

__all__ = [
    "AlreadyReviewed",
    "BaseDatasetUnavailable",
    "Feedback",
    "FeedbackError",
    "FeedbackNotFound",
    "FeedbackStore",
    "Guess",
    "KeepPolicy",
    "Keeper",
    "KeptPrediction",
    "NothingToExport",
    "PredictionIds",
    "PredictionNotFound",
    "UnknownLabel",
]
