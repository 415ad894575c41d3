"""The manifest of a disc: every file it must hold, with its SHA-256 (shared by all media steps).

The file-set writer and the PDI writer produce entries, the ISO builder lays them out, and the
verifier checks a read-back image against them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

HASH_CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (memory does not grow with file size)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file on the disc."""

    path: str
    """Path inside the image, POSIX style, upper case for the DICOM part (e.g. DICOM/P0/S0/0001)."""

    sha256: str
    """Hex digest of the file as written."""

    size: int
    """Size in bytes."""

    sop_instance_uid: str | None = None
    """For DICOM files: the SOP Instance UID the file holds (after any identity transform)."""

    def __post_init__(self) -> None:
        pure = PurePosixPath(self.path)
        if pure.is_absolute() or ".." in pure.parts or not self.path:
            raise ValueError(f"manifest path must be relative and inside the image: {self.path!r}")


@dataclass(slots=True)
class Manifest:
    """Every file of one disc."""

    entries: list[ManifestEntry] = field(default_factory=list)

    def add(self, entry: ManifestEntry) -> None:
        """Append an entry (paths must be unique)."""
        self.entries.append(entry)

    def by_path(self) -> dict[str, ManifestEntry]:
        """Entries keyed by path."""
        return {e.path: e for e in self.entries}

    @property
    def total_bytes(self) -> int:
        """Sum of file sizes."""
        return sum(e.size for e in self.entries)

    def to_json(self) -> str:
        """Serialise (for the job store)."""
        return json.dumps([asdict(e) for e in self.entries])

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Inverse of to_json."""
        return cls([ManifestEntry(**item) for item in json.loads(text)])
