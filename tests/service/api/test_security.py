"""Security checks over HTTP: scopes on every route, keys kept out of logs, rate limits per key, server-chosen paths.

- **Scopes.** ``SCOPES`` names the scope of every route the app serves (its route table, not a hand-made list of
  URLs): a new route that is not in it fails ``test_every_route_has_a_declared_scope`` until someone decides its
  scope, and then ``test_every_route_enforces_its_scope`` holds it to it: without a key 401, with a key that lacks
  the scope 403 (classify, admin and train keys; admin implies nothing, train is never implied), with the scope
  neither.
- **Keys never appear in logs**: requests with keys (good, unknown, lacking the scope, in either header) while
  every logger records at DEBUG and uvicorn logs each request, in-process and in a real ``imgcls serve
  --access-log``; no key appears in the log or in any answer.
- **Rate limits per key**, shared through Redis by two servers (two replicas): one key exhausted across both,
  the other still served by both. (One server, in memory and with Redis: tests/service/api/test_auth.py.)
- **Uploads cannot choose storage paths**: a multipart file name and a ``name`` full of ``../`` are labels only.
  Covered elsewhere: ids are checked before any path is built (tests/service/datasets/test_store.py
  ``test_ids_never_become_paths``, ``test_names_are_labels_for_people``; tests/service/api/test_datasets.py
  ``test_bad_requests``), and entry names never escape (tests/service/api/test_hostile_zips.py).
"""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from service.api.app import create_app
from service.api.auth import key_hash, new_key
from service.settings import ApiKey, ServiceSettings
from tests.redis_server import free_port
from tests.service.api.server import running_server, wait_until_ready
from tests.service.datasets.zips import folder_entries, zip_bytes

KEYS = {  # key -> the scopes it holds
    "classify": ("classify",),
    "ops": ("classify", "admin"),
    "admin-only": ("admin",),
    "train": ("train",),
}
SECRETS = {name: new_key() for name in KEYS}
API_KEYS = tuple(ApiKey(name=name, sha256=key_hash(SECRETS[name]), scopes=frozenset(KEYS[name])) for name in KEYS)

