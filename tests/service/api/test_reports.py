"""GET /v1/models/{name}/versions/{version}/report over real HTTP: the report a trained version was published
with, 404 saying how to make one for a version without, and a report attached later."""

from pathlib import Path

import httpx
import numpy as np

from service.evaluation.report import evaluation_report
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.repository import ModelRepository
from tests.service.importing.onnx_models import LABELS, OnnxFiles


def test_a_trained_version_answers_with_the_report_it_was_published_with(server: str) -> None:
    detail = httpx.get(f"{server}/v1/models/fashion-mnist").json()
    for version in detail["versions"]:
        answer = httpx.get(f"{server}/v1/models/fashion-mnist/versions/{version['version']}/report")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["name"], body["version"], body["attached"]) == ("fashion-mnist", version["version"], False)
        report = body["report"]
        assert report["accuracy"] == version["metrics"]["test_accuracy"] and report["ece"] == version["metrics"]["ece"]
        assert [row["label"] for row in report["classes"]] == detail["labels"]
        assert len(report["confusion_matrix"]) == 10 and sum(map(sum, report["confusion_matrix"])) == report["images"]
        assert len(report["reliability"]) == 15 and len(report["thresholds"]) == 101
        assert {"precision", "recall", "f1"} <= report["macro"].keys()


def test_a_version_without_a_report_is_404_and_says_how_to_make_one(
    server: str, model_root: Path, onnx_files: OnnxFiles
) -> None:
    repository = ModelRepository(model_root)
    import_onnx(
        repository, onnx_files.nhwc_softmax, name="pets", labels=LABELS, options=ImportOptions(), source="k.onnx",
        command="t",
    )  # fmt: skip
    missing = httpx.get(f"{server}/v1/models/pets/versions/1/report")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert "imgcls evaluate pets 1 --attach-report" in missing.json()["detail"]
    assert "has no version 7" in httpx.get(f"{server}/v1/models/pets/versions/7/report").json()["detail"]
    assert httpx.get(f"{server}/v1/models/shoes/versions/1/report").status_code == 404

    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    repository.attach_report("pets", 1, evaluation_report(probabilities, np.array([0, 2]), LABELS, dataset="folder:x"))
    attached = httpx.get(f"{server}/v1/models/pets/versions/1/report").json()
    assert attached["attached"] is True and attached["report"]["accuracy"] == 0.5

    (model_root / "pets" / "reports" / "1.json").write_text("not json")
    corrupt = httpx.get(f"{server}/v1/models/pets/versions/1/report")
    assert corrupt.status_code == 422 and "is not an evaluation report" in corrupt.json()["detail"]
