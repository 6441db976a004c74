"""The page in a browser drives the whole product (the API, Redis, a worker that fine-tunes): it uses the
stack that tests/training/worker/conftest.py builds for the worker's own tests."""

from tests.training.worker.conftest import dataset_zip, stack_factory

__all__ = ["dataset_zip", "stack_factory"]
