"""The Dockerfile: hadolint finds nothing, and what it promises holds, read from the file itself (the images
built from it are run by test_images.py): the four targets, a non-root user and a health check in each, no
torch and no training package in the API images, pinned base images, dependencies installed before the
source; plus the helper scripts the images run
(deploy/docker/): the requirement lists, the wheel's completeness check, the health checks."""

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKER_SCRIPTS = REPO / "deploy" / "docker"
TARGETS = ("api", "worker", "api-gpu", "worker-gpu")
API_TARGETS = ("api", "api-gpu")
WORKER_TARGETS = ("worker", "worker-gpu")
TORCH_MENTIONS = re.compile(r"\btorch|\[train\]|train\.txt|download\.pytorch\.org", re.IGNORECASE)
PINNED_IMAGE = re.compile(r"^[a-z0-9][a-z0-9./_-]*:[A-Za-z0-9._-]*\d[A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse(text: str) -> dict[str, Stage]:
    """Stages by name (unnamed ones by index), each with its instructions; continuation lines joined and
    comment lines dropped, as Docker reads them."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name=name, base=words[0])
        else:
            assert current is not None, f"{keyword} before any FROM"
            current.instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """``target`` and the stages it is built FROM, base first."""
    found = [stages[target]]
    while found[-1].base in stages:
        found.append(stages[found[-1].base])
    return found[::-1]


def environment(stages: dict[str, Stage], target: str) -> dict[str, str]:
    """The ENV a target's image ends with (key=value forms, as this Dockerfile writes them)."""
    env: dict[str, str] = {}
    for stage in chain(stages, target):
        for args in stage.args("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def tool(name: str) -> str:
    """A console script of the project's environment (the dev extra), next to this Python first."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found is not None, f"{name} is not installed: pip install -e '.[dev]'"
    return found


# ---- hadolint


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", "--failure-threshold", "style", "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    report = "\n".join(f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings)
    assert findings == [] and result.returncode == 0, f"hadolint:\n{report}{result.stderr}"


def test_hadolint_would_catch_an_unpinned_image(tmp_path: Path) -> None:
    """The lint really runs (a sanity check of the tool, not of our file)."""
    (tmp_path / "Dockerfile").write_text("FROM python:latest\nRUN pip install flask\n", encoding="utf-8")
    result = subprocess.run(
        [tool("hadolint"), "--format", "json", "Dockerfile"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert {"DL3007", "DL3013"} <= {finding["code"] for finding in json.loads(result.stdout)}


# ---- the Dockerfile's promises


def test_the_four_targets_exist(stages: dict[str, Stage]) -> None:
    assert set(TARGETS) <= set(stages)


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_runs_as_a_numeric_non_root_user(stages: dict[str, Stage], target: str) -> None:
    users = stages[target].args("USER")
    assert users, f"{target} sets no USER of its own"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, f"{target}: USER {users[-1]} (numeric and not root, for runAsNonRoot)"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    keywords = [keyword for keyword, _ in stages[target].instructions]
    assert "RUN" not in keywords[keywords.index("USER") :], f"{target} runs commands after switching user"


@pytest.mark.parametrize("target", TARGETS)
def test_each_target_has_a_health_check_and_a_command(stages: dict[str, Stage], target: str) -> None:
    checks = stages[target].args("HEALTHCHECK")
    assert len(checks) == 1 and "CMD" in checks[0] and not checks[0].upper().startswith("NONE")
    mode = "api" if target in API_TARGETS else "worker"
    assert checks[0].endswith(f'"/usr/local/lib/imgcls/healthcheck.py", "{mode}"]'), checks[0]
    assert stages[target].args("CMD") == [f'["imgcls", "{"serve" if mode == "api" else "worker"}"]']


@pytest.mark.parametrize("target", API_TARGETS)
def test_api_targets_never_install_torch_or_the_train_extra(stages: dict[str, Stage], target: str) -> None:
    for stage in chain(stages, target):
        for keyword, args in stage.instructions:
            assert not TORCH_MENTIONS.search(args), f"{target} (stage {stage.name}): {keyword} {args}"
            if keyword == "COPY" and "--from=requirements" in args:
                copied = args.split()[1:-1]
                assert set(copied) <= {"/requirements/base.txt", "/requirements/cpu.txt", "/requirements/cuda.txt"}
    assert stages[target].args("EXPOSE") == ["8000"]


@pytest.mark.parametrize("target", WORKER_TARGETS)
def test_workers_install_torch_from_pyprojects_pins(stages: dict[str, Stage], target: str) -> None:
    runs = " ".join(stages[target].args("RUN"))
    assert "-r /tmp/requirements/torch.txt" in runs and "-r /tmp/requirements/train.txt" in runs
    cpu_index = stages[target].args("ARG") == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    assert cpu_index == (target == "worker"), "CPU wheels for the CPU worker only"
    assert ('${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}' in runs) == (target == "worker")
    assert re.search(r"\bflower==\d", runs), "Flower, pinned, in the worker images"


@pytest.mark.parametrize("target", TARGETS)
def test_api_images_hold_the_service_package_alone(stages: dict[str, Stage], target: str) -> None:
    """The API images install a wheel built from service/ only (issue 15: no training package in them)."""
    wheels = [args for stage in chain(stages, target) for key, args in stage.instructions if "--from=" in args]
    wheel = "api-wheel" if target in API_TARGETS else "wheel"
    assert [args.split()[0] for args in wheels if "wheel" in args] == [f"--from={wheel}"]
    assert "training/" not in " ".join(stages["api-wheel"].args("COPY"))
    assert stages["wheel"].base == "api-wheel" and "training/ training/" in stages["wheel"].args("COPY")


def test_base_images_are_pinned(stages: dict[str, Stage]) -> None:
    external = {stage.base for stage in stages.values() if stage.base not in stages}
    assert external, "no base image found"
    for image in external:
        assert PINNED_IMAGE.match(image) and not image.split(":")[1].startswith("latest"), f"unpinned: {image}"
    tools = " ".join(args for stage in stages.values() for args in stage.args("RUN"))
    for name in ("pip", "setuptools"):
        assert re.search(rf"\b{name}==\d", tools), f"{name} is not pinned"


@pytest.mark.parametrize("target", TARGETS)
def test_dependencies_are_installed_before_the_source_arrives(stages: dict[str, Stage], target: str) -> None:
    steps = [(keyword, args) for stage in chain(stages, target) for keyword, args in stage.instructions]
    dependency_steps = [
        i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "-r /tmp/requirements/" in args
    ]
    source_steps = [
        i for i, (keyword, args) in enumerate(steps) if keyword == "COPY" and re.match(r"--from=(api-)?wheel ", args)
    ]
    assert dependency_steps and len(source_steps) == 1 and max(dependency_steps) < source_steps[0]
    for keyword, args in steps:  # the source reaches a final image only as the wheel
        assert not (keyword == "COPY" and re.search(r"(^|\s)(service|training)/?(\s|$)", args)), args
    assert re.search(r"(^|\s)service/", " ".join(stages["api-wheel"].args("COPY")))


@pytest.mark.parametrize("target", TARGETS)
def test_environment_defaults(stages: dict[str, Stage], target: str) -> None:
    env = environment(stages, target)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PIP_NO_CACHE_DIR"] == "1"
    assert env["IMGCLS_HOST"] == "0.0.0.0" and env["IMGCLS_PORT"] == "8000"
    assert env["IMGCLS_MODEL_ROOT"] == "/data/models" and env["IMGCLS_RUNS_DIR"] == "/data/runs"
    assert env["IMGCLS_DATA_ROOT"] == "/data"
    assert env["IMGCLS_AUTH_ENABLED"] == "true"  # the server refuses to start without IMGCLS_API_KEYS
    assert ("NVIDIA_DRIVER_CAPABILITIES" in env) == target.endswith("-gpu")


# ---- deploy/docker/requirements.py: the dependency lists the images install


def test_requirement_lists_come_from_pyproject(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(DOCKER_SCRIPTS / "requirements.py"), str(REPO / "pyproject.toml"), str(tmp_path)],
        check=True,
        timeout=60,
    )
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = {
        name: (tmp_path / name).read_text(encoding="utf-8").splitlines()
        for name in ("base.txt", "cpu.txt", "gpu.txt", "cuda.txt", "train.txt", "torch.txt")
    }
    extras = project["optional-dependencies"]
    assert lines["base.txt"] == project["dependencies"]
    assert not any(line.startswith("onnxruntime") for line in lines["base.txt"]), "the runtime is an extra"
    assert lines["cpu.txt"] == extras["cpu"] == ["onnxruntime==1.31.*"]
    assert lines["gpu.txt"] == extras["gpu"] == ["onnxruntime-gpu==1.31.*"]
    assert lines["train.txt"] == extras["train"]
    assert not any(TORCH_MENTIONS.search(line) for line in lines["base.txt"] + lines["cpu.txt"] + lines["cuda.txt"])
    assert lines["torch.txt"] == [
        r for r in project["optional-dependencies"]["train"] if re.match(r"torch(vision)?\b", r)
    ]
    assert [r.split(";")[0] for r in lines["torch.txt"]] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert lines["cuda.txt"] == ["onnxruntime-gpu[cuda,cudnn]==1.31.*"]


@pytest.mark.parametrize(
    ("target", "runtime"),
    [("api", "cpu.txt"), ("api-gpu", "cuda.txt"), ("worker", "cpu.txt"), ("worker-gpu", "gpu.txt")],
)
def test_each_target_installs_one_inference_runtime(stages: dict[str, Stage], target: str, runtime: str) -> None:
    """onnxruntime and onnxruntime-gpu install the same module: an image holds exactly one of them."""
    runs = " ".join(args for stage in chain(stages, target) for args in stage.args("RUN"))
    installed = {name for name in ("cpu.txt", "gpu.txt", "cuda.txt") if f"-r /tmp/requirements/{name}" in runs}
    assert installed == {runtime}


# ---- deploy/docker/check_wheel.py: the wheel the images install holds every file of the packages


def test_the_wheel_holds_every_file_of_the_packages(tmp_path: Path) -> None:
    """Built as the image builds it, from what git tracks (what CI and a clean checkout build)."""
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z", "service", "training"], cwd=REPO, capture_output=True, check=True, timeout=60
        )
        .stdout.decode()
        .split("\0")
    )
    source = tmp_path / "src"
    for name in [*filter(None, tracked), "pyproject.toml", "README.md"]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(source),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "wheels").glob("imgcls-*.whl")
    check = [sys.executable, str(DOCKER_SCRIPTS / "check_wheel.py"), str(wheel), str(source)]
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

    (source / "service" / "page.html").write_text("<p>not in the wheel</p>", encoding="utf-8")
    result = subprocess.run(check, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "service/page.html" in result.stderr


# ---- deploy/docker/healthcheck.py: what HEALTHCHECK runs


def healthcheck(mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DOCKER_SCRIPTS / "healthcheck.py"), mode],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def stub_api() -> Iterator[tuple[int, dict[str, int]]]:
    """An HTTP server answering GET /healthz/live with the status in ``status["code"]``."""
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/healthz/live" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], status
    finally:
        server.shutdown()
        server.server_close()


def test_api_healthcheck(stub_api: tuple[int, dict[str, int]]) -> None:
    port, status = stub_api
    assert healthcheck("api", IMGCLS_PORT=str(port)).returncode == 0
    status["code"] = 503
    result = healthcheck("api", IMGCLS_PORT=str(port))
    assert result.returncode == 1 and "503" in result.stderr
    result = healthcheck("api", IMGCLS_PORT=str(free_port()))
    assert result.returncode == 1 and "unhealthy" in result.stderr
    assert healthcheck("neither").returncode == 2


WORKER = """
import sys
from celery import Celery
from service.jobs.queue import celery_config
from service.settings import JobSettings
settings = JobSettings()
app = Celery("stand-in", set_as_current=False)
app.conf.update(celery_config(redis_url=settings.redis_url, queue=settings.job_queue,
                              max_seconds=settings.job_max_seconds))
app.worker_main(["worker", "--pool=solo", "--hostname", sys.argv[1], "--without-mingle", "--without-gossip",
                 "--loglevel=info", "--queues", settings.job_queue])
"""


def start_worker(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, name],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(worker: subprocess.Popen[str]) -> None:
    assert worker.stderr is not None
    for line in worker.stderr:  # celery logs "<name> ready." once it consumes; EOF if it died
        if " ready." in line:
            return
    raise AssertionError(f"the stand-in worker exited with {worker.wait()}")


def test_worker_healthcheck_asks_this_hosts_worker(redis_url: str) -> None:
    """Celery workers configured like ``imgcls worker`` (without torch, so they start in a second): healthy
    while one named after this host answers; unhealthy when only another host's worker does."""
    env = {"IMGCLS_REDIS_URL": redis_url, "IMGCLS_JOB_QUEUE": f"healthcheck-{os.getpid()}"}
    here, elsewhere = start_worker(f"imgcls-{os.getpid()}@%h", env), start_worker("imgcls-1@another-host", env)
    try:
        wait_ready(here)
        wait_ready(elsewhere)
        result = healthcheck("worker", **env)
        assert result.returncode == 0, result.stderr
        here.terminate()
        here.wait(timeout=30)
        result = healthcheck("worker", **env)
        assert result.returncode == 1 and "no Celery worker named" in result.stderr
    finally:
        for worker in (here, elsewhere):
            worker.terminate()
            worker.wait(timeout=30)
    assert "IMGCLS_REDIS_URL" in healthcheck("worker", IMGCLS_REDIS_URL="").stderr
