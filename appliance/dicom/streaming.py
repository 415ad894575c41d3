"""Stream C-STORE data sets straight into the store while they arrive.

pynetdicom either buffers a whole data set in memory or writes it to a NamedTemporaryFile in
/tmp with its own File Meta. We want neither: memory must not grow with instance size, the
file must already carry our File Meta and sit on the store's filesystem so that committing it
is a rename. So we configure pynetdicom with three small subclasses:

- `StreamingDIMSE` runs the C-STORE fast path: a plain C-STORE-RQ (see `dimse_decode`) is
  decoded from the PDU buffer, its data fragments are written straight into an `IncomingFile`,
  the store is called from the DUL thread and a pre-encoded C-STORE-RSP goes out on the socket.
  Anything else is fed to pynetdicom PDV by PDV; a C-STORE that pynetdicom decodes still gets
  its `IncomingFile` attached as soon as its command set is decoded.
- `StreamingAssociation` discards files of requests that never completed (abort, lost peer),
  and waits for DIMSE messages instead of polling for them every millisecond.
- `WakingDUL` sleeps in select() on the socket and a wake-up pipe instead of a fixed 1 ms sleep,
  so a PDU or an outgoing response is handled the moment it exists, and reads PDUs through one
  reused buffer (`pdu_reader`).
- `StreamingRequestHandler` builds those for each accepted connection and sets TCP_NODELAY.

pynetdicom's reactors poll with ~1 ms sleeps, which caps a one-association sender at a few
hundred instances per second; waking on events removes that cap. What remained was its
per-message work (pydicom decoding of every command set, primitive conversions, event
dispatch, 4 KiB socket reads and several copies of each PDU), which the fast path skips when
nobody observes the events it would trigger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import TYPE_CHECKING, Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from appliance.dicom.dimse_decode import decode_store_request
from appliance.dicom.pdu_reader import PDU_TYPES, PduReader, PeerClosedError
from appliance.dicom.store_fastpath import (
    RECEIVE_OBSERVERS,
    SEND_OBSERVERS,
    DirectStore,
    FastStore,
    command_fits,
    command_pdu,
    observed,
    plain_storage,
    split_pdvs,
    store_response,
)
from appliance.store import IncomingFile

if TYPE_CHECKING:
    from pynetdicom.ae import ApplicationEntity

log = logging.getLogger(__name__)

IncomingOpener = Callable[[str, str, str, str], IncomingFile]
"""(sop_class_uid, sop_instance_uid, transfer_syntax_uid, calling_ae) -> IncomingFile."""


class StreamingDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that streams C-STORE data sets into `IncomingFile`s."""

    def __init__(
        self, assoc: Association, opener: IncomingOpener, direct_store: DirectStore | None = None
    ) -> None:
        super().__init__(assoc)
        self._opener = opener
        self._direct_store = direct_store
        self._pending: set[IncomingFile] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._fast: FastStore | None = None
        self._common_extended: dict[Any, Any] | None = None

    # -- the fast path (DUL thread) -------------------------------------------------------------

    def fast_path_open(self) -> bool:
        """True if the next P-DATA-TF PDU may go to `receive_pdata_tf` (nobody observes the
        receive events it skips, and there is a store to hand instances to)."""
        return self._direct_store is not None and not observed(self.assoc, RECEIVE_OBSERVERS)

    def receive_pdata_tf(self, body: memoryview) -> bool:
        """Handle one P-DATA-TF PDU's body; False if it is invalid (the DUL then aborts).

        A plain C-STORE-RQ with its data set is decoded and streamed here and the store is
        called directly, from this thread: the sender waits for the response anyway, and each
        thread hand-off costs more than a small instance's parsing. Every other PDV, and every
        PDV of a message pynetdicom has started, goes through pynetdicom one at a time.
        """
        pdvs = split_pdvs(body)
        if pdvs is None:
            log.error("invalid P-DATA-TF PDU: PDV lengths do not add up")
            return False
        for context_id, control, start, end in pdvs:
            fast = self._fast
            if fast is not None:
                if control & 0x01:
                    log.error("command fragment inside a data set; aborting the association")
                    return False
                fast.incoming.write(body[start:end])
                if control & 0x02:
                    self._fast = None
                    self._complete(fast)
                continue
            if (
                self.message is None
                and control & 0x03 == 0x03
                and self._start_fast(context_id, body[start:end])
            ):
                continue
            single = P_DATA()
            item: Any = [context_id, bytes(body[start - 1 : end])]  # control header + fragment
            single.presentation_data_value_list = [item]
            self._receive_one(single)
        return True

    def _start_fast(self, context_id: int, command_bytes: memoryview) -> bool:
        command = decode_store_request(command_bytes)
        if command is None:
            return False
        assoc = self.assoc
        context = assoc._accepted_cx.get(context_id)
        if context is None:
            return False  # pynetdicom aborts for an unknown context; let it
        if self._common_extended is None:
            self._common_extended = dict(assoc.acceptor.accepted_common_extended)
        if not plain_storage(command.sop_class_uid, self._common_extended):
            return False
        with self._lock:
            if self._closed:
                return False
            try:
                incoming = self._opener(
                    command.sop_class_uid,
                    command.sop_instance_uid,
                    str(context.transfer_syntax[0]),
                    str(assoc.requestor.ae_title),
                )
            except Exception:
                log.exception("cannot open a file for an incoming instance")
                return False
            self._pending.add(incoming)
        self._fast = FastStore(context_id, command, context, incoming)
        return True

    def _complete(self, fast: FastStore) -> None:
        """The data set is complete: store it, then answer (what pynetdicom's Storage SCP and
        `Association._serve_request` do, minus the primitive conversions and event plumbing)."""
        assoc = self.assoc
        command = fast.command
        if assoc._sent_release:
            log.warning("C-STORE-RQ message received during association release, ignoring")
            fast.incoming.discard()
            self.forget(fast.incoming)
            return
        assert self._direct_store is not None
        self.cancel_req = {}
        status, comment = self._direct_store(
            fast.incoming,
            expected_sop_class_uid=str(fast.context.abstract_syntax),
            sop_instance_uid=command.sop_instance_uid,
            assoc=assoc,
        )
        self.cancel_req = {}
        if not assoc.is_established:
            return  # aborted or released meanwhile: nobody to answer
        response = store_response(
            command.sop_class_uid, command.sop_instance_uid, command.message_id, status, comment
        )
        if not command_fits(response, int(assoc.requestor.maximum_length or 0)):
            rsp = C_STORE()
            rsp.MessageIDBeingRespondedTo = command.message_id
            rsp.AffectedSOPClassUID = command.sop_class_uid
            rsp.AffectedSOPInstanceUID = command.sop_instance_uid
            rsp.Status = status
            if comment:
                rsp.ErrorComment = comment  # type: ignore[assignment]
            DIMSEServiceProvider.send_msg(self, rsp, fast.context_id)
        elif observed(assoc, SEND_OBSERVERS) or self.dul.socket is None:
            self._queue_command(response, fast.context_id)
        else:
            # We are the DUL thread in Sta6: sending a P-DATA-TF is all that DT-1 would do.
            self.dul.socket.send(command_pdu(fast.context_id, response))

    def _queue_command(self, command: bytes, context_id: int) -> None:
        pdata = P_DATA()
        item: Any = [context_id, b"\x03" + command]  # last fragment of a command
        pdata.presentation_data_value_list = [item]
        self.dul.send_pdu(pdata)

    # -- pynetdicom's path ------------------------------------------------------------------------

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Feed one P-DATA to pynetdicom, one PDV at a time so the file is attached in time."""
        pdvs = primitive.presentation_data_value_list
        if len(pdvs) == 1:
            self._receive_one(primitive)
            return
        for pdv in pdvs:
            single = P_DATA()
            single.presentation_data_value_list = [pdv]
            self._receive_one(single)

    def _receive_one(self, primitive: P_DATA) -> None:
        super().receive_primitive(primitive)
        message = self.message
        if type(message) is C_STORE_RQ and message._data_set_file is None:
            self._attach(message)

    def _attach(self, message: C_STORE_RQ) -> None:
        command = message.command_set
        context_id = message.context_id
        assoc = self.assoc
        context = assoc._accepted_cx.get(context_id) if context_id is not None else None
        if context is None:
            return  # pynetdicom answers an unknown context itself
        with self._lock:
            if self._closed:
                return
            try:
                incoming = self._opener(
                    str(command.AffectedSOPClassUID),
                    str(command.AffectedSOPInstanceUID),
                    str(context.transfer_syntax[0]),
                    str(assoc.requestor.ae_title),
                )
            except Exception:
                log.exception("cannot open a file for an incoming instance")
                return
            self._pending.add(incoming)
        # Fragments that came in the same PDU as the command's last fragment are in memory.
        buffered = message.data_set.getvalue() if message.data_set is not None else b""
        if buffered:
            incoming.write(buffered)
            message.data_set = BytesIO()
        message._data_set_file = incoming  # type: ignore[assignment]
        message._data_set_path = incoming.path

    def send_msg(self, primitive: Any, context_id: int) -> None:
        """Send a C-STORE-RSP as pre-encoded bytes; anything else the pynetdicom way.

        A C-STORE response is six short elements; building it through pydicom costs about a
        tenth of a millisecond per instance, a tenth of what a small instance costs in all.
        """
        if isinstance(primitive, C_STORE) and primitive.Status is not None:
            command = c_store_response(primitive)
            if command_fits(command, int(self.assoc.requestor.maximum_length or 0)):
                self._queue_command(command, context_id)
                return
        super().send_msg(primitive, context_id)

    def forget(self, incoming: IncomingFile) -> None:
        """The request was handled: the file is now the store's business."""
        with self._lock:
            self._pending.discard(incoming)

    def discard_pending(self) -> int:
        """Delete the files of requests that will never be handled; returns how many."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, set()
        for incoming in pending:
            incoming.discard()
        return len(pending)


IDLE_WAIT_SECONDS = 0.02
"""Longest a reactor sleeps without an event; bounds the reaction time to timers and kills."""


class _Waker:
    """A self-pipe: `poke()` makes the read end readable; closing is safe against late pokes.

    Pokes may come from other threads after the reactor ended; without the lock, a poke could
    write into a file descriptor number the kernel has already handed to another file.
    """

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()

    def poke(self) -> None:
        """Wake the reader (a full pipe means a wake-up is pending anyway)."""
        with self._lock:
            if self._write_fd >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        """Consume pending pokes."""
        with contextlib.suppress(OSError):
            while os.read(self.read_fd, 4096):
                pass

    def close(self) -> None:
        """Close both ends; later pokes do nothing."""
        with self._lock:
            os.close(self._write_fd)
            self._write_fd = -1
        os.close(self.read_fd)


class _WakingQueue(queue.Queue[Any]):
    """A queue that pokes a waker on every put, so a thread blocked in select() wakes up."""

    def __init__(self, waker: _Waker) -> None:
        super().__init__()
        self._waker = waker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Enqueue and wake the reader."""
        super().put(item, block, timeout)
        self._waker.poke()


