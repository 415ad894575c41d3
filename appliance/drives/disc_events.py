"""What a udev event of a block device means for disc import: a data disc came in or went away.

Pure functions on udev property sets (what `udevadm info --query=property` prints), so they are
tested on recorded sets without a drive. The properties come from systemd's rules:
`60-cdrom_id.rules` (ID_CDROM, ID_CDROM_MEDIA*, from the drive's table of contents) and
`60-persistent-storage.rules` (ID_FS_* from blkid, which it runs only on media with data tracks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# cdrom_id sets exactly one of these to 1 for the medium in the drive (the ID_CDROM_<TYPE> keys
# without MEDIA_ describe what the drive can do, not what is in it). Most specific first.
_MEDIA_KEYS: Final = (
    "BD_R_SRM",
    "BD_R_RRM",
    "BD_RE",
    "BD_R",
    "BD",
    "HDDVD_RW",
    "HDDVD_R",
    "HDDVD",
    "DVD_PLUS_RW_DL",
    "DVD_PLUS_R_DL",
    "DVD_PLUS_RW",
    "DVD_PLUS_R",
    "DVD_RW_DL",
    "DVD_RW_SEQ",
    "DVD_RW_RO",
    "DVD_RW",
    "DVD_R_DL_JR",
    "DVD_R_DL_SEQ",
    "DVD_R_DL",
    "DVD_R",
    "DVD_RAM",
    "DVD",
    "CD_RW",
    "CD_R",
    "CD",
    "MO",
)


class DiscEventKind(StrEnum):
    """What happened in a drive."""

    INSERTED = "inserted"
    """The drive now holds a readable data disc."""
    REMOVED = "removed"
    """The drive holds no data disc any more (ejected, eject requested, tray empty, a blank or
    audio disc, or the drive itself unplugged)."""


@dataclass(frozen=True, slots=True)
class DiscEvent:
    """A disc insertion or removal in an optical drive, as seen by udev."""

    kind: DiscEventKind
    """Inserted or removed."""
    device: str
    """Device node of the drive (DEVNAME), e.g. /dev/sr0."""
    stable_id: str
    """An identity of the drive that survives reboots: ID_SERIAL, else ID_PATH, else the node."""
    links: tuple[str, ...] = ()
    """The drive's symlinks (DEVLINKS), e.g. /dev/disk/by-path/...; used to find its config."""
    label: str = ""
    """Volume label of the disc's file system (ID_FS_LABEL), "" when none or removed."""
    fs_type: str = ""
    """File system udev found on the disc (iso9660, udf), "" when unknown."""
    media_type: str = ""
    """Kind of medium: cd, cd-r, cd-rw, dvd, dvd-r, dvd+r, dvd+r-dl, bd, bd-r, bd-re, ..."""
    medium_id: str = ""
    """The file system's UUID (ID_FS_UUID; for ISO 9660 its creation time), "" when unknown;
    tells one disc from another in the same drive."""


def _flag(properties: Mapping[str, str], key: str) -> bool:
    return properties.get(key, "") == "1"


def _count(properties: Mapping[str, str], key: str) -> int:
    try:
        return int(properties.get(key, "0") or "0")
    except ValueError:
        return 0


def is_optical_drive(properties: Mapping[str, str]) -> bool:
    """True for the whole-disk block device of an optical drive (not a partition, not a stick)."""
    return (
        properties.get("SUBSYSTEM") == "block"
        and properties.get("DEVTYPE") == "disk"
        and _flag(properties, "ID_CDROM")
    )


def is_data_disc(properties: Mapping[str, str]) -> bool:
    """True when the properties describe an optical drive holding a readable data disc.

    A data disc has at least one data track or a file system blkid recognised. Blank media and
    audio CDs (audio tracks, no data track) are not data discs; a mixed-mode CD (audio plus a
    data track) is.
    """
    if not is_optical_drive(properties) or not _flag(properties, "ID_CDROM_MEDIA"):
        return False
    if properties.get("ID_CDROM_MEDIA_STATE") == "blank":
        return False
    data_tracks = _count(properties, "ID_CDROM_MEDIA_TRACK_COUNT_DATA")
    if data_tracks == 0 and _count(properties, "ID_CDROM_MEDIA_TRACK_COUNT_AUDIO") > 0:
        return False
    return data_tracks > 0 or bool(properties.get("ID_FS_TYPE"))


def media_type(properties: Mapping[str, str]) -> str:
    """The medium in the drive as a short lower-case name (cd-r, dvd+r-dl, bd-re...), or ""."""
    for key in _MEDIA_KEYS:
        if _flag(properties, f"ID_CDROM_MEDIA_{key}"):
            return key.lower().replace("_plus_", "+").replace("_", "-")
    return ""


def stable_id(properties: Mapping[str, str]) -> str:
    """ID_SERIAL, else ID_PATH, else the device node."""
    return properties.get("ID_SERIAL") or properties.get("ID_PATH") or properties.get("DEVNAME", "")


def disc_event(action: str, properties: Mapping[str, str]) -> DiscEvent | None:
    """The disc event a udev event of an optical drive means; None for every other device.

    `action` is the udev action (add, change, remove; "add" also for coldplug enumeration).
    Every event of an optical drive gives an event: INSERTED while it holds a data disc, else
    REMOVED. An insertion usually comes as several "change" events (DISK_MEDIA_CHANGE=1); the
    caller debounces (see `DiscTracker`). An eject request (DISK_EJECT_REQUEST=1, the drive's
    button) counts as removal at once, before the tray opens.
    """
    if not is_optical_drive(properties):
        return None
    device = properties.get("DEVNAME", "")
    if not device:
        return None
    drive = stable_id(properties)
    links = tuple(properties.get("DEVLINKS", "").split())
    removed = (
        action == "remove"
        or _flag(properties, "DISK_EJECT_REQUEST")
        or not is_data_disc(properties)
    )
    if removed:
        return DiscEvent(DiscEventKind.REMOVED, device, drive, links)
    return DiscEvent(
        DiscEventKind.INSERTED,
        device,
        drive,
        links,
        label=properties.get("ID_FS_LABEL", ""),
        fs_type=properties.get("ID_FS_TYPE", ""),
        media_type=media_type(properties),
        medium_id=properties.get("ID_FS_UUID", ""),
    )


class DiscTracker:
    """Debounces disc events per drive: one INSERTED per insertion, one REMOVED per removal.

    udev sends several change events for one insertion (media change, then again when the drive
    has read the table of contents, or when anything re-triggers the device). A drive that holds
    a known disc emits nothing more until that disc is removed, unless the event shows another
    medium (a different file-system UUID, as when a removal event was missed).
    """

    def __init__(self) -> None:
        self._discs: dict[str, DiscEvent] = {}

    def update(self, event: DiscEvent) -> DiscEvent | None:
        """The event to report for `event`, or None when it repeats what is known."""
        known = self._discs.get(event.device)
        if event.kind is DiscEventKind.REMOVED:
            if known is None:
                return None
            del self._discs[event.device]
            return event
        if known is not None and not _other_medium(known, event):
            return None
        self._discs[event.device] = event
        return event

    def discs(self) -> dict[str, DiscEvent]:
        """Device node -> the insertion event of the data disc it holds now."""
        return dict(self._discs)


def _other_medium(known: DiscEvent, new: DiscEvent) -> bool:
    # An event that only fills in what an earlier one lacked (no UUID yet) is the same disc.
    return bool(known.medium_id and new.medium_id and known.medium_id != new.medium_id)
