"""Checking ``IMGCLS_REDIS_URL`` before a command relies on it (``imgcls worker``, ``imgcls up``)."""

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.cli.errors import UserError
from service.jobs.store import redact

PING_TIMEOUT_S = 3


def check_redis(url: str) -> None:
    """Stop with one line naming IMGCLS_REDIS_URL unless it is a Redis URL and Redis answers a PING: Celery
    would end in a traceback on a malformed URL, and retry for ever on one where nothing answers."""
    setting = f"IMGCLS_REDIS_URL={redact(url)}"
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=PING_TIMEOUT_S, socket_connect_timeout=PING_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as error:
        raise UserError(f"{setting}: not a Redis URL ({error})") from error
    try:
        with client:
            client.ping()
    except redis.RedisError as error:
        raise UserError(f"{setting}: Redis does not answer a PING ({error})") from error
