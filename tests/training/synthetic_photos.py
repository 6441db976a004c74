"""Synthetic colour photos, as a phone or a catalogue gives them: three classes by the colour of a shape
(a red, green or blue disc, square or triangle) over varied backgrounds (flat, gradient or noise), sizes
from 64x48 to 1600x1200, saved as JPEG, PNG or WebP, some JPEGs with an EXIF orientation tag (the
pixels stored sideways, as cameras do)."""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"blue": (40, 70, 215), "green": (45, 180, 60), "red": (215, 45, 40)}
SIZES = ((64, 48), (160, 120), (320, 240), (480, 640), (800, 600), (1600, 1200))
FORMATS = ("JPEG", "PNG", "WEBP")
EXIF_ORIENTATION = 0x0112  # 6: rotate 90 degrees clockwise to view


def photo(label: str, index: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """One photo of class ``label``: (file name, encoded bytes)."""
    width, height = SIZES[index % len(SIZES)]
    kind = index % 3
    if kind == 0:  # flat
        pixels = np.broadcast_to(rng.integers(70, 190, 3, dtype=np.uint8), (height, width, 3))
    elif kind == 1:  # a horizontal grey gradient
        ramp = np.linspace(rng.integers(40, 120), rng.integers(140, 220), width, dtype=np.float32)
        pixels = np.repeat(np.broadcast_to(ramp[None, :, None], (height, width, 1)), 3, axis=2)
    else:  # coloured noise, dim so the shape's colour stays the strongest
        pixels = rng.integers(60, 170, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.45, 0.8)
    w, h = width * scale, height * scale
    left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
    box = (left, top, left + w, top + h)
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[label])
    shape = (index // 3) % 3
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(left + w / 2, top), (left, top + h), (left + w, top + h)], fill=colour)
    form = FORMATS[index % len(FORMATS)]
    buffer = io.BytesIO()
    if form == "JPEG" and index % 2:  # stored sideways with an orientation tag, as a phone does
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=90, exif=exif)
    else:
        image.save(buffer, form, quality=90) if form != "PNG" else image.save(buffer, "PNG")
    return f"{label}-{index}.{form.lower().replace('jpeg', 'jpg')}", buffer.getvalue()


def photo_set(per_class: int, *, seed: int) -> list[tuple[str, str, bytes]]:
    """(label, file name, bytes) for ``per_class`` photos of each class."""
    rng = np.random.default_rng(seed)
    return [(label, *photo(label, index, rng)) for label in COLOURS for index in range(per_class)]


def photo_zip(per_class: int, *, seed: int) -> bytes:
    """An ImageFolder zip (one folder per class) of ``photo_set``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, name, data in photo_set(per_class, seed=seed):
            archive.writestr(f"{label}/{name}", data)
    return buffer.getvalue()


def photo_folder(folder: Path, per_class: int, *, seed: int) -> Path:
    for label, name, data in photo_set(per_class, seed=seed):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / name).write_bytes(data)
    return folder
