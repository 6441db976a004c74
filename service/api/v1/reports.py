"""/v1/models/{name}/versions/{version}/report: how good a version is, measured on its test set
(service/evaluation/report.py), to judge it before promoting it."""

import asyncio

from litestar import Request, get
from litestar.params import FromPath

from service.api.auth import authorized
from service.api.errors import problems
from service.api.v1.schemas import VersionReport


@get("/v1/models/{name:str}/versions/{version:int}/report", tags=["models"], responses=problems(404, 422))
async def version_report(request: Request, name: FromPath[str], version: FromPath[int]) -> VersionReport:
    """The evaluation report of a version: per-class precision, recall and F1, the confusion matrix, the
    reliability diagram with its ECE, and coverage and accuracy per confidence threshold. 404 for a version
    without one, saying how to make one (``imgcls evaluate NAME VERSION --attach-report``)."""
    repository = (await authorized(request, "classify")).registry.repository
    stored = await asyncio.to_thread(repository.report, name, version)
    return VersionReport(name=name, version=version, attached=stored.attached, report=stored.report)
