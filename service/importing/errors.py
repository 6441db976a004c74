"""Why an ONNX classifier cannot be imported. No HTTP here: service/api/errors.py maps each kind to a status
code, and ``imgcls`` shows any of them as one line with exit code 2.

Every message starts with the check that failed (``input:``, ``onnx checker:``, ``labels:`` ...), so a
user knows which part of the model, its labels or the options to fix. Nothing is published when one is
raised.
"""


class ImportRejected(ValueError):
    """Base: the model, its labels or the import options fail a check (422 over HTTP)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


class InvalidImportOptions(ImportRejected):
    """An option that contradicts the model or itself, or one the model needs and was not given (400)."""


class UnsafeExternalData(ImportRejected):
    """External-data tensors that point outside the model's folder, through a link, or at a missing file (400)."""


class ModelFileTooLarge(ImportRejected):
    """An upload over ``import_max_upload_bytes`` (413)."""
