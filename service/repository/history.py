"""A model's history: every promotion, rollback, alias move and rollout, with who and why.

One JSON line per event in ``<root>/<model>/history.jsonl``, appended under a lock of its own
(``.history.lock``), so every process and replica on the shared volume adds to the same file and a reader
sees whole lines only. ``GET /v1/models/{name}/history`` reads it, newest first.
"""

import getpass
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from service.files import exclusive
from service.repository.store import ModelRepository

HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".history.lock"

EventKind = Literal["promotion", "rollback", "alias", "rollout started", "rollout promoted", "rollout aborted"]


class HistoryEvent(msgspec.Struct, frozen=True):
    at: str  # ISO 8601, UTC
    kind: EventKind
    alias: str  # the alias moved (production for rollouts)
    version: int  # what the alias points at afterwards (for a rollout: its candidate)
    previous: int | None  # what it pointed at before (for a rollout: the version serving when it started)
    by: str  # an API key's name, "fine-tuning job <id>", "gate", or user@host for the CLI
    reason: str
    rollout: str | None = None  # the rollout's id, for its events
    figures: dict[str, Any] | None = None  # a rollout's figures when it ended


def this_process() -> str:
    """Who acts when no caller says: the local user, host and process (the CLI, a script)."""
    return f"{getpass.getuser()}@{socket.gethostname()} (pid {os.getpid()})"


def now_iso() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds")


def record(repository: ModelRepository, name: str, event: HistoryEvent) -> None:
    folder = repository.root / name
    line = msgspec.json.encode(event) + b"\n"
    with exclusive(folder / LOCK_FILE), (folder / HISTORY_FILE).open("ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read(repository: ModelRepository, name: str, limit: int | None = None) -> list[HistoryEvent]:
    """Newest first; ``ModelNotFound`` for an unknown model, [] when nothing happened yet. A line that does
    not parse (a file edited by hand) is skipped."""
    repository.versions(name)  # ModelNotFound
    path = repository.root / name / HISTORY_FILE
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in reversed(lines):
        try:
            events.append(msgspec.json.decode(line, type=HistoryEvent))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if limit is not None and len(events) >= limit:
            break
    return events


def alias_move_kind(alias: str, version: int, previous: int | None) -> EventKind:
    if alias != "production":
        return "alias"
    return "rollback" if previous is not None and version < previous else "promotion"
