"""DCMTK command-line tools as peers (always by absolute path: pynetdicom shadows the names)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DCMTK_BIN = Path("/usr/bin")


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK tools: TCP_NODELAY=1 or every response waits for a delayed ACK."""
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def run_tool(tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(DCMTK_BIN / tool), *args],
        capture_output=True,
        text=True,
        env=dcmtk_env(),
        timeout=timeout,
        check=False,
    )


def storescu(
    port: int,
    files: list[Path],
    *,
    called: str = "KIOSK",
    calling: str = "STORESCU",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK storescu over one association.

    `-R` proposes only the SOP classes of the files (else storescu runs out of its 128 contexts
    and silently leaves some classes out).
    """
    return run_tool(
        "storescu",
        "-R",
        "-aec",
        called,
        "-aet",
        calling,
        *extra,
        "127.0.0.1",
        str(port),
        *[str(f) for f in files],
    )


def echoscu(
    port: int, *, called: str = "KIOSK", calling: str = "ECHOSCU"
) -> subprocess.CompletedProcess[str]:
    """C-ECHO with DCMTK echoscu."""
    return run_tool("echoscu", "-aec", called, "-aet", calling, "127.0.0.1", str(port), timeout=60)
