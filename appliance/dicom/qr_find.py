"""C-FIND SCP: Study Root and Patient Root queries answered from our index.

The identifier becomes one parameterised SQL statement (`qr_match`) run on a read-only
connection of its own (WAL: a query never waits for reception, nor reception for a query);
each match is one pending response (`qr_response`, sent through `qr_wire`), a C-CANCEL ends
the stream with 0xFE00, and a bad identifier gets 0xA900 or 0xC000 with an Error Comment.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from io import BytesIO
from pathlib import Path
from typing import cast

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import decode

from appliance.dicom.qr_keys import FIND_MODELS
from appliance.dicom.qr_match import (
    UNABLE_TO_PROCESS,
    IdentifierError,
    Query,
    find_sql,
    parse_identifier,
)
from appliance.dicom.qr_response import response_identifier
from appliance.dicom.qr_values import register_functions
from appliance.dicom.qr_wire import C_FIND_RSP, ResponseChannel, response_command
from appliance.store import connect

log = logging.getLogger(__name__)

PENDING = 0xFF00
SUCCESS = 0x0000
CANCEL = 0xFE00
PROCESSING_FAILURE = 0xC001

CATCH_UP_EVERY = 32
"""Pending responses after which the query waits for the DUL to send what it queued."""


class FindSCP:
    """Serves C-FIND requests over the index at `index_file`."""

    def __init__(self, index_file: Path) -> None:
        self.index_file = index_file

    def run(self, query: Query) -> list[sqlite3.Row]:
        """Every match of `query` (read-only connection, closed afterwards)."""
        sql, params = find_sql(query)
        conn = connect(self.index_file, readonly=True)
        try:
            register_functions(conn)
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def serve(self, assoc: Association, req: C_FIND, channel: ResponseChannel) -> None:
        """Answer one C-FIND request completely."""
        started = time.monotonic()
        sop_class = str(req.AffectedSOPClassUID)
        message_id = int(req.MessageID or 0)

        def respond(status: int, data_set: bytes | None = None, comment: str = "") -> None:
            command = response_command(
                C_FIND_RSP,
                sop_class_uid=sop_class,
                message_id=message_id,
                status=status,
                has_data_set=data_set is not None,
                comment=comment,
            )
            channel.send(command, data_set)

        syntax = channel.syntax
        try:
            stream = cast(BytesIO, req.Identifier)
            identifier = decode(
                stream, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
            )
        except Exception:
            respond(UNABLE_TO_PROCESS, comment="the identifier cannot be decoded")
            return
        try:
            query = parse_identifier(identifier, FIND_MODELS[sop_class])
            rows = self.run(query)
        except IdentifierError as exc:
            log.info("C-FIND refused with 0x%04X: %s", exc.status, exc.comment)
            respond(exc.status, comment=exc.comment)
            return
        except sqlite3.Error as exc:
            log.error("C-FIND: the index cannot be read: %s", exc)
            respond(PROCESSING_FAILURE, comment="the index cannot be read")
            return
        retrieve_ae = str(assoc.acceptor.ae_title).strip()
        for sent, row in enumerate(rows):
            if sent and not sent % CATCH_UP_EVERY:
                channel.catch_up()
            if not assoc.is_established:
                return  # aborted or released under us: nobody to answer
            if channel.cancelled(message_id):
                log.info("C-FIND cancelled after %d of %d match(es)", sent, len(rows))
                respond(CANCEL)
                return
            response = response_identifier(query, tuple(row), retrieve_ae)
            respond(PENDING, channel.encode(response.elements, response.codec))
        respond(SUCCESS)
        log.info(
            "C-FIND %s level from %s: %d match(es) in %.0f ms",
            query.level.value,
            str(assoc.requestor.ae_title).strip(),
            len(rows),
            (time.monotonic() - started) * 1000,
        )
