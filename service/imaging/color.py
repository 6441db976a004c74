"""A decoded photo of any pixel mode -> the model's colour mode: the one conversion training and serving share.

``to_color_mode`` is step 1 of ``Preprocessing``; ``preprocess_into`` (every upload) and training's
``decode_for_eval`` (every image of a dataset) both call it, so no photo can be converted two ways.

What it does, by the kind of photo (PIL's mode after decoding):

- 8-bit grayscale or colour without transparency ("1", "L", "P", "RGB", "CMYK", "YCbCr", ...): PIL's own
  ``convert``. Grayscale to colour repeats the value in every channel; colour to grayscale is PIL's
  ITU-R 601-2 luma, ``L = (299 R + 587 G + 114 B) / 1000``. CMYK is converted without a colour profile
  (an embedded ICC profile is ignored, as it is for RGB photos), by PIL's formula
  ``R = (255 - C) (255 - K) / 255`` (G from M, B from Y likewise); Adobe's inverted CMYK JPEGs are
  undone by PIL's JPEG reader before that.
- 16-bit grayscale ("I;16", "I;16B", "I;16L", "I;16N", and "I", the mode PIL gives 16-bit PNGs and TIFFs):
  scaled to 8 bits, ``round(v / 257)`` (65535 -> 255; "I" values outside 0-65535 are clipped first).
  PIL's ``convert`` would clip every value above 255 to white, so nearly every pixel of a real 16-bit
  photo would be white. This applies to every manifest: it is a fix, and an 8-bit photo never takes it.
- Transparency (an alpha channel "LA", "PA", "RGBA", a palette entry or a colour marked transparent):
  with ``background`` set, composited over that opaque colour (PIL's ``alpha_composite``), then
  converted. With ``background`` None (manifests written before it existed), PIL's ``convert`` as before:
  the alpha channel is dropped and the colour stored under transparent pixels shows, often black.
"""

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def to_color_mode(image: Image.Image, *, color_mode: str, background: tuple[int, int, int] | None) -> Image.Image:
    """``image`` in ``color_mode`` ("L" or "RGB"), converted as the module docstring says.

    Returns ``image`` itself when it is already in ``color_mode`` and has no transparency to composite.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        image = eight_bit(image)
    if background is not None and image.has_transparency_data:
        image = composite(image, background)
    if image.mode != color_mode:
        image = image.convert(color_mode)
    return image


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image as 8-bit "L": ``round(v / 257)``, computed exactly in integers."""
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)  # "I" is int32, "I;16B" big-endian
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))


def composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An RGB image: ``image`` over an opaque ``background``; opaque pixels keep their colour exactly."""
    over = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(over, image.convert("RGBA")).convert("RGB")
