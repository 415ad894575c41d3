"""Look up registry nodes named in job parameters."""

from __future__ import annotations

from appliance.config import KioskConfig, NodeConfig
from appliance.jobs.model import JobError


def resolve_node(config: KioskConfig, name: str) -> NodeConfig:
    """The registry node `name`; a (non-retryable) JobError naming the known ones otherwise."""
    node = config.nodes.get(name)
    if node is None:
        known = ", ".join(sorted(config.nodes)) or "none configured"
        raise JobError(f"unknown node {name!r} (known: {known})")
    return node
