"""Shared fixtures: a real kioskd per test, sample data, and peer tools."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.kioskd import KioskdProcess


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: run scripts/test (it installs the peers)")


@pytest.fixture
def make_kioskd(tmp_path: Path) -> Iterator[Callable[..., KioskdProcess]]:
    """Factory: `make_kioskd(settings, start=True)` -> a running kioskd in its own directory."""
    _require("/usr/bin/storescu")
    made: list[KioskdProcess] = []

    def factory(
        settings: dict[str, Any] | None = None, *, start: bool = True, name: str = "kioskd"
    ) -> KioskdProcess:
        daemon = KioskdProcess(tmp_path / name, settings or {})
        made.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield factory
    for daemon in made:
        daemon.kill9()


@pytest.fixture
def kioskd(make_kioskd: Callable[..., KioskdProcess]) -> KioskdProcess:
    """A running kioskd on default settings (AE KIOSK, reserve 0, quiet period 30 s)."""
    return make_kioskd()
