"""Where a rollout lives: files in the model repository, beside ``aliases.json``, so every server process
and replica on the shared volume sees the same rollout, and a restart finds it again.

```
<root>/<model>/rollout.json                             the running rollout (plan.Rollout); absent: none
<root>/<model>/rollouts/<id>/tally-<process>.json       one process's cumulative Tally, replaced every second
<root>/<model>/rollouts/<id>/pairs-<process>.txt        "<prediction_id> <serving top-1> <candidate top-1>"
                                                        lines, appended: matched against feedback labels
```

Starting and ending take the model's rollout lock (``.rollout.lock``): one rollout at a time, and one ender
(the first to remove ``rollout.json`` ends it; the others find it gone). A process that restarts writes a
new tally file; the old one keeps its counts, so the merge of all files is the whole rollout's.
"""

import contextlib
from pathlib import Path

import msgspec

from service.files import exclusive, write_atomic
from service.repository import ModelRepository
from service.rollouts.errors import RolloutConflict
from service.rollouts.figures import Tally, merge
from service.rollouts.plan import Rollout

ROLLOUT_FILE = "rollout.json"
ROLLOUTS_DIR = "rollouts"
LOCK_FILE = ".rollout.lock"
MAX_PAIRS_PER_PROCESS = 100_000  # past it a process stops recording pairs (accuracy uses the first ones)

Pairs = dict[str, tuple[int, int]]  # prediction_id -> (serving top-1, candidate top-1)


class RolloutStore:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    def _folder(self, name: str) -> Path:
        return self.repository.root / name

    def figures_folder(self, name: str, rollout_id: str) -> Path:
        return self._folder(name) / ROLLOUTS_DIR / rollout_id

    def current(self, name: str) -> Rollout | None:
        try:
            return msgspec.json.decode((self._folder(name) / ROLLOUT_FILE).read_bytes(), type=Rollout)
        except FileNotFoundError:
            return None

    def start(self, rollout: Rollout) -> None:
        """Write ``rollout.json``; ``RolloutConflict`` when one is already running."""
        folder = self._folder(rollout.model)
        with exclusive(folder / LOCK_FILE):
            running = self.current(rollout.model)
            if running is not None:
                raise RolloutConflict(
                    f"a rollout of {rollout.model} v{running.version} is already running ({running.id}, since "
                    f"{running.started_iso}): promote or abort it first (POST /v1/models/{rollout.model}/rollout/abort)"
                )
            self.figures_folder(rollout.model, rollout.id).mkdir(parents=True, exist_ok=True)
            write_atomic(folder / ROLLOUT_FILE, msgspec.json.encode(rollout))

    def claim_end(self, name: str, rollout_id: str) -> Rollout | None:
        """Remove ``rollout.json`` if it still holds ``rollout_id``; the rollout, or None when another ender won."""
        folder = self._folder(name)
        with exclusive(folder / LOCK_FILE):
            running = self.current(name)
            if running is None or running.id != rollout_id:
                return None
            (folder / ROLLOUT_FILE).unlink()
            return running

    # ------------------------------------------------------------------------------------------ figures

    def write_tally(self, name: str, rollout_id: str, process: str, tally: Tally) -> None:
        write_atomic(self.figures_folder(name, rollout_id) / f"tally-{process}.json", msgspec.json.encode(tally))

    def append_pairs(self, name: str, rollout_id: str, process: str, lines: list[str]) -> None:
        with (self.figures_folder(name, rollout_id) / f"pairs-{process}.txt").open("a") as handle:
            handle.write("".join(lines))

    def merged_tally(self, name: str, rollout_id: str) -> Tally:
        """Every process's tally added up (a file being replaced is read whole, old or new)."""
        tallies = []
        for path in sorted(self.figures_folder(name, rollout_id).glob("tally-*.json")):
            with contextlib.suppress(FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
                tallies.append(msgspec.json.decode(path.read_bytes(), type=Tally))
        return merge(tallies)

    def pairs(self, name: str, rollout_id: str) -> Pairs:
        found: Pairs = {}
        for path in self.figures_folder(name, rollout_id).glob("pairs-*.txt"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:  # a line being appended may be cut short
                    found[parts[0]] = (int(parts[1]), int(parts[2]))
        return found
