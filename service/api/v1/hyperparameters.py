"""/v1/fine-tuning/hyperparameters: what a fine-tuning job may be given (names, types, defaults, ranges, the
optimizer and learning-rate policy names), so a client such as the web page lists them without a copy.
Needs the ``train`` scope, as the job routes do; answers without Redis.
"""

from litestar import Request, get

from service.api.auth import authorized
from service.api.errors import problems
from service.jobs.hyperparameters import HyperparameterSchema, finetune_schema

SCHEMA = finetune_schema()  # fixed by the code: built once


@get("/v1/fine-tuning/hyperparameters", tags=["fine-tuning"], responses=problems())
async def job_hyperparameters(request: Request) -> HyperparameterSchema:
    """The hyperparameters a job takes (``POST /v1/fine-tuning/jobs``, ``hyperparameters``), each with its
    default and bounds, and the names ``optimizer`` and ``lr_policy`` accept."""
    await authorized(request, "train")
    return SCHEMA
