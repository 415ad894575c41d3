"""A third-party server (DCMTK, Orthanc) run as a peer on 127.0.0.1 for one test.

`PeerProcess` is the common life cycle: pick a free port, write the config into a work dir,
start the server in its own session with `TCP_NODELAY=1`, wait until it is ready, and stop it
with SIGTERM to its whole process group (dcmqrscp forks one child per association), escalating
to SIGKILL. Subclasses say how to configure and start their server. Use as a context manager:

    with Storescp(tmp_path / "scp") as scp:
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.peers.dcmtk import dcmtk_env
from tests.peers.net import free_port, wait_for_port


class PeerProcess:
    """A server process with a work dir, a DICOM port and a log file."""

    name = "peer"
    """Used for the log file name and in error messages."""

    def __init__(self, workdir: Path, *, ae_title: str = "PEER") -> None:
        self.workdir = workdir
        self.ae_title = ae_title
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """stdout and stderr of the server."""
        return self.workdir / f"{self.name}.log"

    # -- what subclasses provide ---------------------------------------------------------------

    def prepare(self) -> None:
        """Create directories and config files (the port is chosen already)."""

    def argv(self) -> list[str]:
        """The command line that starts the server."""
        raise NotImplementedError

    def ready(self) -> bool:
        """True once the server serves (default: its DICOM port accepts TCP connections)."""
        try:
            wait_for_port(self.port, timeout=0.2)
        except TimeoutError:
            return False
        return True

    # -- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        """Start the server and wait until it is ready; returns self."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.prepare()
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dcmtk_env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} at start:\n{self.log()}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after `timeout` (idempotent)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Children (dcmqrscp's per-association processes) may outlive the leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log(self) -> str:
        """Everything the server wrote so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def __enter__(self) -> Self:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
