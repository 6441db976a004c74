"""API keys with scopes, and a rate limit per key.

A client sends ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``). Settings hold only the sha256 of
each key: keys are random 32-byte tokens (``imgcls api-key new``), so a plain hash cannot be reversed.
Every configured hash is compared in constant time (``hmac.compare_digest``), all of them, every time.
"""

import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Literal

from litestar import Request
from litestar.connection import ASGIConnection
from redis.asyncio import Redis

from service.api.errors import Forbidden, RateLimited, Unauthorized
from service.settings import ApiKey, check_keys

if TYPE_CHECKING:  # state.py holds the Authenticator: a runtime import would be a cycle
    from service.api.state import AppState

Scope = Literal["classify", "admin", "train"]  # train is never implied by admin: datasets and jobs need it named
ANONYMOUS = ApiKey(name="anonymous", sha256="0" * 64, scopes=frozenset({"classify", "admin", "train"}))


def new_key() -> str:
    return "imgcls_" + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RateLimiter:
    """A fixed one-minute window per key: in Redis (shared by every replica) when configured, else in memory."""

    def __init__(self, per_minute: int, redis: Redis | None) -> None:
        self.per_minute = per_minute
        self.redis = redis
        self._local: dict[str, tuple[int, int]] = {}  # key name -> (window, count)

    async def check(self, name: str) -> None:
        if not self.per_minute:
            return
        window = int(time.time() // 60)
        if self.redis is not None:
            counter = f"imgcls:ratelimit:{name}:{window}"
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, 120)
                count, _ = await pipe.execute()
        else:
            previous_window, previous = self._local.get(name, (window, 0))
            count = (previous if previous_window == window else 0) + 1
            self._local[name] = (window, count)
        if count > self.per_minute:
            raise RateLimited(
                f"key {name!r} is over its limit of {self.per_minute} requests per minute; retry next minute",
                retry_after_s=60 - int(time.time()) % 60,
            )


class Authenticator:
    def __init__(self, *, enabled: bool, keys: tuple[ApiKey, ...], limiter: RateLimiter) -> None:
        check_keys(auth_enabled=enabled, api_keys=keys)
        self.enabled = enabled
        self.keys = keys
        self.limiter = limiter

    def identify(self, presented: str | None) -> ApiKey:
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            raise Unauthorized("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
        digest = key_hash(presented).encode()
        match = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.sha256.encode()):
                match = key
        if match is None:
            raise Unauthorized("the API key is not valid (check for a typo or an expired key)")
        return match

    async def authorize(self, connection: ASGIConnection, scope: Scope) -> ApiKey:
        """The caller's key if it has ``scope`` (and is within its rate limit); raise otherwise."""
        header = connection.headers.get("authorization", "")
        presented = header[7:].strip() if header[:7].lower() == "bearer " else connection.headers.get("x-api-key")
        key = self.identify(presented)
        if scope not in key.scopes:
            raise Forbidden(f"key {key.name!r} lacks the {scope!r} scope this endpoint needs")
        if self.enabled:
            await self.limiter.check(key.name)
        return key


async def authorized(request: Request, scope: Scope) -> "AppState":
    """The app's state once the request's key has ``scope``: the first line of every keyed handler.

    A call rather than a route guard: Litestar copies a guarded handler per request. The two inference
    handlers (/v1 classify, /v2 infer) call ``state.auth.authorize`` themselves: one coroutine less per image.
    """
    state: AppState = request.app.state.imgcls
    await state.auth.authorize(request, scope)
    return state
