"""The Classify view's heat map toggle in a real browser (headless Chromium, Playwright), against a real server
holding a cnn published with its explain graph."""

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.settings import ServiceSettings
from tests.conftest import EXPLAINABLE_MODEL
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.web.test_browser import CHROMIUM, SCREENSHOTS, WIDE, browser, new_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is missing: apt-get install chromium")
__all__ = ["browser"]  # the module's Chromium, shared with test_browser.py


def test_the_heat_map_toggles_over_the_answered_image(
    explainable_repository: Path, tmp_path: Path, browser: Any
) -> None:
    expect = sync_api.expect
    settings = ServiceSettings(
        model_root=Path(shutil.copytree(explainable_repository, tmp_path / "models")),
        auth_enabled=False,
        intra_op_threads=1,
    )
    with running_server(settings) as url:
        page, problems = new_page(browser, WIDE)
        page.goto(f"{url}/ui#classify")
        page.locator(f"#classify-model option[value='{EXPLAINABLE_MODEL}']").wait_for(state="attached")
        page.set_input_files(
            "#classify-files", files=[{"name": "x.png", "mimeType": "image/png", "buffer": png_bytes(7)}]
        )
        card = page.locator(".run .card.result").first
        image, toggle = card.locator("img.thumb"), card.get_by_role("button", name="Show heat map")
        original = image.get_attribute("src")

        toggle.click()
        hide = card.get_by_role("button", name="Hide heat map")
        expect(hide).to_have_attribute("aria-pressed", "true")
        expect(image).not_to_have_attribute("src", original)
        expect(image).to_have_attribute("src", re.compile("^blob:"))
        expect(image).to_have_attribute("alt", re.compile(f"^where {EXPLAINABLE_MODEL} saw "))
        page.wait_for_function(  # the 224 px overlay, not the 28 px input
            "() => document.querySelector('.run .card.result img.thumb').naturalWidth === 224"
        )
        page.screenshot(path=SCREENSHOTS / "classify-heat-map.png", full_page=True)

        hide.click()
        expect(card.get_by_role("button", name="Show heat map")).to_have_attribute("aria-pressed", "false")
        expect(image).to_have_attribute("src", original)
        assert problems == []
