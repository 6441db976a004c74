"""Write pip's configuration for a container build from this machine's own, and list the folders it names.

    python pip_config.py OUT_DIR MOUNTED_AT

scripts/containers.sh mounts OUT_DIR read-only at MOUNTED_AT (/etc/xdg/pip, where pip reads its global
configuration) for the build's RUN steps only, so pip in the build uses the same indexes, wheel folders,
constraints and CA certificates as pip here, and nothing of them reaches a layer. Settings are read from
pip's configuration files and PIP_* variables (the variables win, as in pip). Files they name (the CA
bundle, constraint files) are copied into OUT_DIR; local folders are printed, one a line, to be mounted at the
same path: a find-links folder, and a file:// index's parent (an index's pages link to files beside it, as
in /opt/pypi/simple and /opt/pypi/files); missing ones are left out.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert", "constraint", "default-timeout")
FILE_KEYS = ("cert", "constraint")
LOCATION_KEYS = ("index-url", "extra-index-url", "find-links")


def configured() -> dict[str, str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        key = name.partition(".")[2]
        if key in KEYS:
            settings[key] = value.strip().strip("'\"")
    for key in KEYS:
        value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            settings[key] = value
    return settings


def local_folder(location: str) -> Path | None:
    path = Path(location.removeprefix("file://")) if location.startswith(("file://", "/")) else None
    return path if path is not None and path.exists() else None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(f"usage: {argv[0]} OUT_DIR MOUNTED_AT", file=sys.stderr)
        return 2
    out, mounted_at = Path(argv[1]), argv[2]
    folders: list[Path] = []
    lines = ["[global]"]
    for key, value in configured().items():
        if key in FILE_KEYS:
            copies = []
            for index, name in enumerate(value.split()):
                copy = f"{key}-{index}{Path(name).suffix}"
                shutil.copyfile(name, out / copy)
                copies.append(f"{mounted_at}/{copy}")
            value = " ".join(copies)
        elif key in LOCATION_KEYS:
            kept = []
            for location in value.split():
                folder = local_folder(location)
                if folder is not None:
                    folders.append(folder if key == "find-links" else folder.parent)
                if folder is not None or ("://" in location and not location.startswith("file://")):
                    kept.append(location)
            value = " ".join(kept)
        if value:
            lines.append(f"{key} = {value}")
    (out / "pip.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for folder in dict.fromkeys(folders):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
