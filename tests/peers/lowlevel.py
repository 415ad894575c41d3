"""pynetdicom at the DIMSE/DUL level: C-STOREs whose every part the test chooses.

`send_c_store` always builds a request that is consistent with its data set; these helpers do
not. They send whatever command and data-set bytes they are given, or only part of a message.

Run as a script (`python -m tests.peers.lowlevel PORT FILE FRAGMENTS`) it sends the command and
the first FRAGMENTS data fragments of a C-STORE of FILE, prints `SENT` and waits to be killed:
a peer that dies in the middle of a data set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import P_DATA

from appliance.dicom.scu_reactor import keep_responses
from tests.peers.data import dataset_bytes


def lowlevel_ae(calling: str = "LOWSCU", timeout: float = 10.0) -> AE:
    """A requestor AE with short timeouts, so a daemon that never answers fails the test."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def associate(
    port: int,
    contexts: list[tuple[str, str]],
    *,
    called: str = "KIOSK",
    calling: str = "LOWSCU",
    timeout: float = 10.0,
    evt_handlers: list[tuple[Any, Any]] | None = None,
) -> Association:
    """Associate proposing exactly these (abstract syntax, transfer syntax) pairs."""
    ae = lowlevel_ae(calling, timeout)
    for abstract, transfer in contexts:
        ae.add_requested_context(abstract, [transfer])
    return ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=evt_handlers)


class RejectionRecorder:
    """Records every A-ASSOCIATE-RJ PDU an association receives (bind with `handlers`).

    pynetdicom's requestor has a race: when the RJ and the closed connection both arrive
    before its ACSE looks at the socket, it reports an abort (`is_aborted`) instead of the
    rejection, and `acceptor.primitive` stays empty. The PDU event fires in the DUL thread as the
    bytes arrive, so what the acceptor actually sent is always seen here.
    """

    def __init__(self) -> None:
        self.rejections: list[A_ASSOCIATE_RJ] = []

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        """`evt_handlers` for `AE.associate`."""
        return [(evt.EVT_PDU_RECV, self._on_pdu)]

    def _on_pdu(self, event: Any) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            self.rejections.append(event.pdu)

    def result(self, assoc: Association) -> tuple[int, int, int]:
        """(result, source, reason) of the single A-ASSOCIATE-RJ received; also checks that
        pynetdicom, if it saw the rejection itself, reports the same values."""
        assert not assoc.is_established, "the association was accepted"
        assert len(self.rejections) == 1, (
            f"expected one A-ASSOCIATE-RJ, got {len(self.rejections)} "
            f"(aborted={assoc.is_aborted}, rejected={assoc.is_rejected})"
        )
        pdu = self.rejections[0]
        values = (int(pdu.result or 0), int(pdu.source or 0), int(pdu.reason_diagnostic or 0))
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            assert rsp is not None
            assert (rsp.result, rsp.result_source, rsp.diagnostic) == values
        return values


def context_id_for(assoc: Association, sop_class_uid: str) -> int:
    """The ID of the accepted presentation context of this SOP class."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class_uid:
            assert cx.context_id is not None
            return cx.context_id
    raise AssertionError(f"no accepted presentation context for {sop_class_uid}")


def store_request(
    sop_class_uid: str, sop_instance_uid: str, payload: bytes, message_id: int = 1
) -> C_STORE:
    """A C-STORE-RQ primitive with these UIDs and these data-set bytes, unchecked."""
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class_uid
    req.AffectedSOPInstanceUID = sop_instance_uid
    req.Priority = 0x0002
    req.DataSet = BytesIO(payload)
    return req


@contextmanager
def paused_reactor(assoc: Association) -> Iterator[None]:
    """Pause the association's own reactor while we talk DIMSE, as pynetdicom's `send_*` do
    (otherwise the reactor may take the response off the queue before we read it). The pause
    can come a moment late (see appliance.dicom.scu_reactor): a response the reactor takes
    then is put back."""
    keep_responses(assoc)
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + 10
    while not assoc._is_paused and assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0001)
    try:
        yield
    finally:
        assoc._reactor_checkpoint.set()


def send_raw_store(assoc: Association, context_id: int, req: C_STORE) -> C_STORE:
    """Send a C-STORE-RQ as given and return the C-STORE-RSP (fails after dimse_timeout)."""
    with paused_reactor(assoc):
        assoc.dimse.send_msg(req, context_id)
        cx_id, rsp = assoc.dimse.get_msg(block=True)
    assert rsp is not None, "no C-STORE response within the DIMSE timeout"
    assert isinstance(rsp, C_STORE), f"unexpected response {type(rsp).__name__}"
    assert cx_id == context_id
    assert rsp.MessageIDBeingRespondedTo == req.MessageID
    return rsp


def store_pdata(req: C_STORE, context_id: int, max_pdu: int) -> list[P_DATA]:
    """The P-DATA primitives of a C-STORE-RQ: command fragments first, then data fragments."""
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    return list(message.encode_msg(context_id, max_pdu))


def is_command(pdata: P_DATA) -> bool:
    """True if the (single) PDV of this P-DATA carries command bytes (control header bit 0)."""
    return any(pdv[1][0] & 0x01 for pdv in pdata.presentation_data_value_list)


def send_partial_store(assoc: Association, context_id: int, req: C_STORE, fragments: int) -> int:
    """Send the whole command and only the first `fragments` data fragments (never the last).

    Returns how many data fragments the complete message has.
    """
    pdatas = store_pdata(req, context_id, assoc.dimse.maximum_pdu_size)
    commands = [p for p in pdatas if is_command(p)]
    data = [p for p in pdatas if not is_command(p)]
    assert 0 < fragments < len(data), f"the data set has only {len(data)} fragments"
    with paused_reactor(assoc):
        for pdata in commands + data[:fragments]:
            assoc.dul.send_pdu(pdata)
    return len(data)


def file_store_request(path: Path, message_id: int = 1) -> C_STORE:
    """A consistent C-STORE-RQ for a PS3.10 file, its data-set bytes sent unchanged."""
    ds = dcmread(path, stop_before_pixels=True)
    return store_request(
        str(ds.SOPClassUID), str(ds.SOPInstanceUID), dataset_bytes(path), message_id
    )


def _main(argv: list[str]) -> int:
    port, path, fragments = int(argv[0]), Path(argv[1]), int(argv[2])
    ds = dcmread(path, stop_before_pixels=True)
    sop_class, ts = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    assoc = associate(port, [(sop_class, ts)], calling="DYINGSCU")
    if not assoc.is_established:
        print("NOT ESTABLISHED", flush=True)
        return 1
    send_partial_store(assoc, context_id_for(assoc, sop_class), file_store_request(path), fragments)
    print("SENT", flush=True)
    while True:  # until killed
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
