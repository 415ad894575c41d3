"""Storage SCU: send stored instances to a remote node.

Public API (stable; used by the C-MOVE SCP, send jobs and the importer):

    from appliance.dicom.store_scu import SendItem, send_instances

    items = [SendItem(path, sop_class_uid, sop_instance_uid, transfer_syntax_uid), ...]
    summary = send_instances(config, node, items, on_result=callback)

    config              KioskConfig: our AE title, PDU size and timeouts (`dicom.*`).
    node                NodeConfig (ae_title, host, port) of the receiving Storage SCP.
    items               SendItem per instance: the file (PS3.10, as our store writes it), its
                        SOP Class and Instance UID and the transfer syntax it is stored in (the
                        index's `transfer_syntax_uid`; `SendItem.from_index_row` builds one).
    on_result           optional, called with every InstanceResult in order, as soon as the
                        peer answered (or the instance failed locally); runs in the caller's
                        thread, between two C-STOREs.
    should_stop         optional, polled before each instance: True ends the send there (the
                        rest is listed in `summary.not_sent`) and releases the association.
    calling_ae_title    optional, our AE title for the association (default dicom.ae_title).
    prepare             optional, called with an item and whether it will go as stored
                        before it is sent (one going as stored while the peer stores the one
                        before it); returns the item to send (the importer rewrites each
                        instance there: in memory when it goes as stored, into a file when it
                        must be converted). A KioskError it raises fails that instance with
                        its message.
    move_originator     optional MoveOriginator(ae_title, message_id) when the C-STOREs are
                        sub-operations of a C-MOVE (it goes into every C-STORE-RQ).

    -> SendSummary: `results` (one InstanceResult per attempted instance: sop_instance_uid,
       sop_class_uid, outcome SUCCESS/WARNING/FAILURE, peer `status` or None, operator-readable
       `reason`, `transfer_syntax_uid` sent, `converted`), the counts `completed`, `warning`,
       `failed`, `failed_uids`, `not_sent` (UIDs never attempted) and `association_lost`.

    Raises scu_session.AssociationFailedError (`.transient` tells whether a retry may help) when
    the association for the first instances cannot be established; nothing was sent then.
    Everything later is reported per instance and never raised: a file missing on disk, an
    instance the peer has no context for or that cannot be converted, a failure status, and a
    peer that aborts (the instance in flight and all after it fail, `association_lost` is set).

Negotiation (see `store_plan`): per SOP class every stored syntax in a context of its own plus
Explicit/Implicit VR Little Endian. An instance whose stored syntax was accepted goes byte for
byte from the file; otherwise it is converted (decompressed if need be) to a Little Endian
syntax the peer accepted. Sending bypasses pynetdicom's per-fragment machinery (`store_wire`).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from pynetdicom.association import Association
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import AssociationFailedError, AssociationLostError
from appliance.dicom.scu_transport import WakingAE
from appliance.dicom.server import configure_ae
from appliance.dicom.store_convert import ConversionError, encode_for
from appliance.dicom.store_plan import Batch, Choice, accepted_syntaxes, choose, plan_batches
from appliance.dicom.store_wire import (
    Readable,
    StoreResponse,
    StoreWire,
    dataset_offset,
    encode_store_command,
    open_wire,
)
from appliance.dicom.syntaxes import DEFLATED_EXPLICIT_VR_LE
from appliance.errors import KioskError

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How one C-STORE (sub-)operation ended, in the terms of C-MOVE's counts."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class SendItem:
    """One stored instance to send."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    head: bytes | None = None
    """When set, the data set is `head` followed by bytes [tail_offset, tail_offset +
    tail_length) of `path` (an instance rewritten in memory); else `path` is a PS3.10 file."""
    tail_offset: int = 0
    tail_length: int = 0

    @classmethod
    def from_index_row(cls, store_root: Path, row: Mapping[str, Any]) -> SendItem:
        """From a row of the index's `instances` table (path relative to the store root)."""
        return cls(
            store_root / str(row["path"]),
            str(row["sop_class_uid"]),
            str(row["sop_instance_uid"]),
            str(row["transfer_syntax_uid"]),
        )


@dataclass(frozen=True, slots=True)
class MoveOriginator:
    """The C-MOVE request a C-STORE sub-operation belongs to."""

    ae_title: str
    message_id: int


