"""The C-STORE fast path: our command decoder and response encoder against pynetdicom's, and
real kioskd receptions of messages shaped the way the fast path must (or must not) take them.

The fast path decodes C-STORE-RQ command sets itself, streams data fragments straight from the
PDU buffer into the store and answers with pre-encoded bytes. What it produces has to be what
pynetdicom would have produced, and whatever it does not understand has to reach pynetdicom.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu_primitives import P_DATA

from appliance.dicom.dimse_decode import StoreCommand, decode_store_request
from appliance.dicom.store_fastpath import split_pdvs, store_response
from tests.peers.data import dataset_bytes, make_instance
from tests.peers.kioskd import KioskdProcess
from tests.peers.lowlevel import associate, context_id_for, paused_reactor, store_request
from tests.peers.store_view import incoming_files, indexed_instances, wait_until

pytestmark = pytest.mark.timeout(120)

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


# -- pynetdicom as the reference ---------------------------------------------------------------


def _command_bytes(message: DIMSEMessage, context_id: int = 1) -> bytes:
    """The encoded command set of a DIMSE message, as pynetdicom puts it on the wire."""
    fragments = [
        pdv[1]
        for pdata in message.encode_msg(context_id, 0)
        for pdv in pdata.presentation_data_value_list
        if pdv[1][0] & 0x01
    ]
    return b"".join(fragment[1:] for fragment in fragments)


def _request_command(req: C_STORE) -> bytes:
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    return _command_bytes(message)


def _pdv_list(pdvs: list[tuple[int, bytes]]) -> Any:
    """PDVs as pynetdicom's P_DATA wants them at run time: [ID, control byte + fragment] lists."""
    return [[context_id, data] for context_id, data in pdvs]


def _pynetdicom_decode(command: bytes) -> Any:
    """The primitive pynetdicom makes of a complete command set (data set following)."""
    message = DIMSEMessage()
    pdata = P_DATA()
    pdata.presentation_data_value_list = _pdv_list([(1, b"\x03" + command)])
    message.decode_msg(pdata)
    return message.message_to_primitive()


def _request(
    sop_instance_uid: str = "1.2.3.4.5",
    *,
    sop_class_uid: str = CT,
    message_id: int = 7,
    priority: int = 2,
    move_originator: bool = False,
) -> C_STORE:
    req = C_STORE()
    req.MessageID = message_id
    req.AffectedSOPClassUID = sop_class_uid
    req.AffectedSOPInstanceUID = sop_instance_uid
    req.Priority = priority
    req.DataSet = BytesIO(b"\0\0")
    if move_originator:
        req.MoveOriginatorApplicationEntityTitle = "MOVER"
        req.MoveOriginatorMessageID = 3
    return req


@pytest.mark.parametrize(
    ("sop_instance_uid", "message_id", "priority"),
    [
        ("1.2.3.4.5", 1, 0),  # odd length: NUL padded
        ("1.2.3.4.56", 65535, 1),  # even length
        ("1.2.840.10008.5.1.4.1.1.2.12345678901234567890123456789012345678", 2, 2),
        ("0.0.0", 300, 2),
    ],
)
def test_decoder_agrees_with_pynetdicom(
    sop_instance_uid: str, message_id: int, priority: int
) -> None:
    command = _request_command(_request(sop_instance_uid, message_id=message_id, priority=priority))
    ours = decode_store_request(command)
    theirs = _pynetdicom_decode(command)
    assert ours == StoreCommand(
        message_id=int(theirs.MessageID),
        priority=int(theirs.Priority),
        sop_class_uid=str(theirs.AffectedSOPClassUID),
        sop_instance_uid=str(theirs.AffectedSOPInstanceUID),
    )
    assert ours is not None and ours.sop_instance_uid == sop_instance_uid


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0, element, len(value)) + value


def _replace_element(command: bytes, element: int, value: bytes | None) -> bytes:
    """Rebuild a command set with one element changed (None removes it)."""
    out, offset = [], 0
    while offset < len(command):
        _, number, length = struct.unpack_from("<HHL", command, offset)
        raw = command[offset + 8 : offset + 8 + length]
        if number == element:
            if value is not None:
                out.append(_element(number, value))
        elif number != 0x0000:
            out.append(_element(number, raw))
        offset += 8 + length
    body = b"".join(out)
    return _element(0x0000, struct.pack("<L", len(body))) + body


