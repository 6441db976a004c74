"""The web page in a real browser: Debian's headless Chromium driven by Playwright, against the whole stack
(a private Redis, the API in a thread, a real ``imgcls worker``; tests/training/worker/conftest.py).

Each view is saved as a screenshot under var/screenshots/ (printed at the end of the run): look at them.
"""

import io
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.api.auth import key_hash, new_key
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from service.settings import ApiKey, ServiceSettings
from tests.conftest import FASHION_MNIST
from tests.service.api.server import running_server
from tests.service.importing.onnx_models import LABELS, nhwc_softmax_model
from tests.training.worker.conftest import Stack
from training.data import load_dataset

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 90_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is missing: apt-get install chromium (scripts/test.sh does)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()
    print(f"\nscreenshots of the web page: {SCREENSHOTS}")


def new_page(browser: Any, viewport: dict[str, int]) -> tuple[Any, list[str]]:
    """A page in a fresh context, and the list its script errors and failed console messages go to."""
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return page, problems


def png(image: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.numpy(), "L").save(buffer, "PNG")
    return buffer.getvalue()


def images_it_gets_right(url: str) -> list[dict[str, Any]]:
    """A test sneaker and a test trouser that the stack's base model labels right, as Playwright file payloads."""
    test = load_dataset("fashion-mnist", fashion_mnist_dir=FASHION_MNIST)
    chosen = []
    for label, name in ((7, "Sneaker"), (1, "Trouser")):
        for index in (test.test_labels == label).nonzero().flatten()[:30].tolist():
            data = png(test.test_images[index, 0])
            answer = httpx.post(
                f"{url}/v1/models/fashion-mnist/classify", content=data, headers={"Content-Type": "image/png"}
            )
            if answer.json()["results"][0]["top"][0]["label"] == name:
                chosen.append({"name": f"{name.lower()}-{index}.png", "mimeType": "image/png", "buffer": data})
                break
        else:
            pytest.fail(f"the base model labels none of the first 30 test {name}s right")
    return chosen


def with_junk(dataset_zip: bytes) -> bytes:
    """The dataset zip plus two files the upload skips, so the report has something to say about them."""
    buffer = io.BytesIO(dataset_zip)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("sneaker/notes.txt", "not an image")
        archive.writestr("__MACOSX/sneaker/._1.png", "resource fork")
    return buffer.getvalue()


def classify_through_the_page(page: Any, images: list[dict[str, Any]]) -> Any:
    page.locator("#classify-model option[value='fashion-mnist']").wait_for(state="attached")
    page.select_option("#classify-model", "fashion-mnist")
    page.set_input_files("#classify-files", files=images)
    run = page.locator(".run").first
    run.wait_for()
    return run


