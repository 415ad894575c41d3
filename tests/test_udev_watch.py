"""Disc detection: udev property sets, the watcher's debouncing and life cycle, the udev rule.

The property sets in tests/data/udev/ are what `udevadm info --query=property` (and, for the
events, `udevadm monitor --udev --property`) prints for the drives and media named in their
description. This machine has no optical drive: the watcher is fed through `QueueEventSource`,
and the real pyudev source is only started and stopped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance.drives.device_names import drive_for_device
from appliance.drives.disc_events import media_type
from appliance.drives.udev_watch import (
    DiscEvent,
    DiscEventKind,
    DiscTracker,
    DiscWatcher,
    PyudevSource,
    QueueEventSource,
    disc_event,
    is_data_disc,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "udev"
RULES = REPO / "hw" / "60-kiosk-optical.rules"
SYSUSERS = REPO / "systemd" / "sysusers.d"


def _fixture(name: str) -> dict[str, str]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return dict(doc["properties"])


def _action(name: str) -> str:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return str(doc.get("action", "add"))


# -- the pure functions on recorded property sets ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dvd_data_iso9660", True),
        ("cdr_data_joliet", True),
        ("cd_mixed_mode", True),
        ("bd_udf", True),
        ("cdr_blank", False),
        ("cd_audio", False),
        ("tray_empty", False),
        ("usb_stick_partition", False),
    ],
)
def test_is_data_disc(name: str, expected: bool) -> None:
    assert is_data_disc(_fixture(name)) is expected


def test_every_fixture_is_used() -> None:
    used = {
        "dvd_data_iso9660",
        "cdr_data_joliet",
        "cd_mixed_mode",
        "bd_udf",
        "cdr_blank",
        "cd_audio",
        "tray_empty",
        "usb_stick_partition",
        "event_change_insert",
        "event_change_eject_request",
        "event_change_eject",
    }
    assert {p.stem for p in FIXTURES.glob("*.json")} == used


def test_a_blank_disc_is_no_data_disc_whatever_its_track_counts() -> None:
    props = _fixture("cdr_blank") | {"ID_CDROM_MEDIA_TRACK_COUNT_DATA": "1"}
    assert not is_data_disc(props)


def test_a_file_system_without_a_track_count_is_a_data_disc() -> None:
    props = _fixture("dvd_data_iso9660")
    del props["ID_CDROM_MEDIA_TRACK_COUNT_DATA"]
    assert is_data_disc(props)
    del props["ID_FS_TYPE"]
    assert not is_data_disc(props)


def test_the_disc_properties_of_a_partition_are_not_an_optical_drive() -> None:
    # A partition of an optical medium (hybrid ISO) is not the drive's whole-disk node.
    props = _fixture("dvd_data_iso9660") | {"DEVTYPE": "partition", "DEVNAME": "/dev/sr0p1"}
    assert not is_data_disc(props)
    assert disc_event("change", props) is None


@pytest.mark.parametrize(
    ("name", "media", "fs_type", "label", "medium_id"),
    [
        ("dvd_data_iso9660", "dvd", "iso9660", "CT_CHEST_20240119", "2024-01-19-07-27-30-00"),
        ("cdr_data_joliet", "cd-r", "iso9660", "DICOM_CD", "2023-11-02-14-05-12-00"),
        ("cd_mixed_mode", "cd", "iso9660", "ENHANCED", "2019-05-07-10-00-00-00"),
        ("bd_udf", "bd-r", "udf", "MR_HEAD", "5a2e6f1c00b3c4d5"),
    ],
)
def test_inserted_event_describes_the_disc(
    name: str, media: str, fs_type: str, label: str, medium_id: str
) -> None:
    props = _fixture(name)
    event = disc_event("add", props)
    assert event is not None
    assert event.kind is DiscEventKind.INSERTED
    assert event.device == props["DEVNAME"]
    assert event.stable_id == props["ID_SERIAL"]
    assert (event.media_type, event.fs_type, event.label, event.medium_id) == (
        media,
        fs_type,
        label,
        medium_id,
    )
    assert props["DEVLINKS"].split() == list(event.links)


def test_media_type_names() -> None:
    assert media_type({"ID_CDROM_MEDIA_DVD_PLUS_R_DL": "1"}) == "dvd+r-dl"
    assert media_type({"ID_CDROM_MEDIA_BD_RE": "1", "ID_CDROM_BD": "1"}) == "bd-re"
    # What the drive can do (ID_CDROM_DVD) is no medium.
    assert media_type(_fixture("tray_empty")) == ""


def test_stable_id_falls_back_to_the_bus_path() -> None:
    props = _fixture("dvd_data_iso9660")
    del props["ID_SERIAL"]
    event = disc_event("add", props)
    assert event is not None and event.stable_id == "pci-0000:00:17.0-ata-2"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("event_change_insert", DiscEventKind.INSERTED),
        ("event_change_eject_request", DiscEventKind.REMOVED),
        ("event_change_eject", DiscEventKind.REMOVED),
        ("cdr_blank", DiscEventKind.REMOVED),
        ("cd_audio", DiscEventKind.REMOVED),
        ("tray_empty", DiscEventKind.REMOVED),
    ],
)
def test_events_of_an_optical_drive(name: str, kind: DiscEventKind) -> None:
    event = disc_event(_action(name), _fixture(name))
    assert event is not None
    assert event.kind is kind
    assert event.device == "/dev/sr0"
    if kind is DiscEventKind.REMOVED:
        assert (event.label, event.fs_type, event.medium_id) == ("", "", "")


def test_a_removed_drive_is_a_removed_disc() -> None:
    event = disc_event("remove", _fixture("bd_udf"))
    assert event is not None and event.kind is DiscEventKind.REMOVED


def test_other_devices_give_no_event() -> None:
    assert disc_event("add", _fixture("usb_stick_partition")) is None
    assert disc_event("change", {"SUBSYSTEM": "net", "INTERFACE": "eth0"}) is None


# -- debouncing ---------------------------------------------------------------------------------


def _event(name: str, action: str | None = None) -> DiscEvent:
    event = disc_event(action or _action(name), _fixture(name))
    assert event is not None
    return event


def test_tracker_reports_one_insertion_and_one_removal() -> None:
    tracker = DiscTracker()
    inserted = _event("event_change_insert")
    assert tracker.update(inserted) == inserted
    assert tracker.update(_event("event_change_insert")) is None
    assert tracker.update(_event("cdr_data_joliet", "change")) is None
    assert tracker.discs() == {"/dev/sr0": inserted}
    removed = _event("event_change_eject_request")
    assert tracker.update(removed) == removed
    assert tracker.update(_event("event_change_eject")) is None
    assert tracker.discs() == {}
    assert tracker.update(_event("event_change_insert")) == inserted


def test_tracker_reports_another_medium_without_a_removal() -> None:
    tracker = DiscTracker()
    tracker.update(_event("cdr_data_joliet"))
    other = _event("dvd_data_iso9660", "change")
    assert tracker.update(other) == other


def test_tracker_takes_a_later_uuid_as_the_same_disc() -> None:
    # The first event may come before blkid could read the medium (no ID_FS_*).
    tracker = DiscTracker()
    early = _fixture("cdr_data_joliet")
    for key in [k for k in early if k.startswith("ID_FS_")]:
        del early[key]
    first = disc_event("change", early)
    assert first is not None and first.kind is DiscEventKind.INSERTED and first.medium_id == ""
    assert tracker.update(first) == first
    assert tracker.update(_event("event_change_insert")) is None


def test_tracker_ignores_removal_of_nothing() -> None:
    tracker = DiscTracker()
    assert tracker.update(_event("tray_empty")) is None
    assert tracker.update(_event("cd_audio")) is None


# -- the watcher, fed through the queue source ---------------------------------------------------


class Recorder:
    """A callback that records events; it raises on the first event when told to."""

    def __init__(self, *, fail_first: bool = False) -> None:
        self.events: list[DiscEvent] = []
        self.fail_first = fail_first
        self.threads: set[str] = set()

    def __call__(self, event: DiscEvent) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)
        if self.fail_first and len(self.events) == 1:
            raise RuntimeError("handler broke")

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.kind.value, e.device) for e in self.events]


def _watch(source: QueueEventSource, recorder: Recorder) -> DiscWatcher:
    watcher = DiscWatcher(recorder, source)
    watcher.start()
    assert source.wait_handled()
    return watcher


def test_watcher_coldplug_reports_discs_already_in_a_drive() -> None:
    source = QueueEventSource([_fixture("dvd_data_iso9660"), _fixture("bd_udf")])
    recorder = Recorder()
    watcher = _watch(source, recorder)
    try:
        assert recorder.kinds() == [("inserted", "/dev/sr0"), ("inserted", "/dev/sr1")]
        assert sorted(watcher.discs()) == ["/dev/sr0", "/dev/sr1"]
        assert recorder.threads == {"disc-watcher"}
    finally:
        watcher.stop()
    assert not watcher.running


def test_watcher_coldplug_skips_drives_without_a_data_disc() -> None:
    # sr0 holds a blank CD-R; the USB stick is no optical drive.
    present = [_fixture("cdr_blank"), _fixture("bd_udf"), _fixture("usb_stick_partition")]
    source = QueueEventSource(present)
    recorder = Recorder()
    watcher = _watch(source, recorder)
    try:
        assert recorder.kinds() == [("inserted", "/dev/sr1")]
    finally:
        watcher.stop()


def test_watcher_follows_insertions_and_debounces() -> None:
    source = QueueEventSource([_fixture("tray_empty")])
    recorder = Recorder()
    watcher = _watch(source, recorder)
    try:
        assert recorder.events == []
        for _ in range(3):  # udev sends several change events for one insertion
            source.put("change", _fixture("event_change_insert"))
        source.put("add", _fixture("usb_stick_partition"))
        assert source.wait_handled()
        assert recorder.kinds() == [("inserted", "/dev/sr0")]
        assert recorder.events[0].label == "DICOM_CD"

        source.put("change", _fixture("event_change_eject_request"))
        source.put("change", _fixture("event_change_eject"))
        assert source.wait_handled()
        assert recorder.kinds() == [("inserted", "/dev/sr0"), ("removed", "/dev/sr0")]
        assert watcher.discs() == {}

        source.put("change", _fixture("event_change_insert"))
        assert source.wait_handled()
        assert [kind for kind, _ in recorder.kinds()] == ["inserted", "removed", "inserted"]
    finally:
        watcher.stop()


def test_a_failing_callback_does_not_stop_the_watcher(caplog: pytest.LogCaptureFixture) -> None:
    source = QueueEventSource()
    recorder = Recorder(fail_first=True)
    watcher = _watch(source, recorder)
    try:
        source.put("change", _fixture("event_change_insert"))
        source.put("change", _fixture("bd_udf"))
        assert source.wait_handled()
        assert recorder.kinds() == [("inserted", "/dev/sr0"), ("inserted", "/dev/sr1")]
        assert watcher.running
        assert "handler of a inserted event failed" in caplog.text
    finally:
        watcher.stop()


def test_stop_interrupts_a_waiting_watcher() -> None:
    source = QueueEventSource()
    # A poll interval far beyond any test run: only the wake-up can end the wait.
    watcher = DiscWatcher(Recorder(), source, poll_seconds=3600)
    watcher.start()
    assert source.wait_handled()
    assert watcher.running
    watcher.stop(timeout=60)
    assert not watcher.running
    watcher.stop()  # idempotent


def test_a_watcher_starts_once() -> None:
    watcher = DiscWatcher(Recorder(), QueueEventSource())
    watcher.start()
    try:
        with pytest.raises(RuntimeError):
            watcher.start()
    finally:
        watcher.stop()


def _pyudev_source_or_skip() -> PyudevSource:
    source = PyudevSource()
    try:
        source.start()
    except Exception as exc:  # no netlink socket for udev here
        source.close()
        pytest.skip(f"udev monitor unavailable: {exc}")
    source.close()
    return PyudevSource()


def test_real_pyudev_source_starts_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    # This machine has no optical drive (and may have no udev database at all): coldplug finds
    # nothing, and stop must not wait for a udev event that never comes.
    source = _pyudev_source_or_skip()
    recorder = Recorder()
    watcher = DiscWatcher(recorder, source, poll_seconds=3600)
    watcher.start()
    assert watcher.running
    watcher.stop(timeout=60)
    assert not watcher.running
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    if not list(Path("/dev").glob("sr[0-9]*")):
        assert recorder.events == []
        assert watcher.discs() == {}


# -- configured drive names ---------------------------------------------------------------------


def test_drive_for_device_by_node_and_by_link() -> None:
    event = _event("dvd_data_iso9660")
    configured = {"burner": "stdio:/tmp/image.iso", "front": "/dev/sr1", "back": "/dev/sr0"}
    assert drive_for_device(configured, event.device, event.links) == "back"
    by_path = {"left": "/dev/disk/by-path/pci-0000:00:17.0-ata-2", "right": "/dev/sr7"}
    assert drive_for_device(by_path, event.device, event.links) == "left"
    kiosk_link = {"main": "/dev/kiosk/drive-pci-0000_00_17_0-ata-2"}
    assert drive_for_device(kiosk_link, event.device, event.links) == "main"
    assert drive_for_device({"other": "/dev/sr1", "none": ""}, event.device, event.links) is None


def test_drive_for_device_resolves_symlinks(tmp_path: Path) -> None:
    # Symlinks udev did not report (e.g. made by hand) are followed on the file system.
    node = tmp_path / "sr0"
    node.touch()
    link = tmp_path / "by-id" / "my-drive"
    link.parent.mkdir()
    link.symlink_to(node)
    assert drive_for_device({"main": str(link)}, str(node)) == "main"
    assert drive_for_device({"main": str(node)}, str(link)) == "main"
    assert drive_for_device({"main": str(tmp_path / "sr1")}, str(node)) is None


# -- the udev rule ------------------------------------------------------------------------------

_KEY = r"[A-Z_]+(\{[A-Za-z0-9_]+\})?"
_ASSIGNMENT = re.compile(
    rf'^\s*(?P<key>{_KEY})\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*$'
)


def _rule_lines() -> list[list[tuple[str, str, str]]]:
    """Every rule of the file as (key, operator, value) triples; AssertionError on bad syntax."""
    rules = []
    for number, line in enumerate(RULES.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line.rstrip().endswith("\\"), f"line {number}: no continuation lines"
        triples = []
        for part in line.split(", "):
            match = _ASSIGNMENT.match(part)
            assert match, f'line {number}: {part!r} is not KEY op "value"'
            triples.append((match["key"], match["op"], match["value"]))
        rules.append(triples)
    return rules


def _service_user() -> str:
    for conf in SYSUSERS.glob("*.conf"):
        for line in conf.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if fields and fields[0] == "u":
                return fields[1]
    raise AssertionError("no user in systemd/sysusers.d")


def test_rules_file_syntax() -> None:
    rules = _rule_lines()
    flat = [t for rule in rules for t in rule]
    gotos = {value for key, _, value in flat if key == "GOTO"}
    labels = {value for key, _, value in flat if key == "LABEL"}
    assert gotos and gotos <= labels
    for key, op, _ in flat:
        if key in ("GOTO", "LABEL", "GROUP", "MODE"):
            assert op == "=", key
    # The last rule is the label every GOTO jumps to: nothing runs for other devices.
    assert rules[-1] == [("LABEL", "=", "kiosk_optical_end")]
    assert ("ENV{ID_CDROM}", "!=", "1") in flat
    assert ("SUBSYSTEM", "!=", "block") in flat


def test_rules_give_the_service_group_and_stable_names() -> None:
    flat = [t for rule in _rule_lines() for t in rule]
    assert ("GROUP", "=", _service_user()) in flat
    assert ("MODE", "=", "0660") in flat
    symlinks = [value for key, op, value in flat if key == "SYMLINK" and op == "+="]
    assert symlinks == ["kiosk/drive-$env{ID_PATH_TAG}"]
    tags = {value for key, op, value in flat if key == "TAG" and op == "+="}
    assert "systemd" in tags


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed")
def test_udevadm_verify_accepts_the_rules() -> None:
    udevadm = shutil.which("udevadm")
    assert udevadm is not None
    help_text = subprocess.run(
        [udevadm, "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "verify" not in help_text:
        pytest.skip("udevadm verify needs systemd >= 254")
    result = subprocess.run(
        [udevadm, "verify", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="info"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
