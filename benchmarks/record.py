"""Every benchmark's result, kept: one JSON file per run in benchmarks/results/, with what produced it.

    run = record.begin("serve-small", args)          # the machine and its load before anything runs
    ...
    path = record.save(run, figures, args.results_dir, packages={"bentoml": {...}})

The file is ``<name>-<YYYYMMDD>.json`` (``-2``, ``-3``, ... when a run of that name already exists that day)
and holds the benchmark's own figures beside ``benchmark`` (the name), ``started`` / ``finished`` (UTC),
``command`` (the argv), ``machine`` (CPU model, cores, load average before and after, the ``uptime`` lines)
and ``versions``: the imgcls commit (and whether the checkout had uncommitted changes), Python, every
package of this environment that a benchmark involves, and what the caller adds (a peer's own venv).
benchmarks/tables.py turns these files into the documentation's tables.
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from service.files import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The distributions a benchmark of this project can involve, by the name pip knows them under; those not
# installed here are left out (the API's image has no torch, for one).
PACKAGES = (
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "pillow",
    "pyspng",
    "litestar",
    "uvicorn",
    "uvloop",
    "httptools",
    "msgspec",
    "prometheus-client",
    "celery",
    "redis",
    "torch",
    "torchvision",
    "tritonclient",
    "httpx",
)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--result-name`` (default ``name``) and ``--results-dir`` for every benchmark."""
    parser.add_argument(
        "--result-name", default=name, help=f"the result's name: <results-dir>/NAME-<date>.json (default {name})"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where the result file goes (default benchmarks/results, whose files the docs' tables are made from)",
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> float:
    return os.getloadavg()[0]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def begin(name: str, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """The start of a run's record: its name, the time, the command and the machine before it runs."""
    if not name or "/" in name or name.startswith("."):
        raise SystemExit(f"--result-name {name!r}: a plain file-name stem, please (e.g. serve-small)")
    return {
        "benchmark": name,
        "started": now(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args or argparse.Namespace()).items()},
        "machine": {
            "cpu_model": cpu_model(),
            "cores": len(os.sched_getaffinity(0)),
            "cpu_count": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_1min_before": load_average(),
            "uptime_before": uptime(),
        },
    }


def git_commit() -> dict[str, Any]:
    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_changes": bool(git("status", "--porcelain"))}


def installed_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def versions(packages: dict[str, Any] | None = None) -> dict[str, Any]:
    """imgcls's commit, Python, this environment's packages, and ``packages`` (e.g. each peer's venv)."""
    return {
        "imgcls": git_commit(),
        "python": platform.python_version(),
        "packages": installed_versions(),
        **(packages or {}),
    }


def result_path(folder: Path, name: str, day: str) -> Path:
    """``name-day.json``, or the first of ``name-day-2.json``, ``name-day-3.json``, ... not taken yet."""
    path, number = folder / f"{name}-{day}.json", 1
    while path.exists():
        number += 1
        path = folder / f"{name}-{day}-{number}.json"
    return path


def save(run: dict[str, Any], figures: dict[str, Any], folder: Path, packages: dict[str, Any] | None = None) -> Path:
    """Write ``run`` + ``figures`` + the machine after + the versions to a new file in ``folder``; its path."""
    run = {**run, **figures, "finished": now()}
    run["machine"] = {**run["machine"], "load_1min_after": load_average(), "uptime_after": uptime()}
    run["versions"] = versions(packages)
    day = run["started"][:10].replace("-", "")
    path = result_path(folder, run["benchmark"], day)
    write_json_atomic(path, run)
    print(f"result written to {display(path)}", file=sys.stderr)
    return path


def display(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
