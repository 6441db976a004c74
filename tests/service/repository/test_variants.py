"""Variants: derived model files (int8) added to a published version, recorded in its manifest."""

import json
import threading
from pathlib import Path

import msgspec
import pytest

from service.repository import CorruptVersion, ModelRepository, RepositoryError, Variant, VersionRef
from service.repository.manifest import decode_manifest, encode_manifest
from service.repository.store import sha256_file
from tests.service.repository.manifests import sample_manifest


def int8(file: str = "model.int8.onnx") -> Variant:
    return Variant(
        file=file, sha256="", precision="int8", method="test", metrics={"test_accuracy": 0.89, "test_images": 300.0}
    )


@pytest.fixture
def published(tmp_path: Path) -> tuple[ModelRepository, VersionRef]:
    (tmp_path / "in.onnx").write_bytes(b"fp32 bytes")
    (tmp_path / "in.pt").write_bytes(b"weights bytes")
    repo = ModelRepository(tmp_path / "models")
    return repo, repo.publish(sample_manifest(), tmp_path / "in.onnx", tmp_path / "in.pt")


def variant_file(tmp_path: Path, content: bytes, name: str = "quantized.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_add_variant_copies_the_file_and_stamps_its_sha(
    published: tuple[ModelRepository, VersionRef], tmp_path: Path
) -> None:
    repo, ref = published
    before = repo.manifest("fashion-mnist", 1)
    fp32_bytes = (ref.path / "model.onnx").read_bytes()

    updated = repo.add_variant("fashion-mnist", 1, "int8", int8(), variant_file(tmp_path, b"int8 bytes"))

    assert (ref.path / "model.int8.onnx").read_bytes() == b"int8 bytes"
    assert updated.variants["int8"].sha256 == sha256_file(ref.path / "model.int8.onnx")
    assert updated.variants["int8"].metrics["test_accuracy"] == 0.89
    assert repo.verify("fashion-mnist", 1) == updated
    # Everything else in the version is exactly as published.
    assert msgspec.structs.replace(updated, variants={}) == before
    assert (ref.path / "model.onnx").read_bytes() == fp32_bytes
    assert sorted(p.name for p in ref.path.iterdir()) == [
        "manifest.json",
        "model.int8.onnx",
        "model.onnx",
        "weights.pt",
    ]


def test_adding_again_replaces_the_variant(published: tuple[ModelRepository, VersionRef], tmp_path: Path) -> None:
    repo, ref = published
    repo.add_variant("fashion-mnist", 1, "int8", int8(), variant_file(tmp_path, b"first"))
    second = repo.add_variant("fashion-mnist", 1, "int8", int8(), variant_file(tmp_path, b"second"))
    assert (ref.path / "model.int8.onnx").read_bytes() == b"second"
    assert list(second.variants) == ["int8"]
    assert repo.verify("fashion-mnist", 1).variants["int8"].sha256 == sha256_file(ref.path / "model.int8.onnx")


def test_verify_checks_variant_files(published: tuple[ModelRepository, VersionRef], tmp_path: Path) -> None:
    repo, ref = published
    repo.add_variant("fashion-mnist", 1, "int8", int8(), variant_file(tmp_path, b"int8 bytes"))
    (ref.path / "model.int8.onnx").write_bytes(b"tampered")
    with pytest.raises(CorruptVersion, match=r"model.int8.onnx has sha256 .* the manifest says"):
        repo.verify("fashion-mnist", 1)
    (ref.path / "model.int8.onnx").unlink()
    with pytest.raises(CorruptVersion, match=r"model\.int8\.onnx is missing"):
        repo.verify("fashion-mnist", 1)


@pytest.mark.parametrize(
    ("variant_name", "file", "message"),
    [
        ("INT8", "model.int8.onnx", "invalid variant name 'INT8'"),
        ("int8", "../model.int8.onnx", "invalid variant file '../model.int8.onnx'"),
        ("int8", "model.onnx", "invalid variant file 'model.onnx'"),
        ("int8", "manifest.json", "invalid variant file 'manifest.json'"),
    ],
)
def test_bad_names_are_refused_and_nothing_changes(
    published: tuple[ModelRepository, VersionRef], tmp_path: Path, variant_name: str, file: str, message: str
) -> None:
    repo, ref = published
    manifest_bytes = (ref.path / "manifest.json").read_bytes()
    with pytest.raises(RepositoryError, match=message):
        repo.add_variant("fashion-mnist", 1, variant_name, int8(file), variant_file(tmp_path, b"x"))
    assert (ref.path / "manifest.json").read_bytes() == manifest_bytes
    assert sorted(p.name for p in ref.path.iterdir()) == ["manifest.json", "model.onnx", "weights.pt"]


def test_two_variants_cannot_share_a_file(published: tuple[ModelRepository, VersionRef], tmp_path: Path) -> None:
    repo, _ = published
    repo.add_variant("fashion-mnist", 1, "int8", int8(), variant_file(tmp_path, b"a"))
    with pytest.raises(RepositoryError, match=r"variant 'int8' already uses the file model\.int8\.onnx"):
        repo.add_variant("fashion-mnist", 1, "other", int8(), variant_file(tmp_path, b"b"))


def test_a_failed_add_leaves_the_version_as_it_was(
    published: tuple[ModelRepository, VersionRef], tmp_path: Path
) -> None:
    repo, ref = published
    manifest_bytes = (ref.path / "manifest.json").read_bytes()
    with pytest.raises(FileNotFoundError):
        repo.add_variant("fashion-mnist", 1, "int8", int8(), tmp_path / "missing.onnx")
    assert (ref.path / "manifest.json").read_bytes() == manifest_bytes
    assert sorted(p.name for p in ref.path.iterdir()) == ["manifest.json", "model.onnx", "weights.pt"]


def test_readers_never_see_a_half_written_manifest_or_a_missing_file(
    published: tuple[ModelRepository, VersionRef], tmp_path: Path
) -> None:
    """Writers in several threads at once: every add lands (the lock), readers always see a whole manifest."""
    repo, ref = published
    done = threading.Event()
    problems: list[str] = []

    def read() -> None:
        while not done.is_set():
            manifest = repo.manifest("fashion-mnist", 1)  # raises CorruptVersion on a torn manifest.json
            problems.extend(v.file for v in manifest.variants.values() if not (ref.path / v.file).is_file())

    def add(index: int) -> None:
        source = variant_file(tmp_path, f"variant {index}".encode(), f"v{index}.onnx")
        repo.add_variant("fashion-mnist", 1, f"v{index}", int8(f"model.v{index}.onnx"), source)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=add, args=(index,)) for index in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()

    assert problems == []
    assert sorted(repo.verify("fashion-mnist", 1).variants) == [f"v{index}" for index in range(8)]
    assert not [p.name for p in ref.path.iterdir() if p.name.startswith(".")]


def test_a_manifest_written_before_variants_existed_decodes_with_none() -> None:
    raw = json.loads(encode_manifest(sample_manifest()))
    del raw["variants"]
    manifest = decode_manifest(json.dumps(raw).encode())
    assert manifest.variants == {}
    assert manifest == sample_manifest()


def test_a_variant_without_test_accuracy_is_invalid() -> None:
    with pytest.raises(ValueError, match="metrics lack test_accuracy"):
        Variant(file="model.int8.onnx", sha256="", precision="int8", method="test", metrics={})
