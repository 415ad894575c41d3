"""DCMTK `wlmscpfs` as a Modality Worklist SCP serving `.wl` files from a folder.

    with Wlmscpfs(tmp_path / "wl") as wl:          # called AE "WLMSCP"
        wl.add(WorklistEntry(patient_name="DOE^JOHN", accession_number="ACC1"))
        ... C-FIND (Modality Worklist) to 127.0.0.1:wl.port, called AE wl.ae_title ...
        findscu_worklist(wl, ["PatientName=DOE*"], tmp_path / "rsp")   # DCMTK's own answer

Layout as in PEERS.md: `<workdir>/worklists/<AE>/lockfile` plus one `.wl` per entry, made from
a text dump with `dump2dcm` and re-read by the server on every query. `-csk` makes the server
return the Specific Character Set of each file (by default it sends none).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from tests.peers.dcmtk import DCMTK_BIN, run_tool
from tests.peers.process import PeerProcess


@dataclass(frozen=True)
class WorklistEntry:
    """One scheduled procedure step; `charset` is the file's Specific Character Set and the
    encoding of its text ("ISO_IR 192": UTF-8, "" : ASCII only)."""

    patient_name: str = "DOE^JOHN"
    patient_id: str = "PID0001"
    issuer_of_patient_id: str = "HOSP"
    birth_date: str = "19700101"
    sex: str = "M"
    accession_number: str = "ACC0001"
    referring_physician: str = "REF^DOC"
    study_uid: str = "1.2.826.0.1.3680043.8.498.1"
    requested_procedure_id: str = "RP0001"
    requested_procedure_description: str = "CT CHEST"
    modality: str = "CT"
    station_ae: str = "CTSCANNER"
    start_date: str = "20240119"
    start_time: str = "072730"
    step_id: str = "SPS0001"
    step_description: str = "CT chest without contrast"
    charset: str = ""

    def dump(self) -> str:
        """The entry as dcmdump text, for `dump2dcm`."""
        top = [
            ("0008,0050", "SH", self.accession_number),
            ("0008,0090", "PN", self.referring_physician),
            ("0010,0010", "PN", self.patient_name),
            ("0010,0020", "LO", self.patient_id),
            ("0010,0021", "LO", self.issuer_of_patient_id),
            ("0010,0030", "DA", self.birth_date),
            ("0010,0040", "CS", self.sex),
            ("0020,000d", "UI", self.study_uid),
            ("0032,1060", "LO", self.requested_procedure_description),
        ]
        step = [
            ("0008,0060", "CS", self.modality),
            ("0040,0001", "AE", self.station_ae),
            ("0040,0002", "DA", self.start_date),
            ("0040,0003", "TM", self.start_time),
            ("0040,0007", "LO", self.step_description),
            ("0040,0009", "SH", self.step_id),
        ]
        lines = [f"(0008,0005) CS [{self.charset}]"] if self.charset else []
        lines += [f"({tag}) {vr} [{value}]" for tag, vr, value in top]
        lines += ["(0040,0100) SQ", "(fffe,e000) -"]
        lines += [f"({tag}) {vr} [{value}]" for tag, vr, value in step]
        lines += [
            "(fffe,e00d) -",
            "(fffe,e0dd) -",
            f"(0040,1001) SH [{self.requested_procedure_id}]",
        ]
        return "\n".join(lines) + "\n"

    def encoding(self) -> str:
        """The Python codec of the dump text."""
        return {"": "ascii", "ISO_IR 192": "utf-8", "ISO_IR 100": "latin-1"}[self.charset]


class Wlmscpfs(PeerProcess):
    """`/usr/bin/wlmscpfs -dfp <workdir>/worklists` answering for one called AE title."""

    name = "wlmscpfs"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "WLMSCP",
        keep_charset: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir, ae_title=ae_title)
        self.keep_charset = keep_charset
        self.extra = extra
        self._count = 0

    @property
    def data_dir(self) -> Path:
        """The folder given with `-dfp`: one sub-folder per called AE title."""
        return self.workdir / "worklists"

    @property
    def ae_dir(self) -> Path:
        """Where the `.wl` files of our AE title go."""
        return self.data_dir / self.ae_title

    def prepare(self) -> None:
        """The AE folder and the (empty) lockfile wlmscpfs needs in it."""
        self.ae_dir.mkdir(parents=True, exist_ok=True)
        (self.ae_dir / "lockfile").touch()

    def argv(self) -> list[str]:
        """wlmscpfs (forking, the default) serving the data folder."""
        argv = [str(DCMTK_BIN / "wlmscpfs"), "-dfp", str(self.data_dir)]
        if self.keep_charset:
            argv.append("-csk")
        return [*argv, *self.extra, str(self.port)]

    def add(self, entry: WorklistEntry) -> Path:
        """Write one entry as a `.wl` file (works whether or not the server runs)."""
        self.prepare()
        self._count += 1
        dump = self.workdir / f"entry{self._count:04d}.dump"
        dump.write_bytes(entry.dump().encode(entry.encoding()))
        target = self.ae_dir / f"entry{self._count:04d}.wl"
        result = run_tool("dump2dcm", "-g", "+te", str(dump), str(target))
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, "dump2dcm", result.stdout, result.stderr
            )
        return target


def findscu_worklist(
    peer: Wlmscpfs, keys: Sequence[str], output_dir: Path, *, calling: str = "FINDSCU"
) -> list[Dataset]:
    """DCMTK `findscu -W` with `-k` keys (e.g. "PatientName=DOE*",
    "ScheduledProcedureStepSequence[0].Modality=CT"); the responses, in order."""
    output_dir.mkdir(parents=True, exist_ok=True)
    argv = ["-W", "-aec", peer.ae_title, "-aet", calling, "-X", "-od", str(output_dir)]
    for key in keys:
        argv += ["-k", key]
    result = run_tool("findscu", *argv, "127.0.0.1", str(peer.port), timeout=60)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, "findscu", result.stdout, result.stderr
        )
    return [pydicom.dcmread(path) for path in sorted(output_dir.glob("rsp*.dcm"))]
