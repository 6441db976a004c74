"""Explanations without a server: the heat map's arithmetic and drawing (heatmaps.py), the occlusion batch,
class names, and explain graphs opened on first use and kept for the few most recent versions (explain.py).

The explain graphs here are built with onnx's helper, without torch: the input is its own feature map and a
1x1 convolution by the classifier's weights is the map, so every map is known in advance."""

import asyncio
import io
from pathlib import Path

import msgspec
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from service.imaging import DecodeLimits, decode_into
from service.inference import explain as explaining
from service.inference.errors import ExplanationUnavailable, UnknownClass
from service.inference.explain import Explainers, class_index, occluded, why_unavailable
from service.inference.heatmaps import OVERLAY_MIN_SIDE, colours, normalized, overlay_png, peak, seen_image, upsampled
from service.inference.providers import CPU
from service.repository import Explanation, Imported, ModelRepository, Preprocessing
from tests.service.repository.manifests import sample_manifest

WEIGHTS = np.array([[1.0], [-1.0], [2.0]], dtype=np.float32)  # 3 classes x 1 feature channel
GRAY = Preprocessing(color_mode="L", input_size=(28, 28), mean=(0.5,), std=(0.25,))


def explain_graph(path: Path) -> Path:
    """input (N, 1, 4, 4) -> cam = W * input (N, 3, 4, 4), logits = mean of cam over (h, w) (N, 3)."""
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "W"], ["cam"]),
            helper.make_node("ReduceMean", ["cam", "axes"], ["logits"], keepdims=0),
        ],
        "explain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["batch", 3, 4, 4]),
        ],
        [
            helper.make_tensor("W", TensorProto.FLOAT, (3, 1, 1, 1), WEIGHTS.ravel().tolist()),
            helper.make_tensor("axes", TensorProto.INT64, (2,), [2, 3]),
        ],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    return path


@pytest.fixture
def repository(tmp_path: Path) -> ModelRepository:
    """Six versions of one model, each with the same explain graph."""
    graph = explain_graph(tmp_path / "graph.onnx")
    entry = Explanation(file="explain.onnx", sha256="", pooling="average", map_size=(4, 4), max_abs_diff=0.0)
    manifest = msgspec.structs.replace(sample_manifest(), explain=entry)
    repository = ModelRepository(tmp_path / "models")
    for _ in range(explaining.KEPT_SESSIONS + 2):
        repository.publish(manifest, graph, None, explain_path=graph)
    return repository


# ------------------------------------------------------------------------------------------ heatmaps.py


def test_normalized_spans_zero_to_one_and_a_flat_map_is_zero() -> None:
    scaled, low, high = normalized(np.array([[-2.0, 0.0], [2.0, 6.0]], dtype=np.float32))
    np.testing.assert_allclose(scaled, [[0.0, 0.25], [0.5, 1.0]])
    assert (low, high) == (-2.0, 6.0)
    flat, low, high = normalized(np.full((3, 3), 7.0, dtype=np.float32))
    assert not flat.any() and low == high == 7.0


def test_the_peak_is_the_centre_of_the_hottest_cell_in_input_pixels() -> None:
    values = np.zeros((4, 4), dtype=np.float32)
    values[1, 2] = 1.0
    assert peak(values, (32, 32)) == (12, 20)
    assert peak(values, (28, 56)) == (10, 35)


def test_upsampling_keeps_the_range_and_puts_the_maximum_on_its_cell() -> None:
    values = np.zeros((4, 4), dtype=np.float32)
    values[1, 2] = 1.0
    big = upsampled(values, (32, 32))
    assert big.shape == (32, 32) and big.dtype == np.float32
    assert big.min() >= 0.0 and big.max() <= 1.0
    y, x = np.unravel_index(int(np.argmax(big)), big.shape)
    assert 8 <= y < 16 and 16 <= x < 24  # inside cell (1, 2)


def test_colours_run_from_cold_to_hot() -> None:
    cold, hot = colours(np.array([0.0, 1.0]))
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue, then red
    assert colours(np.array([-1.0, 2.0])).tolist() == [cold.tolist(), hot.tolist()]  # clipped


