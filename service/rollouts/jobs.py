"""The rollout a fine-tuning job asks for with ``"auto_promote": "shadow"``: instead of becoming production
at once, the new version is shadowed on live traffic and the gate below decides.

Written by the worker (no server at hand): it records the rollout in the repository and announces it; the
API processes load the candidate when they hear (a candidate that fails to load there aborts the rollout,
recorded in the model's history).
"""

from service.repository import ModelRepository, history, notify
from service.rollouts.errors import RolloutConflict
from service.rollouts.plan import Gate, Rollout, RolloutRequest, Until, check_request, new_rollout
from service.rollouts.store import RolloutStore

JOB_UNTIL = Until(requests=1000, minutes=60)  # whichever comes first
JOB_GATE = Gate(min_agreement=0.95, max_p99_ratio=1.5)


def shadow_new_version(
    repository: ModelRepository, name: str, version: int, *, job_id: str, redis_url: str | None
) -> Rollout:
    """Start (or find, when a redelivered job asks again) the shadow rollout of ``version``. Raises
    ``RolloutConflict`` when another version's rollout is running."""
    store = RolloutStore(repository)
    running = store.current(name)
    if running is not None and running.version == version:
        return running
    request = RolloutRequest(
        version=version, mode="shadow", percent=100.0, until=JOB_UNTIL, gate=JOB_GATE, reason=f"job {job_id}"
    )
    check_request(request)
    serving = repository.resolve(name)
    if serving == version:
        raise RolloutConflict(f"{name} v{version} already serves")
    plan = new_rollout(name, serving, request, by=f"fine-tuning job {job_id}")
    store.start(plan)
    event = history.HistoryEvent(
        at=history.now_iso(),
        kind="rollout started",
        alias="production",
        version=version,
        previous=serving,
        by=plan.started_by,
        reason=f"auto_promote shadow of job {job_id}",
        rollout=plan.id,
    )
    history.record(repository, name, event)
    notify.announce_change(redis_url, name)
    return plan
