"""Reading and writing ``<root>/<model>/<version>/`` folders and ``<root>/<model>/aliases.json``.

Publishing writes into a hidden staging folder beside the versions and renames it into place, so a
reader never sees half a version; alias changes replace the aliases file atomically under a lock.
Variants (derived files such as an int8 model) are added to a published version later: the file
first, then the manifest that names it, each replaced atomically under the same lock.

A version's evaluation report (``report.json``, service/evaluation) is published with it when training or
the import measured one. A version published without one can get one later, attached beside it (the
version folder never changes): ``<model>/reports/<version>.json``, replaced atomically.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec

from service.evaluation.report import EvaluationReport, decode_report, encode_report
from service.files import fsync_dir, write_atomic, write_json_atomic
from service.repository.errors import (
    AliasNotFound,
    CorruptVersion,
    ModelNotFound,
    ReportNotFound,
    RepositoryError,
    RepositoryReadOnly,
    VersionNotFound,
)
from service.repository.manifest import Manifest, Variant, decode_manifest, encode_manifest

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.pt"
REPORT_FILE = "report.json"
EXPLAIN_FILE = "explain.onnx"
ATTACHED_REPORTS = "reports"  # <model>/reports/<version>.json
ALIASES_FILE = "aliases.json"
PRODUCTION = "production"
RESERVED_FILES = frozenset({MANIFEST_FILE, ONNX_FILE, WEIGHTS_FILE, REPORT_FILE, EXPLAIN_FILE})
# What a write inside the repository fails with on a read-only mount, or without the permission to write
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class VersionRef(NamedTuple):
    name: str
    version: int
    path: Path


class StoredReport(NamedTuple):
    report: EvaluationReport
    attached: bool  # False: published with the version; True: attached to it later (imgcls evaluate)


def check_name(kind: str, value: str) -> str:
    """Model and alias names become path parts, so they are held to a strict pattern."""
    if not NAME_PATTERN.match(value):
        raise RepositoryError(
            f"invalid {kind} {value!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- reading

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / check_name("model name", name)
        if not folder.is_dir():
            raise ModelNotFound(name, self.models())
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def path(self, name: str, version: int) -> Path:
        known = self.versions(name)
        if version not in known:
            raise VersionNotFound(name, version, known)
        return self.root / name / str(version)

    def manifest(self, name: str, version: int) -> Manifest:
        path = self.path(name, version) / MANIFEST_FILE
        try:
            return decode_manifest(path.read_bytes())
        except FileNotFoundError as exc:
            raise CorruptVersion(f"{name} v{version}: {MANIFEST_FILE} is missing") from exc
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise CorruptVersion(f"{name} v{version}: {MANIFEST_FILE} is invalid: {exc}") from exc

    def verify(self, name: str, version: int) -> Manifest:
        """Read the manifest and check the sha256 of every file it names; raise CorruptVersion if not."""
        manifest = self.manifest(name, version)
        folder = self.root / name / str(version)
        expected = {ONNX_FILE: manifest.onnx_sha256}
        if manifest.weights_sha256 is not None:
            expected[WEIGHTS_FILE] = manifest.weights_sha256
        if manifest.report_sha256 is not None:
            expected[REPORT_FILE] = manifest.report_sha256
        if manifest.explain is not None:
            expected[manifest.explain.file] = manifest.explain.sha256
        expected.update({variant.file: variant.sha256 for variant in manifest.variants.values()})
        for filename, digest in expected.items():
            if not (folder / filename).is_file():
                raise CorruptVersion(f"{name} v{version}: {filename} is missing")
            actual = sha256_file(folder / filename)
            if actual != digest:
                raise CorruptVersion(
                    f"{name} v{version}: {filename} has sha256 {actual[:12]}…, the manifest says {digest[:12]}…"
                )
        return manifest

    def report(self, name: str, version: int) -> StoredReport:
        """The version's evaluation report: the one published with it, else one attached later. Raises
        ``ReportNotFound`` when it has neither, ``CorruptVersion`` for a file that is not a report."""
        candidates = ((self.path(name, version) / REPORT_FILE, False), (self._attached_report(name, version), True))
        for path, attached in candidates:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            try:
                return StoredReport(decode_report(data), attached)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise CorruptVersion(f"{name} v{version}: {path.name} is not an evaluation report: {exc}") from exc
        raise ReportNotFound(name, version)

    def _attached_report(self, name: str, version: int) -> Path:
        return self.root / name / ATTACHED_REPORTS / f"{version}.json"

    def aliases(self, name: str) -> dict[str, int]:
        self.versions(name)  # raises ModelNotFound
        path = self.root / name / ALIASES_FILE
        if not path.exists():
            return {}
        try:
            raw = json.loads(path.read_text())
            return {check_name("alias", str(k)): int(v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError, RepositoryError) as exc:
            raise RepositoryError(f"{path} is not a valid aliases file: {exc}") from exc

    def resolve(self, name: str, reference: str | int | None = None) -> int:
        """A version number from a number, an alias, or nothing (production alias, else the latest)."""
        known = self.versions(name)
        if reference is None:
            aliases = self.aliases(name)
            if PRODUCTION in aliases:
                return aliases[PRODUCTION]
            if not known:
                raise VersionNotFound(name, 0, known)
            return known[-1]
        if isinstance(reference, int) or (reference.isascii() and reference.isdigit()):  # not '¹': int() refuses it
            version = int(reference)
            if version not in known:
                raise VersionNotFound(name, version, known)
            return version
        if reference == "latest":
            if not known:
                raise VersionNotFound(name, 0, known)
            return known[-1]
        aliases = self.aliases(name)
        if reference not in aliases:
            raise AliasNotFound(name, reference, sorted(aliases))
        return aliases[reference]

    # ---------------------------------------------------------------- writing

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[None]:
        """Raise ``RepositoryReadOnly`` (what ``action`` needs, and why it cannot be done) when the file system
        refuses a write inside the repository; other errors, and files outside it, pass unchanged."""
        try:
            yield
        except OSError as error:
            inside = isinstance(error.filename, str) and Path(error.filename).is_relative_to(self.root)
            if error.errno in NOT_WRITABLE and inside:
                raise RepositoryReadOnly(self.root, action, error) from error
            raise

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        check_name("alias", alias)
        if alias == "latest":
            raise RepositoryError("'latest' is computed from the versions and cannot be set")
        self.path(name, version)  # the version must exist
        with self._writing(f"setting the alias {alias!r} of {name}"), self._locked(name) as folder:
            aliases = self.aliases(name)
            aliases[alias] = version
            self._write_aliases(folder, aliases)

    def remove_alias(self, name: str, alias: str) -> None:
        with self._writing(f"removing the alias {alias!r} of {name}"), self._locked(name) as folder:
            aliases = self.aliases(name)
            if alias not in aliases:
                raise AliasNotFound(name, alias, sorted(aliases))
            del aliases[alias]
            self._write_aliases(folder, aliases)

    def add_variant(self, name: str, version: int, variant_name: str, variant: Variant, onnx_path: Path) -> Manifest:
        """Copy ``onnx_path`` into the version as ``variant.file`` and record it in the manifest as ``variant_name``.

        Returns the rewritten manifest. The variant's ``sha256`` is overwritten with the copied file's.
        Nothing else in the version changes: the fp32 model, the weights and every other manifest field
        stay as published. Adding a name again replaces that variant (and its file).

        The file is copied under a hidden temporary name, fsynced and renamed into place first; then the
        manifest is rewritten the same way, under the model's lock. A reader therefore never sees a
        manifest naming a file that is not there. Replacing an existing variant's file leaves a moment in
        which the old manifest entry names the new file (``verify`` would report the sha256 mismatch);
        a crash in that moment leaves the version failing ``verify`` until ``add_variant`` is run again.
        Raises ``RepositoryError`` for a bad variant name or file name, ``VersionNotFound`` and friends
        for a missing version, ``CorruptVersion`` for an unreadable manifest, ``RepositoryReadOnly`` when
        the repository cannot be written.
        """
        check_name("variant name", variant_name)
        folder = self.path(name, version)
        if not NAME_PATTERN.match(variant.file) or variant.file in RESERVED_FILES:
            raise RepositoryError(
                f"invalid variant file {variant.file!r}: use a plain file name of 1-64 lowercase letters, digits, "
                f"'.', '_' or '-', other than {', '.join(sorted(RESERVED_FILES))}"
            )
        with self._writing(f"adding the variant {variant_name!r} to {name} v{version}"):
            staging = folder / f".{variant.file}.{uuid.uuid4().hex}"
            try:
                shutil.copyfile(onnx_path, staging)
                with staging.open("rb") as handle:
                    os.fsync(handle.fileno())
                stamped = msgspec.structs.replace(variant, sha256=sha256_file(staging))
                with self._locked(name):
                    manifest = self.manifest(name, version)
                    taken = {v.file: n for n, v in manifest.variants.items() if n != variant_name}
                    if variant.file in taken:
                        raise RepositoryError(
                            f"{name} v{version}: variant {taken[variant.file]!r} already uses the file {variant.file}"
                        )
                    updated = msgspec.structs.replace(manifest, variants={**manifest.variants, variant_name: stamped})
                    os.replace(staging, folder / variant.file)
                    self._write_manifest(folder, updated)
            except BaseException:
                staging.unlink(missing_ok=True)
                raise
        return updated

    def attach_report(self, name: str, version: int, report: EvaluationReport) -> Path:
        """Store ``report`` beside a version published without one (``<model>/reports/<version>.json``, replacing
        an earlier attached one atomically) and return its path. The version folder is not touched. Raises
        ``RepositoryError`` for a version that was published with its own report, ``RepositoryReadOnly``
        when the repository cannot be written."""
        if (self.path(name, version) / REPORT_FILE).is_file():
            raise RepositoryError(
                f"{name} v{version} was published with its evaluation report ({REPORT_FILE}), and a published "
                "version does not change: write a new one as files with --report DIR instead"
            )
        target = self._attached_report(name, version)
        with self._writing(f"attaching a report to {name} v{version}"), self._locked(name):
            write_atomic(target, encode_report(report))
        return target

    @staticmethod
    def _write_manifest(folder: Path, manifest: Manifest) -> None:
        write_atomic(folder / MANIFEST_FILE, encode_manifest(manifest))

    @staticmethod
    def _write_aliases(folder: Path, aliases: dict[str, int]) -> None:
        write_json_atomic(folder / ALIASES_FILE, dict(sorted(aliases.items())))

    def publish(
        self,
        manifest: Manifest,
        onnx_path: Path,
        weights_path: Path | None,
        report_path: Path | None = None,
        explain_path: Path | None = None,
    ) -> VersionRef:
        """Copy the files in, stamp hashes and the next version number, and rename into place atomically.

        The manifest's ``name`` picks the model; its ``version``, ``onnx_sha256``, ``weights_sha256``,
        ``report_sha256`` and ``explain.sha256`` are overwritten with the real values. ``report_path``: the
        evaluation report (``report.json``) to publish with it; ``explain_path``: the explain graph the
        manifest's ``explain`` describes (given exactly when it is set). Raises ``RepositoryReadOnly`` when the
        repository cannot be written.
        """
        name = check_name("model name", manifest.name)
        if (explain_path is None) != (manifest.explain is None):
            raise RepositoryError(
                f"{name}: an explain graph is published with the manifest entry that describes it "
                f"(file given: {explain_path is not None}, entry: {manifest.explain is not None})"
            )
        folder = self.root / name
        with self._writing(f"publishing a version of {name}"):
            folder.mkdir(parents=True, exist_ok=True)
            staging = folder / f".staging-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                shutil.copyfile(onnx_path, staging / ONNX_FILE)
                weights_sha = None
                if weights_path is not None:
                    shutil.copyfile(weights_path, staging / WEIGHTS_FILE)
                    weights_sha = sha256_file(staging / WEIGHTS_FILE)
                report_sha = None
                if report_path is not None:
                    shutil.copyfile(report_path, staging / REPORT_FILE)
                    report_sha = sha256_file(staging / REPORT_FILE)
                explain = manifest.explain
                if explain_path is not None and explain is not None:
                    shutil.copyfile(explain_path, staging / EXPLAIN_FILE)
                    explain = msgspec.structs.replace(
                        explain, file=EXPLAIN_FILE, sha256=sha256_file(staging / EXPLAIN_FILE)
                    )
                onnx_sha = sha256_file(staging / ONNX_FILE)
                with self._locked(name):
                    version = max(self.versions(name), default=0) + 1
                    stamped = msgspec.structs.replace(
                        manifest,
                        version=version,
                        onnx_sha256=onnx_sha,
                        weights_sha256=weights_sha,
                        report_sha256=report_sha,
                        explain=explain,
                    )
                    (staging / MANIFEST_FILE).write_bytes(encode_manifest(stamped))
                    for child in staging.iterdir():
                        with child.open("rb") as handle:
                            os.fsync(handle.fileno())
                    fsync_dir(staging)
                    target = folder / str(version)
                    os.rename(staging, target)
                    fsync_dir(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return VersionRef(name, version, target)
