"""DCMTK `storescp` as a plain Storage SCP (C-STORE target, C-MOVE destination).

    with Storescp(tmp_path / "scp", accept_all=False) as scp:   # uncompressed syntaxes only
        ... send to 127.0.0.1:scp.port, called AE scp.ae_title ...
        scp.received()            # SOP Instance UID -> file written
        scp.received_syntaxes()   # SOP Instance UID -> transfer syntax it arrived in

Without `accept_all` storescp accepts only Explicit VR LE, Implicit VR LE and Explicit VR BE,
which is how a peer that cannot take compressed data behaves. `abort_after` makes it abort the
association on the first C-STORE request (before answering), `abort_during` while receiving it.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

from tests.peers.dcmtk import DCMTK_BIN
from tests.peers.process import PeerProcess


class Storescp(PeerProcess):
    """`/usr/bin/storescp` writing every received instance into `<workdir>/in`."""

    name = "storescp"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "STORESCP",
        accept_all: bool = True,
        abort_after: bool = False,
        abort_during: bool = False,
        max_pdu: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir, ae_title=ae_title)
        self.accept_all = accept_all
        self.abort_after = abort_after
        self.abort_during = abort_during
        self.max_pdu = max_pdu
        self.extra = extra

    @property
    def output_dir(self) -> Path:
        """Where storescp writes `<MODALITY>.<SOPInstanceUID>.dcm` files."""
        return self.workdir / "in"

    def prepare(self) -> None:
        """Create the output directory."""
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        """storescp with our AE title, output dir and options."""
        argv = [str(DCMTK_BIN / "storescp"), "-aet", self.ae_title, "-od", str(self.output_dir)]
        argv += ["-fe", ".dcm"]
        if self.accept_all:
            argv.append("+xa")
        if self.abort_after:
            argv.append("--abort-after")
        if self.abort_during:
            argv.append("--abort-during")
        if self.max_pdu is not None:
            argv += ["-pdu", str(self.max_pdu)]
        return [*argv, *self.extra, str(self.port)]

    def files(self) -> list[Path]:
        """Every complete file written so far."""
        return sorted(self.output_dir.glob("*.dcm"))

    def received(self) -> dict[str, Path]:
        """SOP Instance UID -> the file storescp wrote for it."""
        return {
            str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID): path
            for path in self.files()
        }

    def received_syntaxes(self) -> dict[str, str]:
        """SOP Instance UID -> the transfer syntax the instance arrived in."""
        result = {}
        for path in self.files():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            result[str(ds.SOPInstanceUID)] = str(ds.file_meta.TransferSyntaxUID)
        return result