# The scope each route needs (None: public). Path parameters as the route table writes them.
SCOPES: dict[tuple[str, str], str | None] = {
    ("POST", "/v1/models/{name:str}/classify"): "classify",
    ("POST", "/v1/models/{name:str}/explain"): "classify",
    ("GET", "/v1/models"): "classify",
    ("GET", "/v1/models/{name:str}"): "classify",
    ("POST", "/v1/models/{name:str}/versions/{version:int}/load"): "admin",
    ("POST", "/v1/models/{name:str}/versions/{version:int}/unload"): "admin",
    ("POST", "/v1/models/{name:str}/promote"): "admin",
    ("PUT", "/v1/models/{name:str}/rollout"): "admin",
    ("GET", "/v1/models/{name:str}/rollout"): "classify",
    ("POST", "/v1/models/{name:str}/rollout/promote"): "admin",
    ("POST", "/v1/models/{name:str}/rollout/abort"): "admin",
    ("GET", "/v1/models/{name:str}/history"): "classify",
    ("GET", "/v1/models/{name:str}/versions/{version:int}/report"): "classify",
    ("POST", "/v1/models/{name:str}/versions"): "admin",
    ("POST", "/v1/datasets"): "train",
    ("GET", "/v1/datasets"): "train",
    ("GET", "/v1/datasets/{dataset_id:str}"): "train",
    ("DELETE", "/v1/datasets/{dataset_id:str}"): "train",
    ("POST", "/v1/fine-tuning/jobs"): "train",
    ("GET", "/v1/fine-tuning/jobs"): "train",
    ("GET", "/v1/fine-tuning/hyperparameters"): "train",
    ("GET", "/v1/fine-tuning/jobs/{job_id:str}"): "train",
    ("POST", "/v1/fine-tuning/jobs/{job_id:str}/cancel"): "train",
    ("GET", "/v1/fine-tuning/jobs/{job_id:str}/events"): "train",
    ("GET", "/v1/fine-tuning/jobs/{job_id:str}/metrics"): "train",
    ("GET", "/v1/fine-tuning/jobs/{job_id:str}/checkpoints"): "train",
    ("POST", "/v1/feedback"): "train",
    ("GET", "/v1/feedback"): "train",
    ("DELETE", "/v1/feedback"): "train",
    ("GET", "/v1/feedback/{feedback_id:str}/image"): "train",
    ("DELETE", "/v1/feedback/{feedback_id:str}"): "train",
    ("GET", "/v1/models/{name:str}/review"): "train",
    ("GET", "/v1/models/{name:str}/review/{prediction_id:str}/image"): "train",
    ("DELETE", "/v1/models/{name:str}/review/{prediction_id:str}"): "train",
    ("POST", "/v1/datasets/from-feedback"): "train",
    ("GET", "/healthz/live"): None,
    ("GET", "/healthz/ready"): None,
    ("GET", "/metrics"): None,
    ("GET", "/v2/health/live"): None,
    ("GET", "/v2/health/ready"): None,
    ("GET", "/v2"): "classify",
    ("GET", "/v2/models/{name:str}"): "classify",
    ("GET", "/v2/models/{name:str}/versions/{version:str}"): "classify",
    ("GET", "/v2/models/{name:str}/ready"): "classify",
    ("GET", "/v2/models/{name:str}/versions/{version:str}/ready"): "classify",
    ("GET", "/v2/models/{name:str}/config"): "classify",
    ("GET", "/v2/models/{name:str}/versions/{version:str}/config"): "classify",
    ("POST", "/v2/models/{name:str}/infer"): "classify",
    ("POST", "/v2/models/{name:str}/versions/{version:str}/infer"): "classify",
    ("POST", "/v2/repository/index"): "admin",
    ("POST", "/v2/repository/models/{name:str}/load"): "admin",
    ("POST", "/v2/repository/models/{name:str}/unload"): "admin",
    # the web page: static files that call the API above with the user's key
    ("GET", "/ui"): None,
    ("GET", "/"): None,
    ("GET", "/ui/static/*"): None,
    ("HEAD", "/ui/static/*"): None,
}
PUBLIC_PREFIXES = ("/schema",)  # the OpenAPI description and its viewers
VALUES = {
    "name": "fashion-mnist",
    "version": "1",
    "dataset_id": "ds_0123456789abcdef",
    "job_id": "ft_0123",
    "feedback_id": "fb_0123456789abcdef",
    "prediction_id": "pr_0123456789abcdef01234567",
}
BODIES = {  # bodies Litestar validates before the handler runs (and so before the key is looked at)
    "/v1/models/{name:str}/promote": {"version": 1},
    "/v1/fine-tuning/jobs": {"base_model": "fashion-mnist", "dataset": "ds_0123456789abcdef"},
    "/v1/feedback": {"model": "fashion-mnist", "label": "Bag", "prediction_id": "pr_0123456789abcdef01234567"},
    "/v1/datasets/from-feedback": {"model": "fashion-mnist"},
}


def route_table() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, static file routes folded into one ``*`` each."""
    app = create_app(ServiceSettings(auth_enabled=True, api_keys=API_KEYS, model_root=Path("/nonexistent")))
    routes = set()
    for path, handlers in app.route_handler_method_map.items():
        if path.startswith(PUBLIC_PREFIXES):
            continue
        folded = re.sub(r"^/ui/static/.*", "/ui/static/*", path)
        routes |= {(method, folded) for method in handlers if method != "OPTIONS"}
    return routes


def url_of(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda match: VALUES[match[1]], path)


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {SECRETS[name]}"}


# ---------------------------------------------------------------- scopes


def test_every_route_has_a_declared_scope() -> None:
    routes = route_table()
    assert routes - set(SCOPES) == set(), "routes without a declared scope: add them to SCOPES"
    assert set(SCOPES) - routes == set(), "SCOPES names routes the app no longer serves"
    admin = sorted(path for (_, path), scope in SCOPES.items() if scope == "admin")
    assert len(admin) == 10  # load, unload, promote, import; rollout start, promote, abort; the V2 index, load, unload


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("security")
    settings = ServiceSettings(
        model_root=root / "models", data_root=root / "data", auth_enabled=True, api_keys=API_KEYS, intra_op_threads=1
    )
    with running_server(settings, wait_ready=False) as url:  # no model: scopes are checked before anything
        yield url


@pytest.mark.parametrize(
    ("method", "path"),
    [route for route, scope in SCOPES.items() if scope is not None],
    ids=[f"{m} {p}" for (m, p), scope in SCOPES.items() if scope is not None],
)
def test_every_route_enforces_its_scope(keyed_server: str, method: str, path: str) -> None:
    scope = SCOPES[(method, path)]
    body = BODIES.get(path)

    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, keyed_server + url_of(path), json=body, headers=headers, timeout=30)

    missing = call({})
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert call({"authorization": "Bearer imgcls_not-a-key"}).status_code == 401
    for name, scopes in KEYS.items():
        answer = call(bearer(name))
        if scope in scopes:
            assert answer.status_code not in (401, 403), f"{name} key: {answer.status_code} {answer.text}"
        else:
            assert answer.status_code == 403, f"{name} key: {answer.status_code} {answer.text}"
            assert f"lacks the '{scope}' scope" in answer.text
        assert SECRETS[name] not in answer.text


def test_public_routes_need_no_key(keyed_server: str) -> None:
    for (method, path), scope in SCOPES.items():
        if scope is None and "*" not in path:
            assert httpx.request(method, keyed_server + path).status_code in (200, 302, 503), (
                path
            )  # 302: / to /ui; 503: no model


# ---------------------------------------------------------------- keys never logged


@contextmanager
def debug_logged_server(settings: ServiceSettings) -> Iterator[str]:
    """``running_server`` with uvicorn at DEBUG, its access log on, and its loggers propagating to the root
    logger (no logging config of its own), so ``caplog`` sees every line."""
    with running_server(settings, wait_ready=False, log_level="debug", access_log=True, log_config=None) as url:
        yield url


def requests_with_keys(url: str) -> list[httpx.Response]:
    """Good keys, unknown keys and keys without the scope, in both headers, on classify, admin and train routes."""
    wrong = "imgcls_" + "x" * 43
    answers = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for headers in (
            bearer("classify"),
            {"x-api-key": SECRETS["classify"]},
            {"authorization": f"Bearer {wrong}"},
            {"x-api-key": wrong},
            bearer("train"),
            bearer("ops"),
            {"authorization": f"bearer   {SECRETS['admin-only']}"},
        ):
            answers += [
                client.post("/v1/models/fashion-mnist/classify", content=b"not an image", headers=headers),
                client.get("/v1/models", headers=headers),
                client.post("/v1/models/fashion-mnist/promote", json={"version": 1}, headers=headers),
                client.get("/v1/datasets", headers=headers),
                client.get("/v2/models/fashion-mnist", headers=headers),
                client.post("/v2/repository/index", headers=headers),
            ]
    return answers


class Recorder(logging.Handler):
    """Every record, formatted with its arguments and any traceback, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self.levels: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.levels.add(record.levelno)


@contextmanager
def recording_logs() -> Iterator[Recorder]:
    """Record at DEBUG from every logger. Attached once the app has started: its logging config replaces the
    root logger's handlers (and pytest's caplog with them) and sets INFO."""
    recorder = Recorder()
    loggers = [logging.getLogger(name) for name in ("", "litestar", "uvicorn", "service", "redis", "httpx")]
    levels = [logger.level for logger in loggers]
    # the root, and every logger that does not pass its records up (uvicorn's own config makes some so)
    ends = [logging.getLogger()]
    ends += [
        item
        for item in logging.root.manager.loggerDict.values()
        if isinstance(item, logging.Logger) and not item.propagate
    ]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in ends:
        logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        for logger in ends:
            logger.removeHandler(recorder)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def test_keys_never_appear_in_logs_or_answers(service_settings: ServiceSettings) -> None:
    settings = service_settings.model_copy(update={"auth_enabled": True, "api_keys": API_KEYS})
    with debug_logged_server(settings) as url, recording_logs() as logs:
        answers = requests_with_keys(url)
    assert {200, 401, 403} <= {answer.status_code for answer in answers}
    assert any('"GET /v1/models HTTP/1.1" 200' in line for line in logs.lines)  # the access log ran
    assert logging.DEBUG in logs.levels  # and DEBUG records came through
    logged = "\n".join(logs.lines)
    for secret in [*SECRETS.values(), "imgcls_" + "x" * 43]:
        assert secret not in logged
        assert all(secret not in answer.text for answer in answers)


def test_keys_never_appear_in_the_log_of_imgcls_serve(model_root: Path) -> None:
    """The production logging path: ``imgcls serve --access-log`` in its own process, stdout and stderr."""
    port = free_port()
    keys = "[" + ",".join(key.model_dump_json() for key in API_KEYS) + "]"
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(model_root), "IMGCLS_API_KEYS": keys, "IMGCLS_INTRA_OP_THREADS": "1"}
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "1", "--access-log"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        answers = requests_with_keys(url)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert {200, 401, 403} <= {answer.status_code for answer in answers}
    assert '"GET /v1/models HTTP/1.1" 200' in output  # the access log ran
    for secret in [*SECRETS.values(), "imgcls_" + "x" * 43]:
        assert secret not in output


# ---------------------------------------------------------------- rate limits per key, across replicas


def test_rate_limits_hold_per_key_across_two_servers(service_settings: ServiceSettings, redis_url: str) -> None:
    suffix = os.urandom(4).hex()  # counters live in the session's Redis: names of our own
    first, second = f"limited-{suffix}", f"other-{suffix}"
    secrets = {first: new_key(), second: new_key()}
    keys = tuple(
        ApiKey(name=name, sha256=key_hash(key), scopes=frozenset({"classify"})) for name, key in secrets.items()
    )
    settings = service_settings.model_copy(
        update={"auth_enabled": True, "api_keys": keys, "rate_limit_per_minute": 4, "redis_url": redis_url}
    )
    with running_server(settings) as one, running_server(settings) as two:
        if time.time() % 60 > 50:  # the limit counts per clock minute: do not straddle two
            time.sleep(60 - time.time() % 60 + 0.1)

        def get(server: str, name: str) -> int:
            return httpx.get(f"{server}/v1/models", headers={"authorization": f"Bearer {secrets[name]}"}).status_code

        assert [get(one, first), get(two, first), get(one, first), get(two, first)] == [200] * 4
        assert [get(one, first), get(two, first)] == [429, 429]  # the limit is the key's, on every replica
        assert [get(one, second), get(two, second)] == [200, 200]  # another key is still served by both


# ---------------------------------------------------------------- uploads cannot choose storage paths


def test_a_client_file_name_or_dataset_name_never_becomes_a_path(tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    settings = ServiceSettings(model_root=tmp_path / "models", data_root=data_root, auth_enabled=False)
    archive = zip_bytes(folder_entries({"cat": 5, "dog": 5}))
    with running_server(settings, wait_ready=False) as url:
        by_file = httpx.post(
            f"{url}/v1/datasets", files={"file": ("../../../../tmp/evil.zip", archive, "application/zip")}
        )
        by_name = httpx.post(
            f"{url}/v1/datasets",
            content=archive,
            params={"name": "../../etc/x"},
            headers={"content-type": "application/zip"},
        )
    assert by_file.status_code == 201, by_file.text
    assert by_name.status_code == 201, by_name.text
    assert by_file.json()["name"] == "evil"  # the file name's stem, as a label
    assert by_name.json()["name"] == "../../etc/x"  # a label for people, nothing more
    stored = sorted(path.name for path in (data_root / "datasets").iterdir())
    assert stored == sorted([by_file.json()["id"], by_name.json()["id"]])
    assert all(re.fullmatch(r"ds_[0-9a-f]{16}", name) for name in stored)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # nothing beside the data root
    assert not list(tmp_path.rglob("*evil*"))
