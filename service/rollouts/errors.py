"""Rollout errors, without HTTP (service/api/errors.py maps them to status codes)."""


class RolloutError(Exception):
    """Base of the rollout errors; the message says what is wrong and what to do."""


class InvalidRollout(RolloutError):
    """The request is well-formed JSON but not a rollout: a percent outside 0-100, an unknown gate key, ..."""


class CandidateRefused(RolloutError):
    """The candidate cannot be tried: it is the version already serving, it fails to load, its labels differ."""


class RolloutConflict(RolloutError):
    """A rollout of this model is already running (one at a time)."""


class RolloutNotFound(RolloutError):
    """No rollout of this model is running."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no rollout of {name} is running (start one with PUT /v1/models/{name}/rollout)")