@dataclass(frozen=True, slots=True)
class InstanceResult:
    """The outcome of one instance."""

    sop_instance_uid: str
    sop_class_uid: str
    outcome: Outcome
    status: int | None = None
    """The peer's C-STORE status; None when it gave none (not sent, or association lost)."""
    reason: str = ""
    """For a warning or failure: what happened, for an operator (no patient data)."""
    transfer_syntax_uid: str | None = None
    """The syntax the data set went in (None when it was not sent)."""
    converted: bool = False
    """The data set was re-encoded (and decompressed if need be) for the peer."""
    error_comment: str | None = None
    """The peer's Error Comment, if it sent one (never logged: it may quote the data set)."""


@dataclass(slots=True)
class SendSummary:
    """Everything `send_instances` did."""

    results: list[InstanceResult] = field(default_factory=list)
    not_sent: list[str] = field(default_factory=list)
    """SOP Instance UIDs never attempted because `should_stop` said so."""
    association_lost: bool = False
    """An association ended before all its instances were sent (peer abort, timeout)."""
    bytes_sent: int = 0

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def completed(self) -> int:
        """Instances the peer stored with Success."""
        return self._count(Outcome.SUCCESS)

    @property
    def warning(self) -> int:
        """Instances the peer stored with a warning status."""
        return self._count(Outcome.WARNING)

    @property
    def failed(self) -> int:
        """Instances that were not stored."""
        return self._count(Outcome.FAILURE)

    @property
    def failed_uids(self) -> list[str]:
        """SOP Instance UIDs of the failed instances, in order."""
        return [r.sop_instance_uid for r in self.results if r.outcome is Outcome.FAILURE]


ResultCallback = Callable[[InstanceResult], None]


def outcome_of(status: int) -> Outcome:
    """Success, warning or failure for a C-STORE response status (unknown codes fail)."""
    category = code_to_category(status)
    if category == STATUS_SUCCESS:
        return Outcome.SUCCESS
    if category == STATUS_WARNING:
        return Outcome.WARNING
    return Outcome.FAILURE


def send_instances(
    config: KioskConfig,
    node: NodeConfig,
    items: Sequence[SendItem],
    *,
    on_result: ResultCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    calling_ae_title: str | None = None,
    move_originator: MoveOriginator | None = None,
    prepare: Callable[[SendItem, bool], SendItem] | None = None,
) -> SendSummary:
    """Send `items` to `node` (see the module docstring for the contract)."""
    summary = SendSummary()
    if not items:
        return summary
    started = time.monotonic()
    sender = _Sender(summary, on_result, should_stop, move_originator, prepare)
    for number, batch in enumerate(plan_batches(items)):
        if sender.stopped:
            summary.not_sent += [item.sop_instance_uid for item in batch.items]
            continue
        try:
            assoc = _associate(config, node, batch, calling_ae_title)
        except AssociationFailedError as exc:
            if number == 0:
                raise
            summary.association_lost = True
            sender.fail_all(batch.items, str(exc))
            continue
        sender.run(assoc, batch.items)
    seconds = time.monotonic() - started
    log.info(
        "sent to %s: %d completed, %d warning, %d failed, %d not sent (%d bytes in %.2f s)",
        node.ae_title,
        summary.completed,
        summary.warning,
        summary.failed,
        len(summary.not_sent),
        summary.bytes_sent,
        seconds,
    )
    return summary


def _associate(
    config: KioskConfig, node: NodeConfig, batch: Batch[SendItem], calling_ae_title: str | None
) -> Association:
    ae = configure_ae(config, ae_class=WakingAE)
    if calling_ae_title:
        ae.ae_title = calling_ae_title
    for sop_class, syntaxes in batch.contexts:
        ae.add_requested_context(sop_class, syntaxes)
    where = f"{node.ae_title} at {node.host}:{node.port}"
    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    except Exception as exc:  # bad host name and the like
        raise AssociationFailedError(
            f"cannot associate with {where}: {type(exc).__name__}", transient=True
        ) from None
    if assoc.is_rejected:
        result = getattr(assoc.acceptor.primitive, "result", None)
        transient = result == 0x02
        raise AssociationFailedError(
            f"{where} rejected the association ({'transient' if transient else 'permanent'})",
            transient=transient,
        )
    if not assoc.is_established:
        raise AssociationFailedError(
            f"no association with {where} (unreachable, aborted or timed out)", transient=True
        )
    return assoc


