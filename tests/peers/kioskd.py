"""Run the real kioskd as a subprocess with its own var directory and config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tests.peers.net import free_port, wait_for_port


@dataclass
class KioskdProcess:
    """A kioskd under test. `start()` / `stop()` / `kill9()` may be repeated (same var dir)."""

    root: Path
    settings: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    ae_title: str = "KIOSK"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def var(self) -> Path:
        """The daemon's var directory."""
        return self.root / "var"

    @property
    def store_dir(self) -> Path:
        """Where instances are stored."""
        return self.var / "store"

    @property
    def index_file(self) -> Path:
        """The SQLite index."""
        return self.var / "kiosk.sqlite"

    @property
    def config_file(self) -> Path:
        """The TOML file passed with --config."""
        return self.root / "kiosk.toml"

    @property
    def log_file(self) -> Path:
        """stderr of every start, appended."""
        return self.root / "kioskd.log"

    def env(self) -> dict[str, str]:
        """Environment of the daemon and of kioskctl: no host /etc/kiosk, no systemd."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KIOSK") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
        }
        env["KIOSK_ETC_DIR"] = str(self.root / "etc")
        env["TCP_NODELAY"] = "1"
        return env

    def write_config(self) -> None:
        """Write the config file from `settings`, forcing our port and var dir."""
        if not self.port:
            self.port = free_port()
        data: dict[str, Any] = json.loads(json.dumps(self.settings))
        data.setdefault("dicom", {})
        data["dicom"].setdefault("ae_title", self.ae_title)
        data["dicom"]["port"] = self.port
        data["dicom"].setdefault("bind", "127.0.0.1")
        data.setdefault("paths", {})["var"] = str(self.var)
        data.setdefault("store", {}).setdefault("free_space_reserve_mb", 0)
        self.ae_title = data["dicom"]["ae_title"]
        self.config_file.write_text(tomli_w.dumps(data))

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> None:
        """Start kioskd and wait until it accepts associations."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        env = self.env()
        env.update(extra_env or {})
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.apps.kioskd", "--config", str(self.config_file)],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the listening port (and fail early if the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"kioskd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                wait_for_port(self.port, timeout=0.2)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"kioskd not ready:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        """SIGKILL the daemon (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kioskctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run kioskctl with this daemon's config."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance.apps.kioskctl",
                "--config",
                str(self.config_file),
                *args,
            ],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
            check=False,
        )

    def stored_files(self) -> list[Path]:
        """Every instance file in the store (excluding partial files)."""
        return sorted(self.store_dir.glob("*/*/*.dcm"))
