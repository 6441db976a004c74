import errno
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from service.repository import (
    AliasNotFound,
    CorruptVersion,
    Explanation,
    ModelNotFound,
    ModelRepository,
    RepositoryError,
    RepositoryReadOnly,
    VersionNotFound,
)
from tests.read_only import read_only
from tests.service.repository.manifests import sample_manifest


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    onnx = tmp_path / "in.onnx"
    onnx.write_bytes(b"onnx bytes")
    weights = tmp_path / "in.pt"
    weights.write_bytes(b"weights bytes")
    return onnx, weights


def test_publish_numbers_versions_and_stamps_hashes(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path / "models")
    first = repo.publish(sample_manifest(), *files)
    second = repo.publish(sample_manifest(), files[0], None)
    assert (first.version, second.version) == (1, 2)
    assert repo.versions("fashion-mnist") == [1, 2]
    manifest = repo.verify("fashion-mnist", 1)
    assert manifest.version == 1
    assert len(manifest.onnx_sha256) == 64
    assert manifest.weights_sha256 is not None
    assert repo.verify("fashion-mnist", 2).weights_sha256 is None
    assert sorted(p.name for p in first.path.iterdir()) == ["manifest.json", "model.onnx", "weights.pt"]


def test_no_staging_folder_is_left_or_listed(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    repo.publish(sample_manifest(), *files)
    (tmp_path / "fashion-mnist" / ".staging-crashed").mkdir()  # a publisher that died mid-way
    assert repo.versions("fashion-mnist") == [1]
    assert [p.name for p in (tmp_path / "fashion-mnist").iterdir() if p.name.startswith(".staging")] == [
        ".staging-crashed"
    ]


def test_a_failed_publish_leaves_nothing(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    with pytest.raises(FileNotFoundError):
        repo.publish(sample_manifest(), tmp_path / "missing.onnx", None)
    assert repo.versions("fashion-mnist") == []
    assert not any((tmp_path / "fashion-mnist").glob(".staging-*"))


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    versions: list[int] = []
    threads = [
        threading.Thread(target=lambda: versions.append(repo.publish(sample_manifest(), *files).version))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(1, 9))


def test_tampered_file_is_detected(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    ref = repo.publish(sample_manifest(), *files)
    (ref.path / "model.onnx").write_bytes(b"something else")
    with pytest.raises(CorruptVersion, match=r"model.onnx has sha256 .* the manifest says"):
        repo.verify("fashion-mnist", 1)


def test_an_explain_graph_is_published_stamped_and_verified(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    graph = tmp_path / "graph.onnx"
    graph.write_bytes(b"explain bytes")
    entry = Explanation(file="anything", sha256="", pooling="average", map_size=(7, 7), max_abs_diff=1e-6)
    with_entry = msgspec.structs.replace(sample_manifest(), explain=entry)
    with pytest.raises(RepositoryError, match="explain graph is published with the manifest entry"):
        repo.publish(with_entry, *files)  # an entry without its file
    with pytest.raises(RepositoryError, match="explain graph is published with the manifest entry"):
        repo.publish(sample_manifest(), *files, explain_path=graph)  # a file without its entry
    assert repo.models() == []

    ref = repo.publish(with_entry, *files, explain_path=graph)
    explain = repo.verify("fashion-mnist", ref.version).explain
    assert explain is not None and explain.file == "explain.onnx" and len(explain.sha256) == 64
    assert (ref.path / "explain.onnx").read_bytes() == b"explain bytes"
    (ref.path / "explain.onnx").write_bytes(b"tampered")
    with pytest.raises(CorruptVersion, match=r"explain.onnx has sha256"):
        repo.verify("fashion-mnist", ref.version)


def test_broken_manifest_is_reported(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    ref = repo.publish(sample_manifest(), *files)
    (ref.path / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptVersion, match=r"manifest\.json is invalid"):
        repo.manifest("fashion-mnist", 1)


def test_aliases_and_resolution(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    for _ in range(3):
        repo.publish(sample_manifest(), *files)
    assert repo.resolve("fashion-mnist") == 3  # no production alias: the latest
    repo.set_alias("fashion-mnist", "production", 2)
    assert repo.resolve("fashion-mnist") == 2
    assert repo.resolve("fashion-mnist", "production") == 2
    assert repo.resolve("fashion-mnist", "latest") == 3
    assert repo.resolve("fashion-mnist", "1") == 1
    assert json.loads((tmp_path / "fashion-mnist" / "aliases.json").read_text()) == {"production": 2}
    repo.remove_alias("fashion-mnist", "production")
    assert repo.aliases("fashion-mnist") == {}


def test_lookups_fail_loudly(tmp_path: Path, files: tuple[Path, Path]) -> None:
    repo = ModelRepository(tmp_path)
    repo.publish(sample_manifest(), *files)
    with pytest.raises(ModelNotFound, match=r"no model named 'nope' in the repository \(known: fashion-mnist\)"):
        repo.versions("nope")
    with pytest.raises(VersionNotFound, match=r"has no version 7 \(published: 1\)"):
        repo.resolve("fashion-mnist", 7)
    with pytest.raises(AliasNotFound, match="has no alias 'staging'"):
        repo.resolve("fashion-mnist", "staging")
    with pytest.raises(VersionNotFound):
        repo.set_alias("fashion-mnist", "production", 9)


@pytest.mark.parametrize("name", ["../escape", "UPPER", "", "a/b", ".hidden"])
def test_names_cannot_escape_the_root(tmp_path: Path, name: str) -> None:
    with pytest.raises(RepositoryError, match="invalid model name"):
        ModelRepository(tmp_path).versions(name)


def test_empty_or_missing_root_lists_nothing(tmp_path: Path) -> None:
    assert ModelRepository(tmp_path / "absent").models() == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real 'no space left on device'. Mounting needs root, which CI on this kind of
    machine has; elsewhere the test is skipped and says why."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_that_fills_while_publishing_leaves_no_version(small_disk: Path, tmp_path: Path) -> None:
    repo = ModelRepository(small_disk / "models")
    small = tmp_path / "small.onnx"
    small.write_bytes(b"x" * 1000)
    repo.publish(sample_manifest(), small, None)
    big = tmp_path / "big.onnx"
    big.write_bytes(os.urandom(400 * 1024))  # more than the disk holds

    with pytest.raises(OSError) as error:
        repo.publish(sample_manifest(), big, None)
    assert error.value.errno == errno.ENOSPC
    assert repo.versions("fashion-mnist") == [1]  # no half-written version 2
    assert not any((small_disk / "models" / "fashion-mnist").glob(".staging-*"))
    assert repo.verify("fashion-mnist", 1).version == 1  # the published one is intact
    assert repo.publish(sample_manifest(), small, None).version == 2  # and publishing works again


def test_a_read_only_repository_reads_and_says_why_it_cannot_write(tmp_path: Path, files: tuple[Path, Path]) -> None:
    root = tmp_path / "models"
    repo = ModelRepository(root)
    repo.publish(sample_manifest(), *files)
    repo.publish(sample_manifest(), *files)
    repo.set_alias("fashion-mnist", "production", 1)
    with read_only(root):
        assert repo.resolve("fashion-mnist") == 1 and repo.verify("fashion-mnist", 2).version == 2

        with pytest.raises(RepositoryReadOnly) as refused:
            repo.set_alias("fashion-mnist", "production", 2)
        assert str(refused.value) == (
            f"the model repository {root} is read-only: setting the alias 'production' of fashion-mnist needs "
            f"write access (Read-only file system: {root / 'fashion-mnist' / '.lock'})"
        )
        assert isinstance(refused.value.__cause__, OSError) and refused.value.__cause__.errno == errno.EROFS
        with pytest.raises(RepositoryReadOnly, match="read-only: removing the alias 'production'"):
            repo.remove_alias("fashion-mnist", "production")
        with pytest.raises(RepositoryReadOnly, match="read-only: publishing a version of fashion-mnist"):
            repo.publish(sample_manifest(), *files)
        assert repo.aliases("fashion-mnist") == {"production": 1} and repo.versions("fashion-mnist") == [1, 2]
