"""Extension point of the listener: further SCP services (Q/R, storage commitment reports ...).

Each service contributes presentation contexts (with the roles it accepts) and event handlers;
`DicomServer` adds them to the one listening port. A service never replaces the storage
handlers: for an event both bind, pynetdicom calls the one bound last, so services must use
events the Storage SCP does not (C-FIND, C-MOVE, C-GET, N-EVENT-REPORT, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom.presentation import PresentationContext


@dataclass(slots=True)
class ScpService:
    """What one service adds to the listener."""

    name: str
    """For logs and the conformance statement."""

    contexts: list[PresentationContext] = field(default_factory=list)
    """Presentation contexts to accept (set scu_role/scp_role on them for role selection)."""

    handlers: list[tuple[Any, Callable[..., Any]]] = field(default_factory=list)
    """(pynetdicom event, handler) pairs."""
