"""``imgcls classify`` without a server gives what /v1 classify gives, through the same predictor and rank."""

from pathlib import Path

import httpx
import numpy as np
import pytest

from service.imaging import DecodeLimits
from service.importing.options import ImportOptions
from service.importing.publish import import_onnx
from service.inference.offline import classify_files, load_predictor
from service.repository import ModelRepository
from service.settings import ServiceSettings
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server
from tests.service.api.test_import import direct
from tests.service.importing.onnx_models import LABELS, OnnxFiles
from tests.service.importing.test_publish import photo

MODEL = "fashion-mnist"


def test_offline_and_v1_give_the_same_answer(service_settings: ServiceSettings, tmp_path: Path) -> None:
    pngs = [png_bytes(seed) for seed in range(5)]
    files = []
    for seed, data in enumerate(pngs):
        files.append(tmp_path / f"{seed}.png")
        files[-1].write_bytes(data)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    files.insert(2, tmp_path / "broken.png")

    manifest, predictor = load_predictor(ModelRepository(service_settings.model_root), MODEL, None, "fp32")
    rows = list(classify_files(files, manifest, predictor, top_k=3, batch_size=4, limits=DecodeLimits()))
    assert [row.path for row in rows] == files
    assert rows[2].result is None and rows[2].error is not None and rows[2].error.startswith("CorruptImage")
    offline = [row.result for row in rows if row.result is not None]

    with running_server(service_settings) as server:
        response = httpx.post(
            f"{server}/v1/models/{MODEL}/classify?top_k=3",
            files=[("images", (f"{i}.png", data)) for i, data in enumerate(pngs)],
        )
    assert response.status_code == 200, response.text
    online = response.json()["results"]
    assert len(offline) == len(online) == len(pngs)
    for mine, theirs in zip(offline, online, strict=True):
        assert [p.label for p in mine.top] == [p["label"] for p in theirs["top"]]
        assert [p.probability for p in mine.top] == pytest.approx([p["probability"] for p in theirs["top"]], rel=1e-5)


@pytest.mark.parametrize("kind", ["nhwc_softmax", "fixed_batch"])
def test_an_imported_model_classifies_offline_as_onnxruntime_answers(
    tmp_path: Path, onnx_files: OnnxFiles, kind: str
) -> None:
    repository = ModelRepository(tmp_path / "models")
    model = getattr(onnx_files, kind)
    import_onnx(repository, model, name="brought", labels=LABELS, options=ImportOptions(), source="m", command="t")
    files = []
    for seed in range(5):
        files.append(tmp_path / f"{seed}.png")
        files[-1].write_bytes(photo(seed, (40 + 10 * seed, 50)))
    manifest, predictor = load_predictor(repository, "brought", None, "fp32")
    rows = list(classify_files(files, manifest, predictor, top_k=3, batch_size=4, limits=DecodeLimits()))
    expected = direct(model, [path.read_bytes() for path in files], manifest)
    for row, probabilities in zip(rows, expected, strict=True):
        assert row.result is not None
        assert [p.index for p in row.result.top] == list(np.argsort(-probabilities, kind="stable"))
        assert [p.probability for p in row.result.top] == pytest.approx(sorted(probabilities, reverse=True), rel=1e-4)
