"""POST /v1/models/{name}/versions: import an ONNX classifier trained elsewhere as a new version (admin).

The body is multipart/form-data with two fields: ``model``, the ONNX file, and ``options``, a JSON object
with ``labels`` (a list, one per output column) and the import options by the CLI's names (``input_size``,
``resize``, ``mean``, ``std``, ``color``, ``layout``, ``output``, ``interpolation``; docs/models.md).
The file is streamed to its own folder under the data root as it arrives, counted against
``import_max_upload_bytes`` on the way (this route lifts the app-wide body limit for that), checked and
published in a worker thread by ``service.importing.publish.import_onnx`` (the code ``imgcls models
import`` runs), and removed whatever happens. Calibrating and evaluating on a labelled folder are the
CLI's only: a folder of photos is not something to upload beside a model.
"""

import asyncio
import shutil
import uuid
from pathlib import Path

import msgspec
from litestar import Request, post
from litestar.params import FromPath
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from service.api.auth import authorized
from service.api.errors import BadRequest, problems
from service.api.fastpath.uploads import parse_header_params
from service.api.openapi import ModelImportOperation
from service.api.v1.schemas import ImportedVersion
from service.importing.errors import ModelFileTooLarge
from service.importing.options import ImportOptions
from service.repository.store import check_name

MODEL_FIELD = "model"
OPTIONS_FIELD = "options"
MAX_OPTIONS_BYTES = 256 * 1024  # the JSON part: labels and options, never large
WRITE_BYTES = 1024 * 1024  # received bytes gathered before one write in a worker thread
HOW_TO_SEND = (
    "send multipart/form-data with the ONNX file in the field 'model' and a JSON object in the field 'options', "
    'e.g. {"labels": ["cat", "dog"], "input_size": 224}'
)


class ImportRequest(ImportOptions, frozen=True, forbid_unknown_fields=True):
    """The ``options`` part: the labels, and the options ``imgcls models import`` takes."""

    labels: tuple[str, ...] = ()  # one per output column, in order (check_labels refuses none)

    def import_options(self) -> ImportOptions:
        return ImportOptions(**{field: getattr(self, field) for field in ImportOptions.__struct_fields__})


class ImportParts:
    """The two fields of the body, pulled out chunk by chunk as it arrives: the file's bytes are handed back to
    be written, the JSON part is kept (up to ``MAX_OPTIONS_BYTES``)."""

    def __init__(self, boundary: str) -> None:
        if not boundary:
            raise BadRequest("the multipart Content-Type has no boundary parameter")
        try:
            self.parser = PushMultipartParser(boundary, max_segment_count=8)
        except MultipartError as error:
            raise BadRequest(f"the multipart boundary is not valid: {error}") from error
        self.segment: MultipartSegment | None = None
        self.filename: str | None = None
        self.options = bytearray()
        self.seen: list[str] = []

    def feed(self, chunk: bytes) -> bytes:
        """Bytes of the field ``model`` in ``chunk``; an empty ``chunk`` marks the end of the body."""
        payload = bytearray()
        try:
            for event in self.parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    name = str(event.name)
                    if name in self.seen:
                        raise BadRequest(f"the multipart body has more than one field {name!r}; " + HOW_TO_SEND)
                    self.seen.append(name)
                    self.segment = event
                    if name == MODEL_FIELD:
                        self.filename = event.filename
                elif event is None:
                    self.segment = None
                elif self.segment is not None and self.segment.name == MODEL_FIELD:
                    payload += event
                elif self.segment is not None and self.segment.name == OPTIONS_FIELD:
                    self.options += event
                    if len(self.options) > MAX_OPTIONS_BYTES:
                        raise BadRequest(f"the field 'options' is over {MAX_OPTIONS_BYTES:,} bytes", status=413)
        except MultipartError as error:
            raise BadRequest(f"the multipart body cannot be read ({error}); " + HOW_TO_SEND) from error
        return bytes(payload)

    def request(self) -> ImportRequest:
        missing = [field for field in (MODEL_FIELD, OPTIONS_FIELD) if field not in self.seen]
        if missing:
            found = ", ".join(self.seen) or "none"
            raise BadRequest(f"no multipart field {' or '.join(map(repr, missing))} (found: {found}); " + HOW_TO_SEND)
        try:
            return msgspec.json.decode(bytes(self.options), type=ImportRequest)
        except msgspec.ValidationError as error:
            raise BadRequest(f"the field 'options' is invalid: {error}") from error
        except msgspec.DecodeError as error:
            raise BadRequest(f"the field 'options' is not valid JSON: {error}") from error


