"""Room for an import: staging must never eat into the store's free-space reserve.

An import keeps the disc as read, the rewritten instances and, for an encrypted disc, the
decrypted files, all under `<var>/import`, which usually shares its filesystem with the store.
Filling it would make reception answer 0xA700 to every modality, so a disc that would not fit
above the reserve is refused before the first byte is copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.importer.errors import ImporterError
from appliance.importer.source import EntryKind, open_source

COPIES_PER_BYTE = 2
"""The disc as read, and the rewritten instances."""
ENCRYPTED_COPIES_PER_BYTE = 3
"""Plus the decrypted files of a Secure DICOM disc."""


class NotEnoughSpaceError(ImporterError):
    """The import would cross the free-space reserve."""


def source_bytes(source: Path) -> int:
    """Bytes of the regular files on a device, ISO image or folder (what staging may copy)."""
    with open_source(source) as opened:
        return sum(e.size for e in opened.entries() if e.kind is EntryKind.FILE)


def check_room(
    source: Path, work_root: Path, reserve_bytes: int, *, encrypted: bool = False
) -> int:
    """Raise NotEnoughSpaceError unless importing `source` into `work_root` leaves
    `reserve_bytes` free; returns the bytes the import may need."""
    copies = ENCRYPTED_COPIES_PER_BYTE if encrypted else COPIES_PER_BYTE
    needed = source_bytes(source) * copies
    work_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(work_root).free
    if free - needed < reserve_bytes:
        raise NotEnoughSpaceError(
            f"not enough free space to import this disc: it needs about {needed // 2**20} MB, "
            f"{max(free - reserve_bytes, 0) // 2**20} MB are free above the store's reserve "
            f"of {reserve_bytes // 2**20} MB"
        )
    return needed
