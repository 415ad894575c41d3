"""Which configured drive a udev device is: `[drives.NAME] device` may name the node (/dev/sr0)
or any of its symlinks (/dev/disk/by-path/..., /dev/kiosk/drive-...), the stable kind that
survives a second drive being plugged in.

Takes plain name -> device strings (not the config schema), like the rest of this package:

    drive_for_device({n: d.device for n, d in config.drives.items()}, event.device, event.links)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping


def _configured_path(device: str) -> str | None:
    # "stdio:PATH" drives are image files for xorriso, never a udev device.
    if not device or device.startswith("stdio:"):
        return None
    return device


def drive_for_device(
    configured: Mapping[str, str], device: str, links: Iterable[str] = ()
) -> str | None:
    """The name of the configured drive whose device is `device` or one of its `links`.

    `configured` maps drive names to their configured device. A configured path matches when it
    equals the node or a link as udev reported them, or when both resolve (symlinks followed)
    to the same node. None when no configured drive is this device.
    """
    names = {device, *links}
    resolved = {os.path.realpath(name) for name in names}
    for drive, path in configured.items():
        wanted = _configured_path(path)
        if wanted is None:
            continue
        if wanted in names or os.path.realpath(wanted) in resolved:
            return drive
    return None
