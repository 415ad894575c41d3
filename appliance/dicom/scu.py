"""SCU operations toward registry nodes (Verification for now)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.server import configure_ae
from appliance.dicom.sop_classes import VERIFICATION
from appliance.errors import DicomNetworkError


@dataclass(frozen=True, slots=True)
class EchoResult:
    """Outcome of a C-ECHO."""

    status: int
    seconds: float


def echo(config: KioskConfig, node: NodeConfig) -> EchoResult:
    """C-ECHO `node` from our main AE title; raise DicomNetworkError when it cannot be done."""
    ae = configure_ae(config)
    ae.add_requested_context(VERIFICATION)
    started = time.monotonic()
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if assoc.is_rejected:
        raise DicomNetworkError(f"{node.ae_title} rejected the association")
    if not assoc.is_established:
        raise DicomNetworkError(
            f"no association with {node.ae_title} at {node.host}:{node.port} "
            "(unreachable, aborted or timed out)"
        )
    try:
        response = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    status = getattr(response, "Status", None)
    if status is None:
        raise DicomNetworkError(f"{node.ae_title} sent no C-ECHO response")
    return EchoResult(int(status), time.monotonic() - started)
