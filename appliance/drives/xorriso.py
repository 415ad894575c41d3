"""A drive driven by xorriso: a real burner (/dev/srN) or a file-backed pseudo-drive (stdio:PATH).

Writing copies the ready-made ISO image onto the medium with xorriso's cdrecord emulation
(`xorriso -as cdrecord dev=... image.iso`), the same command for both kinds of drive; a real
burner gets `-dao` (one closed session, the form read by every player). xorriso's own ISO
mastering (`-map ... -commit`) is not used: the image was already built and checked, and the
disc must hold exactly those bytes so the read-back digest can prove it.

Read-back streams the first `size` bytes of the device or file (dd-like) into a SHA-256; see
`base` for why that is the verification design.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final

from appliance.drives.base import (
    MediaInfo,
    MediaState,
    OpticalDrive,
    ProgressCallback,
    require_writable,
)
from appliance.drives.errors import DriveUnavailableError, WriteError
from appliance.drives.linux_cdrom import TrayStatus, tray_status
from appliance.drives.readback import ChunkConsumer, read_prefix
from appliance.drives.xorriso_output import (
    error_for,
    parse_media_info,
    problem_messages,
    progress_bytes,
)
from appliance.drives.xorriso_run import RunResult, run_xorriso

STDIO_PREFIX: Final = "stdio:"
# Acquiring a real drive spins the disc up and reads its TOC: allow a generous silence.
DEFAULT_INFO_TIMEOUT: Final = 120.0
# While writing, xorriso prints a progress line every second, also while it closes the disc;
# ten silent minutes means a hung drive.
DEFAULT_STALL_TIMEOUT: Final = 600.0


class XorrisoDrive(OpticalDrive):
    """One drive, addressed as a device (`/dev/sr0`) or a file (`stdio:/path` or a plain path)."""

    def __init__(
        self,
        device: str,
        *,
        name: str | None = None,
        xorriso: str = "xorriso",
        info_timeout: float = DEFAULT_INFO_TIMEOUT,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        if device.startswith(STDIO_PREFIX):
            self._path = Path(device[len(STDIO_PREFIX) :])
            self._is_stdio = True
        elif device.startswith("/dev/"):
            self._path = Path(device)
            self._is_stdio = False
        else:
            self._path = Path(device)
            self._is_stdio = True
        if self._is_stdio:
            # xorriso resolves relative stdio: paths against its own cwd; be explicit.
            self._path = self._path.absolute()
        self._dev = f"{STDIO_PREFIX}{self._path}" if self._is_stdio else str(self._path)
        self._name = name or (self._dev if self._is_stdio else self._path.name)
        self._xorriso = xorriso
        self._info_timeout = info_timeout
        self._stall_timeout = stall_timeout
        # xorriso takes the drive exclusively; a second process would fail with "busy".
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Short name: the device name (sr0) or the stdio:PATH address."""
        return self._name

    @property
    def xorriso_device(self) -> str:
        """The drive address as given to xorriso (`/dev/sr0` or `stdio:/abs/path`)."""
        return self._dev

    @property
    def is_file_backed(self) -> bool:
        """True for a stdio: pseudo-drive."""
        return self._is_stdio

    # --- OpticalDrive -------------------------------------------------------------------------

    def media_info(self) -> MediaInfo:
        """Run `xorriso -outdev DEV -toc` (after asking the kernel about the tray)."""
        with self._lock:
            return self._media_info()

    def write(self, image: Path, progress: ProgressCallback | None = None) -> None:
        """Check the disc, then burn `image` with `xorriso -as cdrecord`."""
        try:
            size = image.stat().st_size
        except OSError as exc:
            raise WriteError(
                f"The disc image {image.name} cannot be read: {exc.strerror}."
            ) from exc
        with self._lock:
            require_writable(self._media_info(), size, self.name)
            self._write(image.absolute(), size, progress)

    def read_back(
        self, size: int, consume: ChunkConsumer, progress: ProgressCallback | None = None
    ) -> None:
        """Stream the first `size` bytes of the device or file into `consume`."""
        with self._lock:
            read_prefix(self._path, size, consume, drive=self.name, progress=progress)

    def eject(self) -> None:
        """Eject a real drive's tray; a file-backed drive has nothing to eject."""
        if self._is_stdio:
            return
        with self._lock:
            result = self._run(["-outdev", self._dev, "-eject", "all"], self._info_timeout)
            if result.returncode != 0 or result.timed_out:
                raise error_for(
                    problem_messages(result.lines),
                    action="eject",
                    drive=self.name,
                    returncode=result.returncode,
                )

    # --- internals ----------------------------------------------------------------------------

    def _media_info(self) -> MediaInfo:
        if not self._is_stdio:
            status = tray_status(self._dev)
            if status == TrayStatus.TRAY_OPEN:
                return MediaInfo(MediaState.TRAY_OPEN, 0, "")
            if status == TrayStatus.NO_DISC:
                return MediaInfo(MediaState.NO_MEDIA, 0, "")
        result = self._run(["-outdev", self._dev, "-toc"], self._info_timeout)
        messages = problem_messages(result.lines)
        if result.returncode != 0 or result.timed_out or "Media status" not in result.text:
            raise error_for(messages, action="info", drive=self.name, returncode=result.returncode)
        info = parse_media_info(result.text)
        if self._is_stdio and info.overwriteable:
            # xorriso counts a file-backed disc's space from its own view of the content (a
            # closed session leaves "0 writable"), but an image overwrites the file from block 0:
            # what fits is the free disk space plus the file's current size.
            info = replace(info, capacity=_file_drive_capacity(self._path))
        return info

    def _write(self, image: Path, size: int, progress: ProgressCallback | None) -> None:
        argv = ["-as", "cdrecord", "-v", f"dev={self._dev}"]
        if not self._is_stdio:
            argv.append("-dao")
        argv.append(str(image))

        def on_line(line: str) -> None:
            done = progress_bytes(line)
            if done is not None and progress is not None:
                # xorriso counts in whole MiB and includes its padding: never report 100 % early.
                progress(min(done, max(size - 1, 0)), size)

        if progress is not None:
            progress(0, size)
        result = self._run(argv, self._stall_timeout, on_line)
        if result.timed_out:
            raise WriteError(
                f"Writing the disc in drive {self.name} stopped responding for "
                f"{self._stall_timeout:.0f} s and was aborted. Use a new disc."
            )
        if result.returncode != 0:
            raise error_for(
                problem_messages(result.lines),
                action="write",
                drive=self.name,
                returncode=result.returncode,
            )
        if progress is not None:
            progress(size, size)

    def _run(
        self,
        args: list[str],
        stall_timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> RunResult:
        argv = [self._xorriso, "-abort_on", "FAILURE", *args]
        try:
            return run_xorriso(argv, on_line=on_line, stall_timeout=stall_timeout)
        except OSError as exc:
            raise DriveUnavailableError(
                f"Drive {self.name} cannot be used: the program {self._xorriso!r} "
                f"cannot be started ({exc.strerror or exc})."
            ) from exc


def _file_drive_capacity(path: Path) -> int:
    try:
        current = path.stat().st_size if path.is_file() else 0
        return shutil.disk_usage(path.parent).free + current
    except OSError:
        return 0


def xorriso_available(xorriso: str = "xorriso") -> bool:
    """True if the xorriso program can be found."""
    return shutil.which(xorriso) is not None