class _AssociationWakingQueue(queue.Queue[Any]):
    """The DUL's queue of primitives for the association (A-RELEASE, A-ABORT ...): a put also
    wakes the association's reactor, which otherwise notices a release only after its idle
    wait (a delay every short association, e.g. a C-FIND or C-ECHO, would pay)."""

    def __init__(self, dul: DULServiceProvider) -> None:
        super().__init__()
        self._dul = dul

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Enqueue, then put an empty message into the DIMSE queue as a wake-up call."""
        super().put(item, block, timeout)
        self._dul.assoc.dimse.msg_queue.put((None, None))


class WakingDUL(DULServiceProvider):
    """The DUL reactor, waiting in select() on the socket and a wake-up pipe when idle."""

    _waker: _Waker

    def install_wakeup(self) -> None:
        """Create the wake-up pipe; call before the reactor thread starts."""
        self._waker = _Waker()
        self.to_provider_queue = self._waking_copy(self.to_provider_queue)
        self.event_queue = self._waking_copy(self.event_queue)

    def wake_association_on_acse(self) -> None:
        """Also wake the association's reactor when an A-RELEASE/A-ABORT arrives.

        Only for `StreamingAssociation`, whose reactor skips the empty wake-up message: a
        requestor association would take it for a missing DIMSE response while it waits in a
        send_*() call.
        """
        waking = _AssociationWakingQueue(self)
        while True:
            try:
                waking.put(self.to_user_queue.get_nowait())
            except queue.Empty:
                break
        self.to_user_queue = waking

    def _waking_copy(self, old: queue.Queue[Any]) -> _WakingQueue:
        # The accepted connection has already queued its transport event (Evt5): keep it.
        new = _WakingQueue(self._waker)
        while True:
            try:
                new.put(old.get_nowait())
            except queue.Empty:
                return new

    def run(self) -> None:
        """Thread body: our reactor (the Thread was built with the base class's as target)."""
        self.run_reactor()

    def receive_pdu(self, wait: bool = False, timeout: float | None = None) -> Any:
        """Like pynetdicom's, but a blocking wait ends as soon as the peer has closed the
        connection: a TCP probe that never sends an A-ASSOCIATE-RQ must not hold an
        association slot until the ACSE timeout."""
        if not wait:
            return super().receive_pdu(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slice_ = IDLE_WAIT_SECONDS * 5
            if deadline is not None:
                slice_ = min(slice_, max(deadline - time.monotonic(), 0.0))
            primitive = super().receive_pdu(wait=True, timeout=slice_)
            if primitive is not None:
                return primitive
            if deadline is not None and time.monotonic() >= deadline:
                return None
            sock = self.socket
            if self._kill_thread or (sock is not None and not sock._is_connected):
                return super().receive_pdu(wait=False)

    def _reader(self) -> PduReader | None:
        raw = getattr(self.socket, "socket", None)
        if raw is None:
            return None
        reader: PduReader | None = getattr(self, "_pdu_reader", None)
        if reader is None or reader.sock is not raw:
            reader = self._pdu_reader = PduReader(raw)
        return reader

    def _is_transport_event(self) -> bool:
        """pynetdicom's check, but PDUs already in our buffer count as incoming data."""
        reader: PduReader | None = getattr(self, "_pdu_reader", None)
        if reader is not None and reader.buffered:
            self._read_pdu_data()
            return True
        return bool(super()._is_transport_event())

    def _read_pdu_data(self) -> None:
        """Read one PDU; a P-DATA-TF in Sta6 goes straight to the DIMSE fast path.

        pynetdicom reads a PDU in 4 KiB recv() calls, copies it several times and runs it
        through its state machine and event triggers. In the data transfer state a P-DATA-TF
        only ever means "give these PDVs to DIMSE" (DT-2, staying in Sta6), so, unless someone
        observes those events, DIMSE gets a view of our receive buffer. Every other PDU is
        decoded and queued exactly as pynetdicom does.
        """
        reader = self._reader()
        if reader is None:
            super()._read_pdu_data()
            return
        try:
            pdu_type, data = reader.read_pdu()
        except OSError as exc:
            # A peer closing the connection between PDUs (after a release) is normal.
            if not isinstance(exc, PeerClosedError) or exc.received:
                log.error("connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        if pdu_type not in PDU_TYPES:
            log.error("unknown PDU type received 0x%02X", pdu_type)
            self.event_queue.put("Evt19")
            return
        dimse = self.assoc.dimse
        if (
            pdu_type == 0x04
            and self.state_machine.current_state == "Sta6"
            and isinstance(dimse, StreamingDIMSE)
            and dimse.fast_path_open()
            and self.event_queue.empty()
        ):
            if not dimse.receive_pdata_tf(memoryview(data)[6:]):
                self.event_queue.put("Evt19")  # invalid PDU: the state machine aborts
            return
        try:
            pdu, event = self._decode_pdu(bytearray(data))
        except Exception:
            log.exception("unable to decode the received PDU")
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _wait_for_work(self) -> None:
        reader: PduReader | None = getattr(self, "_pdu_reader", None)
        if reader is not None and reader.buffered:
            return  # a whole PDU may be waiting in our buffer, not in the socket
        watch: list[Any] = [self._waker.read_fd]
        raw = getattr(self.socket, "socket", None)
        if raw is not None:
            watch.append(raw)
        try:
            readable, _, _ = select.select(watch, [], [], IDLE_WAIT_SECONDS)
        except (OSError, ValueError):
            time.sleep(IDLE_WAIT_SECONDS / 10)
            return
        if self._waker.read_fd in readable:
            self._waker.drain()

    def run_reactor(self) -> None:
        """Same duties as pynetdicom's loop (ARTIM, send, receive, state machine) minus polling."""
        self._idle_timer.start()
        idle = False
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                    idle = True
                if idle:
                    self._wait_for_work()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception:
                    log.exception("DUL failure; aborting the association")
                    self._abort_hard()
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    idle = True
                    continue
                self.state_machine.do_action(event)
                idle = False
        finally:
            self._waker.close()

    def _abort_hard(self) -> None:
        """Send an A-ABORT directly and stop both reactors (the state machine is unusable)."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        try:
            if self.socket is not None:
                self.socket.send(abort.encode())
        except OSError:
            pass
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


def c_store_response(rsp: C_STORE) -> bytes:
    """The C-STORE-RSP command set (PS3.7 9.3.1.2) of a response primitive."""
    return store_response(
        str(rsp.AffectedSOPClassUID),
        str(rsp.AffectedSOPInstanceUID),
        int(rsp.MessageIDBeingRespondedTo or 0),
        int(rsp.Status or 0),
        str(rsp.ErrorComment or ""),
    )


class StreamingAssociation(Association):
    """An acceptor association that waits for messages and cleans up when it ends."""

    dimse: StreamingDIMSE

    def run(self) -> None:
        """Run the association, then discard data sets that were never completely handled."""
        try:
            super().run()
        finally:
            dropped = self.dimse.discard_pending()
            if dropped:
                log.warning("association ended with %d incomplete instance(s); discarded", dropped)

    def _run_reactor(self) -> None:
        """Serve DIMSE requests as they arrive; watch for release, abort, a dead DUL, timeout."""
        self._is_paused = False
        while not self._kill:
            # Someone using the send_*() methods on this association may pause us.
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            try:
                context_id, msg = self.dimse.msg_queue.get(timeout=IDLE_WAIT_SECONDS)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._serve_request(msg, cast(int, context_id))
                continue
            if self._ended():
                return

    def _ended(self) -> bool:
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # lets EVT_ACSE_RECV subscribers see the abort
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.warning("network timeout: association idle too long, aborting")
            self.abort()
            self.kill()
            return True
        return False


class StreamingRequestHandler(RequestHandler):
    """Creates a `StreamingAssociation` for every accepted connection."""

    server: StreamingAssociationServer

    def _create_association(self) -> Association:
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc = super()._create_association()
        # pynetdicom builds a plain Association here; we specialise that object rather than
        # re-implementing its construction.
        assoc.__class__ = StreamingAssociation
        assoc.dimse = StreamingDIMSE(assoc, self.server.incoming_opener, self.server.direct_store)
        assoc.dul.__class__ = WakingDUL
        dul = cast(WakingDUL, assoc.dul)
        dul.install_wakeup()
        dul.wake_association_on_acse()
        return assoc


class StreamingAssociationServer(ThreadedAssociationServer):
    """The threaded association server, with our request handler and an incoming-file opener."""

    def __init__(
        self,
        ae: ApplicationEntity,
        address: tuple[str, int],
        ae_title: str,
        contexts: list[Any],
        incoming_opener: IncomingOpener,
        evt_handlers: list[Any],
        direct_store: DirectStore | None = None,
    ) -> None:
        """`direct_store`, if given, enables the C-STORE fast path (see `StreamingDIMSE`)."""
        self.incoming_opener = incoming_opener
        self.direct_store = direct_store
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            evt_handlers=evt_handlers,
            request_handler=StreamingRequestHandler,
        )