class _HeadThenFile(io.RawIOBase):
    """Reads `head`, then `length` bytes of `fh` from where it stands."""

    def __init__(self, head: bytes, fh: BinaryIO, length: int) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._fh = fh
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            n = len(self._head) if size < 0 else min(size, len(self._head))
            piece = bytes(self._head[:n])
            self._head = self._head[n:]
            return piece
        n = self._left if size < 0 else min(size, self._left)
        data = self._fh.read(n) if n > 0 else b""
        self._left -= len(data)
        return data


class _Sender:
    """Sends batches one association at a time and keeps the summary."""

    def __init__(
        self,
        summary: SendSummary,
        on_result: ResultCallback | None,
        should_stop: Callable[[], bool] | None,
        move_originator: MoveOriginator | None,
        prepare: Callable[[SendItem, bool], SendItem] | None = None,
    ) -> None:
        self.summary = summary
        self.on_result = on_result
        self.should_stop = should_stop
        self.move_originator = move_originator
        self.prepare = prepare
        self.stopped = False

    def report(self, result: InstanceResult, *, quiet: bool = False) -> None:
        self.summary.results.append(result)
        if result.outcome is Outcome.FAILURE and not quiet:
            log.warning(
                "C-STORE of %s failed%s: %s",
                result.sop_instance_uid,
                f" (0x{result.status:04X})" if result.status is not None else "",
                result.reason,
            )
        if self.on_result is not None:
            self.on_result(result)

    def fail_all(self, items: Sequence[SendItem], reason: str) -> None:
        """Every one of `items` failed for one reason (logged once, not per instance)."""
        log.warning("%d instance(s) not stored: %s", len(items), reason)
        for item in items:
            uid, sop_class = item.sop_instance_uid, item.sop_class_uid
            self.report(InstanceResult(uid, sop_class, Outcome.FAILURE, None, reason), quiet=True)

    def run(self, assoc: Association, items: list[SendItem]) -> None:
        """Send `items` over the established `assoc`, then release (or abort) it."""
        try:
            with open_wire(assoc) as wire:
                lost = self._send_all(wire, accepted_syntaxes(assoc.accepted_contexts), items)
        except AssociationLostError as exc:  # the connection was gone before the first one
            lost = f"association lost: {exc}"
            self.fail_all(items, lost)
        if lost is not None:
            self.summary.association_lost = True
            assoc.abort()
        elif assoc.is_established:
            assoc.release()

    def _send_all(
        self, wire: StoreWire, accepted: dict[str, dict[str, int]], items: list[SendItem]
    ) -> str | None:
        """Send `items` in order; returns why the association was lost, if it was.

        While the peer stores one instance, the next one is prepared (rewritten, its file
        opened): the Python work per instance overlaps the peer's instead of adding to it.
        """
        upcoming: _Ready | InstanceResult | None = None
        for index, item in enumerate(items):
            if self.should_stop is not None and self.should_stop():
                self.stopped = True
                self.summary.not_sent += [i.sop_instance_uid for i in items[index:]]
                _close(upcoming)
                return None
            failed_from = index
            try:
                current = upcoming if upcoming is not None else self._prepare(accepted, item)
                upcoming = None
                if isinstance(current, InstanceResult):
                    self.report(current)
                    continue
                with current:
                    message_id = current.transmit(wire, self._command)
                    ahead_error: Exception | None = None
                    if index + 1 < len(items) and self._goes_as_stored(accepted, items[index + 1]):
                        try:
                            upcoming = self._prepare(accepted, items[index + 1])
                        except Exception as exc:  # raised below, once this one is answered
                            ahead_error = exc
                    response = wire.receive(message_id)
                self.summary.bytes_sent += current.size
                self.report(current.result(response))
                if ahead_error is not None:
                    failed_from = index + 1
                    raise ahead_error
            except AssociationLostError as exc:
                lost = f"association lost: {exc}"
            except Exception as exc:  # e.g. a read error half-way through a data set
                # What the peer has received of this message is unknown: end the
                # association rather than send it anything more.
                lost = f"association aborted after a local error ({type(exc).__name__})"
            else:
                continue
            _close(upcoming)
            self.fail_all(items[failed_from:], lost)
            return lost
        return None

    @staticmethod
    def _goes_as_stored(accepted: dict[str, dict[str, int]], item: SendItem) -> bool:
        """True unless the instance must be converted for the peer (those are prepared only
        when their turn comes, so that never two converted data sets are in memory)."""
        choice = choose(accepted, item)
        return choice is None or choice.as_stored

    def _command(self, item: SendItem, message_id: int) -> bytes:
        originator = self.move_originator
        return encode_store_command(
            message_id=message_id,
            sop_class_uid=item.sop_class_uid,
            sop_instance_uid=item.sop_instance_uid,
            move_originator_ae=originator.ae_title if originator else None,
            move_originator_message_id=originator.message_id if originator else None,
        )

    def _prepare(
        self, accepted: dict[str, dict[str, int]], item: SendItem
    ) -> _Ready | InstanceResult:
        """The instance ready to go (prepared, its file open or its conversion done), or its
        failure."""

        def failed(reason: str) -> InstanceResult:
            return InstanceResult(
                item.sop_instance_uid, item.sop_class_uid, Outcome.FAILURE, None, reason
            )

        choice = choose(accepted, item)
        if choice is None:
            return failed("the peer accepted no presentation context for its SOP class")
        if self.prepare is not None:
            try:
                item = self.prepare(item, choice.as_stored)
            except KioskError as exc:
                return failed(str(exc))
        deflated = choice.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LE
        if choice.as_stored and item.head is not None:
            try:
                fh = item.path.open("rb")
            except OSError as exc:
                return failed(f"its file cannot be read ({type(exc).__name__})")
            fh.seek(item.tail_offset)
            size = len(item.head) + item.tail_length
            source = _HeadThenFile(item.head, fh, item.tail_length)
            return _Ready(item, choice, size, source=source, file=fh, pad_odd=deflated)
        if choice.as_stored:
            try:
                fh = item.path.open("rb")
            except FileNotFoundError:
                return failed("its file is missing from the store")
            except OSError as exc:
                return failed(f"its file cannot be read ({type(exc).__name__})")
            try:
                offset = dataset_offset(fh, item.path)
            except Exception as exc:  # pydicom raises many types on damaged files
                fh.close()
                return failed(f"its file cannot be read ({type(exc).__name__})")
            size = fh.seek(0, 2) - offset
            fh.seek(offset)
            return _Ready(item, choice, size, source=fh, file=fh, pad_odd=deflated)
        if not item.path.is_file():
            return failed("its file is missing from the store")
        try:
            data = encode_for(item.path, choice.transfer_syntax_uid)
        except ConversionError as exc:
            return failed(f"cannot convert it for the peer: {exc}")
        return _Ready(item, choice, len(data), encoded=data)


