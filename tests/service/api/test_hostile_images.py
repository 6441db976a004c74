"""A corpus of hostile and odd images, over HTTP, against a real ``imgcls serve`` process.

Every image of the corpus is built here, and each is sent to ``POST /v1/models/{name}/classify`` as a raw body
and as multipart, and to V2 inference as the encoded image (``Inference-Header-Content-Length: 0``, the
``image_bytes`` input). Each gets the status docs/api.md documents for it: 400 empty, 413 over a cap (bombs
are refused from their header), 415 not an allowed format (whatever the Content-Type says), 422 truncated,
corrupt or too small; the odd but valid ones (CMYK, 16-bit, palette with transparency, animated, EXIF-rotated,
at the pixel cap) are classified (200). Two models serve: the test model with the manifest of an older
version (28x28 input, no resize step, so a 1x1 image is too small) and a copy of it with a resize step
(shorter side to 28), where 1x1 is classified and 1x100,000 would resize past the pixel cap.

The server stays ready through it all, and its memory stays bounded: the resident set of the server process
(``/proc/<pid>/status`` VmRSS) is read after start-up, after the first pass over the corpus and after the last
of ``ROUNDS`` passes; growth is printed (``-s``) and held under ``MAX_GROWTH_MB``.

Function-level decoding checks are in tests/service/imaging/test_decode.py; this is the whole path.
"""

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.settings import ServiceSettings
from tests.redis_server import free_port
from tests.service.api.server import running_server, wait_until_ready
from tests.service.imaging.images import encode, png_declaring

MODEL = "fashion-mnist"
RESIZED = "resized"  # the same network with a resize step: shorter side to 28, then the centre crop
ROUNDS = 4
MAX_GROWTH_MB = 200


def noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def damaged_png() -> bytes:
    """A PNG whose IDAT chunk no longer matches its CRC."""
    data = bytearray(encode(noise("RGB", (64, 64)), "PNG"))
    data[100:110] = b"\xff" * 10
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    """A small lossless WebP whose extended header (VP8X) declares a ``width`` x ``height`` canvas."""
    small = encode(Image.new("L", (16, 16), 3), "WEBP", lossless=True)
    canvas = b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(canvas)) + canvas + small[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_declaring(width: int, height: int) -> bytes:
    """A tiny GIF whose logical screen declares ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (4, 4)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def palette_with_transparency() -> bytes:
    image = noise("RGB", (32, 32)).quantize(colors=4)
    return encode(image, "PNG", transparency=0)


def animated(image_format: str, **params: object) -> bytes:
    first, *rest = [Image.new("RGB", (32, 32), colour) for colour in ("red", "lime", "blue")]
    return encode(first, image_format, save_all=True, append_images=rest, **params)


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    return encode(noise("RGB", (40, 30)), "JPEG", exif=exif.tobytes(), quality=95)


def sixteen_bit() -> bytes:
    return encode(Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60), "PNG")


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000">'
    b'<rect width="100%" height="100%" fill="red"/></svg>'
)


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    status: int  # for the test model
    words: str  # in the problem's detail (or the V2 error)
    resized_status: int | None = None  # for the model with a resize step, when it differs
    content_type: str = "image/png"  # what the client claims; the server reads the bytes


def corpus() -> list[Hostile]:
    jpeg = encode(noise("RGB", (64, 64)), "JPEG", quality=95)
    return [
        Hostile("truncated JPEG", jpeg[: len(jpeg) // 2], 422, "JPEG data is truncated or corrupt", None, "image/jpeg"),
        Hostile("PNG with a wrong CRC", damaged_png(), 422, "PNG data is truncated or corrupt"),
        Hostile("PNG bomb 50,000x50,000", png_declaring(50_000, 50_000), 413, "declares 2,500,000,000 pixels"),
        Hostile(
            "WebP bomb 100,000x100,000", webp_declaring(100_000, 100_000), 413, "WEBP declares", None, "image/webp"
        ),
        Hostile("GIF bomb 65,535x65,535", gif_declaring(65_535, 65_535), 415, "GIF images are not accepted"),
        Hostile("PNG at the pixel cap (6,000x6,000)", encode(Image.new("L", (6000, 6000)), "PNG"), 200, ""),
        Hostile("1x1", encode(Image.new("L", (1, 1), 128), "PNG"), 422, "smaller than the model's input", 200),
        Hostile("1x100,000", encode(Image.new("L", (1, 100_000)), "PNG"), 422, "smaller than the model's input", 413),
        Hostile("CMYK JPEG", encode(noise("CMYK", (32, 32)), "JPEG", quality=95), 200, "", None, "image/jpeg"),
        Hostile("16-bit PNG", sixteen_bit(), 200, ""),
        Hostile("palette PNG with transparency", palette_with_transparency(), 200, ""),
        Hostile("animated PNG", animated("PNG"), 200, ""),
        Hostile("animated WebP", animated("WEBP", lossless=True), 200, "", None, "image/webp"),
        Hostile("animated GIF", animated("GIF"), 415, "GIF images are not accepted", None, "image/gif"),
        Hostile("EXIF-rotated JPEG", exif_rotated(), 200, "", None, "image/jpeg"),
        Hostile("SVG sent as image/png", SVG, 415, "not an image in a known format"),
        Hostile("TIFF sent as image/png", encode(noise("RGB", (32, 32)), "TIFF"), 415, "TIFF images are not accepted"),
        Hostile("zero bytes", b"", 400, "empty"),
        Hostile("random bytes", np.random.default_rng(7).bytes(4096), 415, "not an image in a known format"),
    ]


CORPUS = corpus()


# ---------------------------------------------------------------- the three ways in


def send(client: httpx.Client, model: str, item: Hostile, how: str) -> httpx.Response:
    if how == "raw":
        return client.post(
            f"/v1/models/{model}/classify", content=item.data, headers={"content-type": item.content_type}
        )
    if how == "multipart":
        return client.post(
            f"/v1/models/{model}/classify", files={"images": ("upload.png", item.data, item.content_type)}
        )
    return client.post(f"/v2/models/{model}/infer", content=item.data, headers={"inference-header-content-length": "0"})


WAYS = ("raw", "multipart", "v2")


def expected(item: Hostile, model: str) -> int:
    return item.resized_status if model == RESIZED and item.resized_status is not None else item.status


def check(response: httpx.Response, item: Hostile, model: str, how: str) -> None:
    status = expected(item, model)
    where = f"{item.name} to {model} ({how})"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    if status == 200:
        if how == "v2":
            [output] = response.json()["outputs"]
            assert output["shape"] == [1, 10], where
        else:
            [result] = response.json()["results"]
            assert len(result["top"]) == 5, where
        return
    if how == "v2":
        message = response.json()["error"]
    else:
        assert response.headers["content-type"].startswith("application/problem+json"), where
        message = response.json()["detail"]
    words = item.words
    if model == RESIZED and item.resized_status == 413:
        words = "more than 40,000,000 pixels"
    assert words in message, f"{where}: {message}"


# ---------------------------------------------------------------- the server: a real `imgcls serve` process


def with_and_without_resize(root: Path) -> None:
    """The test model as a manifest from before every dataset declared a resize (crop only), and ``resized``
    v1: the same network with a resize step (shorter side to 28) in its manifest."""
    target = root / RESIZED / "1"
    shutil.copytree(root / MODEL / "1", target)
    for name, resize in ((MODEL, None), (RESIZED, 28)):
        path = root / name / "1" / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["name"] = name
        manifest["preprocessing"]["resize"] = resize
        path.write_text(json.dumps(manifest))


@dataclass(frozen=True)
class Served:
    url: str
    pid: int
    ready_rss_mb: float  # once ready, before any image was sent


@pytest.fixture(scope="module")
def served(trained_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(shutil.copytree(trained_repository, tmp_path_factory.mktemp("hostile") / "models"))
    with_and_without_resize(root)
    port = free_port()
    env = {**os.environ, "IMGCLS_MODEL_ROOT": str(root), "IMGCLS_INTRA_OP_THREADS": "1", "IMGCLS_WORKERS": "1"}
    command = [sys.executable, "-m", "service.cli", "serve", "--no-auth", "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        yield Served(url, process.pid, rss_mb(process.pid))  # one worker: uvicorn serves in this very process
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal on itself when it serves in-process
    assert process.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]  # no handler failed unexpectedly


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


# ---------------------------------------------------------------- the tests


def test_every_hostile_image_gets_its_documented_status(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=60) as client:
        for model in (MODEL, RESIZED):
            for item in CORPUS:
                for how in WAYS:
                    check(send(client, model, item, how), item, model, how)
        assert client.get("/healthz/ready").status_code == 200


def test_the_corpus_over_and_over_keeps_memory_bounded(served: Served) -> None:
    started = served.ready_rss_mb
    samples = []
    with httpx.Client(base_url=served.url, timeout=60) as client:
        for _ in range(ROUNDS):
            for model in (MODEL, RESIZED):
                for item in CORPUS:
                    for how in WAYS:
                        assert send(client, model, item, how).status_code == expected(item, model)
            samples.append(rss_mb(served.pid))
        ready = client.get("/healthz/ready")
    sent = ROUNDS * 2 * len(CORPUS) * len(WAYS)
    print(
        f"\nhostile images: {sent} requests ({len(CORPUS)} images x 2 models x {len(WAYS)} ways x {ROUNDS}); "
        f"server RSS {started:.0f} MB when ready, {samples[0]:.0f} MB after the first pass, "
        f"{samples[-1]:.0f} MB after the last (growth {samples[-1] - started:+.0f} MB in all, "
        f"{samples[-1] - samples[0]:+.0f} MB after the first pass)"
    )
    assert ready.status_code == 200, ready.text
    assert samples[-1] - started < MAX_GROWTH_MB
    assert samples[-1] - samples[0] < MAX_GROWTH_MB / 2  # no steady growth once the first pass warmed up


def test_gif_when_allowed_bombs_are_refused_and_animations_classified(service_settings: ServiceSettings) -> None:
    """With GIF on the allow-list (IMGCLS_IMAGE_FORMATS), the GIF bomb is still refused from its header (413)
    and an animated GIF is classified on its first frame."""
    settings = service_settings.model_copy(update={"image_formats": ["JPEG", "PNG", "WEBP", "GIF"]})
    with running_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        bomb = Hostile("GIF bomb", gif_declaring(65_535, 65_535), 413, "GIF declares 4,294,836,225 pixels")
        moving = Hostile("animated GIF", animated("GIF"), 200, "", None, "image/gif")
        for item in (bomb, moving):
            for how in WAYS:
                check(send(client, MODEL, item, how), item, MODEL, how)


def test_the_corpus_is_what_it_claims() -> None:
    """Each odd-but-valid image really is what its name says, so a 200 above means that case was handled."""
    by_name = {item.name: item.data for item in CORPUS}

    def opened(name: str) -> Image.Image:
        return Image.open(io.BytesIO(by_name[name]))

    assert opened("CMYK JPEG").mode == "CMYK"
    assert opened("16-bit PNG").mode.startswith("I;16")
    assert opened("palette PNG with transparency").mode == "P"
    assert "transparency" in opened("palette PNG with transparency").info
    for name in ("animated PNG", "animated WebP", "animated GIF"):
        assert getattr(opened(name), "n_frames", 1) == 3, name
    assert opened("EXIF-rotated JPEG").getexif()[0x0112] == 6
    assert opened("1x100,000").size == (1, 100_000)
    assert opened("PNG at the pixel cap (6,000x6,000)").size == (6000, 6000)
    assert len(by_name["PNG bomb 50,000x50,000"]) < 100
