"""POST/GET/DELETE /v1/datasets over real HTTP, with real zips. No model is needed, so none is trained."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.auth import key_hash, new_key
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server
from tests.service.api.test_classify import assert_problem
from tests.service.datasets.zips import folder_entries, image_bytes, symlink, zip_bytes

MAX_BODY = 2048  # the app-wide body limit; uploads here are larger and must still pass
MAX_UPLOAD = 200_000
GOOD = zip_bytes([*folder_entries({"cat": 5, "dog": 5}), ("cat/notes.txt", b"not an image")])
ZIP = {"content-type": "application/zip"}


def settings_for(root: Path, **update: object) -> ServiceSettings:
    settings = ServiceSettings(
        model_root=root / "models",
        data_root=root / "data",
        auth_enabled=False,
        intra_op_threads=1,
        max_body_bytes=MAX_BODY,
        dataset_max_upload_bytes=MAX_UPLOAD,
    )
    return settings.model_copy(update=update)


@pytest.fixture(scope="module")
def data_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("datasets-api")
    with running_server(settings_for(root), wait_ready=False) as url:
        yield url, root / "data"


@pytest.fixture
def server(data_server: tuple[str, Path]) -> str:
    return data_server[0]


def upload(server: str, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{server}/v1/datasets", content=body, headers=ZIP, params=params)


# ---------------------------------------------------------------- the life of a dataset


def test_upload_list_get_delete(data_server: tuple[str, Path]) -> None:
    server, data_root = data_server
    assert len(GOOD) > MAX_BODY

    raw = upload(server, GOOD, name="pets")
    assert raw.status_code == 201, raw.text
    first = raw.json()
    assert (first["name"], first["classes"], first["files"]) == ("pets", {"cat": 5, "dog": 5}, 10)
    assert first["skipped"] == [{"path": "cat/notes.txt", "reason": first["skipped"][0]["reason"]}]
    assert "not an image" in first["skipped"][0]["reason"]
    assert first["skipped_count"] == 1
    assert len(list((data_root / "datasets" / first["id"] / "images" / "cat").iterdir())) == 5

    multipart = httpx.post(f"{server}/v1/datasets", files={"file": ("holiday.zip", GOOD, "application/zip")})
    assert multipart.status_code == 201, multipart.text
    second = multipart.json()
    assert (second["name"], second["classes"], second["sha256"]) == ("holiday", first["classes"], first["sha256"])

    listed = httpx.get(f"{server}/v1/datasets")
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()] == [second["id"], first["id"]]
    assert httpx.get(f"{server}/v1/datasets/{first['id']}").json() == first

    assert httpx.delete(f"{server}/v1/datasets/{first['id']}").status_code == 204
    assert_problem(httpx.get(f"{server}/v1/datasets/{first['id']}"), 404, "no dataset with id", first["id"])
    assert_problem(httpx.delete(f"{server}/v1/datasets/{first['id']}"), 404, "no dataset with id")
    assert [d["id"] for d in httpx.get(f"{server}/v1/datasets").json()] == [second["id"]]
    assert sorted(p.name for p in (data_root / "datasets").iterdir()) == [second["id"]]  # no upload left over


def test_a_chunked_upload_without_length_is_counted_too(server: str) -> None:
    def body() -> Iterator[bytes]:
        yield GOOD
        yield b"\0" * MAX_UPLOAD

    response = httpx.post(f"{server}/v1/datasets", content=body(), headers=ZIP)
    assert_problem(response, 413, f"over {MAX_UPLOAD:,} bytes")


# ---------------------------------------------------------------- every bad input: 4xx problem+json with the reason


BAD_UPLOADS = {
    "one class": (zip_bytes(folder_entries({"cat": 6})), 422, ["only one class folder (cat)"]),
    "too few": (zip_bytes(folder_entries({"cat": 5, "dog": 1})), 422, ["fewer than 5 readable images: dog (1)"]),
    "zip slip": (zip_bytes([*folder_entries({"a": 5, "b": 5}), ("../../x.png", image_bytes())]), 400, ["'..'"]),
    "absolute": (zip_bytes([*folder_entries({"a": 5, "b": 5}), ("/tmp/x.png", image_bytes())]), 400, ["absolute"]),
    "link": (zip_bytes([*folder_entries({"a": 5, "b": 5}), symlink("a/x.png", "/etc")]), 400, ["symbolic link"]),
    "not a zip": (b"GIF89a, not a zip", 400, ["not a zip archive"]),
    "empty": (b"", 400, ["the upload is empty"]),
    "bomb": (zip_bytes([*folder_entries({"a": 5, "b": 5}), ("a/z.png", b"\0" * 20_000_000)]), 413, ["zip bomb"]),
    "too big": (GOOD + b"\0" * MAX_UPLOAD, 413, [f"over {MAX_UPLOAD:,} bytes"]),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads(server: str, case: str) -> None:
    body, status, words = BAD_UPLOADS[case]
    assert_problem(upload(server, body), status, *words)


def test_bad_requests(server: str) -> None:
    url = f"{server}/v1/datasets"
    assert_problem(httpx.post(url, content=GOOD, headers={"content-type": "text/plain"}), 415, "application/zip")
    no_file = httpx.post(url, files={"data": ("a.zip", GOOD, "application/zip")})
    assert_problem(no_file, 400, "no multipart field named 'file' (found: data)")
    assert_problem(upload(server, GOOD, name="x" * 101), 400, "name")
    assert_problem(httpx.get(f"{url}/ds_.."), 404, "no dataset with id 'ds_..'; GET /v1/datasets lists them")
    assert_problem(httpx.delete(f"{url}/..%2F..%2Fmodels"), 404)


# ---------------------------------------------------------------- the train scope


def test_datasets_need_the_train_scope(tmp_path: Path) -> None:
    keys = {scope: new_key() for scope in ("classify", "admin", "train")}
    api_keys = (
        ApiKey(name="app", sha256=key_hash(keys["classify"]), scopes=frozenset({"classify"})),
        ApiKey(name="ops", sha256=key_hash(keys["admin"]), scopes=frozenset({"classify", "admin"})),
        ApiKey(name="trainer", sha256=key_hash(keys["train"]), scopes=frozenset({"train"})),
    )
    settings = settings_for(tmp_path, auth_enabled=True, api_keys=api_keys)
    with running_server(settings, wait_ready=False) as server:
        url = f"{server}/v1/datasets"
        assert_problem(httpx.get(url), 401, "API key")
        for holder in ("classify", "admin"):
            bearer = {"authorization": f"Bearer {keys[holder]}"}
            assert_problem(httpx.get(url, headers=bearer), 403, "'train' scope")
            assert_problem(httpx.post(url, content=GOOD, headers={**ZIP, **bearer}), 403, "'train' scope")
        trainer = {"authorization": f"Bearer {keys['train']}"}
        created = httpx.post(url, content=GOOD, headers={**ZIP, **trainer})
        assert created.status_code == 201, created.text
        assert [d["id"] for d in httpx.get(url, headers=trainer).json()] == [created.json()["id"]]