def test_the_image_under_the_map_is_what_the_model_saw(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    preprocessed = np.empty((1, 28, 28), dtype=np.float32)
    decode_into(buffer.getvalue(), DecodeLimits(), GRAY, preprocessed)
    seen = seen_image(preprocessed, GRAY)
    assert seen.shape == (28, 28, 3)
    np.testing.assert_array_equal(seen[..., 0], pixels)
    np.testing.assert_array_equal(seen[..., 2], pixels)


def test_the_overlay_is_a_png_enlarged_for_small_inputs_and_hot_where_the_map_is() -> None:
    values = np.zeros((4, 4), dtype=np.float32)
    values[0, 0] = 1.0
    image = np.zeros((1, 28, 28), dtype=np.float32)  # the mean grey everywhere
    picture = Image.open(io.BytesIO(overlay_png(image, values, GRAY)))
    scale = -(-OVERLAY_MIN_SIDE // 28)
    assert picture.format == "PNG" and picture.size == (28 * scale, 28 * scale) and picture.mode == "RGB"
    hot, cold = picture.getpixel((5, 5)), picture.getpixel((200, 200))
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red over the map's peak, blue far from it

    colour = Preprocessing(color_mode="RGB", input_size=(240, 240), mean=(0.5,) * 3, std=(0.25,) * 3)
    large = Image.open(io.BytesIO(overlay_png(np.zeros((3, 240, 240), dtype=np.float32), values, colour)))
    assert large.size == (240, 240)  # already large enough


# ------------------------------------------------------------------------------------------ explain.py


def test_occlusion_hides_each_cell_once() -> None:
    image = np.random.default_rng(0).standard_normal((3, 28, 28)).astype(np.float32) + 5.0  # never 0
    batch = occluded(image, grid=7)
    assert batch.shape == (50, 3, 28, 28)
    np.testing.assert_array_equal(batch[0], image)
    hidden = batch[1:] == 0.0
    assert hidden.sum(axis=0).max() == 1 and hidden.any(axis=0).all()  # every pixel hidden once, by one copy
    assert hidden[8].all(axis=0)[4:8, 4:8].all() and hidden[8].sum() == 3 * 16  # row 1, column 1: 4x4 pixels


def test_a_class_is_found_by_its_label_and_an_unknown_one_names_the_labels() -> None:
    manifest = sample_manifest()
    assert class_index(manifest, None) is None
    assert class_index(manifest, "b") == 1
    with pytest.raises(UnknownClass, match=r"fashion-mnist has no class 'zebra'; its labels: a, b, c$"):
        class_index(manifest, "zebra")
    many = msgspec.structs.replace(manifest, labels=tuple(f"label{i}" for i in range(1000)))
    with pytest.raises(UnknownClass, match=r"label19, … \(1000 in all\)$"):
        class_index(many, "zebra")


def test_why_a_version_has_no_explanations() -> None:
    trained = msgspec.structs.replace(sample_manifest(), architecture="lenet5", version=3)
    assert "fashion-mnist v3 has none: its architecture (lenet5) has no global pool" in why_unavailable(trained)
    imported = msgspec.structs.replace(
        trained,
        lineage=msgspec.structs.replace(
            trained.lineage, imported=Imported(kind="onnx", source="m.onnx", sha256="0", imported_at="", command="")
        ),
    )
    message = why_unavailable(imported)
    assert message.startswith("explanations need the last feature map and the classifier's weights")
    assert "imported as an ONNX file" in message and "occlusion method explains any model, at 50 model runs" in message


def test_explain_graphs_open_on_first_use_and_only_the_most_recent_stay(repository: ModelRepository) -> None:
    explainers = Explainers(repository, providers=[CPU], intra_op_threads=1)
    manifests = [repository.manifest("fashion-mnist", version) for version in repository.versions("fashion-mnist")]
    features = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)

    async def use_all() -> None:
        assert explainers._sessions == {}  # nothing opened before an explanation is asked
        first = await explainers.session(manifests[0])
        assert await explainers.session(manifests[0]) is first
        logits, maps = await explainers.run(manifests[0], features)
        np.testing.assert_allclose(maps, WEIGHTS[None, :, :, None] * features, rtol=1e-6)
        np.testing.assert_allclose(logits, maps.mean(axis=(2, 3)), rtol=1e-6)
        for manifest in manifests[1:]:
            await explainers.session(manifest)
        kept = [version for _, version in explainers._sessions]
        assert kept == [manifest.version for manifest in manifests[-explaining.KEPT_SESSIONS :]]
        assert await explainers.session(manifests[0]) is not first  # evicted, opened again

        without = msgspec.structs.replace(manifests[0], explain=None)
        with pytest.raises(ExplanationUnavailable, match="explanations need"):
            await explainers.session(without)

    asyncio.run(use_all())
