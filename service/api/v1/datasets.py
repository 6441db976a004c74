"""/v1/datasets: upload a zip of class folders (checked before anything trains), list, read and delete datasets.

The upload is streamed to a file under the data root as it arrives, never held in memory, and counted
against ``dataset_max_upload_bytes`` on the way (this route lifts the app-wide body limit for that). The
checks and the extraction run in a worker thread; a client sees the stored record, or one problem+json
naming what is wrong (see service/datasets/ for the checks and their order).
"""

import asyncio
from pathlib import Path, PurePosixPath
from typing import Annotated

from litestar import Request, delete, get, post
from litestar.params import FromPath, Parameter
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from service.api.auth import authorized
from service.api.errors import BadRequest, problems
from service.api.fastpath.uploads import parse_header_params
from service.api.openapi import DatasetUploadOperation
from service.datasets import ArchiveTooLarge, DatasetInUse, DatasetRecord
from service.datasets.store import check_name

FIELD = "file"
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/octet-stream"})
HOW_TO_SEND = (
    "send the zip as the raw body with Content-Type application/zip, or as multipart/form-data in the field 'file'"
)
WRITE_BYTES = 1024 * 1024  # received bytes gathered before one write in a worker thread

NameQuery = Annotated[
    str | None, Parameter(max_length=100, description="a label for people; default: the file name, else the id")
]


class FileField:
    """The bytes of the multipart field ``file``, pulled out of the body chunk by chunk as it arrives."""

    def __init__(self, boundary: str) -> None:
        if not boundary:
            raise BadRequest("the multipart Content-Type has no boundary parameter")
        try:
            self.parser = PushMultipartParser(boundary, max_segment_count=16)
        except MultipartError as error:
            raise BadRequest(f"the multipart boundary is not valid: {error}") from error
        self.segment: MultipartSegment | None = None
        self.filename: str | None = None
        self.found = False
        self.others: set[str] = set()

    def feed(self, chunk: bytes) -> bytes:
        """Payload of the field ``file`` in ``chunk``; an empty ``chunk`` marks the end of the body."""
        payload = bytearray()
        try:
            for event in self.parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    self.segment = event
                    if event.name != FIELD:
                        self.others.add(str(event.name))
                    elif self.found:
                        raise BadRequest("the multipart body has more than one field 'file'; send one zip per request")
                    else:
                        self.found, self.filename = True, event.filename
                elif event is None:
                    self.segment = None
                elif self.segment is not None and self.segment.name == FIELD:
                    payload += event
        except MultipartError as error:
            raise BadRequest(f"the multipart body cannot be read ({error}); " + HOW_TO_SEND) from error
        return bytes(payload)

    def check_found(self) -> None:
        if not self.found:
            found = ", ".join(sorted(self.others)) or "none"
            raise BadRequest(f"no multipart field named 'file' (found: {found}); " + HOW_TO_SEND)


def too_large(size: int, limit: int) -> ArchiveTooLarge:
    return ArchiveTooLarge(f"the upload is over {limit:,} bytes ({size:,} so far); split the dataset")


async def receive_zip(request: Request, target: Path, max_bytes: int) -> str | None:
    """Write the zip in the body to ``target``; the client's file name when multipart gave one."""
    kind, params = parse_header_params(request.headers.get("content-type", ""))
    if kind == "multipart/form-data":
        field: FileField | None = FileField(params.get("boundary", ""))
    elif kind in ZIP_TYPES:
        field = None
    else:
        raise BadRequest(f"Content-Type {kind or '(none)'!r} is not accepted; " + HOW_TO_SEND, status=415)
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise too_large(declared, max_bytes)
    received = 0
    pending = bytearray()
    with target.open("wb") as handle:
        async for chunk in request.stream():  # ends with b"", which also closes the multipart parser
            received += len(chunk)
            if received > max_bytes:
                raise too_large(received, max_bytes)
            pending += chunk if field is None else field.feed(chunk)
            if len(pending) >= WRITE_BYTES or not chunk:
                batch, pending = bytes(pending), bytearray()
                await asyncio.to_thread(handle.write, batch)
    if field is not None:
        field.check_found()
    if target.stat().st_size == 0:
        raise BadRequest("the upload is empty; " + HOW_TO_SEND)
    return field.filename if field is not None else None


def name_from_file(filename: str | None) -> str | None:
    """``pets.zip`` -> ``pets`` (a name for people only), or None when it would not be a valid name."""
    if not filename:
        return None
    stem = PurePosixPath(filename.replace("\\", "/")).name.removesuffix(".zip")
    try:
        return check_name(stem)
    except ValueError:
        return None


@post(
    "/v1/datasets",
    status_code=201,
    tags=["datasets"],
    request_max_body_size=None,
    responses=problems(413, 415, 422),
    operation_class=DatasetUploadOperation,
)
async def upload_dataset(request: Request, name: NameQuery = None) -> DatasetRecord:
    """Store a zip of class folders (cat/1.jpg, dog/2.jpg); answers the classes, counts and skipped files."""
    state = await authorized(request, "train")
    store = state.datasets
    with store.upload_file() as path:
        filename = await receive_zip(request, path, store.limits.max_upload_bytes)
        return await asyncio.to_thread(store.save, path, name=name or name_from_file(filename))


@get("/v1/datasets", tags=["datasets"], responses=problems())
async def list_datasets(request: Request) -> list[DatasetRecord]:
    """Every stored dataset, newest first."""
    store = (await authorized(request, "train")).datasets
    return await asyncio.to_thread(store.records)


@get("/v1/datasets/{dataset_id:str}", tags=["datasets"], responses=problems(404))
async def dataset_detail(request: Request, dataset_id: FromPath[str]) -> DatasetRecord:
    store = (await authorized(request, "train")).datasets
    return await asyncio.to_thread(store.get, dataset_id)


@delete("/v1/datasets/{dataset_id:str}", status_code=204, tags=["datasets"], responses=problems(404, 409, 503))
async def delete_dataset(request: Request, dataset_id: FromPath[str]) -> None:
    """Delete a dataset; 409 while a fine-tuning job that has not finished uses it."""
    state = await authorized(request, "train")
    if state.jobs is not None:
        users = [job.id for job in await asyncio.to_thread(state.jobs.active_jobs) if job.dataset == dataset_id]
        if users:
            raise DatasetInUse(
                f"dataset {dataset_id} is used by fine-tuning job(s) {', '.join(users)}; "
                "delete it once they finished, or cancel them first"
            )
    await asyncio.to_thread(state.datasets.delete, dataset_id)
