"""Open an association to a registry node as SCU, with errors that say whether to try again."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pynetdicom.association import Association

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.server import configure_ae
from appliance.errors import DicomNetworkError

NATIVE_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
"""Explicit then Implicit VR Little Endian: what we propose for queries and N-services."""


class AssociationFailedError(DicomNetworkError):
    """No association could be made; `transient` when trying later may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class AssociationLostError(DicomNetworkError):
    """The association ended (abort, timeout, closed socket) before the operation finished."""


def set_nodelay(assoc: Association) -> None:
    """Disable Nagle on the association's socket: each DIMSE response is one small write, and
    without this the peer's delayed ACK adds ~40 ms to every exchange."""
    provider = getattr(assoc.dul, "socket", None)
    sock = getattr(provider, "socket", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _describe(node: NodeConfig) -> str:
    return f"{node.ae_title} at {node.host}:{node.port}"


@contextmanager
def associated(
    config: KioskConfig,
    node: NodeConfig,
    contexts: Sequence[tuple[str, list[str]]],
    *,
    evt_handlers: list[Any] | None = None,
    calling_ae: str | None = None,
) -> Iterator[Association]:
    """An established association with `node` proposing `contexts`, released on exit.

    Raises AssociationFailedError (rejected, unreachable, aborted during negotiation).
    """
    ae = configure_ae(config)
    if calling_ae:
        ae.ae_title = calling_ae
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, transfer_syntaxes)
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        evt_handlers=evt_handlers,
    )
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        result = getattr(primitive, "result", None)
        raise AssociationFailedError(
            f"{_describe(node)} rejected the association"
            + (" (transient)" if result == 0x02 else " (permanent)"),
            transient=result == 0x02,
        )
    if not assoc.is_established:
        raise AssociationFailedError(
            f"no association with {_describe(node)} (unreachable, aborted or timed out)",
            transient=True,
        )
    set_nodelay(assoc)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def accepted_context_id(assoc: Association, abstract_syntax: str) -> int | None:
    """The ID of the accepted presentation context of a SOP class, or None."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == abstract_syntax and cx.context_id is not None:
            return int(cx.context_id)
    return None
