"""DCMTK dcmprscp as the Basic Grayscale Print SCP, and what it keeps of each printed film.

Config as PEERS.md gives it (printer keys of [IHEFULL]). On every film box print it writes
`db/SP_*.dcm` (Stored Print: layout, originator, one item per filled image box) and one
`db/HG_*.dcm` (Hardcopy Grayscale Image) per filled box.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from tests.peers.dcmtk import DCMTK_BIN, dcmtk_env
from tests.peers.net import free_port, wait_for_port

_CONFIG = """\
[[GENERAL]]
[APPLICATION]
LogDirectory = {root}/log
[PRINT]
Directory = {root}/spool
DeletePrintJobs = false
[DATABASE]
Directory = {root}/db
[[COMMUNICATION]]
[PRINTSCP]
Aetitle = {ae_title}
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
DisplayFormat = 1,1\\1,2\\2,1\\2,2\\2,3\\3,3\\3,4\\3,5\\4,4\\4,5
FilmSizeID = 8INX10IN\\10INX12IN\\11INX14IN\\14INX14IN\\14INX17IN
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
FilmDestination = MAGAZINE\\PROCESSOR
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MinDensity = 20
BorderDensity = 150\\20\\BLACK\\WHITE
EmptyImageDensity = 20\\BLACK\\WHITE
ImplicitOnly = false
DisableNewVRs = false
Supports12Bit = true
SupportsPresentationLUT = true
PresentationLUTMatchRequired = false
OmitSOPClassUIDFromCreateResponse = false
"""


@dataclass
class StoredFilm:
    """One printed film as dcmprscp stored it."""

    path: Path
    display_format: str
    film_size: str
    orientation: str
    originator: str
    boxes: dict[int, Dataset]
    """Hardcopy Grayscale Image of each filled image box, by Image Box Position."""

    def pixels(self, position: int) -> NDArray[np.generic]:
        """The pixels the SCP received for one image box."""
        return np.asarray(self.boxes[position].pixel_array)


@dataclass
class Dcmprscp:
    """A dcmprscp on 127.0.0.1 with its own config and database directory."""

    root: Path
    ae_title: str = "PRINTSCP"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _seen: set[str] = field(default_factory=set)

    @property
    def db(self) -> Path:
        """Where it writes SP_*.dcm and HG_*.dcm."""
        return self.root / "db"

    def start(self) -> None:
        """Write the config, start the SCP and wait for its port."""
        for sub in ("log", "spool", "db"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.root / "dcmpstat.cfg"
        config.write_text(_CONFIG.format(root=self.root, ae_title=self.ae_title, port=self.port))
        log = (self.root / "dcmprscp.log").open("ab")
        self.proc = subprocess.Popen(
            [str(DCMTK_BIN / "dcmprscp"), "-c", str(config), "-p", "PRINTSCP"],
            stdout=log,
            stderr=log,
            env=dcmtk_env(),
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port)

    def stop(self) -> None:
        """SIGTERM its process group and wait."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def log(self) -> str:
        """What dcmprscp wrote to stdout/stderr."""
        path = self.root / "dcmprscp.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def new_films(self) -> list[StoredFilm]:
        """Films stored since the last call, oldest first."""
        fresh = [p for p in self.db.glob("SP_*.dcm") if p.name not in self._seen]
        fresh.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        self._seen.update(p.name for p in fresh)
        hardcopies = {
            str(ds.SOPInstanceUID): ds
            for ds in (pydicom.dcmread(p) for p in self.db.glob("HG_*.dcm"))
        }
        return [self._film(p, hardcopies) for p in fresh]

    @staticmethod
    def _film(path: Path, hardcopies: dict[str, Dataset]) -> StoredFilm:
        sp = pydicom.dcmread(path)
        film = sp.FilmBoxContentSequence[0]
        boxes = {}
        for item in sp.ImageBoxContentSequence:
            ref = item.ReferencedImageSequence[0].ReferencedSOPInstanceUID
            boxes[int(item.ImageBoxPosition)] = hardcopies[str(ref)]
        return StoredFilm(
            path=path,
            display_format=str(film.ImageDisplayFormat),
            film_size=str(film.get("FilmSizeID", "")),
            orientation=str(film.get("FilmOrientation", "")),
            originator=str(sp.PrinterCharacteristicsSequence[0].Originator),
            boxes=boxes,
        )
