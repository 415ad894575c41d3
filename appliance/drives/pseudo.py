"""The default drive of a box without a burner: every disc becomes a numbered image file.

Each `write` claims a new file `<directory>/<label>-<n>.iso` and burns the image onto it through
xorriso's `stdio:` pseudo-drive, so the same xorriso path as on real hardware runs and its
failures surface the same way. The "disc" is always blank; the written files are the output
(an IT person can copy them, or a later step can hand them to a real burner).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Final

from appliance.drives.base import (
    MediaInfo,
    MediaState,
    OpticalDrive,
    ProgressCallback,
    require_writable,
)
from appliance.drives.errors import DriveUnavailableError, NoMediaError, WriteError
from appliance.drives.readback import ChunkConsumer, read_prefix
from appliance.drives.xorriso import DEFAULT_STALL_TIMEOUT, XorrisoDrive

# ISO 9660 primary volume descriptor: sector 16; type 1, "CD001", volume identifier at 40..72.
_PVD_OFFSET: Final = 16 * 2048
_VOLUME_ID = slice(40, 72)
_SAFE_LABEL = re.compile(r"[^A-Z0-9_]")
_NUMBERED = re.compile(r"-(\d+)\.iso$")
DEFAULT_LABEL: Final = "DISC"


def image_volume_label(image: Path) -> str:
    """The volume identifier of an ISO image, reduced to A-Z 0-9 _ (DEFAULT_LABEL if none).

    The label names a file here, so it is reduced to characters that are safe in a file name
    whatever the image holds.
    """
    try:
        with image.open("rb") as fh:
            fh.seek(_PVD_OFFSET)
            pvd = fh.read(2048)
    except OSError:
        return DEFAULT_LABEL
    if len(pvd) < 2048 or pvd[1:6] != b"CD001":
        return DEFAULT_LABEL
    label = _SAFE_LABEL.sub("", pvd[_VOLUME_ID].decode("ascii", "replace").strip().upper())
    return label[:32] or DEFAULT_LABEL


class PseudoDriveDirectory(OpticalDrive):
    """A drive whose media is always blank: each write is a new image file in `directory`."""

    def __init__(
        self,
        directory: Path | str = Path("var/discs"),
        *,
        name: str = "pseudo",
        capacity: int | None = None,
        xorriso: str = "xorriso",
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        self._directory = Path(directory).absolute()
        self._name = name
        self._capacity = capacity
        self._xorriso = xorriso
        self._stall_timeout = stall_timeout
        self._last: Path | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The configured name."""
        return self._name

    @property
    def directory(self) -> Path:
        """Where the disc images go."""
        return self._directory

    @property
    def last_disc(self) -> Path | None:
        """The image file written last (the "disc in the drive"), until `eject`."""
        return self._last

    def media_info(self) -> MediaInfo:
        """Always a blank disc; its capacity is the configured one, else the free disk space."""
        free = self._free_space()
        capacity = free if self._capacity is None else min(self._capacity, free)
        return MediaInfo(MediaState.BLANK, capacity, "file-backed pseudo-drive")

    def write(self, image: Path, progress: ProgressCallback | None = None) -> None:
        """Burn `image` onto a new `<label>-<n>.iso` through xorriso's stdio: pseudo-drive."""
        try:
            size = image.stat().st_size
        except OSError as exc:
            raise WriteError(
                f"The disc image {image.name} cannot be read: {exc.strerror}."
            ) from exc
        with self._lock:
            require_writable(self.media_info(), size, self.name)
            target = self._claim(image_volume_label(image))
            drive = XorrisoDrive(
                f"stdio:{target}",
                name=self.name,
                xorriso=self._xorriso,
                stall_timeout=self._stall_timeout,
            )
            try:
                drive.write(image, progress)
            except BaseException:
                # A failed "disc" is not output: leave no half-written image behind.
                target.unlink(missing_ok=True)
                raise
            self._last = target

    def read_back(
        self, size: int, consume: ChunkConsumer, progress: ProgressCallback | None = None
    ) -> None:
        """Stream the first `size` bytes of the image file written last into `consume`."""
        last = self._last
        if last is None:
            raise NoMediaError(f"No disc has been written in drive {self.name} yet.")
        read_prefix(last, size, consume, drive=self.name, progress=progress)

    def eject(self) -> None:
        """Forget the last image (it stays in the directory as the published disc)."""
        self._last = None

    # --- internals ----------------------------------------------------------------------------

    def _free_space(self) -> int:
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            return shutil.disk_usage(self._directory).free
        except OSError as exc:
            raise DriveUnavailableError(
                f"Drive {self.name} cannot be used: its folder {self._directory} is not "
                f"usable ({exc.strerror or exc})."
            ) from exc

    def _claim(self, label: str) -> Path:
        """Create the next free `<label>-<n>.iso` exclusively (no two writes share a number)."""
        numbers = [
            int(m.group(1))
            for p in self._directory.glob(f"{label}-*.iso")
            if (m := _NUMBERED.search(p.name)) and p.name == f"{label}-{m.group(1)}.iso"
        ]
        n = max(numbers, default=0) + 1
        while True:
            target = self._directory / f"{label}-{n}.iso"
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                n += 1
                continue
            except OSError as exc:
                raise WriteError(
                    f"Drive {self.name} cannot create {target.name}: {exc.strerror or exc}."
                ) from exc
            os.close(fd)
            return target
