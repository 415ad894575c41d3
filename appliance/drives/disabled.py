"""The drive of a kiosk configured without one: every operation says so."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from appliance.drives.base import MediaInfo, OpticalDrive, ProgressCallback
from appliance.drives.errors import DriveUnavailableError
from appliance.drives.readback import ChunkConsumer


class DisabledDrive(OpticalDrive):
    """An `OpticalDrive` that raises `DriveUnavailableError` for everything."""

    def __init__(self, *, name: str = "disabled") -> None:
        self._name = name

    @property
    def name(self) -> str:
        """The configured name."""
        return self._name

    def _refuse(self) -> NoReturn:
        raise DriveUnavailableError(
            "No disc drive is configured on this kiosk. Ask IT to set up a drive "
            "(drive kind 'xorriso' or 'pseudo')."
        )

    def media_info(self) -> MediaInfo:
        """Refuse: there is no drive."""
        self._refuse()

    def write(self, image: Path, progress: ProgressCallback | None = None) -> None:
        """Refuse: there is no drive."""
        self._refuse()

    def read_back(
        self, size: int, consume: ChunkConsumer, progress: ProgressCallback | None = None
    ) -> None:
        """Refuse: there is no drive."""
        self._refuse()

    def eject(self) -> None:
        """Refuse: there is no drive."""
        self._refuse()
