"""The Review view and the Classify view's correction in a real browser (headless Chromium, Playwright),
against a real server that keeps every input (threshold 1.0: every prediction is low-confidence)."""

import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.web.test_browser import CHROMIUM, SCREENSHOTS, WIDE, browser, new_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is missing: apt-get install chromium")
__all__ = ["browser"]  # the module's Chromium, shared with test_browser.py
MODEL = "fashion-mnist"


def test_review_by_keyboard_and_correct_an_answer_in_classify(
    trained_repository: Path, tmp_path: Path, browser: Any
) -> None:
    expect = sync_api.expect
    settings = ServiceSettings(
        model_root=Path(shutil.copytree(trained_repository, tmp_path / "models")),
        feedback_root=tmp_path / "feedback",
        auth_enabled=False,
        intra_op_threads=1,
        keep_predictions=True,
        keep_predictions_threshold=1.0,
    )
    with running_server(settings) as url:
        answer = httpx.post(
            f"{url}/v1/models/{MODEL}/classify", files=[("images", (f"{i}.png", png_bytes(i))) for i in range(3)]
        ).json()
        ids = [result["prediction_id"] for result in answer["results"]]
        folder = settings.feedback_root / MODEL / "kept"
        deadline = time.monotonic() + 10
        while not (folder.is_dir() and len(list(folder.iterdir())) == 3):  # written just after the answer
            assert time.monotonic() < deadline, "the inputs were not kept"
            time.sleep(0.05)

        page, problems = new_page(browser, WIDE)
        page.goto(f"{url}/ui#review")
        status = page.locator("#review-status")
        expect(status).to_have_text("3 predictions of fashion-mnist waiting")
        item = page.locator("#review-item")
        expect(item.locator(".top-k .label")).to_have_count(3)
        expect(item.locator(".review-labels button")).to_have_count(10)
        expect(item.locator("img")).to_have_attribute("src", re.compile("^blob:"))
        page.screenshot(path=SCREENSHOTS / "review.png", full_page=True)

        page.keyboard.press("2")  # the model's second label: Trouser
        expect(status).to_contain_text("recorded Trouser")
        expect(item).to_contain_text("1 of 2")
        page.keyboard.press("ArrowRight")  # skip one
        expect(item).to_contain_text("2 of 2")
        page.keyboard.press("ArrowLeft")
        expect(item).to_contain_text("1 of 2")
        best = item.locator(".top-k .label.top .label-name").inner_text()
        page.keyboard.press("Enter")  # confirm the top-1
        expect(status).to_contain_text(f"recorded {best} (confirmation)")
        item.get_by_role("button", name=re.compile("Bag$")).click()
        expect(item).to_contain_text("Nothing waits for review")

        recorded = httpx.get(f"{url}/v1/feedback", params={"model": MODEL}).json()
        assert {item["prediction_id"] for item in recorded} == set(ids)
        assert sorted(item["label"] for item in recorded) == sorted(["Trouser", best, "Bag"])

        page.click("nav a[href='#classify']")  # "wrong? pick the right label" under an answer
        page.locator(f"#classify-model option[value='{MODEL}']").wait_for(state="attached")
        page.set_input_files(
            "#classify-files", files=[{"name": "x.png", "mimeType": "image/png", "buffer": png_bytes(9)}]
        )
        card = page.locator(".run .card.result").first
        card.locator("select.fix-label").select_option("Coat")
        expect(card.locator(".fix-note")).to_have_text(
            re.compile(r"recorded as a (correction|confirmation), thank you")
        )
        page.screenshot(path=SCREENSHOTS / "classify-correction.png", full_page=True)
        assert len(httpx.get(f"{url}/v1/feedback").json()) == 4
        assert problems == []
