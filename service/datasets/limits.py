"""What an uploaded dataset may be: built once from the service settings (``create_app``) or by a test."""

from dataclasses import dataclass, field

from service.imaging import DecodeLimits

# Entries smaller than this are not held to the compression ratio: a tiny file of one repeated byte compresses
# 1000x without being a threat, and a bomb needs size to do harm (the same grace idea as Apache POI's).
RATIO_GRACE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DatasetLimits:
    max_upload_bytes: int = 512 * 1024 * 1024  # the zip as sent
    max_files: int = 50_000  # entries in the zip, files and folders
    max_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024  # sum of the entries' declared sizes
    max_compression_ratio: float = 100.0  # uncompressed / compressed, per entry (past the grace size) and overall
    min_images_per_class: int = 5  # readable images each class needs
    decode: DecodeLimits = field(default_factory=DecodeLimits)  # formats, bytes and pixels of one image

    def __post_init__(self) -> None:
        if min(self.max_upload_bytes, self.max_files, self.max_uncompressed_bytes) < 1:
            raise ValueError("dataset limits: byte and file caps must be positive")
        if self.max_compression_ratio <= 1 or self.min_images_per_class < 1:
            raise ValueError("dataset limits: the compression ratio must exceed 1 and each class needs an image")
