"""Shadow and canary rollouts: a candidate version tried on live traffic, judged, then promoted or aborted.

``plan.py`` says what a rollout is (the request and the stored record), ``figures.py`` what it measured,
``gate.py`` when it ends by itself, ``store.py`` where it lives (files in the model repository, shared by
every server process and replica), ``live.py`` what one server process does while it runs
(docs/rollouts.md).
"""

from service.rollouts.errors import CandidateRefused, InvalidRollout, RolloutConflict, RolloutError, RolloutNotFound
from service.rollouts.plan import Gate, Rollout, RolloutRequest, Until

__all__ = [
    "CandidateRefused",
    "Gate",
    "InvalidRollout",
    "Rollout",
    "RolloutConflict",
    "RolloutError",
    "RolloutNotFound",
    "RolloutRequest",
    "Until",
]
