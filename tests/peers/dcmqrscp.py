"""DCMTK `dcmqrscp` as a second Q/R SCP (FIND/MOVE/GET) holding the same files as kioskd.

    with Dcmqrscp(tmp_path / "qr", move_destinations={"scp": ("STORESCP", "127.0.0.1", p)}) as qr:
        qr.load(files)        # dcmqridx: index the files in place
        ... findscu/movescu to 127.0.0.1:qr.port, called AE qr.ae_title ("DCMQRSCP") ...

Config as in PEERS.md: one AE whose storage area is `<workdir>/storage` (RW, ANY peer),
`HostTable` = `move_destinations` (name -> (AE, host, port)); forked per association (never
`--single-process`, which in 3.6.7 exits after the first association).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.peers.dcmtk import DCMTK_BIN, run_tool
from tests.peers.process import PeerProcess


class Dcmqrscp(PeerProcess):
    """`/usr/bin/dcmqrscp -c dcmqrscp.cfg` with an indexed storage area."""

    name = "dcmqrscp"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "DCMQRSCP",
        move_destinations: dict[str, tuple[str, str, int]] | None = None,
        max_studies: int = 1000,
        max_pdu: int = 16384,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(workdir, ae_title=ae_title)
        self.move_destinations = dict(move_destinations or {})
        self.max_studies = max_studies
        self.max_pdu = max_pdu
        self.extra = extra

    @property
    def storage_dir(self) -> Path:
        """The AE's storage area (index.dat and the files it stores itself)."""
        return self.workdir / "storage"

    @property
    def config_file(self) -> Path:
        """dcmqrscp.cfg."""
        return self.workdir / "dcmqrscp.cfg"

    def config_text(self) -> str:
        """The configuration file's content."""
        hosts = "\n".join(
            f"{name} = ({aet}, {host}, {port})"
            for name, (aet, host, port) in self.move_destinations.items()
        )
        return (
            f"NetworkTCPPort  = {self.port}\n"
            f"MaxPDUSize      = {self.max_pdu}\n"
            "MaxAssociations = 16\n"
            "HostTable BEGIN\n"
            f"{hosts}\n"
            "HostTable END\n"
            "VendorTable BEGIN\n"
            "VendorTable END\n"
            "AETable BEGIN\n"
            f"{self.ae_title}  {self.storage_dir}  RW  ({self.max_studies}, 4096mb)  ANY\n"
            "AETable END\n"
        )

    def prepare(self) -> None:
        """Create the storage area and write the config."""
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text())

    def argv(self) -> list[str]:
        """dcmqrscp with our config (forking, the default)."""
        return [str(DCMTK_BIN / "dcmqrscp"), "-c", str(self.config_file), *self.extra]

    def load(self, files: Iterable[Path], chunk: int = 500) -> None:
        """Index files in place with `dcmqridx` (works whether or not the server runs).

        dcmqridx 3.6.7 knows nothing of the configured study quota: past 500 studies it starts
        replacing old ones and crashes. For larger archives send the files to the running
        server with storescu instead (it then applies the AETable quota, `max_studies`).
        """
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        paths = [str(Path(f).resolve()) for f in files]
        for start in range(0, len(paths), chunk):
            result = run_tool("dcmqridx", str(self.storage_dir), *paths[start : start + chunk])
            if result.returncode != 0:
                raise subprocess.CalledProcessError(
                    result.returncode, "dcmqridx", result.stdout, result.stderr
                )
