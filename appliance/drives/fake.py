"""A drive for tests and demos that writes image files itself, with injectable faults.

Use it only where no real tool can stand in (an open tray, a disc that is too small, a write that
fails half-way, a disc that reads back wrong); everything else is better tested through
`XorrisoDrive` on a stdio: pseudo-drive.

The fake behaves like a drive with a disc robot: a write closes the disc, `eject` takes it out and
a fresh blank disc is loaded. Each disc is a file `<directory>/fake-disc-<n>.iso`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.drives.base import (
    MediaInfo,
    MediaState,
    OpticalDrive,
    ProgressCallback,
    require_writable,
)
from appliance.drives.errors import NoMediaError, TrayOpenError, WriteError
from appliance.drives.readback import ChunkConsumer, read_prefix

DVD_CAPACITY: Final = 4_700_372_992  # single-layer DVD±R, 2,295,104 blocks
_COPY_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FakeDriveFaults:
    """Faults to inject; the defaults make a healthy drive with a blank DVD."""

    no_media: bool = False
    """The drive is empty: media_info says no_media, write and read-back raise NoMediaError."""
    tray_open: bool = False
    """The tray is open: media_info says tray_open, write raises TrayOpenError."""
    capacity: int = DVD_CAPACITY
    """Bytes the blank disc can take; a larger image raises MediaTooSmallError."""
    write_error_at_percent: int | None = None
    """Fail the write with WriteError once this share of the image has been written."""
    read_back_mismatch: bool = False
    """After a successful write, one byte on the disc is damaged: the read-back digest differs."""


class FakeDrive(OpticalDrive):
    """An `OpticalDrive` backed by plain files, with faults set by `faults` (may be changed)."""

    def __init__(
        self, directory: Path | str, faults: FakeDriveFaults | None = None, *, name: str = "fake"
    ) -> None:
        self.faults = faults or FakeDriveFaults()
        self._directory = Path(directory)
        self._name = name
        self._state = MediaState.BLANK
        self._disc_number = 1
        self.discs: list[Path] = []
        """Every disc file written so far, in order."""
        self.eject_count = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The configured name."""
        return self._name

    @property
    def current_disc(self) -> Path:
        """The file standing for the disc in the drive."""
        return self._directory / f"fake-disc-{self._disc_number}.iso"

    def media_info(self) -> MediaInfo:
        """The state the faults and previous writes give."""
        if self.faults.tray_open:
            return MediaInfo(MediaState.TRAY_OPEN, 0, "")
        if self.faults.no_media:
            return MediaInfo(MediaState.NO_MEDIA, 0, "")
        capacity = self.faults.capacity if self._state == MediaState.BLANK else 0
        return MediaInfo(self._state, capacity, "DVD-R (fake)")

    def write(self, image: Path, progress: ProgressCallback | None = None) -> None:
        """Copy `image` onto the current disc file, injecting the configured faults."""
        with self._lock:
            try:
                size = image.stat().st_size
            except OSError as exc:
                raise WriteError(
                    f"The disc image {image.name} cannot be read: {exc.strerror}."
                ) from exc
            require_writable(self.media_info(), size, self.name)
            fail_at = self._fail_offset(size)
            self._directory.mkdir(parents=True, exist_ok=True)
            target = self.current_disc
            self._copy(image, target, size, fail_at, progress)
            self._state = MediaState.CLOSED
            self.discs.append(target)
            if self.faults.read_back_mismatch and size > 0:
                _flip_byte(target, size // 2)

    def read_back(
        self, size: int, consume: ChunkConsumer, progress: ProgressCallback | None = None
    ) -> None:
        """Stream the current disc file into `consume`."""
        if self.faults.tray_open:
            raise TrayOpenError(f"The tray of drive {self.name} is open.")
        if self.faults.no_media or self._state == MediaState.BLANK:
            raise NoMediaError(f"There is no written disc in drive {self.name}.")
        read_prefix(self.current_disc, size, consume, drive=self.name, progress=progress)

    def eject(self) -> None:
        """Take the disc out; a fresh blank one is loaded (like a disc robot)."""
        with self._lock:
            self.eject_count += 1
            if self._state != MediaState.BLANK:
                self._disc_number += 1
            self._state = MediaState.BLANK

    # --- internals ----------------------------------------------------------------------------

    def _fail_offset(self, size: int) -> int | None:
        percent = self.faults.write_error_at_percent
        if percent is None:
            return None
        return size * max(0, min(percent, 100)) // 100

    def _copy(
        self,
        image: Path,
        target: Path,
        size: int,
        fail_at: int | None,
        progress: ProgressCallback | None,
    ) -> None:
        done = 0
        with image.open("rb") as src, target.open("wb") as dst:
            while True:
                if fail_at is not None and done >= fail_at:
                    # Like a real failed burn: the disc is used up and holds a partial image.
                    self._state = MediaState.CLOSED
                    self.discs.append(target)
                    raise WriteError(
                        f"Writing the disc in drive {self.name} failed at "
                        f"{self.faults.write_error_at_percent} % (simulated write error). "
                        "Use a new disc."
                    )
                limit = _COPY_CHUNK if fail_at is None else max(1, min(_COPY_CHUNK, fail_at - done))
                chunk = src.read(limit)
                if not chunk:
                    break
                dst.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, size)


def _flip_byte(path: Path, offset: int) -> None:
    """Damage one byte, as a bad sector would."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
