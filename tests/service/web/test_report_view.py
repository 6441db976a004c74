"""The Report view in a real browser (Debian's headless Chromium, Playwright; see test_browser.py): two versions
side by side, the changes marked, the confusion matrix read out under the pointer, the threshold slider, and
a version without a report saying how to make one. Screenshots go to var/screenshots/report*.png."""

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from service.evaluation.report import encode_report, evaluation_report
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from service.settings import ServiceSettings
from tests.service.api.server import running_server
from tests.service.importing.onnx_models import LABELS, OnnxFiles
from tests.service.web.test_browser import PHONE, SCREENSHOTS, WIDE, browser, new_page, pytestmark, sync_api

__all__ = ["browser", "pytestmark"]  # test_browser.py's Chromium fixture, and its skip when Chromium is missing


def publish_a_worse_version(models: Path, tmp_path: Path) -> None:
    """fashion-mnist v3: v1's files, published with a report of a model right only a third of the time."""
    repository = ModelRepository(models)
    manifest = repository.manifest("fashion-mnist", 1)
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 10, 300)
    logits = rng.standard_normal((300, 10))
    logits[np.arange(300)[::3], targets[::3]] += 6  # a third of the images clearly right
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    report = evaluation_report(probabilities, targets, manifest.labels, dataset="fashion-mnist")
    (tmp_path / "report.json").write_bytes(encode_report(report))
    onnx = repository.path("fashion-mnist", 1) / "model.onnx"
    repository.publish(manifest, onnx, None, tmp_path / "report.json")


def test_the_report_view_compares_two_versions(
    trained_repository: Path, tmp_path: Path, onnx_files: OnnxFiles, browser: Any
) -> None:
    expect = sync_api.expect
    models = Path(shutil.copytree(trained_repository, tmp_path / "models"))
    publish_a_worse_version(models, tmp_path)
    import_onnx(
        ModelRepository(models), onnx_files.nhwc_softmax, name="pets", labels=LABELS, options=ImportOptions(),
        source="keras.onnx", command="t",
    )  # fmt: skip
    settings = ServiceSettings(
        model_root=models, auth_enabled=False, intra_op_threads=1, confidence_thresholds={"fashion-mnist": 0.6}
    )
    with running_server(settings) as url:
        newest = httpx.get(f"{url}/v1/models/fashion-mnist/versions/3/report").json()["report"]
        production = httpx.get(f"{url}/v1/models/fashion-mnist/versions/1/report").json()["report"]
        page, problems = new_page(browser, WIDE)
        page.goto(f"{url}/ui#report")
        expect(page.locator("#report-title")).to_be_visible()

        # the newest version against production, by default
        expect(page.locator("#report-model")).to_have_value("fashion-mnist")
        expect(page.locator("#report-version")).to_have_value("3")
        expect(page.locator("#report-against")).to_have_value("1")
        accuracy = page.locator(".report-summary tr[data-row='Accuracy'] td")
        expect(accuracy).to_have_count(3)
        expect(accuracy.nth(0)).to_have_text(f"{newest['accuracy'] * 100:.1f} %")
        expect(accuracy.nth(1)).to_have_text(f"{production['accuracy'] * 100:.1f} %")
        expect(accuracy.nth(2)).to_have_attribute("data-change", "worse")
        ece = page.locator(".report-summary tr[data-row='Calibration error (ECE)'] td")
        expect(ece.nth(0)).to_have_text(f"{newest['ece']:.3f}")

        # per class: every label, the F1 changes against v1 marked
        classes = page.locator(".report-classes tbody tr")
        expect(classes).to_have_count(10)
        first = classes.first
        expect(first.locator("th")).to_have_text("T-shirt/top")
        expect(first.locator("td").nth(2)).to_have_text(f"{newest['classes'][0]['f1']:.3f}")
        expect(first.locator("td").nth(3)).to_have_text(str(newest["classes"][0]["support"]))
        assert page.locator(".report-classes td[data-change='worse']").count() >= 5

        # the confusion matrix of each version; the cell under the pointer is read out
        heatmaps = page.locator("canvas.heatmap")
        expect(heatmaps).to_have_count(2)
        cell = int(heatmaps.first.get_attribute("data-cell") or 0)
        heatmaps.first.hover(position={"x": cell * 1.5, "y": cell * 0.5})  # row 0 (T-shirt/top), column 1
        count = newest["confusion_matrix"][0][1]
        expect(page.locator(".readout").first).to_contain_text(f"true T-shirt/top, predicted Trouser: {count} image")

        # reliability: a bar per filled bin
        filled = sum(1 for b in newest["reliability"] if b["count"])
        expect(page.locator("#view-report .eval-plot").first.locator("rect.bin")).to_have_count(filled)

        # the threshold explorer starts at the configured threshold and follows the slider
        expect(page.locator("#report-threshold")).to_have_value("0.6")
        page.locator("#report-threshold").fill("0.9")
        expect(page.locator("#report-threshold-value")).to_have_text("0.90")
        point = newest["thresholds"][90]
        row = page.locator(".report-thresholds tr[data-version='v3']")
        expect(row.locator("td.coverage")).to_have_text(f"{point['coverage'] * 100:.1f} %")
        expect(row.locator("td.accuracy")).to_have_text(f"{point['accuracy'] * 100:.1f} %")
        expect(row.locator("td").nth(2)).to_have_text(str(newest["images"] - point["covered"]))
        expect(page.get_by_text("IMGCLS_CONFIDENCE_THRESHOLDS='{\"fashion-mnist\": 0.90}'")).to_be_visible()
        expect(page.locator(".threshold-chart polyline")).to_have_count(4)  # coverage and accuracy of each
        page.screenshot(path=SCREENSHOTS / "report.png", full_page=True)
        assert problems == []

        # a version without a report: the page says how to make one
        page.select_option("#report-model", "pets")
        expect(page.locator("#report-version")).to_have_value("1")
        expect(page.locator("#report-against")).to_have_value("")
        expect(page.locator(".notice.missing")).to_contain_text("imgcls evaluate pets 1 --attach-report")
        assert all("404" in problem for problem in problems), problems  # the browser logs the 404 it got

        phone, phone_problems = new_page(browser, PHONE)
        phone.goto(f"{url}/ui#report")
        phone.locator("canvas.heatmap").first.wait_for()
        phone.screenshot(path=SCREENSHOTS / "phone-report.png", full_page=True)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than a phone
        assert phone_problems == [], json.dumps(phone_problems)
