"""The systemd files under systemd/ parse and say what the daemon relies on."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from appliance.config.schema import DicomConfig

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
UNITS = ("kioskd.service", "kiosk-tui.service")
VAR = "/var/lib/kiosk"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, comment_prefixes=("#", ";"), delimiters=("=",)
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"), source=name)
    return parser


def _seconds(value: str) -> float:
    """A systemd time span of the simple forms used here: "45", "45s", "5min"."""
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value.strip())
    assert match, f"unsupported time span {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def _data_lines(name: str) -> list[list[str]]:
    text = (SYSTEMD / name).read_text(encoding="utf-8")
    return [line.split() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _console_scripts() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(pyproject["project"]["scripts"])


@pytest.mark.parametrize("name", UNITS)
def test_unit_parses_and_runs_a_console_script_as_kiosk(name: str) -> None:
    unit = _unit(name)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    executable = service["ExecStart"].split()[0]
    assert executable.startswith("/usr/bin/")
    assert executable.removeprefix("/usr/bin/") in _console_scripts()
    assert service["User"] == service["Group"] == "kiosk"
    assert f"KIOSK__PATHS__VAR={VAR}" in service["Environment"].split()
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == VAR


def test_kioskd_is_a_notify_service_with_a_watchdog() -> None:
    service = _unit("kioskd.service")["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert _seconds(service["WatchdogSec"]) == 30
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "kiosk"
    assert "CAP_NET_BIND_SERVICE" in service["AmbientCapabilities"].split()
    for key in ("PrivateTmp", "NoNewPrivileges", "ProtectHome"):
        assert service[key] == "yes", key


def test_kioskd_stop_timeout_covers_the_drain() -> None:
    """systemd must not SIGKILL kioskd while it still drains associations."""
    service = _unit("kioskd.service")["Service"]
    drain = DicomConfig().drain_seconds
    assert _seconds(service["TimeoutStopSec"]) >= drain + 10


def test_tui_runs_on_tty1() -> None:
    unit = _unit("kiosk-tui.service")
    service = unit["Service"]
    assert service["TTYPath"] == "/dev/tty1"
    assert service["StandardInput"] == "tty"
    assert service["Restart"] == "always"
    assert "getty@tty1.service" in unit["Unit"]["Conflicts"].split()


def test_sysusers_creates_kiosk_in_cdrom() -> None:
    lines = _data_lines("sysusers.d/kiosk.conf")
    assert ["u", "kiosk"] in [line[:2] for line in lines]
    assert ["m", "kiosk", "cdrom"] in lines


def test_tmpfiles_creates_state_and_config_directories() -> None:
    entries = {line[1]: line for line in _data_lines("tmpfiles.d/kiosk.conf")}
    assert entries[VAR][:5] == ["d", VAR, "0750", "kiosk", "kiosk"]
    assert entries["/etc/kiosk/conf.d"][0] == "d"


def test_preset_enables_kioskd() -> None:
    assert ["enable", "kioskd.service"] in _data_lines("kiosk.preset")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is absent")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own check of every directive.

    ExecStart is swapped for `true`: /usr/bin/kioskd is not installed on a development machine.
    """
    true = shutil.which("true")
    assert true is not None
    copies = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        copy = tmp_path / name
        copy.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={true}", text), encoding="utf-8")
        copies.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Unknown or misspelt keys are only warnings: they must not appear either.
    assert result.stderr.strip() == "", result.stderr
