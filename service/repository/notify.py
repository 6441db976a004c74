"""Telling running servers that the repository changed (an alias moved, a version was published).

Servers also poll the repository every ``watch_interval_s``; a Redis message only makes them look at once.
The message body is the model name.
"""

import logging

import redis

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
