"""Stream C-STORE data sets straight into the store while they arrive.

pynetdicom either buffers a whole data set in memory or writes it to a NamedTemporaryFile in
/tmp with its own File Meta. We want neither: memory must not grow with instance size, the
file must already carry our File Meta and sit on the store's filesystem so that committing it
is a rename. So we configure pynetdicom with three small subclasses:

- `StreamingDIMSE` attaches an `IncomingFile` to a C-STORE request as soon as its command set is
  decoded; pynetdicom then appends every data fragment to it (its chunked-dataset path).
- `StreamingAssociation` discards files of requests that never completed (abort, lost peer),
  and waits for DIMSE messages instead of polling for them every millisecond.
- `WakingDUL` sleeps in select() on the socket and a wake-up pipe instead of a fixed 1 ms sleep,
  so a PDU or an outgoing response is handled the moment it exists.
- `StreamingRequestHandler` builds those for each accepted connection and sets TCP_NODELAY.

pynetdicom is latency-bound, not CPU-bound: its reactors poll with ~1 ms sleeps, which caps a
one-association sender at a few hundred instances per second. Waking on events removes that
cap without touching its protocol logic.
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

from appliance.dicom.dimse_encode import Element, command_set
from appliance.store import IncomingFile

if TYPE_CHECKING:
    from pynetdicom.ae import ApplicationEntity

log = logging.getLogger(__name__)

IncomingOpener = Callable[[str, str, str, str], IncomingFile]
"""(sop_class_uid, sop_instance_uid, transfer_syntax_uid, calling_ae) -> IncomingFile."""


class StreamingDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that streams C-STORE data sets into `IncomingFile`s."""

    def __init__(self, assoc: Association, opener: IncomingOpener) -> None:
        super().__init__(assoc)
        self._opener = opener
        self._pending: set[IncomingFile] = set()
        self._lock = threading.Lock()
        self._closed = False

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
            peer_max = int(self.assoc.requestor.maximum_length or 0)
            if not peer_max or len(command) + 7 <= peer_max:
                pdata = P_DATA()
                item: Any = [context_id, b"\x03" + command]  # last fragment of a command
                pdata.presentation_data_value_list = [item]
                self.dul.send_pdu(pdata)
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

    def _wait_for_work(self) -> None:
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
    elements: list[Element] = [
        (0x00000002, "UI", str(rsp.AffectedSOPClassUID)),
        (0x00000100, "US", 0x8001),
        (0x00000120, "US", int(rsp.MessageIDBeingRespondedTo or 0)),
        (0x00000800, "US", 0x0101),
        (0x00000900, "US", int(rsp.Status or 0)),
        (0x00001000, "UI", str(rsp.AffectedSOPInstanceUID)),
    ]
    if rsp.ErrorComment:
        elements.append((0x00000902, "LO", str(rsp.ErrorComment)[:64]))
    return command_set(elements)


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
        assoc.dimse = StreamingDIMSE(assoc, self.server.incoming_opener)
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
    ) -> None:
        self.incoming_opener = incoming_opener
        super().__init__(
            ae,
            address,
            ae_title,
            contexts,
            evt_handlers=evt_handlers,
            request_handler=StreamingRequestHandler,
        )
