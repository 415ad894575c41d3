"""C-MOVE SCP: send the instances an identifier names to a node of the registry.

The instances go through the Storage SCU of `store_scu` (stored bytes unchanged, per-class
negotiation, decompression as a fallback) over one association to the destination; the
responses go through `qr_wire`.

Responses: a pending response (0xFF00) with the remaining/completed/failed/warning counts after
every sub-operation but the last; finally 0x0000 (all completed), 0xB000 (some failed or
warned) or 0xA702 (none could be stored) with the Failed SOP Instance UID List, 0xFE00 after a
C-CANCEL, 0xA801 for a Move Destination that is not in the node registry, 0xA900/0xC000 for a
bad identifier.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from io import BytesIO
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_MOVE
from pynetdicom.dsutils import decode

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.qr_keys import MOVE_MODELS
from appliance.dicom.qr_match import IdentifierError, move_sql, parse_identifier
from appliance.dicom.qr_values import register_functions
from appliance.dicom.qr_wire import C_MOVE_RSP, ResponseChannel, response_command
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.store_scu import (
    InstanceResult,
    MoveOriginator,
    Outcome,
    SendItem,
    send_instances,
)
from appliance.store import connect

log = logging.getLogger(__name__)

PENDING = 0xFF00
CANCEL = 0xFE00
SUCCESS = 0x0000
WARNING_SUBOPERATIONS = 0xB000
"""Sub-operations complete, one or more failures or warnings."""
UNABLE_TO_PERFORM = 0xA702
"""Refused: out of resources, unable to perform sub-operations."""
DESTINATION_UNKNOWN = 0xA801
"""Refused: Move Destination unknown."""
UNABLE_TO_PROCESS = 0xC000
PROCESSING_FAILURE = 0xC001

_MAX_COUNT = 0xFFFF
"""The sub-operation counts are US values."""

FAILED_SOP_INSTANCE_UID_LIST = 0x00080058


def find_node(config: KioskConfig, ae_title: str) -> NodeConfig | None:
    """The registry node with this AE title, if any."""
    wanted = ae_title.strip()
    for node in config.nodes.values():
        if node.ae_title == wanted:
            return node
    return None


class _Move:
    """One C-MOVE request being served: its counts and its responses."""

    def __init__(self, req: C_MOVE, channel: ResponseChannel) -> None:
        self.req = req
        self.channel = channel
        self.message_id = int(req.MessageID or 0)
        self.total = 0
        self.completed = 0
        self.failed = 0
        self.warning = 0
        self.failed_uids: list[str] = []

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.failed - self.warning

    def cancelled(self) -> bool:
        """A C-CANCEL for this request arrived."""
        return self.channel.cancelled(self.message_id)

    def identifier(self) -> Dataset:
        """The request's identifier, decoded in the context's transfer syntax."""
        syntax = self.channel.syntax
        stream = cast(BytesIO, self.req.Identifier)
        return decode(stream, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)

    def _respond(self, status: int, *, counts: bool, failed_list: bool, comment: str = "") -> None:
        data_set = None
        if failed_list and self.failed_uids:
            uids = (FAILED_SOP_INSTANCE_UID_LIST, "UI", self.failed_uids)
            data_set = self.channel.encode([uids])
        remaining = min(self.remaining, _MAX_COUNT) if status in (PENDING, CANCEL) else None
        command = response_command(
            C_MOVE_RSP,
            sop_class_uid=str(self.req.AffectedSOPClassUID),
            message_id=self.message_id,
            status=status,
            has_data_set=data_set is not None,
            comment=comment,
            counts=(
                remaining,
                min(self.completed, _MAX_COUNT),
                min(self.failed, _MAX_COUNT),
                min(self.warning, _MAX_COUNT),
            )
            if counts
            else None,
        )
        self.channel.send(command, data_set)

    def refuse(self, status: int, comment: str) -> None:
        """A final failure response before any sub-operation."""
        self._respond(status, counts=False, failed_list=False, comment=comment)

    def count(self, result: InstanceResult) -> None:
        """Account for one sub-operation and send a pending response."""
        if result.outcome is Outcome.SUCCESS:
            self.completed += 1
        elif result.outcome is Outcome.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(result.sop_instance_uid)
        if self.remaining:
            self._respond(PENDING, counts=True, failed_list=False)

    def fail_rest(self, uids: list[str]) -> None:
        """Sub-operations that could not even be attempted count as failures."""
        self.failed += len(uids)
        self.failed_uids += uids

    def finish(self, *, cancelled: bool) -> int:
        """Send the final response; returns its status."""
        if cancelled:
            status = CANCEL
        elif not self.failed and not self.warning:
            status = SUCCESS
        elif not self.completed and not self.warning:
            status = UNABLE_TO_PERFORM
        else:
            status = WARNING_SUBOPERATIONS
        self._respond(status, counts=True, failed_list=status != SUCCESS)
        return status


class MoveSCP:
    """Serves C-MOVE requests of the Study and Patient Root models."""

    def __init__(self, config: KioskConfig) -> None:
        self.config = config
        self.index_file: Path = config.paths.index_file
        self.store_root: Path = config.paths.store_dir

    def serve(self, assoc: Association, req: C_MOVE, channel: ResponseChannel) -> None:
        """Serve one C-MOVE request completely."""
        started = time.monotonic()
        move = _Move(req, channel)
        model = MOVE_MODELS[str(req.AffectedSOPClassUID)]
        try:
            identifier = move.identifier()
        except Exception:
            move.refuse(UNABLE_TO_PROCESS, "the identifier cannot be decoded")
            return
        destination = str(req.MoveDestination or "").strip()
        try:
            query = parse_identifier(identifier, model, for_move=True)
            node = find_node(self.config, destination)
            if node is None:
                log.warning("C-MOVE to unknown destination %r refused", destination)
                move.refuse(DESTINATION_UNKNOWN, "Move Destination not in the node registry")
                return
            items = self._items(*move_sql(query))
        except IdentifierError as exc:
            move.refuse(exc.status, exc.comment)
            return
        except sqlite3.Error as exc:
            log.error("C-MOVE: the index cannot be read: %s", exc)
            move.refuse(PROCESSING_FAILURE, "the index cannot be read")
            return
        move.total = len(items)
        cancelled = self._send(assoc, move, node, items) if items else False
        status = move.finish(cancelled=cancelled)
        log.info(
            "C-MOVE %s level from %s to %s: %d sub-operation(s), %d completed, %d warning, "
            "%d failed, status 0x%04X in %.2f s",
            query.level.value,
            str(assoc.requestor.ae_title).strip(),
            node.ae_title,
            move.total,
            move.completed,
            move.warning,
            move.failed,
            status,
            time.monotonic() - started,
        )

    def _send(
        self, assoc: Association, move: _Move, node: NodeConfig, items: list[SendItem]
    ) -> bool:
        """Run the sub-operations; True when a C-CANCEL stopped them."""
        try:
            summary = send_instances(
                self.config,
                node,
                items,
                on_result=move.count,
                should_stop=move.cancelled,
                calling_ae_title=str(assoc.acceptor.ae_title).strip(),
                move_originator=MoveOriginator(
                    str(assoc.requestor.ae_title).strip(), move.message_id
                ),
            )
        except AssociationFailedError as exc:
            log.warning("C-MOVE to %s: %s", node.ae_title, exc)
            move.fail_rest([item.sop_instance_uid for item in items])
            return False
        return bool(summary.not_sent)

    def _items(self, sql: str, params: list[Any]) -> list[SendItem]:
        conn = connect(self.index_file, readonly=True)
        try:
            register_functions(conn)
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.close()
        return [SendItem.from_index_row(self.store_root, row) for row in rows]
