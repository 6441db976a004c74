import base64
import gzip
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from service.settings import ServiceSettings
from tests.conftest import FASHION_MNIST
from tests.service.api.conftest import png_bytes
from tests.service.api.server import running_server

MODEL = "fashion-mnist"


def classify_url(server: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{server}/v1/models/{MODEL}/classify" + (f"?{query}" if query else "")


def assert_problem(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body["detail"]


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header that declares width x height; the pixel data would not fit in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ what a client gets


def test_one_multipart_image_gets_top5_calibrated_labels(server: str, png: bytes) -> None:
    response = httpx.post(classify_url(server), files={"images": ("a.png", png, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["variant"]) == (MODEL, 1, "fp32")
    [result] = body["results"]
    probabilities = [entry["probability"] for entry in result["top"]]
    assert len(probabilities) == 5
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0 + 1e-6
    assert result["low_confidence"] is False
    assert set(body["timings"]) == {"decode_ms", "queue_ms", "compute_ms", "total_ms", "batch_size"}


def test_many_images_in_one_request_keep_their_order(server: str) -> None:
    images = [png_bytes(seed) for seed in range(4)]
    many = httpx.post(
        classify_url(server), files=[("images", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)]
    )
    assert many.status_code == 200, many.text
    singles = [httpx.post(classify_url(server), content=d, headers={"content-type": "image/png"}) for d in images]
    assert [r["top"] for r in many.json()["results"]] == [s.json()["results"][0]["top"] for s in singles]


def test_raw_body_and_base64_json_give_the_same_answer(server: str, png: bytes) -> None:
    raw = httpx.post(classify_url(server, top_k=3), content=png, headers={"content-type": "image/png"})
    as_json = httpx.post(classify_url(server, top_k=3), json={"images": [base64.b64encode(png).decode()]})
    assert raw.status_code == as_json.status_code == 200
    (from_raw,), (from_json,) = raw.json()["results"], as_json.json()["results"]
    assert from_raw.pop("prediction_id") != from_json.pop("prediction_id")  # one id per image classified
    assert from_raw == from_json
    assert len(from_raw["top"]) == 3


def test_version_and_alias_choose_what_runs(server: str, png: bytes) -> None:
    by_alias = httpx.post(classify_url(server, alias="production"), content=png, headers={"content-type": "image/png"})
    assert by_alias.json()["version"] == 1
    not_loaded = httpx.post(classify_url(server, version=2), content=png, headers={"content-type": "image/png"})
    assert_problem(not_loaded, 404, "v2 is not loaded", "/versions/2/load")
    both = httpx.post(classify_url(server, version=1, alias="production"), content=png)
    assert_problem(both, 400, "not both")


def test_confidence_threshold_marks_low_confidence_answers(service_settings: ServiceSettings, png: bytes) -> None:
    settings = service_settings.model_copy(update={"confidence_thresholds": {MODEL: 1.01}})
    with running_server(settings) as server:
        body = httpx.post(classify_url(server), content=png, headers={"content-type": "image/png"}).json()
    assert body["results"][0]["low_confidence"] is True


# ------------------------------------------------------------------ bad input: a 4xx that names the problem


@pytest.mark.parametrize(
    ("content", "content_type", "status", "words"),
    [
        (b"", "image/png", 400, ("body is empty",)),
        (b"hello", "text/plain", 415, ("text/plain", "multipart/form-data")),
        (b"not an image at all", "image/png", 415, ("not an image",)),
        (huge_png(50_000, 50_000), "image/png", 413, ("pixels",)),
        (b'{"images": ["%%%"]}', "application/json", 400, ("base64",)),
        (b'{"pictures": []}', "application/json", 400, ("images",)),
        (
            b'--x\r\nContent-Disposition: form-data; name="images"\r\n\r\nabc',
            "multipart/form-data; boundary=x",
            400,
            ("truncated",),
        ),
        (
            b'--x\r\nContent-Disposition: form-data; name="photo"\r\n\r\nabc\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            400,
            ("'images'", "photo"),
        ),
    ],
)
def test_bad_bodies_get_a_clear_4xx(
    server: str, content: bytes, content_type: str, status: int, words: tuple[str, ...]
) -> None:
    response = httpx.post(classify_url(server), content=content, headers={"content-type": content_type})
    assert_problem(response, status, *words)


def test_truncated_png_is_refused(server: str, png: bytes) -> None:
    response = httpx.post(classify_url(server), content=png[: len(png) // 2], headers={"content-type": "image/png"})
    assert_problem(response, 422)


def test_bad_image_among_several_is_named(server: str, png: bytes) -> None:
    files = [("images", ("a.png", png, "image/png")), ("images", ("b.png", b"junk", "image/png"))]
    assert_problem(httpx.post(classify_url(server), files=files), 415, "image 2 of 2")


@pytest.mark.parametrize(("top_k", "words"), [(0, ("top_k",)), (11, ("top_k", "10")), ("many", ("top_k",))])
def test_bad_top_k(server: str, png: bytes, top_k: object, words: tuple[str, ...]) -> None:
    response = httpx.post(classify_url(server, top_k=top_k), content=png, headers={"content-type": "image/png"})
    assert_problem(response, 400, *words)


def test_unknown_model_version_alias_and_variant(server: str, png: bytes) -> None:
    headers = {"content-type": "image/png"}
    assert_problem(httpx.post(f"{server}/v1/models/shoes/classify", content=png, headers=headers), 404, "shoes")
    assert_problem(httpx.post(classify_url(server, version=9), content=png, headers=headers), 404, "9")
    assert_problem(httpx.post(classify_url(server, alias="canary"), content=png, headers=headers), 404, "canary")
    assert_problem(httpx.post(classify_url(server, variant="int4"), content=png, headers=headers), 404, "int4")


def test_oversized_upload_and_too_many_images(service_settings: ServiceSettings, png: bytes) -> None:
    settings = service_settings.model_copy(update={"max_body_bytes": 10_000, "max_images_per_request": 2})
    with running_server(settings) as server:
        big = httpx.post(classify_url(server), content=b"\0" * 20_000, headers={"content-type": "image/png"})
        assert big.status_code == 413
        files = [("images", (f"{i}.png", png, "image/png")) for i in range(3)]
        assert_problem(httpx.post(classify_url(server), files=files), 413, "limit is 2")


def fashion_mnist_test_images(count: int) -> np.ndarray:
    """The first ``count`` Fashion-MNIST test images, uint8 (count, 28, 28), read from the IDX file as is."""
    with gzip.open(FASHION_MNIST / "t10k-images-idx3-ubyte.gz") as handle:
        data = handle.read(16 + count * 28 * 28)
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 28, 28)


def encoded(pixels: np.ndarray, size: int, fmt: str) -> bytes:
    """The image scaled to ``size`` x ``size`` (each pixel a block, as a photo of the printed image would be)."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.NEAREST)
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_a_larger_copy_of_an_image_gets_the_answer_the_original_gets(server: str) -> None:
    """The published preprocessing scales a photo of any size (shorter side to 28) before the crop: an
    image sent at 280x280 or 1000x1000, PNG or JPEG, is classified as its 28x28 original is.

    The manifest's "box" filter averages each 10x10 block back to its pixel, so a PNG copy gets exactly
    the original's answers. JPEG changes pixels a little, and the test model is trained for a few
    steps only, so an image on its decision boundary may flip: 18 of 20 must agree.
    """
    images = fashion_mnist_test_images(20)

    def top_labels(size: int, fmt: str) -> list[str]:
        files = [
            ("images", (f"{i}.{fmt.lower()}", encoded(p, size, fmt), f"image/{fmt.lower()}"))
            for i, p in enumerate(images)
        ]
        response = httpx.post(classify_url(server), files=files, timeout=60)
        assert response.status_code == 200, response.text
        return [result["top"][0]["label"] for result in response.json()["results"]]

    original = top_labels(28, "PNG")
    assert top_labels(280, "PNG") == original
    for size, fmt in ((280, "JPEG"), (1000, "JPEG")):
        agreeing = sum(a == b for a, b in zip(top_labels(size, fmt), original, strict=True))
        assert agreeing >= 18, f"{size}x{size} {fmt}: {agreeing} of 20 answers agree with the 28x28 originals"