class _Ready:
    """One instance ready to be sent: its context, and its data set as an open file (from
    where it starts) or as bytes (converted for the peer)."""

    def __init__(
        self,
        item: SendItem,
        choice: Choice,
        size: int,
        *,
        source: Readable | None = None,
        file: BinaryIO | None = None,
        pad_odd: bool = False,
        encoded: bytes | None = None,
    ) -> None:
        self.item = item
        self.choice = choice
        self.size = size
        self._source = source
        self._file = file
        self._pad_odd = pad_odd
        self._encoded = encoded

    def __enter__(self) -> _Ready:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close its file (if any)."""
        if self._file is not None:
            self._file.close()

    def transmit(self, wire: StoreWire, command: Callable[[SendItem, int], bytes]) -> int:
        """Write the request; its Message ID."""
        message_id = wire.next_message_id()
        request = command(self.item, message_id)
        context_id = self.choice.context_id
        if self._encoded is not None:
            wire.send_bytes(context_id, request, self._encoded)
        else:
            assert self._source is not None
            wire.send_file(context_id, request, self._source, self.size, pad_odd=self._pad_odd)
        return message_id

    def result(self, response: StoreResponse) -> InstanceResult:
        """The outcome, from the peer's response."""
        outcome = outcome_of(response.status)
        reason = "" if outcome is Outcome.SUCCESS else f"the peer answered 0x{response.status:04X}"
        return InstanceResult(
            self.item.sop_instance_uid,
            self.item.sop_class_uid,
            outcome,
            response.status,
            reason,
            self.choice.transfer_syntax_uid,
            converted=not self.choice.as_stored,
            error_comment=response.error_comment,
        )


def _close(ready: _Ready | InstanceResult | None) -> None:
    if isinstance(ready, _Ready):
        ready.close()
