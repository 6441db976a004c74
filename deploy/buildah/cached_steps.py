"""Fail when a build rebuilt a dependency layer: read from buildah's build log.

    python cached_steps.py BUILD_LOG

scripts/containers.sh builds the api image again from a copy of the repository with one file under
service/ changed, and runs this on that build's log: every step that installs dependencies (Python, pip,
``-r /tmp/requirements/...``) must say ``Using cache``; the steps that did run are printed. Standard library
only.
"""

import re
import sys
from pathlib import Path

STEP = re.compile(r"STEP \d+/\d+: (.*)")
DEPENDENCY_STEP = re.compile(r"apt-get install|pip==|-r /tmp/requirements/")


def steps(log: str) -> list[tuple[str, bool]]:
    """(instruction, taken from the cache) for every step of the log, in order."""
    found: list[tuple[str, bool]] = []
    for line in log.splitlines():
        match = STEP.search(line)
        if match:
            found.append((match.group(1), False))
        elif found and line.startswith("--> Using cache"):
            found[-1] = (found[-1][0], True)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} BUILD_LOG", file=sys.stderr)
        return 2
    found = steps(Path(argv[1]).read_text(encoding="utf-8", errors="replace"))
    rebuilt = [step for step, cached in found if not cached and not step.startswith("FROM ")]
    dependencies = [step for step, _ in found if DEPENDENCY_STEP.search(step)]
    print(f"{len(found)} steps, {len(rebuilt)} run again: " + "; ".join(step[:60] for step in rebuilt))
    wrong = [step for step in rebuilt if DEPENDENCY_STEP.search(step)]
    if not dependencies or wrong:
        print(f"dependency steps rebuilt: {wrong}" if wrong else "no dependency step in the log", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
