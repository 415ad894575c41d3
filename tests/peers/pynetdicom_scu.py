"""pynetdicom as a second, independent sender (raw file bytes, exact proposals)."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pynetdicom import AE, _config
from pynetdicom.association import Association


def raw_sender_ae(calling: str = "RAWSCU") -> AE:
    """An AE that sends files' data set bytes unchanged (pynetdicom's chunked send)."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def associate_for_files(ae: AE, port: int, files: list[Path], called: str = "KIOSK") -> Association:
    """Propose exactly each file's (SOP class, own transfer syntax) and associate."""
    pairs = set()
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        pairs.add((str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    ae.requested_contexts = []
    for sop_class, ts in sorted(pairs):
        ae.add_requested_context(sop_class, [ts])
    return ae.associate("127.0.0.1", port, ae_title=called)
