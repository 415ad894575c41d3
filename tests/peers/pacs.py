"""A Q/R peer ("the PACS") loaded with files, Orthanc or dcmqrscp, behind one interface.

    with start_pacs("orthanc", tmp_path, files, {"KIOSK": kiosk_port}) as pacs:
        pacs.port, pacs.ae_title

`destinations` maps the AE titles the peer may C-MOVE to onto ports on 127.0.0.1 (Orthanc's
DicomModalities, dcmqrscp's HostTable); Orthanc also takes storage commitment requests only from
AEs listed there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tests.peers.dcmqrscp import Dcmqrscp
from tests.peers.orthanc import Orthanc
from tests.peers.process import PeerProcess

PEERS = ("orthanc", "dcmqrscp")


def start_pacs(
    kind: str,
    workdir: Path,
    files: Iterable[Path],
    destinations: dict[str, int],
) -> PeerProcess:
    """Start and load the peer (Orthanc via REST, dcmqrscp via dcmqridx)."""
    hosts = {ae.lower(): (ae, "127.0.0.1", port) for ae, port in destinations.items()}
    if kind == "orthanc":
        orthanc = Orthanc(workdir / "orthanc", modalities=hosts).start()
        for path in files:
            orthanc.upload(path)
        return orthanc
    if kind == "dcmqrscp":
        qr = Dcmqrscp(workdir / "dcmqrscp", move_destinations=hosts)
        qr.load(files)
        return qr.start()
    raise ValueError(kind)
