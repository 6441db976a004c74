"""Fail when the project's wheel lacks a file of its packages' source folders.

    python check_wheel.py WHEEL SOURCE_DIR

The images install the wheel, not the source tree, so a file that packaging leaves out (a non-Python file
such as the web page's HTML, CSS and JavaScript, unless pyproject.toml declares it as package data) would
be missing at run time. The Dockerfile runs this right after building the wheel; tests/deploy runs it too.
Standard library only.
"""

import sys
import zipfile
from pathlib import Path

PACKAGES = ("service", "training")
SKIPPED_PARTS = {"__pycache__"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def missing_files(wheel: Path, source: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    expected = []
    for package in PACKAGES:
        for path in sorted((source / package).rglob("*")):
            relative = path.relative_to(source)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
                expected.append(relative.as_posix())
    return [name for name in expected if name not in packed]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} WHEEL SOURCE_DIR", file=sys.stderr)
        return 2
    missing = missing_files(Path(argv[1]), Path(argv[2]))
    if missing:
        print(
            f"{argv[1]} lacks {len(missing)} file(s) of the source tree (declare them as package data in "
            f"pyproject.toml): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
