"""Responses of the Q/R SCP: command sets and identifiers encoded by `dimse_encode`, queued as
P-DATA straight to the association's DUL.

pynetdicom would turn every response into a primitive, a DIMSE message and two pydicom data
sets before encoding them; for a query with hundreds of matches, or a C-MOVE with a pending
response per instance, that is most of the work. The DUL still does the sending (in order,
with the association's state machine), so nothing here touches the socket.
"""

from __future__ import annotations

import time
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

from appliance.dicom.dimse_encode import Element, command_set, encode_dataset
from appliance.dicom.syntaxes import EXPLICIT_VR_LE, IMPLICIT_VR_LE

C_FIND_RSP = 0x8020
C_MOVE_RSP = 0x8021

_NO_DATA_SET = 0x0101
_DATA_SET = 0x0001

_COMMAND_LAST = b"\x03"
_DATA_MORE = b"\x00"
_DATA_LAST = b"\x02"

_MAX_FRAGMENT = 1 << 20
"""Fragment size when the peer announces no PDU limit."""


def response_command(
    command_field: int,
    *,
    sop_class_uid: str,
    message_id: int,
    status: int,
    has_data_set: bool,
    comment: str = "",
    counts: tuple[int | None, int, int, int] | None = None,
) -> bytes:
    """A C-FIND-RSP or C-MOVE-RSP command set (PS3.7 9.3.2.2, 9.3.4.2).

    `counts` are the (remaining, completed, failed, warning) sub-operations of a C-MOVE-RSP;
    remaining None leaves it out (final responses).
    """
    elements: list[Element] = [
        (0x00000002, "UI", sop_class_uid),
        (0x00000100, "US", command_field),
        (0x00000120, "US", message_id),
        (0x00000800, "US", _DATA_SET if has_data_set else _NO_DATA_SET),
        (0x00000900, "US", status),
    ]
    if comment:
        elements.append((0x00000902, "LO", comment[:64]))
    if counts is not None:
        remaining, completed, failed, warning = counts
        if remaining is not None:
            elements.append((0x00001020, "US", remaining))
        elements += [
            (0x00001021, "US", completed),
            (0x00001022, "US", failed),
            (0x00001023, "US", warning),
        ]
    return command_set(elements)


class ResponseChannel:
    """Sends the responses to one request of an acceptor association, in order."""

    def __init__(self, assoc: Association, context: PresentationContext) -> None:
        self.assoc = assoc
        self.context_id = int(context.context_id or 0)
        self.syntax = UID(str(context.transfer_syntax[0]))
        peer_max = int(assoc.requestor.maximum_length or 0)
        self.fragment = min(peer_max - 6, _MAX_FRAGMENT) if peer_max else _MAX_FRAGMENT

    def encode(self, elements: list[Element], codec: str = "ascii") -> bytes:
        """A data set in the context's transfer syntax (pydicom only for big endian)."""
        if self.syntax in (EXPLICIT_VR_LE, IMPLICIT_VR_LE):
            return encode_dataset(elements, implicit=self.syntax == IMPLICIT_VR_LE, codec=codec)
        ds = Dataset()
        for tag, vr, value in elements:
            ds.add_new(tag, vr, value)
        return encode(ds, self.syntax.is_implicit_VR, self.syntax.is_little_endian) or b""

    def _queue(self, flags: bytes, data: bytes) -> None:
        pdata = P_DATA()
        # pynetdicom checks for a list [ID, PDV] at run time but annotates a tuple.
        item: Any = [self.context_id, flags + data]
        pdata.presentation_data_value_list = [item]
        self.assoc.dul.send_pdu(pdata)

    def send(self, command: bytes, data_set: bytes | None = None) -> None:
        """Queue one response: the command, then the data set in fragments the peer takes."""
        self._queue(_COMMAND_LAST, command)
        if data_set is None:
            return
        size = self.fragment
        for start in range(0, len(data_set), size):
            last = start + size >= len(data_set)
            self._queue(_DATA_LAST if last else _DATA_MORE, data_set[start : start + size])

    def catch_up(self, timeout: float = 5.0) -> None:
        """Wait until the DUL has sent every PDU queued so far.

        The DUL reads from the socket only when it has nothing to send: responses queued
        faster than they go out would keep it from ever reading a C-CANCEL (and hold every
        encoded response in memory). Waiting now and then lets it read.
        """
        dul = self.assoc.dul
        deadline = time.monotonic() + timeout
        while dul.to_provider_queue.qsize() or dul.event_queue.qsize():
            if not self.assoc.is_established or time.monotonic() > deadline:
                return
            time.sleep(0.0002)

    def cancelled(self, message_id: int) -> bool:
        """A C-CANCEL for `message_id` arrived (pynetdicom's DIMSE files them by Message ID)."""
        return self.assoc.dimse.cancel_req.pop(message_id, None) is not None
