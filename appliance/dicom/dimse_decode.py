"""Decoding of the one command set a storage node sees thousands of times: the C-STORE-RQ.

A command set is a small flat data set (group 0000, always Implicit VR Little Endian). pynetdicom
decodes it with pydicom, converts it into a message, then into a primitive whose setters
validate every UID again: a few hundred microseconds per instance, most of what a small
instance costs. This decoder reads the usual C-STORE-RQ straight from the bytes and answers
None for anything it does not fully understand (another command, Move Originator fields,
an unknown element, a duplicate, a non-conformant UID ...), so the caller hands those to
pynetdicom unchanged.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

C_STORE_RQ_FIELD = 0x0001
NO_DATA_SET = 0x0101
"""Command Data Set Type value meaning "no data set follows" (PS3.7 E.1)."""

_UID = re.compile(rb"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
"""A conformant UID (PS3.5 9.1); anything else goes the pynetdicom way, with its checks."""

_HEAD = struct.Struct("<HHL")
_US = struct.Struct("<H")

# Element numbers of group 0000 that a plain C-STORE-RQ carries (PS3.7 9.3.1.1).
_GROUP_LENGTH = 0x0000
_AFFECTED_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_PRIORITY = 0x0700
_DATA_SET_TYPE = 0x0800
_AFFECTED_SOP_INSTANCE = 0x1000
_REQUIRED = frozenset(
    {
        _AFFECTED_SOP_CLASS,
        _COMMAND_FIELD,
        _MESSAGE_ID,
        _PRIORITY,
        _DATA_SET_TYPE,
        _AFFECTED_SOP_INSTANCE,
    }
)
_US_ELEMENTS = frozenset({_COMMAND_FIELD, _MESSAGE_ID, _PRIORITY, _DATA_SET_TYPE})


@dataclass(frozen=True, slots=True)
class StoreCommand:
    """The parameters of a C-STORE-RQ that announces a data set."""

    message_id: int
    """Message ID, echoed as Message ID Being Responded To."""
    priority: int
    """0 medium, 1 high, 2 low."""
    sop_class_uid: str
    """Affected SOP Class UID."""
    sop_instance_uid: str
    """Affected SOP Instance UID."""


def _uid(raw: bytes) -> str | None:
    # pydicom drops trailing NUL padding and spaces of a UI value; do the same.
    value = raw.rstrip(b"\0 ")
    if not value or len(value) > 64 or _UID.fullmatch(value) is None:
        return None
    return value.decode("ascii")


def decode_store_request(data: bytes | bytearray | memoryview) -> StoreCommand | None:
    """The C-STORE-RQ in this complete command set, or None if it is anything else.

    None also for a C-STORE-RQ without a data set, with Move Originator fields or any other
    element, a repeated element, a wrong length, a priority outside 0-2 or an odd UID.
    """
    raw = bytes(data)
    end = len(raw)
    offset = 0
    seen: set[int] = set()
    values: dict[int, int] = {}
    uids: dict[int, str] = {}
    while offset < end:
        if end - offset < 8:
            return None
        group, element, length = _HEAD.unpack_from(raw, offset)
        offset += 8
        if group != 0 or element in seen or length > end - offset:
            return None
        seen.add(element)
        if element in _US_ELEMENTS:
            if length != 2:
                return None
            values[element] = _US.unpack_from(raw, offset)[0]
        elif element in (_AFFECTED_SOP_CLASS, _AFFECTED_SOP_INSTANCE):
            uid = _uid(raw[offset : offset + length])
            if uid is None:
                return None
            uids[element] = uid
        elif element != _GROUP_LENGTH or length != 4:
            return None
        offset += length
    if not _REQUIRED.issubset(seen):
        return None
    if values[_COMMAND_FIELD] != C_STORE_RQ_FIELD or values[_DATA_SET_TYPE] == NO_DATA_SET:
        return None
    if values[_PRIORITY] not in (0, 1, 2):
        return None
    return StoreCommand(
        message_id=values[_MESSAGE_ID],
        priority=values[_PRIORITY],
        sop_class_uid=uids[_AFFECTED_SOP_CLASS],
        sop_instance_uid=uids[_AFFECTED_SOP_INSTANCE],
    )
