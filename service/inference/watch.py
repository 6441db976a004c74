"""Keeping a server in step with changes other processes make to the repository.

``refresh`` is the API's: the registry's aliases and versions, then the rollouts (service/api/app.py).
Two paths: a poll every ``interval`` seconds (always; works on any shared volume) and, when Redis is
configured, a subscription to the change channel that triggers a refresh at once.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.repository.notify import CHANNEL

log = logging.getLogger(__name__)


async def poll_repository(refresh: Callable[[], Awaitable[None]], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await refresh()


async def listen_for_changes(refresh: Callable[[], Awaitable[None]], redis: Redis) -> None:
    """Refresh on every message; reconnect after a Redis outage (the poll covers the gap)."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        await refresh()
        except RedisError as error:
            log.warning("lost the Redis change channel (%s); retrying in 5 s", error)
            await asyncio.sleep(5)
