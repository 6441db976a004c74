"""The Models view in a real browser (Debian's headless Chromium, Playwright; see test_browser.py) with a
running rollout: its live figures appear and follow the traffic, and the Abort and Promote buttons end it.
Screenshot: var/screenshots/rollout.png."""

import shutil
from pathlib import Path
from typing import Any

import httpx

from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.web.test_browser import SCREENSHOTS, WIDE, browser, new_page, pytestmark, sync_api

__all__ = ["browser", "pytestmark"]  # test_browser.py's Chromium fixture, and its skip when Chromium is missing

MODEL = "fashion-mnist"


def classify(url: str, count: int, first_seed: int = 0) -> None:
    for seed in range(first_seed, first_seed + count):
        answer = httpx.post(
            f"{url}/v1/models/{MODEL}/classify", content=png_bytes(seed), headers={"content-type": "image/png"}
        )
        assert answer.status_code == 200


def test_the_models_view_shows_a_running_rollout_and_ends_it(
    trained_repository: Path, tmp_path: Path, browser: Any
) -> None:
    expect = sync_api.expect
    models = Path(shutil.copytree(trained_repository, tmp_path / "models"))
    settings = ServiceSettings(model_root=models, auth_enabled=False, intra_op_threads=1, watch_interval_s=0.5)
    with running_server(settings) as url:
        body = {"version": 2, "mode": "shadow", "percent": 100, "reason": "browser test"}
        assert httpx.put(f"{url}/v1/models/{MODEL}/rollout", json=body).status_code == 201
        classify(url, 6)
        page, problems = new_page(browser, WIDE)
        page.goto(f"{url}/ui#models")
        panel = page.locator(f'article[data-model="{MODEL}"] section.rollout')
        expect(panel).to_be_visible()
        expect(panel.locator("h4")).to_contain_text("v2 beside v1, shadow at 100 %")
        expect(panel.locator(".rollout-requests")).to_contain_text("6 compared")
        expect(panel.locator(".rollout-agreement")).to_contain_text("100.00 % of 6 images")
        expect(panel).to_contain_text("browser test")
        classify(url, 4, first_seed=6)  # the panel follows the traffic without a reload
        expect(panel.locator(".rollout-requests")).to_contain_text("10 compared", timeout=10_000)
        page.screenshot(path=str(SCREENSHOTS / "rollout.png"), full_page=True)

        panel.locator("button.rollout-abort").click()
        expect(page.locator("#models-notice")).to_contain_text("rollout of v2 aborted; v1 still serves")
        expect(panel).to_have_count(0)
        history = httpx.get(f"{url}/v1/models/{MODEL}/history").json()
        assert history[0]["kind"] == "rollout aborted" and history[0]["reason"] == "abort from the web page"

        assert httpx.put(f"{url}/v1/models/{MODEL}/rollout", json=body).status_code == 201
        page.locator("#models-refresh").click()
        panel.locator("button.rollout-promote").click()
        expect(page.locator("#models-notice")).to_contain_text("rollout of v2 promoted; v2 serves now")
        assert httpx.get(f"{url}/v1/models/{MODEL}").json()["serving_version"] == 2
        assert problems == [], problems
