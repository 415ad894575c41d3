"""The interface every optical drive driver implements, and the checks shared by all of them.

Read-back design: a drive streams the written bytes to a consumer (`read_back`) instead of
copying the disc into a file.

* The disc is read once, sequentially (the fastest way to read optical media, no seeks), and
  nothing disc-sized is written to the appliance's SSD (a BD is 25 GB).
* It is enough: the image was built and checked locally first (`media.verify.verify_image`,
  every file against the job manifest, at the DICOM level). If the disc's first `size` bytes
  are the image's bytes (compared with the built image while it is still there, else by
  SHA-256), the disc *is* that image, so every check made on the image holds for the disc. A
  mismatch fails the job with `ReadBackError`; the caller may then re-read.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from appliance.drives.errors import (
    DriveError,
    DriveUnavailableError,
    MediaNotBlankError,
    MediaTooSmallError,
    NoMediaError,
    ReadBackError,
    TrayOpenError,
    WriteError,
)
from appliance.drives.readback import ChunkConsumer, ImageComparison

__all__ = [
    "DriveError",
    "DriveUnavailableError",
    "MediaInfo",
    "MediaNotBlankError",
    "MediaState",
    "MediaTooSmallError",
    "NoMediaError",
    "OpticalDrive",
    "ProgressCallback",
    "ReadBackError",
    "TrayOpenError",
    "WriteError",
]

ProgressCallback = Callable[[int, int], None]
"""`progress(done, total)` in bytes. An exception raised by it cancels the operation."""


class MediaState(StrEnum):
    """What is in the drive, as far as writing is concerned."""

    NO_MEDIA = "no_media"
    TRAY_OPEN = "tray_open"
    BLANK = "blank"
    APPENDABLE = "appendable"
    """Written, but more sessions could be added (we never append: images start at block 0)."""
    CLOSED = "closed"
    UNKNOWN = "unknown"
    """A disc is there but the drive cannot tell what it is (unformatted, damaged, foreign)."""


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """The disc in a drive."""

    state: MediaState
    capacity: int
    """Bytes that can still be written (0 when nothing can be written)."""
    media_type: str
    """What the drive reports, e.g. "CD-R", "DVD+R", "BD-R", "stdio file"; "" if no disc."""
    overwriteable: bool = False
    """Random-access media (file-backed drives): an image can be written from block 0 whatever
    is there, so `appendable`/`closed` do not stop a write."""

    @property
    def writable(self) -> bool:
        """True if an image can be written from block 0."""
        if self.state == MediaState.BLANK:
            return True
        return self.overwriteable and self.state in (MediaState.APPENDABLE, MediaState.CLOSED)


class OpticalDrive(ABC):
    """A drive that writes ISO images to discs and reads them back.

    Methods raise `DriveError` subclasses with operator-readable messages. A driver instance
    runs one operation at a time; drivers serialize calls themselves where it matters.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name for logs and screens (e.g. "sr0", "pseudo", "fake")."""

    @abstractmethod
    def media_info(self) -> MediaInfo:
        """Describe the disc in the drive (tray open and no disc are states, not errors)."""

    @abstractmethod
    def write(self, image: Path, progress: ProgressCallback | None = None) -> None:
        """Write the ISO `image` to the disc from block 0, then close the disc."""

    @abstractmethod
    def read_back(
        self, size: int, consume: ChunkConsumer, progress: ProgressCallback | None = None
    ) -> None:
        """Read the first `size` bytes of the disc just written, in order, into `consume`.

        Only `size` bytes are read: drives pad a track beyond the image, and reading into the
        padding or past the end of the written area fails on real drives.
        """

    @abstractmethod
    def eject(self) -> None:
        """Eject the disc (open the tray, or hand it to the robot's output)."""

    # --- shared checks ------------------------------------------------------------------------

    def check_can_write(self, size: int) -> MediaInfo:
        """Raise the typed error that stops writing `size` bytes now, else return the media info."""
        info = self.media_info()
        require_writable(info, size, self.name)
        return info

    def read_back_sha256(self, size: int, progress: ProgressCallback | None = None) -> str:
        """The SHA-256 of the first `size` bytes of the disc just written."""
        digest = hashlib.sha256()
        self.read_back(size, digest.update, progress)
        return digest.hexdigest()

    def verify_read_back(
        self,
        size: int,
        expected_sha256: str,
        progress: ProgressCallback | None = None,
        *,
        image: Path | None = None,
    ) -> None:
        """Read the disc back and raise `ReadBackError` unless it holds exactly the image.

        With `image` (the built image, still on the appliance) the disc is compared with it
        byte for byte; otherwise its SHA-256 is compared with `expected_sha256`.
        """
        if image is not None:
            try:
                built = image.open("rb", buffering=0)
            except OSError:
                pass  # gone already: the digest says the same, only slower
            else:
                with built:
                    self.read_back(size, ImageComparison(built, drive=self.name), progress)
                return
        found = self.read_back_sha256(size, progress)
        if found != expected_sha256.lower():
            raise ReadBackError(
                f"The disc in drive {self.name} does not hold the image that was written: its "
                "checksum differs. The disc may be defective; use a new disc."
            )


def require_writable(info: MediaInfo, size: int, drive: str) -> None:
    """Raise the typed error for `info` if an image of `size` bytes cannot be written to it."""
    if info.state == MediaState.TRAY_OPEN:
        raise TrayOpenError(f"The tray of drive {drive} is open. Insert a blank disc and close it.")
    if info.state == MediaState.NO_MEDIA:
        raise NoMediaError(f"There is no disc in drive {drive}. Insert a blank disc.")
    if not info.writable:
        shown = info.media_type or "disc"
        raise MediaNotBlankError(
            f"The {shown} in drive {drive} is not blank ({info.state.value}). Insert a blank disc."
        )
    if size > info.capacity:
        raise MediaTooSmallError(
            f"The image ({_mb(size)}) does not fit on the {info.media_type or 'disc'} in drive "
            f"{drive} ({_mb(info.capacity)} free). Use a disc with more space."
        )


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
