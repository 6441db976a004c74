"""What a user tells ``imgcls models import`` (or the JSON part of ``POST /v1/models/{name}/versions``) about
a model, and how the unsaid is read from the model's input shape.

Every field may be left out. ``resolve_preprocessing`` then takes the layout from where the channel axis
(1 or 3) is, the colour mode from the channel count, the input size from fixed height and width, the
resize as 8/7 of the input size (256 for 224, torchvision's ratio), and ImageNet's mean and std for RGB.
What the shape cannot say (a dynamic height, an ambiguous layout, a grey model's mean) must be given.
"""

from typing import Literal

import msgspec

from service.importing.errors import ImportRejected, InvalidImportOptions
from service.repository import Preprocessing

Dim = int | None  # a fixed size, or None for a symbolic (dynamic) axis
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 8 / 7  # resize, then center-crop: 256 -> 224 as torchvision's ImageNet models


class ImportOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The import options, by the CLI's names (``--input-size`` is ``input_size``); None: from the model."""

    input_size: int | tuple[int, int] | None = None  # square side, or (height, width)
    resize: int | None = None  # shorter side before the center crop
    mean: tuple[float, ...] | None = None  # per channel, on the [0, 1] scale
    std: tuple[float, ...] | None = None
    color: Literal["RGB", "L"] | None = None
    layout: Literal["NCHW", "NHWC"] | None = None
    output: Literal["logits", "probabilities"] | None = None  # None: probabilities when the graph ends in Softmax
    interpolation: Literal["nearest", "box", "bilinear", "bicubic"] = "bilinear"

    def size(self) -> tuple[int, int] | None:
        if self.input_size is None:
            return None
        height, width = (self.input_size, self.input_size) if isinstance(self.input_size, int) else self.input_size
        if height < 1 or width < 1:
            raise InvalidImportOptions("input size", f"{self.input_size} is not a positive size")
        return height, width


def detect_layout(dims: tuple[Dim, Dim, Dim], layout: Literal["NCHW", "NHWC"] | None) -> Literal["NCHW", "NHWC"]:
    """The layout given (checked against the shape), or the one the shape makes plain: channels (1 or 3) on
    axis 1 means NCHW, on axis 3 NHWC. ``dims`` are the three axes after the batch."""
    shown = "[batch, " + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    first, last = dims[0] in (1, 3), dims[2] in (1, 3)
    if layout is not None:
        channels = dims[0] if layout == "NCHW" else dims[2]
        if channels not in (1, 3):
            other = "NHWC" if layout == "NCHW" else "NCHW"
            hint = f" (it looks {other})" if (last if layout == "NCHW" else first) else ""
            raise ImportRejected(
                "input",
                f"shape {shown} has {channels or 'a dynamic number of'} channels in layout {layout}{hint}; "
                "an image classifier takes 1 (grey) or 3 (RGB) channels",
            )
        return layout
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    if not first and not last:
        raise ImportRejected(
            "input", f"shape {shown} is not an image batch: no axis of 1 or 3 channels after the batch axis"
        )
    raise InvalidImportOptions("layout", f"the input shape {shown} could be NCHW or NHWC; say which with --layout")


def resolve_preprocessing(options: ImportOptions, dims: tuple[Dim, Dim, Dim]) -> Preprocessing:
    """The version's preprocessing: the options, completed from the model input's three axes after the batch."""
    layout = detect_layout(dims, options.layout)
    channels, height, width = (dims[0], dims[1], dims[2]) if layout == "NCHW" else (dims[2], dims[0], dims[1])
    color = options.color or ("L" if channels == 1 else "RGB")
    if (1 if color == "L" else 3) != channels:
        given = 1 if color == "L" else 3
        raise InvalidImportOptions("color", f"{color} has {given} channels; the model takes {channels}")
    input_size = _input_size(options.size(), height, width)
    resize = options.resize if options.resize is not None else round(max(input_size) * RESIZE_RATIO)
    if resize < max(input_size):
        raise InvalidImportOptions(
            "resize", f"{resize} is smaller than the input size {input_size}: the center crop would not fit"
        )
    if color == "L" and (options.mean is None or options.std is None):
        raise InvalidImportOptions("mean/std", "a grey (L) model has no standard mean and std: give --mean and --std")
    try:
        return Preprocessing(
            color_mode=color,
            input_size=input_size,
            mean=options.mean or IMAGENET_MEAN,
            std=options.std or IMAGENET_STD,
            resize=resize,
            interpolation=options.interpolation,
            layout=layout,
        )
    except ValueError as error:  # mean/std of the wrong length, a std of 0
        raise InvalidImportOptions("preprocessing", str(error).removeprefix("preprocessing: ")) from error


def _input_size(given: tuple[int, int] | None, height: Dim, width: Dim) -> tuple[int, int]:
    if given is not None:
        for axis, fixed, wanted in (("height", height, given[0]), ("width", width, given[1])):
            if fixed is not None and fixed != wanted:
                raise InvalidImportOptions(
                    "input size", f"the model's input {axis} is fixed at {fixed}, but {wanted} was given"
                )
        return given
    if height is None or width is None:
        raise InvalidImportOptions(
            "input size", "the model's input height and width are dynamic: give the size it expects (--input-size)"
        )
    return height, width