def test_decoder_declines_what_it_does_not_understand() -> None:
    """Anything but a plain C-STORE-RQ with a data set is None (pynetdicom's business)."""
    plain = _request_command(_request())
    assert decode_store_request(plain) is not None
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    echo_message = C_ECHO_RQ()
    echo_message.primitive_to_message(echo)
    no_data_set = _replace_element(plain, 0x0800, struct.pack("<H", 0x0101))
    declined = {
        "move originator": _request_command(_request(move_originator=True)),
        "C-ECHO-RQ": _command_bytes(echo_message),
        "no data set": no_data_set,
        "priority 3": _replace_element(plain, 0x0700, struct.pack("<H", 3)),
        "no priority": _replace_element(plain, 0x0700, None),
        "no instance UID": _replace_element(plain, 0x1000, None),
        "odd UID": _replace_element(plain, 0x1000, b"1.2.03.4"),
        "letters in UID": _replace_element(plain, 0x1000, b"1.2.abc\0"),
        "long UID": _replace_element(plain, 0x1000, b"1." * 32 + b"12"),
        "unknown element": plain + _element(0x0901, b"\0\0\0\0"),
        "repeated element": plain + _element(0x0110, b"\x01\0"),
        "other group": plain + struct.pack("<HHL", 8, 0x10, 2) + b"AB",
        "truncated": plain[:-3],
        "wrong US length": _replace_element(plain, 0x0110, b"\x01\0\0\0"),
    }
    for name, command in declined.items():
        assert decode_store_request(command) is None, name


@pytest.mark.parametrize(
    ("status", "comment", "sop_instance_uid"),
    [
        (0x0000, "", "1.2.3.4.5"),
        (0x0000, "", "1.2.3.4.56"),
        (0xA700, "the free-space reserve of the store is reached", "1.2.3"),
        (0xA900, "the data set's SOP Class UID differs from the presentation context", "1.23"),
        (0xC000, "odd", "1.2.3.4"),
    ],
)
def test_response_bytes_equal_pynetdicom(status: int, comment: str, sop_instance_uid: str) -> None:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 513
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = sop_instance_uid
    rsp.Status = status
    if comment:
        rsp.ErrorComment = comment[:64]  # type: ignore[assignment]
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    assert store_response(CT, sop_instance_uid, 513, status, comment) == _command_bytes(message)


def test_split_pdvs() -> None:
    def item(context_id: int, control: int, data: bytes) -> bytes:
        return struct.pack(">LBB", len(data) + 2, context_id, control) + data

    body = item(1, 0x03, b"abcd") + item(3, 0x00, b"") + item(1, 0x02, b"xyz")
    pdvs = split_pdvs(memoryview(body))
    assert pdvs is not None
    assert [(c, h, body[s:e]) for c, h, s, e in pdvs] == [
        (1, 0x03, b"abcd"),
        (3, 0x00, b""),
        (1, 0x02, b"xyz"),
    ]
    assert split_pdvs(memoryview(body[:-1])) is None  # last item cut short
    assert split_pdvs(memoryview(body + b"\0\0")) is None  # trailing garbage
    assert split_pdvs(memoryview(struct.pack(">LBB", 1, 1, 3))) is None  # length below 2
    assert split_pdvs(memoryview(b"")) is None


# -- real kioskd ----------------------------------------------------------------------------------


