"""Domain errors of image decoding and preprocessing. They carry no HTTP; the API maps them to status codes.

Messages say what was wrong and what to do about it, and start in lower case without naming the image, so
the API can prefix which one it was: ``f"image {index}: {error}"``.
"""


class ImageError(ValueError):
    """Base class: an uploaded image cannot be turned into network input."""


class EmptyImage(ImageError):
    """The upload holds no bytes."""


class UnsupportedImageFormat(ImageError):
    """Not an image at all, a format outside the allow-list, or a pixel mode the service cannot convert."""


class ImageTooLarge(ImageError):
    """Over the byte cap, the pixel cap (read from the header, before decoding) or PIL's bomb limit."""


class CorruptImage(ImageError):
    """An allowed format whose data is truncated or cannot be decoded."""


class ImageTooSmall(ImageError):
    """Smaller than the model's input size after the manifest's resize step (or without one)."""
