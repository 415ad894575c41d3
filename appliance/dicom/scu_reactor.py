"""Associations we request must not lose a DIMSE response to their own reactor thread.

A pynetdicom requestor runs a reactor thread beside the thread that sends (`send_c_find`,
`send_c_store`, our `store_wire`). The sender pauses it by clearing `_reactor_checkpoint` and
then trusts the reactor's `_is_paused` flag, which is still True for a moment after a previous
pause was lifted (the reactor has passed the checkpoint but not yet reset the flag). When the
peer answers within that moment, the reactor takes the response off the DIMSE queue, finds it
is no request ("Received unexpected C-STORE service message") and drops it; the sender then
waits the whole DIMSE timeout for an answer that came, and the job fails or retries. It takes a
busy machine and a fast peer, but both are what a kiosk has (found by a test with 100
simultaneous associations on two loaded cores).

`ResponseKeepingAE` (what `server.configure_ae` builds) gives every association it requests
a reactor that puts such a response back while a sender has paused it: the reactor then stops
at the cleared checkpoint, so the response it put back is the one the sender reads next.
"""

from __future__ import annotations

from ssl import SSLContext
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AddressInformation, AssociationSocket


class ResponseKeepingAssociation(Association):
    """A requestor association whose reactor hands DIMSE responses back to a paused sender."""

    def _serve_request(self, msg: Any, context_id: int) -> None:
        if msg.is_valid_response and not self._reactor_checkpoint.is_set():
            # A sender is waiting for this (see the module docstring).
            self.dimse.msg_queue.put((context_id, msg))
            return
        super()._serve_request(msg, context_id)


class ResponseKeepingAE(AE):
    """An AE whose requested associations get the response-keeping reactor."""

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[SSLContext, str] | None,
    ) -> AssociationSocket:
        # pynetdicom calls this once per requested association, before its threads start.
        keep_responses(assoc)
        return super()._create_socket(assoc, address, tls_args)


def keep_responses(assoc: Association) -> None:
    """Give `assoc` (a requestor, before any DIMSE exchange) the response-keeping reactor."""
    if type(assoc) is Association:
        assoc.__class__ = ResponseKeepingAssociation
