"""The Redis ``imgcls up`` starts when ``IMGCLS_REDIS_URL`` is not set: a ``redis-server`` child process.

Its data lives in ``<var>/redis`` with append-only persistence (``appendonlydir/``; and ``dump.rdb`` when it
stops), so jobs and their logs outlive a restart of Redis or of ``imgcls up``. It listens on 127.0.0.1 only,
on a free port, and asks for a password made for this run. The configuration reaches redis-server on its
standard input, so the password is never in a file or in the process list; the other parts get the URL in
their environment (``IMGCLS_REDIS_URL``), which only this user can read.
"""

import secrets
from dataclasses import dataclass
from pathlib import Path

import redis

from service.up.preflight import free_local_port


@dataclass(frozen=True)
class EmbeddedRedis:
    folder: Path
    port: int
    password: str

    @classmethod
    def new(cls, folder: Path) -> "EmbeddedRedis":
        """A Redis for ``folder`` (an absolute path) on a free port with a new password; nothing started yet."""
        return cls(folder, free_local_port(), secrets.token_urlsafe(32))

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def command(self, program: str) -> list[str]:
        return [program, "-"]  # "-": the configuration comes on standard input

    def configuration(self) -> bytes:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {self.password}",
            f'dir "{self.folder}"',
            "appendonly yes",
            "appendfsync everysec",
            "daemonize no",
            'logfile ""',
        ]
        return ("\n".join(lines) + "\n").encode()

    def answers(self) -> bool:
        """Redis answers a PING with this password (it is up, and has loaded its data)."""
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False
