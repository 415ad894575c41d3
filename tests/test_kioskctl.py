"""kioskctl against a real kioskd: studies, status, echo (human and --json output)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from tests.peers.data import make_instance
from tests.peers.dcmtk import echoscu, storescu
from tests.peers.kioskd import KioskdProcess
from tests.peers.lifecycle import start_without_probe, wait_runstate
from tests.peers.net import free_port
from tests.peers.sender import send_files

MakeKioskd = Callable[..., KioskdProcess]


def _json(daemon: KioskdProcess, *args: str) -> Any:
    result = daemon.kioskctl("--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _states(daemon: KioskdProcess) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{daemon.index_file}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT study_uid, state FROM studies"))
    finally:
        conn.close()


# -- studies ------------------------------------------------------------------------------------


def test_studies_on_an_empty_store(make_kioskd: MakeKioskd) -> None:
    daemon = make_kioskd(start=False)
    daemon.root.mkdir(parents=True, exist_ok=True)
    daemon.write_config()
    result = daemon.kioskctl("studies")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no studies"
    assert _json(daemon, "studies") == []


def test_studies_human_and_json(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    daemon = make_kioskd({"store": {"study_quiet_seconds": 3}}, start=False)
    start_without_probe(daemon)
    study_a, study_b = generate_uid(), generate_uid()
    ct_series, mr_series = generate_uid(), generate_uid()
    a_files = [
        make_instance(
            tmp_path,
            study_uid=study_a,
            series_uid=ct_series,
            instance_number=1,
            patient_name="CTL^ALPHA",
            patient_id="CTL-A",
        ),
        make_instance(
            tmp_path,
            study_uid=study_a,
            series_uid=ct_series,
            instance_number=2,
            patient_name="CTL^ALPHA",
            patient_id="CTL-A",
        ),
        make_instance(
            tmp_path,
            study_uid=study_a,
            series_uid=mr_series,
            instance_number=3,
            modality="MR",
            rows=128,
            columns=128,
            patient_name="CTL^ALPHA",
            patient_id="CTL-A",
        ),
    ]
    b_file = make_instance(
        tmp_path, study_uid=study_b, modality="CT", patient_name="CTL^BRAVO", patient_id="CTL-B"
    )
    assert set(send_files(daemon.port, a_files).values()) == {0x0000}
    time.sleep(0.05)  # B is received strictly later than A (newest first)
    result = storescu(daemon.port, [b_file])
    assert result.returncode == 0, result.stderr

    human = daemon.kioskctl("studies")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].split()[:6] == ["STATE", "DATE", "MOD", "SER", "INST", "SIZE"]
    assert len(lines) == 3
    assert study_b in lines[1]
    assert study_a in lines[2]
    row_a = lines[2].split()
    assert row_a[0] == "receiving"
    assert row_a[1] == "20240119"
    assert set(row_a[2].split(",")) == {"CT", "MR"}
    assert row_a[3:5] == ["2", "3"]
    assert "CTL^ALPHA" in lines[2]
    row_b = lines[1].split()
    assert row_b[0] == "receiving"
    assert (row_b[2], row_b[3], row_b[4]) == ("CT", "1", "1")
    assert "CTL^BRAVO" in lines[1]

    studies = _json(daemon, "studies")
    assert [s["study_uid"] for s in studies] == [study_b, study_a]
    by_uid = {s["study_uid"]: s for s in studies}
    a = by_uid[study_a]
    assert (a["series_count"], a["instance_count"]) == (2, 3)
    assert set(a["modalities"].split(",")) == {"CT", "MR"}
    assert a["state"] == "receiving"
    assert a["patient_name"] == "CTL^ALPHA"
    assert a["patient_id"] == "CTL-A"
    assert a["last_calling_ae"] == "TESTSCU"
    on_disk = sum(p.stat().st_size for p in (daemon.store_dir / study_a).glob("*/*.dcm"))
    assert a["bytes"] == on_disk
    b = by_uid[study_b]
    assert (b["series_count"], b["instance_count"], b["modalities"]) == (1, 1, "CT")
    assert b["last_calling_ae"] == "STORESCU"
    assert b["completed_at"] is None

    # After the quiet period both are complete, and kioskctl says so.
    _wait_for(lambda: set(_states(daemon).values()) == {"complete"}, 10, "studies to complete")
    studies = _json(daemon, "studies")
    assert {s["state"] for s in studies} == {"complete"}
    assert all(s["completed_at"] for s in studies)
    human = daemon.kioskctl("studies")
    assert [line.split()[0] for line in human.stdout.splitlines()[1:]] == ["complete"] * 2


# -- status -------------------------------------------------------------------------------------


def test_status_running_then_stopped(make_kioskd: MakeKioskd, tmp_path: Path) -> None:
    daemon = make_kioskd(start=False)
    start_without_probe(daemon)
    assert daemon.proc is not None
    human = daemon.kioskctl("status")
    assert human.returncode == 0, human.stderr
    assert f"kioskd: running (pid {daemon.proc.pid}" in human.stdout
    assert f"listening: port {daemon.port} as KIOSK" in human.stdout
    assert "associations: 0 open of 100, 0 accepted" in human.stdout
    assert "store: 0 studies, 0 instances" in human.stdout

    files = [make_instance(tmp_path, instance_number=i) for i in range(3)]
    assert set(send_files(daemon.port, files[:2]).values()) == {0x0000}
    assert set(send_files(daemon.port, files[2:]).values()) == {0x0000}
    assert echoscu(daemon.port).returncode == 0
    wait_runstate(daemon, lambda s: s["reception"]["associations_total"] == 3, timeout=5)

    status = _json(daemon, "status")
    running = status["daemon"]
    assert running["pid"] == daemon.proc.pid
    assert running["state"] == "running"
    assert running["port"] == daemon.port
    assert running["ae_titles"] == ["KIOSK"]
    assert running["active_associations"] == 0
    assert running["max_associations"] == 100
    assert running["reception"]["associations_total"] == 3
    assert running["reception"]["stored"] == 3
    assert running["reception"]["failed"] == 0
    assert running["reception"]["bytes"] == sum(p.stat().st_size for p in daemon.stored_files())
    assert status["store"]["instances"] == 3
    assert status["store"]["studies"] == 3
    assert status["store"]["reserve_bytes"] == 0
    assert status["store"]["free_bytes"] > 0
    human = daemon.kioskctl("status")
    assert "associations: 0 open of 100, 3 accepted, 0 rejected since start" in human.stdout
    assert "received: 3 instances" in human.stdout
    assert "store: 3 studies, 3 instances" in human.stdout

    assert daemon.stop(timeout=20) == 0
    human = daemon.kioskctl("status")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0] == "kioskd: not running"
    assert "store: 3 studies, 3 instances" in human.stdout
    status = _json(daemon, "status")
    assert status["daemon"] is None
    assert status["store"]["instances"] == 3


def test_status_after_kill9_is_not_running(make_kioskd: MakeKioskd) -> None:
    daemon = make_kioskd(start=False)
    start_without_probe(daemon)
    assert _json(daemon, "status")["daemon"] is not None
    daemon.kill9()
    # The run-state file is left behind by the crash; its pid is dead.
    assert (daemon.var / "run" / "kioskd.json").exists()
    human = daemon.kioskctl("status")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0] == "kioskd: not running"
    assert _json(daemon, "status")["daemon"] is None


# -- echo ---------------------------------------------------------------------------------------


def _self_registry(port: int) -> dict[str, Any]:
    return {
        "nodes": {
            "self": {"ae_title": "KIOSK", "host": "127.0.0.1", "port": port},
            "wrongae": {"ae_title": "NOTKIOSK", "host": "127.0.0.1", "port": port},
            "gone": {"ae_title": "GONE", "host": "127.0.0.1", "port": free_port()},
        }
    }


def test_echo_self(make_kioskd: MakeKioskd) -> None:
    port = free_port()
    daemon = make_kioskd(_self_registry(port), start=False)
    daemon.port = port
    start_without_probe(daemon)

    human = daemon.kioskctl("echo", "self")
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("echo self (KIOSK): OK in ")
    assert human.stdout.rstrip().endswith(" ms")

    result = _json(daemon, "echo", "self")
    assert result["ok"] is True
    assert result["status"] == 0
    assert (result["node"], result["ae_title"]) == ("self", "KIOSK")
    assert 0 < result["seconds"] < 10
    # Our own main AE title is the Calling AE Title.
    assert "KIOSK -> KIOSK" in daemon.log()


def test_echo_unknown_node(make_kioskd: MakeKioskd) -> None:
    port = free_port()
    daemon = make_kioskd(_self_registry(port), start=False)
    daemon.port = port
    start_without_probe(daemon)
    for args in (("echo", "nope"), ("--json", "echo", "nope")):
        result = daemon.kioskctl(*args)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.strip() == (
            "kioskctl: unknown node 'nope' (known: gone, self, wrongae)"
        )


def test_echo_unreachable_or_refusing_node(make_kioskd: MakeKioskd) -> None:
    port = free_port()
    daemon = make_kioskd(_self_registry(port), start=False)
    daemon.port = port
    start_without_probe(daemon)
    gone_port = daemon.settings["nodes"]["gone"]["port"]

    started = time.monotonic()
    result = daemon.kioskctl("echo", "gone")
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("kioskctl: ")
    assert "GONE" in line
    assert f"127.0.0.1:{gone_port}" in line
    assert "Traceback" not in result.stderr

    result = daemon.kioskctl("echo", "wrongae")
    assert result.returncode == 1
    assert "NOTKIOSK" in result.stderr
    assert "rejected" in result.stderr
    assert "Traceback" not in result.stderr
