"""Telling running servers that the repository changed (an alias moved, a version was published), and
``promote``: the one way an alias is moved, so that every move is told and written in the model's history.

Servers also poll the repository every ``watch_interval_s``; a Redis message only makes them look at once.
The message body is the model name.
"""

import logging

import redis

from service.repository import history
from service.repository.store import PRODUCTION, ModelRepository

CHANNEL = "imgcls:repository"

log = logging.getLogger(__name__)


def announce_change(redis_url: str | None, name: str) -> None:
    """Publish ``name`` on the channel; a Redis outage is logged, never raised (polling still catches up)."""
    if not redis_url:
        return
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        with client:
            client.publish(CHANNEL, name)
    except redis.RedisError as error:
        log.warning("could not announce the change of %s on Redis (%s); servers will notice by polling", name, error)


def promote(
    repository: ModelRepository,
    name: str,
    version: int,
    *,
    alias: str = PRODUCTION,
    redis_url: str | None,
    by: str | None = None,
    reason: str = "",
) -> None:
    """Point ``alias`` of ``name`` at ``version``, record it in the model's history (``by``: who, default
    this process's user and host; ``reason``: why), then tell running servers (``redis_url`` None: they notice
    by polling). Used by every caller that moves an alias: the CLI, the API, training, fine-tuning jobs and
    rollouts.

    Raises ``VersionNotFound`` and friends for a version that does not exist, ``RepositoryError`` for a bad
    alias name.
    """
    previous = repository.aliases(name).get(alias)
    repository.set_alias(name, alias, version)
    if previous != version:
        event = history.HistoryEvent(
            at=history.now_iso(),
            kind=history.alias_move_kind(alias, version, previous),
            alias=alias,
            version=version,
            previous=previous,
            by=by or history.this_process(),
            reason=reason,
        )
        history.record(repository, name, event)
    announce_change(redis_url, name)
