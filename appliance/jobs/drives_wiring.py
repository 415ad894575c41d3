"""Build the configured drives (config -> drive objects); the only place that maps the two."""

from __future__ import annotations

from typing import Any

from appliance.config import KioskConfig
from appliance.config.schema import DriveConfig
from appliance.drives.base import OpticalDrive
from appliance.drives.factory import make_drive

MIB = 1024 * 1024


def drive_settings(config: KioskConfig, name: str, drive: DriveConfig) -> dict[str, Any]:
    """Keyword settings of `make_drive` for one configured drive."""
    directory = drive.directory or (config.paths.var / "discs")
    if drive.kind == "xorriso":
        return {"device": drive.device, "name": name}
    if drive.kind == "pseudo":
        return {"directory": directory, "name": name}
    if drive.kind == "fake":
        faults = drive.faults.model_dump(exclude={"capacity_mb"})
        if drive.faults.capacity_mb is not None:
            faults["capacity"] = drive.faults.capacity_mb * MIB
        return {"directory": directory, "name": name, "faults": faults}
    return {}


def build_drives(config: KioskConfig) -> dict[str, OpticalDrive]:
    """Every configured drive, by name."""
    return {
        name: make_drive(drive.kind, **drive_settings(config, name, drive))
        for name, drive in config.drives.items()
    }
