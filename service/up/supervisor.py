"""Child processes started, watched and stopped as one unit: the parts of ``imgcls up``.

- **Start.** The parts marked ``first`` (Redis: every other part needs it) start, and are waited for; then
  all the others start together, and are waited for. A part that exits or is not ready in time while
  starting raises ``PartFailed`` (the caller then stops the others).
- **Watch.** A part that exits is started again after a back-off (1, 2, 4, ... up to 30 s; back to 1 s once
  it ran for a minute), each time said in one line, and said again once it is ready. What it left running
  in its session (a worker's pool process) is killed first, so the new one starts alone.
- **Stop.** Kind by kind, in the reverse order of the list (``imgcls up``: the API, then the workers, then
  Redis): SIGTERM to every part of the kind, then a wait of up to ``stop_timeout_s``. A part still running
  then, or as soon as ``hurry`` is set (a second Ctrl+C), gets ``hurry_signal`` (a worker: SIGQUIT, so
  its trial goes back to the queue), and SIGKILL to its process group ten seconds later.

Each child runs in its own session, so a Ctrl+C in the terminal reaches this process only, and the stop
keeps its order; each gets SIGTERM if this process dies (Linux's parent-death signal), so no part is left
running without its supervisor.
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.up.errors import PartFailed

POLL_S = 0.2
STABLE_S = 60.0  # a part that ran this long before it died is restarted after the shortest back-off again
MAX_BACKOFF_S = 30.0
KILL_AFTER_S = 10.0  # after the hurry signal
PR_SET_PDEATHSIG = 1


@dataclass
class Part:
    name: str  # "redis", "api", "worker 1"
    kind: str  # parts of one kind stop together: "redis", "worker", "api"
    command: list[str]
    env: dict[str, str]
    log: Path  # its standard output and error, appended
    ready: Callable[[int], str | None]  # the process id -> None while not ready, else what to say about it
    first: bool = False  # started and ready before the others start
    stdin: bytes | None = None  # written to the process at start, then closed
    ready_timeout_s: float = 120.0
    stop_timeout_s: float = 30.0
    stop_note: str = ""  # said when it stops: what happens to its work
    hurry_signal: int = signal.SIGKILL
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    is_ready: bool = False
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None  # when it died: when to start it again


def exit_words(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_bytes()[-4096:].decode(errors="replace").strip().splitlines()
        if lines:
            return lines[-1].strip()
    return "(nothing)"


class Supervisor:
    def __init__(self, parts: list[Part], *, say: Callable[[str], None]) -> None:
        self.parts, self.say = parts, say
        self._die_with_parent = die_with_parent_hook()

    # ---------------------------------------------------------------- start

    def start(self, stopping: threading.Event) -> None:
        """Start every part and wait until each is ready (returns early once ``stopping`` is set)."""
        first = [part for part in self.parts if part.first]
        for group in (first, [part for part in self.parts if not part.first]):
            for part in group:
                self.spawn(part)
            self.wait_ready(group, stopping)

    def spawn(self, part: Part) -> None:
        part.log.parent.mkdir(parents=True, exist_ok=True)
        with part.log.open("ab") as log:
            part.process = subprocess.Popen(
                part.command,
                env=part.env,
                stdin=subprocess.PIPE if part.stdin is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._die_with_parent,  # no threads run in this process
            )
        if part.stdin is not None and part.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                part.process.stdin.write(part.stdin)
            part.process.stdin.close()
        part.is_ready, part.started_at, part.restart_at = False, time.monotonic(), None

    def wait_ready(self, parts: list[Part], stopping: threading.Event) -> None:
        deadline = {part.name: time.monotonic() + part.ready_timeout_s for part in parts}
        while not all(part.is_ready for part in parts):
            for part in parts:
                if part.is_ready or part.process is None:
                    continue
                code = part.process.poll()
                if code is not None:
                    raise PartFailed(
                        f"{part.name} exited while starting ({exit_words(code)}): {last_line(part.log)} "
                        f"(its log: {part.log})"
                    )
                if self.check(part):
                    continue
                if time.monotonic() > deadline[part.name]:
                    raise PartFailed(
                        f"{part.name} was not ready after {part.ready_timeout_s:g} s: {last_line(part.log)} "
                        f"(its log: {part.log})"
                    )
            if stopping.wait(POLL_S):
                return

    def check(self, part: Part) -> bool:
        """Ask a started part whether it is ready; say so the first time it is."""
        assert part.process is not None
        words = part.ready(part.process.pid)
        if words is None:
            return False
        part.is_ready = True
        self.say(f"{part.name:<9} {words}")
        return True

    # ---------------------------------------------------------------- watch

    def watch(self, stopping: threading.Event) -> None:
        """Until ``stopping`` is set: restart a part that exits, after its back-off."""
        while not stopping.wait(POLL_S):
            now = time.monotonic()
            for part in self.parts:
                if part.process is None:
                    if part.restart_at is not None and now >= part.restart_at:
                        self.spawn(part)
                    continue
                code = part.process.poll()
                if code is not None:
                    self.died(part, code, now)
                elif not part.is_ready:
                    self.check(part)

    def died(self, part: Part, code: int, now: float) -> None:
        part.quick_deaths = part.quick_deaths + 1 if now - part.started_at < STABLE_S else 1
        delay = min(MAX_BACKOFF_S, 2.0 ** (part.quick_deaths - 1))
        assert part.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what it left in its session: a pool child
            os.killpg(part.process.pid, signal.SIGKILL)
        part.process, part.is_ready, part.restart_at = None, False, now + delay
        self.say(
            f"{part.name} exited ({exit_words(code)}): {last_line(part.log)}; restarting it in {delay:g} s "
            f"(its log: {part.log})"
        )

    # ---------------------------------------------------------------- stop

    def stop(self, hurry: threading.Event) -> None:
        """Stop every part, kind by kind in the reverse order of the list; return once all have exited."""
        for kind in dict.fromkeys(part.kind for part in reversed(self.parts)):
            running = still_running([part for part in self.parts if part.kind == kind])
            if not running:
                continue
            note = next((part.stop_note for part in running if part.stop_note), "")
            self.say(f"stopping {', '.join(part.name for part in running)}{f' ({note})' if note else ''}")
            signal_each(running, lambda part: signal.SIGTERM)
            wait_exit(running, time.monotonic() + max(part.stop_timeout_s for part in running), hurry)
            for part in still_running(running):
                self.say(f"{part.name} is still running: {signal.Signals(part.hurry_signal).name}")
            signal_each(still_running(running), lambda part: part.hurry_signal)
            wait_exit(running, time.monotonic() + KILL_AFTER_S, None)
            for part in running:
                assert part.process is not None
                with contextlib.suppress(ProcessLookupError, PermissionError):  # its session: a pool child too
                    os.killpg(part.process.pid, signal.SIGKILL)
                part.process.wait()
                part.process = None


def still_running(parts: list[Part]) -> list[Part]:
    return [part for part in parts if part.process is not None and part.process.poll() is None]


def signal_each(parts: list[Part], which: Callable[[Part], int]) -> None:
    for part in parts:
        assert part.process is not None
        with contextlib.suppress(ProcessLookupError):
            part.process.send_signal(which(part))


def wait_exit(parts: list[Part], deadline: float, hurry: threading.Event | None) -> None:
    """Until every part has exited, ``deadline`` (monotonic) has passed, or ``hurry`` is set."""
    while still_running(parts) and time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
        time.sleep(POLL_S / 2)


def die_with_parent_hook() -> Callable[[], None] | None:
    """What a child runs before ``exec``: ask Linux for SIGTERM when this process dies (None elsewhere)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: nothing is loaded after the fork
    except AttributeError:
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook
