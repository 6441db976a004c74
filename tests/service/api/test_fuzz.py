"""Fuzzing every /v1 and /v2 operation of our own OpenAPI schema with schemathesis, on a real server.

The schema is the one the server serves (/schema/openapi.json); the server is real (uvicorn, onnxruntime, a
private Redis for the job routes), with API keys on. Each operation is fuzzed twice: with a key that holds
every scope, and without a key. Requests come from the schema in both of schemathesis' modes: positive
(valid by the schema) and negative (violating it), with path parameters either generated or set to things
that exist (the model, a stored dataset, a queued job), so requests get past the 404s into the handlers;
the schema's own request examples are sent too. Every response must:

- not be a 5xx (``not_a_server_error``; the job routes have Redis, so their 503 would be a failure too), except
  the documented 503 of readiness (a version published but not loaded here is not ready),
- have a status code the schema documents for the operation, its documented content type, headers and body
  shape (``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``),
- be a 4xx for a request that violates the schema (``negative_data_rejection``),
- without a key, never be a success on a keyed route.

Nothing is excluded: unloading the serving version is refused (409), promotions hot-swap between the two
published versions, and datasets and jobs the fuzzer deletes or cancels are its own.

The normal run is bounded and repeatable: up to ``FUZZ_EXAMPLES`` (20) cases per operation with the key and a
third of that without, derandomized (the same cases every run): about 600 requests, 20 s. More cases, a fresh
draw each run (500: about 16,700 requests, 3½ minutes on 2 cores):

    IMGCLS_FUZZ_EXAMPLES=500 IMGCLS_FUZZ_RANDOM=1 .venv/bin/python -m pytest -p no:cacheprovider -s \\
        tests/service/api/test_fuzz.py

With ``-s`` the module prints how many requests it sent. A failure prints the request as a curl command.
"""

import os
import re
import shutil
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import APIOperation

from service.api.app import create_app
from service.api.auth import key_hash, new_key
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server
from tests.service.datasets.zips import folder_entries, zip_bytes

FUZZ_EXAMPLES = int(os.environ.get("IMGCLS_FUZZ_EXAMPLES", "20"))
RANDOM = os.environ.get("IMGCLS_FUZZ_RANDOM", "") not in ("", "0")
MODEL = "fashion-mnist"
KEY = new_key()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# negative_data_rejection too, for cases whose invalid part is the body or the path. Not for invalid query
# strings: Litestar reads a repeated scalar parameter (?cursor=a&cursor=b) as its last value, which that
# check counts as accepting an array where a string was due. Harmless, and not ours to change.
STRICT_LOCATIONS = {ParameterLocation.BODY, ParameterLocation.PATH}
# Readiness answers 503 by design (a version published but not loaded here, a server still loading): for these
# a 503 is checked as any documented status, not counted as a server error.
READINESS = {
    "/healthz/ready",
    "/v2/health/ready",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
}
UNKEYED = {"/healthz/live", "/healthz/ready", "/metrics", "/v2/health/live", "/v2/health/ready"}  # need no key

# Only schema-building needs no server: create_app does no I/O until its lifespan starts.
_BUILT = create_app(ServiceSettings(auth_enabled=False, model_root=Path("/nonexistent"))).openapi_schema.to_schema()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in _BUILT["paths"].items()
    for method in item
    if method in ("get", "post", "put", "patch", "delete") and path.startswith(("/v1/", "/v2", "/healthz", "/metrics"))
)


def documents_errors(method: str, path: str) -> bool:
    return {"400", "401", "403", "429"} <= set(_BUILT["paths"][path][method.lower()]["responses"])


def operation_params() -> list[Any]:
    return [pytest.param(method, path, id=f"{method} {path}") for method, path in OPERATIONS]


CASES_SENT: Counter[str] = Counter()  # "with key" / "without key" -> requests sent by this module


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        print_blob=False,
    )


# ---------------------------------------------------------------- the server, with something to find


class Fixtures:
    def __init__(self, url: str, dataset: str, job: str) -> None:
        self.url = url
        self.schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
        self.known = {"name": MODEL, "dataset_id": dataset, "job_id": job}  # "version" depends on the route


@pytest.fixture(scope="module")
def fuzzed(trained_repository: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixtures]:
    root = tmp_path_factory.mktemp("fuzz")
    settings_ = ServiceSettings(
        model_root=Path(shutil.copytree(trained_repository, root / "models")),
        data_root=root / "data",
        redis_url=redis_url,
        intra_op_threads=1,
        watch_interval_s=0.5,
        auth_enabled=True,
        api_keys=(ApiKey(name="fuzzer", sha256=key_hash(KEY), scopes=frozenset({"classify", "admin", "train"})),),
    )
    with running_server(settings_) as url:
        headers = {"authorization": f"Bearer {KEY}"}
        dataset = httpx.post(
            f"{url}/v1/datasets?name=fuzz",
            content=zip_bytes(folder_entries({"cat": 6, "dog": 6}), compression=zipfile.ZIP_STORED),
            headers={**headers, "content-type": "application/zip"},
        )
        assert dataset.status_code == 201, dataset.text
        job = httpx.post(
            f"{url}/v1/fine-tuning/jobs",  # no worker runs: it stays queued, for the job routes to find
            json={"base_model": MODEL, "dataset": dataset.json()["id"], "hyperparameters": {"epochs": 1}},
            headers=headers,
        )
        assert job.status_code == 201, job.text
        yield Fixtures(url, dataset.json()["id"], job.json()["id"])
    sent = ", ".join(f"{count} {label}" for label, count in sorted(CASES_SENT.items()))
    print(f"\nfuzzed {len(OPERATIONS)} operations: {sent} (requests)")  # shown with -s


# ---------------------------------------------------------------- one test per operation and key


def known_parameters(operation: APIOperation, fixtures: Fixtures) -> dict[str, Any]:
    names = {parameter.name for parameter in operation.path_parameters}
    known: dict[str, Any] = {name: value for name, value in fixtures.known.items() if name in names}
    if "version" in names:  # an int in /v1 paths, a string in /v2 ones
        known["version"] = 2 if operation.path.startswith("/v1") else "2"
    return known


def checks_for(case: schemathesis.Case) -> list[Any]:
    checks = [check for check in CHECKS if check is not not_a_server_error or case.operation.path not in READINESS]
    components = case.meta.components if case.meta is not None else {}
    invalid = {where for where, info in components.items() if info.mode is GenerationMode.NEGATIVE}
    if invalid and invalid <= STRICT_LOCATIONS:
        return [*checks, negative_data_rejection]
    return checks


def fuzz(operation: APIOperation, fixtures: Fixtures, *, keyed: bool, max_examples: int) -> None:
    headers = {"authorization": f"Bearer {KEY}"} if keyed else {}
    label = "with key" if keyed else "without key"
    generated = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if known := known_parameters(operation, fixtures):
        generated += [
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
            operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=known),
        ]
    runs = [(st.one_of(generated), max_examples)]
    if examples := operation.get_strategies_from_examples():
        runs.insert(0, (st.one_of(examples), 3))
    lock = threading.Lock()
    for strategy, count in runs:

        @fuzz_settings(count)
        @given(case=strategy)
        def send(case: schemathesis.Case) -> None:
            response = case.call(base_url=fixtures.url, headers=headers, timeout=30)
            with lock:
                CASES_SENT[label] += 1
            case.validate_response(response, checks=checks_for(case), headers=headers)
            if not keyed and operation.path not in UNKEYED:
                assert response.status_code >= 400, f"{case.method} {case.formatted_path} succeeded without a key"

        send()


@pytest.mark.parametrize(("method", "path"), operation_params())
def test_fuzz_with_a_key(fuzzed: Fixtures, method: str, path: str) -> None:
    fuzz(fuzzed.schema[path][method], fuzzed, keyed=True, max_examples=FUZZ_EXAMPLES)


@pytest.mark.parametrize(("method", "path"), operation_params())
def test_fuzz_without_a_key(fuzzed: Fixtures, method: str, path: str) -> None:
    fuzz(fuzzed.schema[path][method], fuzzed, keyed=False, max_examples=max(3, FUZZ_EXAMPLES // 3))


def schema_path(path: str) -> str:
    """``/v1/models/{name:str}`` (a route's path) -> ``/v1/models/{name}`` (the schema's)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def api_routes() -> set[tuple[str, str]]:
    """(method, schema path) of every /v1 and /v2 route the app serves, from its route table."""
    app = create_app(ServiceSettings(auth_enabled=False, model_root=Path("/nonexistent")))
    return {
        (method, schema_path(path))
        for path, handlers in app.route_handler_method_map.items()
        if path.startswith(("/v1/", "/v2"))
        for method in handlers
        if method not in ("HEAD", "OPTIONS")
    }


def test_every_route_is_in_the_schema_and_documents_its_errors() -> None:
    """Every /v1 and /v2 route of the app is described (none hidden with include_in_schema=False), so the
    tests above fuzz each one; and each documents its problem answers, not only its success."""
    routes = api_routes()
    assert len(routes) >= 31
    assert routes <= set(OPERATIONS)
    undocumented = {(m, p) for m, p in OPERATIONS if p not in UNKEYED and not documents_errors(m, p)}
    assert not undocumented, f"these routes do not declare their problem answers: {undocumented}"


# ---------------------------------------------------------------- regressions: what the fuzzing found, fixed


def test_numbers_in_other_digits_are_refused_not_a_500(fuzzed: Fixtures) -> None:
    """'¹'.isdigit() is True but int('¹') raises: a version, an alias or a header length written with such a
    digit was a 500 (service/api/v2/routes.py, service/api/v2/codec.py, service/repository/store.py)."""
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=fuzzed.url, headers=headers, timeout=30) as client:
        for path in ("", "/ready", "/config"):
            answer = client.get(f"/v2/models/{MODEL}/versions/\u00b9{path}")
            assert answer.status_code == 400, answer.text
            assert "positive integer" in answer.json()["error"]
        infer = client.post(f"/v2/models/{MODEL}/versions/\u00b9/infer", content=b"{}")
        assert infer.status_code == 400, infer.text
        length = client.post(
            f"/v2/models/{MODEL}/infer", content=b"{}", headers=[(b"inference-header-content-length", b"\xb9")]
        )
        assert length.status_code == 400, length.text
        assert "Inference-Header-Content-Length must be a non-negative integer" in length.json()["error"]
        alias = client.post(
            f"/v1/models/{MODEL}/classify",
            params={"alias": "\u00b9"},
            content=b"x",
            headers={"content-type": "image/png"},
        )
        assert alias.status_code == 404, alias.text
        assert "alias" in alias.json()["detail"]
        job = {"base_model": MODEL, "dataset": fuzzed.known["dataset_id"], "base_version": "\u00b9"}
        submitted = client.post("/v1/fine-tuning/jobs", json=job)
        assert submitted.status_code == 404, submitted.text


def test_the_command_line_reads_other_digits_as_an_alias() -> None:
    """The same slip in ``imgcls jobs submit --base NAME:VERSION`` (service/cli/jobs.py) crashed the command."""
    from service.cli.jobs import parse_base

    assert parse_base("pets:3") == ("pets", 3)
    assert parse_base("pets:\u00b9") == ("pets", "\u00b9")  # an alias the API then refuses with a 404


def test_a_metadata_filter_without_a_colon_is_a_400(fuzzed: Fixtures) -> None:
    """docs/api.md says 400; it was a 422 (service/api/v1/jobs.py)."""
    answer = httpx.get(
        f"{fuzzed.url}/v1/fine-tuning/jobs", params={"metadata": "team"}, headers={"authorization": f"Bearer {KEY}"}
    )
    assert answer.status_code == 400, answer.text
    assert "is not key:value" in answer.json()["detail"]


def operation(method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = _BUILT["paths"][path][method.lower()]
    return found


def test_the_schema_describes_the_answers_the_api_gives() -> None:
    """Each was a schema the fuzzing found the API at odds with (service/api/errors.py, service/api/openapi.py)."""
    problem = operation("POST", "/v1/models/{name}/classify")["responses"]["404"]["content"]
    assert list(problem) == ["application/problem+json"]  # 4xx were undocumented, 400 had Litestar's own shape
    v2_error = operation("GET", "/v2/models/{name}")["responses"]["400"]["content"]["application/json"]["schema"]
    assert v2_error["$ref"].endswith("/V2Error")
    infer_ok = operation("POST", "/v2/models/{name}/infer")["responses"]["200"]["content"]
    assert set(infer_ok) == {"application/json", "application/octet-stream"}  # was: JSON, "type": "string"
    assert infer_ok["application/json"]["schema"]["required"] == ["model_name", "model_version", "outputs"]
    events_ok = operation("GET", "/v1/fine-tuning/jobs/{job_id}/events")["responses"]["200"]["content"]
    assert events_ok["application/json"]["schema"] == {"$ref": "#/components/schemas/EventPage"}  # was: oneOf with {}
    assert "text/event-stream" in events_ok
    for path in ("/healthz/ready", "/v2/health/ready", "/v2/models/{name}/ready"):
        assert "503" in operation("GET", path)["responses"], path
    for method, path, media in (
        ("POST", "/v1/models/{name}/classify", "multipart/form-data"),
        ("POST", "/v1/datasets", "application/zip"),
        ("POST", "/v2/models/{name}/infer", "application/json"),
    ):
        assert media in operation(method, path)["requestBody"]["content"], path  # there was no request body
