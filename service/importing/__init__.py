"""Importing an ONNX classifier trained elsewhere: checks (checks.py), labels, options, calibration and
evaluation on a labelled folder, and the atomic publish (publish.py: ``import_onnx``). No torch: the API
imports models as the CLI does. Only the errors are exported here, so that ``imgcls`` can name them
without loading onnx."""

from service.importing.errors import ImportRejected, InvalidImportOptions, ModelFileTooLarge, UnsafeExternalData

__all__ = ["ImportRejected", "InvalidImportOptions", "ModelFileTooLarge", "UnsafeExternalData"]