def test_classify_fine_tune_and_promote_in_the_browser(
    stack_factory: Callable[..., Stack], dataset_zip: bytes, browser: Any
) -> None:
    expect = sync_api.expect
    stack = stack_factory()
    images = images_it_gets_right(stack.url)
    page, problems = new_page(browser, WIDE)

    # (a) classify: the right label on top, the version that answered and the latency
    page.goto(f"{stack.url}/ui")
    run = classify_through_the_page(page, images)
    cards = run.locator(".card.result")
    expect(cards).to_have_count(2)
    expect(cards.nth(0).locator(".label.top .label-name")).to_have_text("Sneaker")
    expect(cards.nth(1).locator(".label.top .label-name")).to_have_text("Trouser")
    expect(cards.nth(0).locator(".label")).to_have_count(5)
    expect(run.locator(".run-title .version")).to_have_text("v1")
    expect(run.locator(".run-title .latency")).to_have_text(re.compile(r"2 images in [0-9.]+ ms"))
    page.screenshot(path=SCREENSHOTS / "classify.png", full_page=True)

    # (b) fine-tuning: upload, see the report, start a 2-epoch job, watch the curve grow to succeeded
    page.click("nav a[href='#fine-tuning']")
    page.set_input_files(
        "#dataset-file", files=[{"name": "shoes.zip", "mimeType": "application/zip", "buffer": with_junk(dataset_zip)}]
    )
    page.click("#dataset-upload")
    report = page.locator("#dataset-report")
    expect(report).to_contain_text("120 images in 3 classes")
    expect(report.locator("table.classes tbody tr")).to_have_count(3)
    expect(report.locator("table.classes tbody tr").first).to_contain_text("ankle-boot40")
    expect(report.locator(".skipped summary")).to_have_text("2 files skipped")
    page.fill("#job-epochs", "2")
    page.fill("#job-batch", "16")
    page.fill("#job-lr", "0.01")
    page.check("#job-auto-promote")
    page.fill("#job-min-accuracy", "0.5")
    page.evaluate("""() => {  // record how many points the loss chart shows, each time it is drawn
        window.pointCounts = [];
        const plot = document.querySelector('#chart-loss .plot');
        new MutationObserver(() => {
            const count = plot.querySelectorAll('circle.point').length;
            if (window.pointCounts.at(-1) !== count) window.pointCounts.push(count);
        }).observe(plot, {childList: true, subtree: true});
    }""")
    page.click("#job-start")
    status = page.locator("#job-status")
    page.locator("#chart-loss circle.point").first.wait_for(timeout=TIMEOUT_MS)
    page.screenshot(path=SCREENSHOTS / "fine-tuning-running.png", full_page=True)
    expect(status).to_have_attribute("data-status", "succeeded", timeout=TIMEOUT_MS)
    job = httpx.get(f"{stack.url}/v1/fine-tuning/jobs", params={"limit": 1}).json()["data"][0]
    model = job["result"]["model"]
    expect(status).to_contain_text(f"published {model} v1")
    expect(status).to_contain_text("promoted to production")
    expect(page.locator("#chart-loss circle.point")).to_have_count(4)  # training and validation, 2 epochs each
    expect(page.locator("#chart-accuracy circle.point")).to_have_count(4)
    counts = page.evaluate("window.pointCounts")
    assert counts[-1] == 4 and 2 in counts and counts == sorted(counts), counts  # grew an epoch at a time
    expect(page.locator("#job-log li.log-epoch")).to_have_count(2)
    expect(page.locator("#job-cancel")).to_be_disabled()
    page.screenshot(path=SCREENSHOTS / "fine-tuning-done.png", full_page=True)

    page.fill("#job-epochs", "500")  # a long job, cancelled from the page once it trains
    page.uncheck("#job-auto-promote")
    page.click("#job-start")
    expect(status).to_have_attribute("data-status", "running", timeout=TIMEOUT_MS)
    page.locator("#chart-loss circle.point").first.wait_for(timeout=TIMEOUT_MS)
    page.click("#job-cancel")
    expect(status).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(status).to_contain_text("nothing was published")
    expect(page.locator("#job-cancel")).to_be_disabled()
    page.screenshot(path=SCREENSHOTS / "fine-tuning-cancelled.png", full_page=True)

    # (c) models: the new model with its lineage; promote the base's v2 (with confirmation), then roll back
    page.click("nav a[href='#models']")
    new = page.locator(f"article[data-model='{model}']")
    expect(new.locator("td[data-label='Lineage']")).to_have_text(
        f"fine-tuned from fashion-mnist v1dataset: {job['dataset']}job: {job['id']}"
    )
    base = page.locator("article[data-model='fashion-mnist']")
    base.get_by_role("button", name="Promote v2").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Promote fashion-mnist v2?")
    page.screenshot(path=SCREENSHOTS / "models-confirm.png")
    dialog.get_by_role("button", name="Promote").click()
    expect(page.locator("#models-notice")).to_have_text("fashion-mnist: production is v2 now; serving v2.")
    base.get_by_role("button", name="Roll back to v1").click()
    page.keyboard.press("Escape")  # the dialog closes and nothing changes
    expect(dialog).to_be_hidden()
    assert httpx.get(f"{stack.url}/v1/models/fashion-mnist").json()["aliases"]["production"] == 2
    page.screenshot(path=SCREENSHOTS / "models.png", full_page=True)
    assert problems == []

    phone, phone_problems = new_page(browser, PHONE)
    phone.goto(f"{stack.url}/ui#classify")
    classify_through_the_page(phone, images)
    phone.screenshot(path=SCREENSHOTS / "phone-classify.png", full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than a phone
    phone.goto(f"{stack.url}/ui#models")
    phone.locator(f"article[data-model='{model}']").wait_for()
    phone.screenshot(path=SCREENSHOTS / "phone-models.png", full_page=True)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than a phone
    assert phone_problems == []


def test_with_auth_on_a_wrong_key_shows_the_apis_error_in_words(
    trained_repository: Path, tmp_path: Path, browser: Any
) -> None:
    expect = sync_api.expect
    key = new_key()
    keys = (ApiKey(name="viewer", sha256=key_hash(key), scopes=frozenset({"classify"})),)
    models = Path(shutil.copytree(trained_repository, tmp_path / "models"))
    settings = ServiceSettings(model_root=models, auth_enabled=True, api_keys=keys, intra_op_threads=1)
    with running_server(settings) as url:
        page, _ = new_page(browser, WIDE)
        page.goto(f"{url}/ui")
        error = page.locator("#classify-error")
        expect(error).to_contain_text("401 unauthorized: this endpoint needs an API key")

        page.fill("#api-key", "imgcls_not-the-key")
        page.keyboard.press("Enter")
        expect(error).to_contain_text("the API key is not valid (check for a typo or an expired key)")
        expect(error).to_contain_text("Type a valid key in the API key field")
        page.screenshot(path=SCREENSHOTS / "auth-wrong-key.png")

        page.fill("#api-key", key)
        page.keyboard.press("Enter")
        expect(error).to_be_hidden()
        expect(page.locator("#classify-model")).to_have_value("fashion-mnist")
        assert page.evaluate("sessionStorage.getItem('imgcls.apiKey')") == key
        assert page.evaluate("localStorage.length") == 0 and page.input_value("#api-key") == ""

        page.focus("#api-key")  # the keyboard reaches the file picker, and the drop zone shows where focus is
        order = []
        while len(order) < 10 and (not order or order[-1] != "classify-files"):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        assert order == [
            "BUTTON",
            "forget-key",
            "classify-model",
            "classify-version",
            "classify-top-k",
            "classify-files",
        ], order
        assert page.eval_on_selector("#drop-zone", "zone => getComputedStyle(zone).outlineStyle") == "solid"

        page.click("nav a[href='#models']")  # promoting needs the admin scope this key lacks
        page.locator("article[data-model='fashion-mnist']").get_by_role("button", name="Promote v2").click()
        page.get_by_role("button", name="Promote", exact=True).click()
        expect(page.locator("#models-error")).to_contain_text("key 'viewer' lacks the 'admin' scope")


def test_an_imported_model_classifies_and_says_where_it_came_from(
    trained_repository: Path, tmp_path: Path, browser: Any
) -> None:
    """An ONNX file as Keras exports one (channels last, a softmax in the graph), imported beside the trained
    model: the page classifies a photo with it and its Models card names the file it was imported from."""
    expect = sync_api.expect
    models = Path(shutil.copytree(trained_repository, tmp_path / "models"))
    import_onnx(
        ModelRepository(models),
        nhwc_softmax_model(tmp_path / "keras.onnx"),
        name="pets",
        labels=LABELS,
        options=ImportOptions(),
        source="keras.onnx",
        command="imgcls models import keras.onnx --name pets --labels labels.txt",
    )
    settings = ServiceSettings(model_root=models, auth_enabled=False, intra_op_threads=1)
    with running_server(settings) as url:
        page, problems = new_page(browser, WIDE)
        page.goto(f"{url}/ui")
        page.locator("#classify-model option[value='pets']").wait_for(state="attached")
        page.select_option("#classify-model", "pets")
        expect(page.locator("#classify-top-k")).to_have_value("3")  # 5 by default, but pets has 3 labels
        page.set_input_files("#classify-files", files=[{"name": "cat.png", "mimeType": "image/png", "buffer": photo()}])
        run = page.locator(".run").first
        run.wait_for()
        expect(run.locator(".card.result")).to_have_count(1)
        expect(run.locator(".card.result .label")).to_have_count(3)  # every label of the model, ranked
        expect(run.locator(".card.result .label.top .label-name")).to_have_text(re.compile("^(cat|dog|fish)$"))

        page.click("nav a[href='#models']")
        card = page.locator("article[data-model='pets']")
        expect(card).to_contain_text("imported from keras.onnx")
        expect(card.locator("td[data-label='Test accuracy']")).to_have_text("—")  # nothing measured on import
        page.screenshot(path=SCREENSHOTS / "models-imported.png", full_page=True)
        assert problems == []


def photo() -> bytes:
    """A 300x200 colour photo (noise), larger than the model's 32x32 input: it is resized, then cropped."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_without_a_live_worker_the_fine_tuning_tab_says_jobs_would_wait(
    stack_factory: Callable[..., Stack], browser: Any
) -> None:
    expect = sync_api.expect
    stack = stack_factory(workers=0)
    page, problems = new_page(browser, WIDE)
    page.goto(f"{stack.url}/ui#fine-tuning")
    notice = page.locator("#ft-workers")
    expect(notice).to_have_text(
        "No fine-tuning worker is running: a job you start waits in the queue until one starts "
        "(imgcls up starts them; or run imgcls worker with the same IMGCLS_REDIS_URL)."
    )
    page.screenshot(path=SCREENSHOTS / "fine-tuning-no-worker.png")

    stack.start_worker()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while httpx.get(f"{stack.url}/healthz/ready").json()["job_workers"] != 1:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    page.click("nav a[href='#models']")
    page.click("nav a[href='#fine-tuning']")  # the tab asks again each time it is shown
    expect(notice).to_be_hidden()
    assert problems == []
