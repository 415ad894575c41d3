"""Associations we request that react to events instead of polling, with Nagle off.

pynetdicom's DUL reactor sleeps a millisecond whenever it finds nothing to do, so every DIMSE
response we wait for arrives up to a millisecond late; over a study of hundreds of C-STOREs
that is a large share of the time. The listener already runs its associations on
`streaming.WakingDUL` (select() on the socket and a wake-up pipe); `WakingAE` gives the
associations it requests the same reactor, and sets TCP_NODELAY before connecting so that no
small PDU waits for the peer's delayed ACK. Like every AE of ours, it keeps DIMSE responses
for a paused sender (`scu_reactor`).

    ae = configure_ae(config, ae_class=WakingAE)
    assoc = ae.associate(host, port, ae_title=...)
"""

from __future__ import annotations

import contextlib
import socket
from ssl import SSLContext
from typing import cast

from pynetdicom.association import Association
from pynetdicom.transport import AddressInformation, AssociationSocket

from appliance.dicom.scu_reactor import ResponseKeepingAE
from appliance.dicom.streaming import WakingDUL


class WakingAE(ResponseKeepingAE):
    """An AE whose requested associations use `WakingDUL` and TCP_NODELAY."""

    def _create_socket(
        self,
        assoc: Association,
        address: AddressInformation,
        tls_args: tuple[SSLContext, str] | None,
    ) -> AssociationSocket:
        # pynetdicom calls this once per association, before its DUL thread starts: the last
        # moment at which the DUL object can still be specialised.
        sock = super()._create_socket(assoc, address, tls_args)
        raw = sock.socket
        if isinstance(raw, socket.socket):
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc.dul.__class__ = WakingDUL
        cast(WakingDUL, assoc.dul).install_wakeup()
        return sock
