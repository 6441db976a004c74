"""Ids of predictions and feedback, and the patterns every id is held to before a path is built from it.

A prediction id is made for every image /v1 classifies, on the hot path, so it costs one counter step and
one string format: a prefix drawn once per server process (64 random bits: processes and restarts never
share one) and a counter. It is unique, not secret: reading a kept prediction needs the ``train`` scope.
"""

import itertools
import re
import secrets

PREDICTION_ID = re.compile(r"pr_[0-9a-f]{24,32}")  # whole string: fullmatch, never match
FEEDBACK_ID = re.compile(r"fb_[0-9a-f]{16}")


class PredictionIds:
    """``pr_<16 hex, this process><8+ hex counter>``; safe from several threads (one ``next`` per id)."""

    def __init__(self) -> None:
        self._prefix = f"pr_{secrets.token_hex(8)}"
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


def new_feedback_id() -> str:
    return f"fb_{secrets.token_hex(8)}"
