"""Building blocks of the C-STORE fast path: PDV splitting, the response bytes, eligibility.

The fast path (driven by `streaming.StreamingDIMSE`) reads a P-DATA-TF PDU into a reused
buffer, walks its presentation data values without copying them, decodes a plain C-STORE-RQ
command set itself (`dimse_decode`), streams the data fragments into the store's temp file and
answers with a pre-encoded C-STORE-RSP. Whatever it does not handle goes through pynetdicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from appliance.dicom.dimse_decode import StoreCommand
from appliance.dicom.dimse_encode import Element, command_set
from appliance.store import IncomingFile

Pdv = tuple[int, int, int, int]
"""(presentation context ID, message control header, first byte, end) of one PDV's fragment."""

_ITEM_HEAD = struct.Struct(">LBB")
_PDU_HEAD = struct.Struct(">BBL")

RECEIVE_OBSERVERS = (
    evt.EVT_DATA_RECV,
    evt.EVT_PDU_RECV,
    evt.EVT_FSM_TRANSITION,
    evt.EVT_DIMSE_RECV,
)
"""Events the fast path does not trigger: anyone bound to one gets pynetdicom's path."""

SEND_OBSERVERS = (evt.EVT_DATA_SENT, evt.EVT_PDU_SENT, evt.EVT_FSM_TRANSITION)
"""Events a response written straight to the socket does not trigger."""


class DirectStore(Protocol):
    """Commits a streamed instance and says what to answer (see `StorageHandlers`)."""

    def __call__(
        self,
        incoming: IncomingFile,
        *,
        expected_sop_class_uid: str,
        sop_instance_uid: str,
        assoc: Any,
    ) -> tuple[int, str]:
        """(status, error comment) for the C-STORE-RSP; never raises."""
        ...


@dataclass(slots=True)
class FastStore:
    """A C-STORE-RQ whose data set is being streamed by the fast path."""

    context_id: int
    """Presentation context the command came on."""
    command: StoreCommand
    """The decoded command set."""
    context: PresentationContext
    """The accepted presentation context."""
    incoming: IncomingFile
    """The store's temp file receiving the data set."""


def split_pdvs(body: memoryview) -> list[Pdv] | None:
    """The PDVs of a P-DATA-TF PDU's body (PS3.8 9.3.5), or None if their lengths do not add
    up (an invalid PDU, which the state machine answers with an A-ABORT)."""
    items: list[Pdv] = []
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < 6:
            return None
        length, context_id, control = _ITEM_HEAD.unpack_from(body, offset)
        if length < 2 or length > end - offset - 4:
            return None
        items.append((context_id, control, offset + 6, offset + 4 + length))
        offset += 4 + length
    return items if items else None


def observed(assoc: Any, events: tuple[Any, ...]) -> bool:
    """True if a handler is bound to any of `events` on this association."""
    handlers = assoc._handlers
    return any(handlers.get(event) for event in events)


@lru_cache(maxsize=512)
def _storage_service(sop_class_uid: str) -> bool:
    try:
        return uid_to_service_class(sop_class_uid) is StorageServiceClass
    except Exception:
        return False


def plain_storage(sop_class_uid: str, common_extended: dict[Any, Any]) -> bool:
    """True if pynetdicom would serve this SOP class with its Storage Service Class as is
    (no SOP Class Common Extended Negotiation, no unrestricted-storage mode)."""
    return (
        not pynetdicom_config.UNRESTRICTED_STORAGE_SERVICE
        and sop_class_uid not in common_extended
        and _storage_service(sop_class_uid)
    )


def store_response(
    sop_class_uid: str, sop_instance_uid: str, message_id: int, status: int, comment: str = ""
) -> bytes:
    """The C-STORE-RSP command set (PS3.7 9.3.1.2), as pynetdicom would encode it."""
    elements: list[Element] = [
        (0x00000002, "UI", sop_class_uid),
        (0x00000100, "US", 0x8001),
        (0x00000120, "US", message_id),
        (0x00000800, "US", 0x0101),
        (0x00000900, "US", status),
        (0x00001000, "UI", sop_instance_uid),
    ]
    if comment:
        elements.append((0x00000902, "LO", comment[:64]))
    return command_set(elements)


def command_fits(command: bytes, peer_max_pdu: int) -> bool:
    """True if the command set fits one PDV of a PDU the peer accepts (0 = no limit)."""
    return not peer_max_pdu or len(command) + 7 <= peer_max_pdu


def command_pdu(context_id: int, command: bytes) -> bytes:
    """A whole P-DATA-TF PDU carrying `command` as one last command fragment."""
    item_length = len(command) + 2
    return (
        _PDU_HEAD.pack(0x04, 0, item_length + 4)
        + _ITEM_HEAD.pack(item_length, context_id, 0x03)
        + command
    )
