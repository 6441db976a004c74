"""Admission control for inference routes: at most ``max_concurrent_requests`` per server process.

For a small model the bottleneck is the event loop itself (HTTP, decoding), not onnxruntime, so the
batcher's queue alone cannot keep latency bounded: requests would wait on the loop instead. This
middleware refuses the excess before any of that work, with a 503 and Retry-After that cost a fraction of
a classification, so the requests it admits keep their latency under any offered load.

A refusal is held for ``refusal_delay_s`` before it is sent (without holding a place): a client that
retries at once, ignoring Retry-After, would otherwise turn the refusals themselves into the overload
(measured: at 4x the connections, 13,700 refusals a second left 1,000 accepted; held 100 ms, the
server kept accepting at its full rate).
"""

import asyncio

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from service.api.errors import PROBLEM_JSON


class Admission:
    """The per-process count of inference requests in flight, and its limit."""

    def __init__(self, limit: int, refusal_delay_s: float) -> None:
        self.limit = limit
        self.refusal_delay_s = refusal_delay_s
        self.in_flight = 0


def refusal(path: str, limit: int) -> tuple[bytes, bytes]:
    """(content type, body) of the 503, in the shape of the API the request was for."""
    message = f"the server is at its limit of {limit} concurrent inference requests; retry after 1 s"
    if path.startswith("/v2"):
        return b"application/json", msgspec.json.encode({"error": message})
    problem = {"type": "about:blank", "title": "overloaded", "status": 503, "detail": message}
    return PROBLEM_JSON.encode(), msgspec.json.encode(problem)


class AdmissionControl(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        state = scope["litestar_app"].state.imgcls
        admission: Admission = state.admission
        if admission.in_flight >= admission.limit:
            state.metrics.rejects.labels("overloaded").inc()
            await asyncio.sleep(admission.refusal_delay_s)
            content_type, body = refusal(scope["path"], admission.limit)
            headers = [(b"content-type", content_type), (b"retry-after", b"1"), (b"content-length", b"%d" % len(body))]
            start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 503, "headers": headers}
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        admission.in_flight += 1  # the in-flight gauge reads it when metrics are flushed
        try:
            await next_app(scope, receive, send)
        finally:
            admission.in_flight -= 1
