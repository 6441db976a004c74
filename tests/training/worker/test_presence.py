"""A worker's presence in Redis: there while it runs (renewed past its time to live), gone at once when it
stops cleanly (a killed worker's expires: tests/service/api/test_health.py, tests/service/cli/test_up_command.py)."""

import time

from service.jobs.store import JobStore, worker_name
from training.worker.presence import Presence


def test_a_worker_is_present_from_start_to_stop(redis_url: str) -> None:
    store = JobStore(redis_url)
    presence = Presence(store, interval_s=0.1, ttl_s=0.4)
    assert presence.name == worker_name() and presence.name not in store.live_workers()
    presence.start()
    time.sleep(1.0)  # more than twice its time to live: renewed meanwhile
    assert presence.name in store.live_workers()
    presence.stop()
    assert presence.name not in store.live_workers()
    store.close()
