"""Turn a written file set into a secure one: every DICOM file, DICOMDIR included, encrypted.

Files keep their File IDs (PS3.10 8.5): each is replaced in place by its Secure DICOM File.
Two threads share the work: the cipher and the hashes release the GIL, so on a 2-core kiosk
the second core is used while the first parses structures or waits for the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appliance.media.manifest import Manifest, ManifestEntry
from appliance.media.secure.errors import SecureWriteError
from appliance.media.secure.writer import SecureFileWriter

WORKERS = 2

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SecureFileSet:
    """The two views of an encrypted file set."""

    manifest: Manifest
    """What is on the disc: the Secure DICOM Files (SHA-256 and size of the envelopes, no
    SOP Instance UID since the files are not readable as DICOM)."""
    plaintext: Manifest
    """What decrypting must give back: the original entries (SHA-256, size, UID)."""


def encrypt_fileset(
    root: Path,
    entries: Manifest,
    writer: SecureFileWriter,
    *,
    progress: Progress | None = None,
) -> SecureFileSet:
    """Encrypt every file of `entries` (paths relative to `root`) in place.

    `entries` is the file-set manifest from `build_fileset`; its SHA-256 values are checked
    against what is read while encrypting, so a file changed since it was written is caught.
    `progress(done, total)` runs in the caller's thread.
    """
    total = len(entries.entries)
    secure = Manifest()

    def one(entry: ManifestEntry) -> ManifestEntry:
        path = root.joinpath(*PurePosixPath(entry.path).parts)
        result = writer.encrypt_file(path, path)
        if result.plaintext_sha256 != entry.sha256 or result.plaintext_size != entry.size:
            raise SecureWriteError(f"{entry.path} changed between writing and encrypting")
        assert result.sha256 is not None  # encrypt_file hashes its output by default
        return ManifestEntry(entry.path, result.sha256, result.size)

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="secure") as pool:
        for done, entry in enumerate(pool.map(one, entries.entries), start=1):
            secure.add(entry)
            if progress is not None:
                progress(done, total)
    return SecureFileSet(secure, Manifest(list(entries.entries)))
