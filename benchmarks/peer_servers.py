"""The peers our server is measured against: what each needs, where its venv is, how it starts.

Each peer lives in benchmarks/peers/<name>/: its server file (configured as the peer's docs recommend for
throughput) and a requirements.txt of pinned versions. Its venv is made on first use under
var/peers/<name>/ (python3 -m venv, then pip install -r requirements.txt: a few minutes, once) and made again
when requirements.txt changes. Both serve the same ONNX file with the same preprocessing, with as many
processes and onnxruntime threads as our server (``PEER_WORKERS``, ``PEER_THREADS``), no access log.
"""

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_load_tools import Server, free_port, launch, log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_DIR = HERE / "peers"
VENVS = REPO / "var" / "peers"
LUA = HERE / "multipart.lua"
# Distributions whose versions a result records for each peer's venv (those installed there).
RECORDED = (
    "bentoml",
    "litserve",
    "onnxruntime",
    "numpy",
    "pillow",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pyzmq",
    "python-multipart",
)


@dataclass(frozen=True)
class Peer:
    name: str  # its folder under benchmarks/peers/ and var/peers/
    package: str  # the distribution that names it in tables ("bentoml 1.4.40")
    path: str  # the classify endpoint
    ready_path: str  # answers 200 once every worker has its model

    @property
    def folder(self) -> Path:
        return PEERS_DIR / self.name

    @property
    def requirements(self) -> Path:
        return self.folder / "requirements.txt"

    def command(self, venv: Path, port: int) -> list[str]:
        if self.name == "bentoml":
            bentoml = str(venv / "bin" / "bentoml")
            return [bentoml, "serve", "bentoml_peer:Classifier", "--host", "127.0.0.1", "--port", str(port)]
        return [str(venv / "bin" / "python"), "litserve_peer.py"]


PEERS = {
    "bentoml": Peer("bentoml", "bentoml", "/classify", "/readyz"),
    "litserve": Peer("litserve", "litserve", "/predict", "/health"),
}


def peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise SystemExit(f"unknown peer {name!r} (known: {', '.join(PEERS)})") from None


def _stamp(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def ensure_venv(chosen: Peer, root: Path = VENVS) -> Path:
    """The peer's venv, made (again) unless it was made from this very requirements.txt."""
    venv = root / chosen.name
    stamp = venv / "requirements.sha256"
    if stamp.is_file() and stamp.read_text().strip() == _stamp(chosen.requirements):
        return venv
    started = time.monotonic()
    log(f"{chosen.name}: making {venv} (once: pip install -r {chosen.requirements.relative_to(REPO)}, minutes)")
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
    pip += ["-r", str(chosen.requirements)]
    with subprocess.Popen(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("Collecting", "Successfully", "ERROR")):
                log(f"{chosen.name}: pip: {line.rstrip()[:160]}  [{time.monotonic() - started:.0f} s]")
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise SystemExit(f"{chosen.name}: pip install failed (exit {proc.returncode}); see the pip lines above")
    stamp.write_text(_stamp(chosen.requirements) + "\n")
    log(f"{chosen.name}: {venv} ready in {time.monotonic() - started:.0f} s")
    return venv


def venv_versions(venv: Path) -> dict[str, str]:
    """The versions of RECORDED installed in the peer's venv, as its own Python sees them."""
    script = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, *RECORDED], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found


@dataclass(frozen=True)
class Model:
    """What a peer needs to serve the model as our server does."""

    file: Path
    size: int  # square input, pixels
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def start(chosen: Peer, venv: Path, model: Model, workers: int, threads: int, log_path: Path) -> Server:
    port = free_port()
    env = os.environ | {
        "PEER_MODEL": str(model.file),
        "PEER_SIZE": str(model.size),
        "PEER_CHANNELS": str(model.channels),
        "PEER_MEAN": ",".join(str(v) for v in model.mean),
        "PEER_STD": ",".join(str(v) for v in model.std),
        "PEER_WORKERS": str(workers),
        "PEER_THREADS": str(threads),
        "PEER_PORT": str(port),
        # BentoML: its state under var/peers/, no usage tracking, no line per request (ours logs none either)
        "BENTOML_HOME": str(venv.parent / f"{chosen.name}-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"logging": {"access": {"enabled": False}}}}),
    }
    command = chosen.command(venv, port)
    return launch(chosen.name, command, env, chosen.folder, log_path, port=port, path=chosen.path, lua=LUA)


def top_index(answer: Any) -> int:
    """The top-1 class index in a peer's answer (one image: an object, or a list of one)."""
    first = answer[0] if isinstance(answer, list) else answer
    return int(first["top"][0]["index"])


def describe(versions: dict[str, Any], chosen: Peer) -> str:
    """'bentoml 1.4.40' from the versions recorded for its venv."""
    return f"{chosen.package} {versions.get(chosen.package, '?')}"
