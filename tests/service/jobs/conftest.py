from collections.abc import Iterator
from pathlib import Path

import pytest

from service.jobs.hyperparameters import FineTuneConfig
from service.jobs.record import Job, Trial, now
from service.jobs.store import JobStore, new_job_id
from tests.redis_server import redis_server


def make_job(trials: int = 1, **fields: object) -> Job:
    """A job as the API stores it, before it is queued."""
    created = now()
    config = FineTuneConfig(epochs=4).to_dict()
    values: dict[str, object] = {
        "id": new_job_id(),
        "status": "queued",
        "created_at": created,
        "updated_at": created,
        "base_model": "fashion-mnist",
        "base_version": 1,
        "dataset": "ds_0123456789abcdef",
        "dataset_sha256": "ab" * 32,
        "auto_promote": False,
        "min_accuracy": None,
        "suffix": None,
        "metadata": {},
        "hyperparameters": config,
        "trials": [Trial(index=i, hyperparameters=config) for i in range(trials)],
    }
    return Job(**{**values, **fields})  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """A store on a Redis of its own: recovery scans every job, so tests must not see each other's."""
    with redis_server(tmp_path) as server:
        store = JobStore(server.url)
        yield store
        store.close()