class ResponseTap:
    """Records the command bytes of every P-DATA-TF PDU the requestor receives, raw."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        """`evt_handlers` for `associate`."""
        return [(evt.EVT_DATA_RECV, self._on_data)]

    def _on_data(self, event: Any) -> None:
        data: bytes = event.data
        if data[0] != 0x04:
            return
        body = data[6:]
        pdvs = split_pdvs(memoryview(body))
        assert pdvs is not None
        self.commands += [body[s:e] for _, control, s, e in pdvs if control & 0x01]


@contextmanager
def _association(daemon: KioskdProcess, tap: ResponseTap) -> Iterator[tuple[Association, int]]:
    assoc = associate(daemon.port, [(CT, EXPLICIT_LE)], evt_handlers=tap.handlers)
    assert assoc.is_established
    try:
        yield assoc, context_id_for(assoc, CT)
    finally:
        if assoc.is_established:
            assoc.release()


def _send(assoc: Association, pdus: list[list[tuple[int, bytes]]]) -> C_STORE:
    """Send these P-DATA-TF PDUs (lists of (context ID, control byte + fragment)), return the
    response pynetdicom decodes."""
    with paused_reactor(assoc):
        for pdvs in pdus:
            pdata = P_DATA()
            pdata.presentation_data_value_list = _pdv_list(pdvs)
            assoc.dul.send_pdu(pdata)
        _, rsp = assoc.dimse.get_msg(block=True)
    assert isinstance(rsp, C_STORE), "no C-STORE response"
    return rsp


def _expected_response(req: C_STORE, status: int) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = req.MessageID
    rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
    rsp.AffectedSOPInstanceUID = req.AffectedSOPInstanceUID
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    return _command_bytes(message)


def _data_fragments(payload: bytes, size: int) -> list[bytes]:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [b"\x00" + c for c in chunks[:-1]] + [b"\x02" + chunks[-1]]


def _stored_payloads(daemon: KioskdProcess) -> dict[str, bytes]:
    return {
        row["sop_instance_uid"]: dataset_bytes(daemon.store_dir / row["path"])
        for row in indexed_instances(daemon)
    }


def test_message_shapes_are_stored_and_answered_like_pynetdicom(
    kioskd: KioskdProcess, tmp_path: Path
) -> None:
    """Command and data set in one PDU, many small data PDVs in one PDU, a command set split
    over two PDUs, Move Originator fields (pynetdicom's path): every instance is stored
    byte-identical and every response is byte for byte what pynetdicom would send."""
    sources = [make_instance(tmp_path, instance_number=n) for n in range(1, 5)]
    payloads = [dataset_bytes(p) for p in sources]
    requests = [
        store_request(CT, p.stem, payload, message_id=10 + n)
        for n, (p, payload) in enumerate(zip(sources, payloads, strict=True))
    ]
    requests[3].MoveOriginatorApplicationEntityTitle = "MOVESCU"
    requests[3].MoveOriginatorMessageID = 99
    tap = ResponseTap()
    with _association(kioskd, tap) as (assoc, cx):
        commands = [_request_command(r) for r in requests]
        shapes = [
            # 1: command + whole data set in one PDU
            [[(cx, b"\x03" + commands[0]), (cx, b"\x02" + payloads[0])]],
            # 2: command alone, then the data set as 1000-byte PDVs in one PDU
            [[(cx, b"\x03" + commands[1])], [(cx, f) for f in _data_fragments(payloads[1], 1000)]],
            # 3: the command set split over two PDUs, the second also starting the data set
            [
                [(cx, b"\x01" + commands[2][:20])],
                [
                    (cx, b"\x03" + commands[2][20:]),
                    *((cx, f) for f in _data_fragments(payloads[2], 4096)),
                ],
            ],
            # 4: Move Originator fields
            [[(cx, b"\x03" + commands[3])], [(cx, f) for f in _data_fragments(payloads[3], 3000)]],
        ]
        for req, pdus in zip(requests, shapes, strict=True):
            rsp = _send(assoc, pdus)
            assert rsp.Status == 0x0000
            assert rsp.MessageIDBeingRespondedTo == req.MessageID
            assert rsp.AffectedSOPInstanceUID == req.AffectedSOPInstanceUID
    assert tap.commands == [_expected_response(r, 0x0000) for r in requests]
    assert _stored_payloads(kioskd) == {
        str(r.AffectedSOPInstanceUID): p for r, p in zip(requests, payloads, strict=True)
    }
    assert incoming_files(kioskd) == []


def test_refusal_through_the_fast_path_carries_the_comment(
    kioskd: KioskdProcess, tmp_path: Path
) -> None:
    """A request whose SOP Instance UID differs from the data set's: 0xA900, the same error
    comment pynetdicom's path sends, nothing stored."""
    source = make_instance(tmp_path)
    req = store_request(CT, generate_uid(), dataset_bytes(source), message_id=5)
    tap = ResponseTap()
    with _association(kioskd, tap) as (assoc, cx):
        rsp = _send(
            assoc, [[(cx, b"\x03" + _request_command(req)), (cx, b"\x02" + dataset_bytes(source))]]
        )
    assert rsp.Status == 0xA900
    comment = "the data set's SOP Instance UID differs from the request"
    assert rsp.ErrorComment == comment
    expected = C_STORE()
    expected.MessageIDBeingRespondedTo = 5
    expected.AffectedSOPClassUID = CT
    expected.AffectedSOPInstanceUID = req.AffectedSOPInstanceUID
    expected.Status = 0xA900
    expected.ErrorComment = comment
    message = C_STORE_RSP()
    message.primitive_to_message(expected)
    assert tap.commands == [_command_bytes(message)]
    assert indexed_instances(kioskd) == []
    assert incoming_files(kioskd) == []


def test_command_inside_a_data_set_aborts_and_leaves_nothing(
    kioskd: KioskdProcess, tmp_path: Path
) -> None:
    """A command fragment in the middle of a data set is a protocol violation: the association
    is aborted, the partial file removed, and the daemon goes on storing."""
    source = make_instance(tmp_path)
    payload = dataset_bytes(source)
    req = store_request(CT, source.stem, payload)
    command = _request_command(req)
    assoc = associate(kioskd.port, [(CT, EXPLICIT_LE)])
    assert assoc.is_established
    cx = context_id_for(assoc, CT)
    with paused_reactor(assoc):
        pdata = P_DATA()
        pdata.presentation_data_value_list = _pdv_list(
            [(cx, b"\x03" + command), (cx, b"\x00" + payload[:100]), (cx, b"\x03" + command)]
        )
        assoc.dul.send_pdu(pdata)
    assert wait_until(lambda: not assoc.is_established or assoc.is_aborted, timeout=10)
    assert wait_until(lambda: incoming_files(kioskd) == [], timeout=10)
    assert indexed_instances(kioskd) == []
    tap = ResponseTap()
    with _association(kioskd, tap) as (again, cx2):
        rsp = _send(again, [[(cx2, b"\x03" + command), (cx2, b"\x02" + payload)]])
    assert rsp.Status == 0x0000
    assert _stored_payloads(kioskd) == {source.stem: payload}