def too_large(size: int, limit: int) -> ModelFileTooLarge:
    return ModelFileTooLarge("upload", f"over {limit:,} bytes ({size:,} so far; IMGCLS_IMPORT_MAX_UPLOAD_BYTES)")


async def receive_model(request: Request, target: Path, max_bytes: int) -> tuple[ImportRequest, str | None]:
    """Write the field ``model`` to ``target``; the ``options`` part and the client's file name."""
    kind, params = parse_header_params(request.headers.get("content-type", ""))
    if kind != "multipart/form-data":
        raise BadRequest(f"Content-Type {kind or '(none)'!r} is not accepted; " + HOW_TO_SEND, status=415)
    parts = ImportParts(params.get("boundary", ""))
    declared = request.content_length
    if declared is not None and declared > max_bytes + MAX_OPTIONS_BYTES:
        raise too_large(declared, max_bytes)
    received = written = 0
    pending = bytearray()
    with target.open("wb") as handle:
        async for chunk in request.stream():  # ends with b"", which also closes the multipart parser
            received += len(chunk)
            pending += parts.feed(chunk)
            if written + len(pending) > max_bytes:
                raise too_large(written + len(pending), max_bytes)
            if len(pending) >= WRITE_BYTES or not chunk:
                batch, pending = bytes(pending), bytearray()
                await asyncio.to_thread(handle.write, batch)
                written += len(batch)
    if received > max_bytes + MAX_OPTIONS_BYTES:  # a body without Content-Length, past the cap in its other fields
        raise too_large(received, max_bytes)
    options = parts.request()
    if target.stat().st_size == 0:
        raise BadRequest("the field 'model' is empty; " + HOW_TO_SEND)
    return options, parts.filename


@post(
    "/v1/models/{name:str}/versions",
    status_code=201,
    tags=["admin"],
    request_max_body_size=None,
    responses=problems(413, 415, 422),
    operation_class=ModelImportOperation,
)
async def import_version(request: Request, name: FromPath[str]) -> ImportedVersion:
    """Import an ONNX classifier as the next version of NAME (a new model's first version becomes production).

    Every check runs before anything is published; a failure is a problem naming the check. The version has
    no weights.pt, so it cannot be fine-tuned.
    """
    state = await authorized(request, "admin")
    check_name("model name", name)  # before a gigabyte is received for nothing
    folder = state.settings.data_root / "imports" / f".upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        target = folder / "model.onnx"  # alone in its folder: external data can name nothing else
        options, filename = await receive_model(request, target, state.settings.import_max_upload_bytes)
        # Imported here, not at the top: onnx (about 10 MB of memory in each server process) loads only in a
        # process that imports a model, not in every one that serves.
        from service.importing.publish import import_onnx

        report = await asyncio.to_thread(
            import_onnx,
            state.registry.repository,
            target,
            name=name,
            labels=options.labels,
            options=options.import_options(),
            source=filename or "model.onnx",
            command=f"POST /v1/models/{name}/versions",
            limits=state.limits,
            redis_url=state.redis_url,
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    manifest = report.manifest
    aliases = await asyncio.to_thread(state.registry.repository.aliases, name)
    return ImportedVersion(
        name=manifest.name,
        version=manifest.version,
        aliases=sorted(alias for alias, version in aliases.items() if version == manifest.version),
        checks_passed=list(report.checks),
        batch_mode=report.batch_mode,
        input=list(manifest.input.shape),
        layout=manifest.preprocessing.layout,
        scores=manifest.scores,
        calibration=manifest.calibration,
        labels=list(manifest.labels),
        metrics=manifest.metrics,
        source=manifest.lineage.imported.source if manifest.lineage.imported else "",
        sha256=manifest.lineage.imported.sha256 if manifest.lineage.imported else "",
        fine_tunable=manifest.fine_tunable,
    )
