import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.repository.manifest import Preprocessing
from tests.training.data.files import random_pixels, save_image
from training.data.image_folder import detect_color_mode, load_image_folder, open_image
from training.errors import UnusableData

RGB_16 = Preprocessing(color_mode="RGB", input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, resize=16)
EXIF_ORIENTATION = 0x0112


def build_tree(root: Path) -> Path:
    """cat: 3 PNGs (one in a sub-folder); dog: 2 JPEGs, a corrupt and a truncated JPEG, ignorable extras."""
    for i, size in enumerate([(20, 30), (40, 16), (16, 16)]):
        save_image(root / "cat" / ("nested" if i == 0 else "") / f"{i}.png", random_pixels(i, *size))
    for i in range(2):
        save_image(root / "dog" / f"{i}.JPG", random_pixels(10 + i, 24, 24), format="JPEG")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    whole = io.BytesIO()
    Image.fromarray(random_pixels(20, 64, 64)).save(whole, format="JPEG")
    (root / "dog" / "cut.jpeg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "dog" / "notes.txt").write_text("not an image, ignored")
    save_image(root / "dog" / ".hidden.png", random_pixels(30, 16, 16))  # hidden, ignored
    (root / ".cache").mkdir()  # hidden folder: not a class
    return root


def test_loads_classes_and_reports_unreadable_files(tmp_path: Path) -> None:
    data = load_image_folder(build_tree(tmp_path), preprocessing=RGB_16)
    assert data.labels == ("cat", "dog")
    assert data.images.shape == (5, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.targets.tolist() == [0, 0, 0, 1, 1] and data.targets.dtype == torch.int64
    assert data.paths == ("cat/1.png", "cat/2.png", "cat/nested/0.png", "dog/0.JPG", "dog/1.JPG")
    assert [path for path, _ in data.skipped] == ["dog/broken.jpg", "dog/cut.jpeg"]
    assert all(reason for _, reason in data.skipped)
    assert "truncated" in dict(data.skipped)["dog/cut.jpeg"]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20), dtype=np.uint8)  # 20 wide, 10 high: left half black, right half white
    pixels[:, 10:] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    path = save_image(tmp_path / "photo.jpg", pixels, format="JPEG", exif=exif, quality=95)

    upright = np.asarray(open_image(path))
    assert upright.shape == (20, 10)  # now 10 wide, 20 high
    assert upright[:10].mean() < 30 and upright[10:].mean() > 225  # the left half is on top


def test_first_frame_of_an_animation(tmp_path: Path) -> None:
    frames = [Image.new("L", (8, 8), 0), Image.new("L", (8, 8), 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(path).convert("L")).max() == 0


def test_detect_color_mode(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save_image(tmp_path / name / "1.png", random_pixels(1, 8, 8, channels=1))
    assert detect_color_mode(tmp_path) == "L"
    save_image(tmp_path / "b" / "2.png", random_pixels(2, 8, 8))
    assert detect_color_mode(tmp_path) == "RGB"


def test_grayscale_folder(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save_image(tmp_path / name / "1.png", random_pixels(1, 9, 12, channels=1))
    gray = Preprocessing(color_mode="L", input_size=(8, 8), mean=(0.5,), std=(0.5,), resize=8)
    assert load_image_folder(tmp_path, preprocessing=gray).images.shape == (2, 1, 8, 8)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UnusableData, match="does not exist"):
        load_image_folder(tmp_path / "absent", preprocessing=RGB_16)


def test_no_class_folders(tmp_path: Path) -> None:
    save_image(tmp_path / "loose.png", random_pixels(0, 16, 16))
    with pytest.raises(UnusableData, match="has no class folders; put each class's images in a sub-folder"):
        load_image_folder(tmp_path, preprocessing=RGB_16)


def test_single_class(tmp_path: Path) -> None:
    save_image(tmp_path / "cat" / "1.png", random_pixels(0, 16, 16))
    with pytest.raises(UnusableData, match=r"single class \(cat\); a classifier needs at least two"):
        load_image_folder(tmp_path, preprocessing=RGB_16)


def test_no_readable_images(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"garbage")
    with pytest.raises(UnusableData, match="holds no readable image"):
        load_image_folder(tmp_path, preprocessing=RGB_16)


def test_class_below_minimum(tmp_path: Path) -> None:
    data = load_image_folder(build_tree(tmp_path), preprocessing=RGB_16, min_images_per_class=2)
    assert len(data.targets) == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnusableData, match=r"fewer than 3 readable images: dog \(2\), empty \(0\)"):
        load_image_folder(tmp_path, preprocessing=RGB_16, min_images_per_class=3)
