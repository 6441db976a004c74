"""An ImageFolder tree (``root/<class name>/**/<image>``) decoded once into one uint8 tensor.

Class names are the sub-folder names, sorted; their positions are the label indices. Hidden files and
folders (leading ".") and files without an image extension are ignored. Files that cannot be decoded
are skipped and returned with the reason, so one bad upload does not sink a whole dataset.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from service.imaging import DecodeLimits, decode_image
from service.repository.manifest import Preprocessing
from training.data.transforms import decode_for_eval
from training.errors import UnusableData

IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})
# What training decodes from files: every format of IMAGE_EXTENSIONS (PIL's names; .pgm is PPM) and larger
# photos than the service accepts by default; anything past PIL's own decompression-bomb limit is refused.
FILE_LIMITS = DecodeLimits(
    formats=frozenset({"BMP", "GIF", "JPEG", "PNG", "PPM", "TIFF", "WEBP"}),
    max_bytes=512 * 1024 * 1024,
    max_pixels=89_478_485,  # PIL's Image.MAX_IMAGE_PIXELS
)
# PIL modes whose pixels carry no colour; a folder of only these is loaded as "L".
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


@dataclass(frozen=True)
class ImageFolderData:
    labels: tuple[str, ...]  # class names, sorted; index = label
    images: torch.Tensor  # uint8 (N, C, H, W), H x W = preprocessing.input_size
    targets: torch.Tensor  # int64 (N,), indices into labels
    paths: tuple[str, ...]  # path of each image relative to root, in tensor order
    skipped: tuple[tuple[str, str], ...]  # (relative path, reason) for each file that failed


def open_image(path: Path) -> Image.Image:
    """Decode a file fully with the service's ``decode_image`` (the one decoder for training and serving):
    first frame, EXIF orientation applied (so phone photos stand upright), PIL's pixel mode.

    Raises ``service.imaging.ImageError`` (with the service's message) for unreadable, truncated,
    oversized or unsupported files, and ``OSError`` when the file cannot be read.
    """
    return decode_image(path.read_bytes(), FILE_LIMITS)


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UnusableData(f"image folder {root} does not exist; give the path of a folder of class folders")
    folders = sorted(
        (entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )
    if not folders:
        raise UnusableData(
            f"image folder {root} has no class folders; put each class's images in a sub-folder "
            "named after the class (root/cat/1.jpg, root/dog/2.jpg)"
        )
    if len(folders) == 1:
        raise UnusableData(
            f"image folder {root} has a single class ({folders[0].name}); a classifier needs at least two class folders"
        )
    return folders


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, skipping hidden files and folders."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def detect_color_mode(root: Path) -> Literal["L", "RGB"]:
    """ "L" when every readable image under ``root``'s class folders is grayscale, else "RGB".

    Reads only headers. Unreadable files are ignored here; ``load_image_folder`` reports them.
    """
    for folder in _class_folders(root):
        for path in _image_files(folder):
            try:
                with Image.open(path) as image:
                    mode = image.mode
            except Exception:  # any decode failure: load_image_folder reports the file
                continue
            if mode not in GRAYSCALE_MODES:
                return "RGB"
    return "L"


def load_image_folder(root: Path, *, preprocessing: Preprocessing, min_images_per_class: int = 1) -> ImageFolderData:
    """Decode every image under ``root`` through ``decode_for_eval`` into one uint8 tensor.

    Raises ``UnusableData`` when ``root`` is missing, has no class folders or only one, holds no
    readable image, or a class has fewer than ``min_images_per_class`` readable images. Unreadable
    or corrupt files (and images too small for ``input_size``) are skipped and listed in ``skipped``.
    Prints nothing.
    """
    folders = _class_folders(root)
    files = [(path, label) for label, folder in enumerate(folders) for path in _image_files(folder)]

    height, width = preprocessing.input_size
    images = torch.empty((len(files), preprocessing.channels, height, width), dtype=torch.uint8)
    targets: list[int] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, label in files:
        relative = path.relative_to(root).as_posix()
        try:
            pixels = decode_for_eval(open_image(path), preprocessing=preprocessing)
        # PIL's format plugins raise many exception types on malformed input (OSError, SyntaxError,
        # ValueError, struct.error, DecompressionBombError, ...); any of them means "skip this file".
        except Exception as error:
            skipped.append((relative, f"{type(error).__name__}: {error}"))
            continue
        images[len(targets)] = pixels
        targets.append(label)
        paths.append(relative)

    if not targets:
        raise UnusableData(
            f"image folder {root} holds no readable image ({len(files)} candidate files, "
            f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))}); add images to the class folders"
        )
    target_tensor = torch.tensor(targets, dtype=torch.int64)
    counts = torch.bincount(target_tensor, minlength=len(folders)).tolist()
    too_few = [
        f"{folder.name} ({count})"
        for folder, count in zip(folders, counts, strict=True)
        if count < min_images_per_class
    ]
    if too_few:
        raise UnusableData(
            f"image folder {root}: classes with fewer than {min_images_per_class} readable images: "
            f"{', '.join(too_few)}; add images or remove those folders"
        )
    if len(targets) < len(files):
        images = images[: len(targets)].clone()  # release the rows reserved for skipped files
    return ImageFolderData(
        labels=tuple(folder.name for folder in folders),
        images=images,
        targets=target_tensor,
        paths=tuple(paths),
        skipped=tuple(skipped),
    )
