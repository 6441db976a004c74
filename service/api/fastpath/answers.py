"""A JSON answer sent as a bare ASGI app, for the inference hot path.

A handler that returns a msgspec struct has Litestar build a ``Response``, resolve its encoders and
headers and wrap it in an ``ASGIResponse``: about 8 % of the CPU time of a small-model classify request
(docs/benchmarks.md). A handler annotated ``-> JsonAnswer`` returns the encoded body instead, and
Litestar sends it as it is; its OpenAPI 200 response comes from the route's ``responses`` (``ok``).
"""

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import Receive, Scope, Send

_encode = msgspec.json.Encoder().encode


class JsonAnswer:
    """``200 application/json`` with ``value`` encoded by msgspec."""

    __slots__ = ("body",)

    def __init__(self, value: Any) -> None:
        self.body = _encode(value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def ok(shape: type, description: str) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` entry describing the 200 body of a handler that returns a JsonAnswer."""
    return {200: ResponseSpec(shape, description=description)}
