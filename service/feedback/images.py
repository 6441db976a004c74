"""The image the store keeps of an input: what the model's preprocessing had before its center crop, as PNG.

Kept is the decoded image in the model's colour mode with its shorter side resized to the manifest's
``resize`` (``service.imaging.scaled``), not the uploaded bytes and not the crop. It is what a fine-tuning job
needs: training decodes a dataset with the base's preprocessing, which leaves an image of this size as it is
and then crops, so a fine-tune sees what the model saw, with room around it for random crops; and it is small
(a 12-megapixel photo becomes a 256-pixel one for a 224 model), so the byte budget holds many. PNG is lossless,
so nothing degrades between what was classified and what is trained on. A manifest without ``resize`` (older
ones) is kept at its longer input side, the size a fine-tune of it decodes to (training's
``input_preprocessing``).
"""

import io

import msgspec

from service.imaging import DecodeLimits, decode_image, scaled
from service.repository import Preprocessing


def for_keeping(preprocessing: Preprocessing) -> Preprocessing:
    if preprocessing.resize is not None:
        return preprocessing
    return msgspec.structs.replace(preprocessing, resize=max(preprocessing.input_size))


def kept_png(data: bytes, limits: DecodeLimits, preprocessing: Preprocessing) -> tuple[bytes, int, int]:
    """(PNG bytes, width, height) of an encoded upload; raises what ``decode_image`` raises."""
    image = scaled(decode_image(data, limits), for_keeping(preprocessing))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue(), image.width, image.height
