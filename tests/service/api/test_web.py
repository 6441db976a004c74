"""The web page and its static files, as the API serves them (the page in a browser:
tests/service/web/test_browser.py)."""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.api.auth import key_hash, new_key
from service.api.web import STATIC, static_digest
from service.settings import ApiKey, ServiceSettings
from tests.service.api.server import running_server

KEY = new_key()
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture
def secured(service_settings: ServiceSettings) -> Iterator[str]:
    """The API with auth on: the page must load without a key all the same."""
    keys = (ApiKey(name="ops", sha256=key_hash(KEY), scopes=frozenset({"classify"})),)
    with running_server(service_settings.model_copy(update={"auth_enabled": True, "api_keys": keys})) as url:
        yield url


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page)


def test_the_page_loads_without_a_key_and_names_versioned_assets(secured: str) -> None:
    answer = httpx.get(f"{secured}/ui")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assets = asset_urls(answer.text)
    digest = static_digest()
    assert sorted(assets) == sorted(f"/ui/static/{digest}/{name}" for name in ("app.js", "app.css", "icon.svg"))
    assert "{{static}}" not in answer.text

    root = httpx.get(f"{secured}/")
    assert root.status_code == 302 and root.headers["location"] == "/ui"
    assert httpx.get(f"{secured}/v1/models").status_code == 401  # the API itself still needs the key


def test_assets_have_their_types_and_are_cached_as_immutable(server: str) -> None:
    page = httpx.get(f"{server}/ui").text
    prefix = f"/ui/static/{static_digest()}"
    files = sorted(path.relative_to(STATIC).as_posix() for path in STATIC.rglob("*") if path.is_file())
    assert {"app.js", "api.js", "classify.js", "models.js", "finetune.js", "chart.js", "dom.js"} <= set(files)
    for name in files:
        answer = httpx.get(f"{server}{prefix}/{name}")
        assert answer.status_code == 200, name
        suffix = name[name.rindex(".") :]
        assert answer.headers["content-type"].split(";")[0] == TYPES[suffix], name
        cache = answer.headers["cache-control"]
        assert "max-age=31536000" in cache and "immutable" in cache and "public" in cache, cache
        assert answer.headers.get("etag") and answer.headers.get("last-modified")
        assert answer.content == (STATIC / name).read_bytes()
    assert all(url.startswith(prefix) for url in asset_urls(page))

    missing = httpx.get(f"{server}{prefix}/nothing.js")
    assert missing.status_code == 404
    stale = httpx.get(f"{server}/ui/static/000000000000/app.js")  # an older release's digest
    assert stale.status_code == 404
    paths = httpx.get(f"{server}/schema/openapi.json").json()["paths"]
    assert "/v1/models" in paths and not [path for path in paths if path == "/" or path.startswith("/ui")]


def test_every_module_import_resolves_to_a_served_file(server: str) -> None:
    prefix = f"{server}/ui/static/{static_digest()}"
    for module in sorted(STATIC.glob("*.js")):
        for imported in re.findall(r'^import .* from "\./([^"]+)";$', module.read_text(), re.MULTILINE):
            assert (STATIC / imported).is_file(), f"{module.name} imports {imported}"
            assert httpx.get(f"{prefix}/{imported}").status_code == 200


def test_the_digest_follows_the_content(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "a.js").write_text("one")
    first = static_digest(folder)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    (folder / "a.js").write_text("two")
    assert static_digest(folder) != first
