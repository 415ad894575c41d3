"""Build the configured drive from plain settings (the config schema maps onto these keywords).

make_drive("xorriso", device="/dev/sr0")            # a real burner
make_drive("pseudo", directory="var/discs")         # image files through xorriso stdio:
make_drive("fake", directory="/tmp/x", faults={"tray_open": True})
make_drive("disabled")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from appliance.drives.base import OpticalDrive
from appliance.drives.disabled import DisabledDrive
from appliance.drives.fake import FakeDrive, FakeDriveFaults
from appliance.drives.pseudo import PseudoDriveDirectory
from appliance.drives.xorriso import XorrisoDrive
from appliance.errors import ConfigError


def _xorriso(settings: dict[str, Any]) -> OpticalDrive:
    device = settings.pop("device", None)
    if not isinstance(device, str) or not device:
        raise ConfigError("drive kind 'xorriso' needs a 'device' (e.g. /dev/sr0 or stdio:/path).")
    return XorrisoDrive(device, **settings)


def _pseudo(settings: dict[str, Any]) -> OpticalDrive:
    return PseudoDriveDirectory(**settings)


def _fake(settings: dict[str, Any]) -> OpticalDrive:
    directory = settings.pop("directory", None)
    if directory is None:
        raise ConfigError("drive kind 'fake' needs a 'directory' for its disc files.")
    faults = settings.pop("faults", None)
    if isinstance(faults, Mapping):
        try:
            faults = FakeDriveFaults(**faults)
        except TypeError as exc:
            raise ConfigError(f"drive kind 'fake': bad faults: {exc}.") from exc
    return FakeDrive(Path(directory), faults, **settings)


def _disabled(settings: dict[str, Any]) -> OpticalDrive:
    return DisabledDrive(**settings)


_BUILDERS: Final[dict[str, Callable[[dict[str, Any]], OpticalDrive]]] = {
    "xorriso": _xorriso,
    "pseudo": _pseudo,
    "fake": _fake,
    "disabled": _disabled,
}

DRIVE_KINDS: Final = tuple(_BUILDERS)


def make_drive(kind: str, **settings: Any) -> OpticalDrive:
    """The drive of `kind` ("xorriso" | "pseudo" | "fake" | "disabled") built from `settings`.

    Unknown kinds and unknown or missing settings raise `ConfigError` naming the problem.
    """
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ConfigError(f"drive kind {kind!r} is not one of {', '.join(DRIVE_KINDS)}.")
    try:
        return builder(dict(settings))
    except TypeError as exc:
        # An unexpected keyword: say which, in config terms.
        raise ConfigError(f"drive kind {kind!r}: {exc}.") from exc
