"""Evaluation reports in the repository: published inside a version (hashed by its manifest), or attached beside
a version published without one (service/repository/store.py)."""

from pathlib import Path

import numpy as np
import pytest

from service.evaluation.report import EvaluationReport, encode_report, evaluation_report
from service.repository import CorruptVersion, ModelRepository, ReportNotFound, RepositoryError
from tests.read_only import read_only
from tests.service.repository.manifests import sample_manifest


def a_report(dataset: str = "hand") -> EvaluationReport:
    probabilities = np.eye(3)[[0, 1, 2, 1]] * 0.7 + 0.1
    return evaluation_report(probabilities, np.array([0, 1, 2, 2]), ("a", "b", "c"), dataset=dataset)


@pytest.fixture
def onnx(tmp_path: Path) -> Path:
    path = tmp_path / "in.onnx"
    path.write_bytes(b"onnx bytes")
    return path


def test_a_report_published_with_a_version_is_hashed_and_read_back(tmp_path: Path, onnx: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    report_file = tmp_path / "report.json"
    report_file.write_bytes(encode_report(a_report()))
    ref = repo.publish(sample_manifest(), onnx, None, report_file)
    assert sorted(p.name for p in ref.path.iterdir()) == ["manifest.json", "model.onnx", "report.json"]
    assert repo.verify("fashion-mnist", 1).report_sha256 is not None
    assert repo.report("fashion-mnist", 1) == (a_report(), False)

    (ref.path / "report.json").write_bytes(encode_report(a_report("tampered")))
    with pytest.raises(CorruptVersion, match=r"report\.json has sha256"):
        repo.verify("fashion-mnist", 1)
    with pytest.raises(RepositoryError, match="was published with its evaluation report"):
        repo.attach_report("fashion-mnist", 1, a_report())


def test_a_version_without_a_report_says_how_to_make_one(tmp_path: Path, onnx: Path) -> None:
    repo = ModelRepository(tmp_path)
    repo.publish(sample_manifest(), onnx, None)
    with pytest.raises(ReportNotFound, match="imgcls evaluate fashion-mnist 1 --attach-report"):
        repo.report("fashion-mnist", 1)


def test_an_attached_report_lives_beside_the_unchanged_version(tmp_path: Path, onnx: Path) -> None:
    repo = ModelRepository(tmp_path)
    ref = repo.publish(sample_manifest(), onnx, None)
    before = {p.name: p.read_bytes() for p in ref.path.iterdir()}
    path = repo.attach_report("fashion-mnist", 1, a_report("first"))
    assert path == tmp_path / "fashion-mnist" / "reports" / "1.json"
    assert repo.report("fashion-mnist", 1) == (a_report("first"), True)
    repo.attach_report("fashion-mnist", 1, a_report("again"))  # a newer measurement replaces it
    assert repo.report("fashion-mnist", 1).report.dataset == "again"
    assert {p.name: p.read_bytes() for p in ref.path.iterdir()} == before
    assert repo.versions("fashion-mnist") == [1] and repo.verify("fashion-mnist", 1)
    assert [p.name for p in path.parent.iterdir()] == ["1.json"]  # no temporary file left

    path.write_text('{"dataset": "half a report"')
    with pytest.raises(CorruptVersion, match=r"1\.json is not an evaluation report"):
        repo.report("fashion-mnist", 1)
    with pytest.raises(RepositoryError, match="no version 2"):
        repo.attach_report("fashion-mnist", 2, a_report())


def test_attaching_to_a_read_only_repository_says_so(tmp_path: Path, onnx: Path) -> None:
    repo = ModelRepository(tmp_path)
    repo.publish(sample_manifest(), onnx, None)
    with read_only(tmp_path), pytest.raises(RepositoryError, match="attaching a report to fashion-mnist v1"):
        repo.attach_report("fashion-mnist", 1, a_report())
