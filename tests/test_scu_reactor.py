"""A requestor association never loses a DIMSE response to its own reactor thread
(appliance.dicom.scu_reactor), on associations with a real DCMTK storescp."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_reactor import ResponseKeepingAssociation
from appliance.dicom.scu_session import associated
from appliance.dicom.scu_transport import WakingAE
from appliance.dicom.server import configure_ae
from tests.peers.storescp import Storescp

VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[Storescp]:
    with Storescp(tmp_path / "scp") as peer:
        yield peer


def _echo_response(message_id: int) -> C_ECHO:
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = VERIFICATION
    rsp.Status = 0x0000
    return rsp


def _pause(assoc: Association) -> None:
    """Pause the reactor the way pynetdicom's send_*() methods (and our store_wire) do."""
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + 5
    while not assoc._is_paused and time.monotonic() < deadline:
        time.sleep(0.001)


def _check_put_back(assoc: Association) -> None:
    """What the reactor does with a response it took off the queue in the race: while a sender
    has paused it, put it back for the sender; otherwise drop it as pynetdicom does."""
    assert isinstance(assoc, ResponseKeepingAssociation)
    _pause(assoc)
    try:
        response = _echo_response(7)
        assoc._serve_request(response, 1)
        assert assoc.dimse.msg_queue.get_nowait() == (1, response)
    finally:
        assoc._reactor_checkpoint.set()
    assoc._serve_request(_echo_response(8), 1)  # nobody waits for it: dropped, not looping
    time.sleep(0.05)
    assert assoc.dimse.msg_queue.empty()
    # The association still works.
    status = assoc.send_c_echo().Status
    assert status == 0x0000


def test_query_and_print_associations_keep_responses(scp: Storescp) -> None:
    """`scu_session.associated` (C-FIND, C-MOVE, MWL, commitment) gives the keeping reactor."""
    config = KioskConfig()
    node = NodeConfig(ae_title=scp.ae_title, host="127.0.0.1", port=scp.port)
    with associated(config, node, [(VERIFICATION, [EXPLICIT_LE])]) as assoc:
        _check_put_back(assoc)


def test_store_associations_keep_responses(scp: Storescp) -> None:
    """The Storage SCU's WakingAE gives its associations the keeping reactor too."""
    ae = configure_ae(KioskConfig(), ae_class=WakingAE)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    try:
        _check_put_back(assoc)
    finally:
        assoc.release()
