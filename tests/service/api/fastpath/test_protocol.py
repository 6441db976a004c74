import asyncio
from typing import Any

import httpx
import pytest

from service.api.fastpath.protocol import JoinedWrites

pytestmark = pytest.mark.anyio


class RecordingTransport:
    """Stands in for a socket's transport: what would have gone out, one entry per send()."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


async def test_the_writes_of_one_loop_turn_go_out_as_one() -> None:
    transport = RecordingTransport()
    writes = JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert transport.sent == []
    await asyncio.sleep(0)
    assert transport.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_writes_of_later_turns_go_out_in_their_own_turn_and_in_order() -> None:
    transport = RecordingTransport()
    writes = JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    for event in (b"data: 1\n\n", b"data: 2\n\n"):  # a stream of server-sent events
        writes.write(event)
        await asyncio.sleep(0)
    assert transport.sent == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_close_sends_what_is_pending_first_and_the_rest_is_the_transport() -> None:
    transport = RecordingTransport()
    writes = JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"last words")
    writes.close()
    assert transport.sent == [b"last words"] and transport.closed
    writes.write(b"too late")
    await asyncio.sleep(0)
    assert transport.sent == [b"last words"]  # a closed connection gets nothing more
    assert writes.get_extra_info("peername") == "info:peername"


def test_a_real_server_answers_whole_responses_over_keep_alive(server: str, png: bytes) -> None:
    with httpx.Client(base_url=server) as client:  # one connection, several requests and answers
        for _ in range(3):
            answer = client.post("/v1/models/fashion-mnist/classify", files={"images": png})
            assert answer.status_code == 200 and answer.json()["results"][0]["top"]
        assert client.get("/healthz/live").status_code == 200
