"""Disc import end to end: a real kioskd, real peers (Orthanc, DCMTK storescp), ISO images built
with DCMTK `dcmmkdir` and `xorriso`, Secure DICOM Files made by `openssl cms`.

- the udev path: disc events appended to the `[importer] udev_replay` file become import jobs
  (an auto-import rule forwards to Orthanc with Storage Commitment; a disc no rule covers waits
  for the clerk with its summary; a restart reports the disc still in the drive again, and it
  gets no second job);
- a hostile disc: the good instances arrive, the rest is skipped with reasons, nothing is
  written outside the import workspace;
- encrypted discs: no password, a wrong one, the right one from `--password-stdin`; the
  password is nowhere on disk or in the log;
- kill -9 while an import sends, restart: every instance at the destination exactly once;
- a destination without Storage Commitment, with `commitment_required` on and off;
- no patient data in kioskd's log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from appliance.drives.udev_replay import FileEventSource
from tests.peers import import_discs as discs
from tests.peers.data import dataset_bytes, make_instance
from tests.peers.kioskd import KioskdProcess
from tests.peers.net import free_port
from tests.peers.orthanc import Orthanc
from tests.peers.store_view import index_rows, wait_until
from tests.peers.storescp import Storescp
from tests.test_importer_reader import hostile  # noqa: F401 - the module-scoped hostile disc
from tests.test_send_commit import _stopping

MakeKioskd = Callable[..., KioskdProcess]
UDEV = Path(__file__).parent / "data" / "udev"
FRONT_DRIVE_LINK = "/dev/kiosk/drive-pci-0000_00_17_0-ata-2"
"""A link of the drive in the recorded udev property sets (DEVLINKS)."""
OTHER_DRIVE_LINK = "/dev/kiosk/drive-pci-0000_00_17_0-ata-3"
WAIT = "90"
"""--timeout of `kioskctl ... --wait` (a bound, not a measurement)."""


@dataclass(frozen=True)
class Disc:
    """An ISO image and what its instances are copies of."""

    image: Path
    originals: dict[str, Path]
    """SOP Instance UID -> the plaintext file the disc's instance was made from."""


# -- discs -----------------------------------------------------------------------------------------


def _originals(fileset: discs.FileSet) -> dict[str, Path]:
    return {discs.sop_uid(source): source for source in fileset.files.values()}


@pytest.fixture(scope="module")
def clean_discs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Disc, Disc]:
    """Two clean discs of the ten samples (three patients), told apart by their volume ids."""
    base = tmp_path_factory.mktemp("clean")
    fileset = discs.layout(base / "disc")
    discs.run_dcmmkdir(fileset.root)
    originals = _originals(fileset)
    first = discs.make_iso(fileset.root, base / "disc-a.iso", volid="DISC_A")
    second = discs.make_iso(fileset.root, base / "disc-b.iso", volid="DISC_B")
    return Disc(first, originals), Disc(second, originals)


@pytest.fixture(scope="module")
def secure_discs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Disc, Disc]:
    """Secure DICOM discs (every file, DICOMDIR included, encrypted by `openssl cms` with
    discs.PASSWORD): one indexed by dcmmkdir before encryption, one without DICOMDIR."""
    base = tmp_path_factory.mktemp("secure")
    fileset = discs.layout(base / "plain")
    discs.run_dcmmkdir(fileset.root)
    with_dir = base / "with-dicomdir"
    without_dir = base / "without-dicomdir"
    for folder in (with_dir, without_dir):
        (folder / "DICOM").mkdir(parents=True)
    for disc_path in fileset.files:
        discs.openssl_encrypt(fileset.root / disc_path, with_dir / disc_path)
        shutil.copyfile(with_dir / disc_path, without_dir / disc_path)
    discs.openssl_encrypt(fileset.dicomdir, with_dir / "DICOMDIR")
    originals = _originals(fileset)
    return (
        Disc(discs.make_iso(with_dir, base / "secure.iso", volid="SECURE"), originals),
        Disc(discs.make_iso(without_dir, base / "secure-nodir.iso", volid="SECURE2"), originals),
    )


@pytest.fixture(scope="module")
def big_disc(tmp_path_factory: pytest.TempPathFactory) -> Disc:
    """150 small CT instances of one study (no DICOMDIR)."""
    base = tmp_path_factory.mktemp("big")
    folder = base / "disc" / "DICOM"
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    originals: dict[str, Path] = {}
    for number in range(1, 151):
        sop = generate_uid()
        made = make_instance(
            base,
            patient_name="BULK^PATIENT",
            patient_id="BULK0150",
            birth_date="19510317",
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
            instance_number=number,
            rows=16,
            columns=16,
        )
        target = folder / f"IM{number:06d}"
        made.rename(target)
        originals[sop] = target
    return Disc(discs.make_iso(base / "disc", base / "big.iso", volid="BULK"), originals)


# -- peers and the daemon --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for the module (its start and stop take seconds); `_fresh` empties it."""
    with _stopping(Orthanc(tmp_path_factory.mktemp("orthanc")).start()) as peer:
        yield peer


def _fresh(orthanc: Orthanc, kiosk_port: int) -> Orthanc:
    """Orthanc without instances, sending commitment reports to the kiosk on `kiosk_port`."""
    for patient in orthanc.get("/patients"):
        orthanc.delete(f"/patients/{patient}")
    orthanc.request(
        "PUT",
        "/modalities/kiosk",
        json.dumps({"AET": "KIOSK", "Host": "127.0.0.1", "Port": kiosk_port}).encode(),
    )
    assert orthanc.instance_count() == 0
    return orthanc


def _daemon(
    make_kioskd: MakeKioskd,
    nodes: dict[str, tuple[str, int]],
    importer: dict[str, Any] | None = None,
    **sections: Any,
) -> KioskdProcess:
    settings: dict[str, Any] = {
        "nodes": {
            name: {"ae_title": ae, "host": "127.0.0.1", "port": port}
            for name, (ae, port) in nodes.items()
        },
        "retrieve": {"retry_delay_seconds": 0.2},
        "importer": {"udev": False, **(importer or {})},
        **sections,
    }
    daemon = make_kioskd(settings, start=False)
    daemon.port = free_port()
    return daemon


def _kioskctl(
    daemon: KioskdProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kioskctl --json with this daemon's config, `stdin` as its standard input."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.apps.kioskctl",
            "--config",
            str(daemon.config_file),
            "--json",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        env=daemon.env(),
        timeout=180,
        check=False,
    )


def _job(daemon: KioskdProcess, *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = _kioskctl(daemon, *args, stdin=stdin)
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


def _import(daemon: KioskdProcess, image: Path, *args: str, stdin: str | None = None) -> Any:
    return _job(daemon, "import", str(image), *args, "--wait", "--timeout", WAIT, stdin=stdin)


def _import_jobs(daemon: KioskdProcess) -> list[dict[str, Any]]:
    rows = index_rows(daemon, "SELECT * FROM jobs WHERE kind = 'import' ORDER BY id")
    for row in rows:
        for key in ("params", "progress", "result"):
            row[key] = json.loads(row[key]) if row[key] else {}
    return rows


def _listing(root: Path) -> set[str]:
    """Every path under `root`, links not followed."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def _patient_data(originals: dict[str, Path]) -> set[str]:
    """Names (as written and with spaces for ^), IDs and birth dates of the discs' patients."""
    values = set()
    for path in originals.values():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.get("PatientName", ""))
        values |= {name, name.replace("^", " "), str(ds.get("PatientID", ""))}
        values.add(str(ds.get("PatientBirthDate", "")))
    return {v for v in values if len(v.strip()) >= 3}


def _assert_no_patient_data(daemon: KioskdProcess, *disc_set: Disc) -> None:
    log = daemon.log()
    assert "job" in log  # the daemon did log its work
    for disc in disc_set:
        for value in _patient_data(disc.originals):
            assert value not in log, f"patient data {value!r} in kioskd's log"


def _udev_line(recording: str, **changes: str) -> str:
    """A recorded udev property set as an event line of the replay file, with `changes`."""
    recorded = json.loads((UDEV / recording).read_text())
    properties = {**recorded["properties"], **changes}
    return json.dumps({"action": recorded.get("action", "change"), "properties": properties})


def _append(path: Path, line: str) -> None:
    with path.open("a") as fh:
        fh.write(line + "\n")


# -- 1. from a disc event to instances committed in Orthanc ----------------------------------------


def test_disc_event_to_committed_in_orthanc(
    make_kioskd: MakeKioskd, orthanc: Orthanc, clean_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    disc_a, disc_b = clean_discs
    events = tmp_path / "disc-events.jsonl"
    daemon = _daemon(
        make_kioskd,
        {"orthanc": (orthanc.ae_title, orthanc.port)},
        importer={
            "udev": True,
            "udev_replay": str(events),
            "auto_import": [{"drive": "front", "destination": "orthanc", "reconcile": "keep"}],
        },
        drives={"front": {"kind": "fake", "device": FRONT_DRIVE_LINK}},
    )
    _fresh(orthanc, daemon.port)
    daemon.start()

    # A disc in the front drive: the rule imports it with the disc's identity.
    _append(events, _udev_line("event_change_insert.json", DEVNAME=str(disc_a.image)))
    assert wait_until(lambda: len(_import_jobs(daemon)) == 1, timeout=30), daemon.log()
    [first] = _import_jobs(daemon)
    assert first["params"]["source"] == str(disc_a.image)
    assert first["params"]["drive"] == "front"
    assert first["params"]["decided_by"] == "rule importer.auto_import.0"
    job = _job(daemon, "job", str(first["id"]), "--wait", "--timeout", WAIT)
    assert job["state"] == "succeeded", job
    assert orthanc.instance_uids() == set(disc_a.originals)
    commitment = job["result"]["commitment"]
    assert commitment["state"] == "committed", commitment
    assert commitment["committed"] == len(disc_a.originals) == 10
    assert job["result"]["counts"]["sent"] == job["result"]["counts"]["committed"] == 10
    decisions = job["result"]["reconciliation"]["patients"]
    assert {d["decision"]["action"] for d in decisions.values()} == {"keep"}

    # Another disc, in a drive no rule covers: read, then waiting for the clerk.
    line = _udev_line("dvd_data_iso9660.json", DEVNAME=str(disc_b.image), DEVLINKS=OTHER_DRIVE_LINK)
    _append(events, line)
    assert wait_until(lambda: len(_import_jobs(daemon)) == 2, timeout=30), daemon.log()
    second_id = _import_jobs(daemon)[1]["id"]
    waiting = _job(daemon, "job", str(second_id), "--wait", "--timeout", WAIT)
    assert waiting["state"] == "awaiting_reconciliation", waiting
    assert waiting["params"]["reconcile"] is None and waiting["params"]["drive"] is None
    summary = waiting["result"]["summary"]
    assert summary["totals"]["patients"] == 3
    assert summary["totals"]["instances"] == 10
    assert summary["totals"]["studies"] == len(
        {pydicom.dcmread(p).StudyInstanceUID for p in disc_b.originals.values()}
    )
    assert {p["id"] for p in summary["patients"]} == {"1CT1", "4MR1", "ID1"}
    assert summary["source"]["label"] == "DISC_B"
    patients = waiting["result"]["reconciliation"]["patients"]
    assert all("question" in entry for entry in patients.values())
    assert orthanc.instance_count() == 10  # nothing of the second disc was sent

    # The first disc was taken out; a restart reports the second again (still in its drive):
    # its open job is found, no second job is made, and the first disc is not imported again.
    _append(events, _udev_line("event_change_eject.json", DEVNAME=str(disc_a.image)))
    daemon.stop()
    daemon.start()
    answered = f"already has import job {second_id}"
    assert wait_until(lambda: answered in daemon.log(), timeout=30), daemon.log()
    jobs = _import_jobs(daemon)
    assert [(j["id"], j["state"]) for j in jobs] == [
        (first["id"], "succeeded"),
        (second_id, "awaiting_reconciliation"),
    ]
    _assert_no_patient_data(daemon, disc_a)


def test_replay_file_history_is_folded_like_coldplug(tmp_path: Path) -> None:
    """The lines in the file at start say which drives hold a disc now; later lines are news."""
    events = tmp_path / "events.jsonl"
    _append(events, _udev_line("event_change_insert.json", DEVNAME="/tmp/a.iso"))
    _append(events, _udev_line("cdr_data_joliet.json", DEVNAME="/tmp/b.iso"))
    _append(events, "not an event")
    _append(events, _udev_line("event_change_eject.json", DEVNAME="/tmp/a.iso"))
    source = FileEventSource(events)
    source.start()
    assert [p["DEVNAME"] for p in source.coldplug()] == ["/tmp/b.iso"]
    assert source.next_event(0) is None
    _append(events, _udev_line("dvd_data_iso9660.json", DEVNAME="/tmp/c.iso"))
    news = source.next_event(5)
    assert news is not None and news[1]["DEVNAME"] == "/tmp/c.iso"
    source.close()


# -- 2. a hostile disc -----------------------------------------------------------------------------


def _hostile_good_instances(built: dict[str, Any]) -> set[str]:
    """The SOP Instance UIDs of the hostile disc a reader must import (see the reader tests)."""
    fileset: discs.FileSet = built["fileset"]
    good = {discs.sop_uid(s) for p, s in fileset.files.items() if p != "DICOM/SC000008"}
    good.add(discs.sop_uid(built["extra"]))
    good.add(discs.sop_uid(built["bare_src"]))
    good.add(discs.sop_uid(discs.sample("rtdose_1frame.dcm")))
    return good


def test_hostile_disc_imports_the_good_instances_only(
    make_kioskd: MakeKioskd,
    orthanc: Orthanc,
    hostile: dict[str, Any],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    daemon = _daemon(make_kioskd, {"orthanc": (orthanc.ae_title, orthanc.port)})
    _fresh(orthanc, daemon.port)
    daemon.start()
    before = _listing(tmp_path)

    job = _import(daemon, hostile["image"], "--dest", "orthanc", "--keep")

    assert job["state"] == "succeeded", job
    good = _hostile_good_instances(hostile)
    assert len(good) == 12
    assert orthanc.instance_uids() == good
    assert job["result"]["commitment"]["state"] == "committed"
    counts = job["result"]["counts"]
    assert (counts["sent"], counts["committed"], counts["failed"]) == (12, 12, 0)
    reasons = {s["path"]: s["reason"] for s in job["result"]["summary"]["skipped"]}
    assert counts["skipped"] == len(reasons) == 7
    assert reasons["DICOM/LINK0001"] == "is a symbolic link (not followed) (-> /etc/passwd)"
    assert reasons["DICOM/TRUNC001"].startswith("has truncated pixel data")
    assert "declared length goes beyond the end of the file" in reasons["DICOM/LONGLEN1"]
    assert "decompression bomb" in reasons["DICOM/BOMB0001"]
    totals = job["result"]["summary"]["totals"]
    assert (totals["non_dicom"], totals["needs_password"]) == (3, 1)

    # Written by the import: its workspace under <var>/import; nothing else (the store's empty
    # spare files and the daemon's run state are made in the background from the start), and
    # inside the workspace nothing the disc names outside its own tree.
    background = ("kioskd/var/store/.spare/", "kioskd/var/run")
    created = {p for p in _listing(tmp_path) - before if not p.startswith(background)}
    workspace = f"kioskd/var/import/job-{job['id']}"
    outside = {
        p
        for p in created
        if not (p in ("kioskd/var/import", workspace) or p.startswith(workspace + "/"))
    }
    assert outside == set(), outside
    inside = {p.removeprefix(workspace + "/") for p in created if p.startswith(workspace + "/")}
    assert {p.split("/")[0] for p in inside} == {"disc", "out", "catalog.json"}
    assert not any("PASSWD" in p.upper() or "ETC" in p.split("/") for p in inside)
    staged = _listing(tmp_path / workspace / "disc")
    assert all(p == "DICOMDIR" or p.startswith("DICOM") for p in staged), staged
    _assert_no_patient_data(daemon, Disc(hostile["image"], _originals(hostile["fileset"])))


# -- 3. encrypted discs ----------------------------------------------------------------------------


def test_encrypted_disc_needs_its_password(
    make_kioskd: MakeKioskd, secure_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    with_dir, without_dir = secure_discs
    # Bit-preserving: the data sets are written as they arrive.
    with Storescp(tmp_path / "scp", extra=("+B",)) as scp:
        daemon = _daemon(
            make_kioskd,
            {"scp": (scp.ae_title, scp.port)},
            importer={"commitment_required": False},
        )
        daemon.start()

        job = _import(daemon, with_dir.image, "--dest", "scp", "--keep")
        assert job["state"] == "failed", job
        assert "encrypted" in job["error"] and "--password-stdin" in job["error"], job["error"]
        assert job["attempts"] == 1  # nothing a retry without the password could change

        job = _import(
            daemon, with_dir.image, "--dest", "scp", "--keep", "--password-stdin", stdin="wrong\n"
        )
        assert job["state"] == "failed", job
        assert "password" in job["error"], job["error"]
        reasons = {s["path"]: s["reason"] for s in job["result"]["summary"]["skipped"]}
        assert set(reasons) == {"DICOMDIR", *(f"DICOM/{n}" for n in discs.SAMPLES.values())}
        assert all(r.startswith("Secure DICOM File cannot be opened") for r in reasons.values())
        assert scp.files() == []

        for disc in (with_dir, without_dir):
            for earlier in scp.files():
                earlier.unlink()
            job = _import(
                daemon,
                disc.image,
                "--dest",
                "scp",
                "--keep",
                "--password-stdin",
                stdin=discs.PASSWORD + "\n",
            )
            assert job["state"] == "succeeded", job
            assert job["result"]["counts"]["sent"] == 10
            assert "accepted without commitment" in job["result"]["commitment"]["note"]
            received = scp.received()
            assert set(received) == set(disc.originals)
            for uid, path in received.items():
                assert dataset_bytes(path) == dataset_bytes(disc.originals[uid]), uid

    secret = discs.PASSWORD.encode()
    assert secret not in daemon.log_file.read_bytes()
    under_var = [p for p in daemon.var.rglob("*") if p.is_file()]
    assert daemon.index_file in under_var
    assert [p for p in under_var if secret in p.read_bytes()] == []
    _assert_no_patient_data(daemon, with_dir)


# -- 4. kill -9 while sending ----------------------------------------------------------------------


def test_import_survives_kill_9_while_sending(
    make_kioskd: MakeKioskd, orthanc: Orthanc, big_disc: Disc
) -> None:
    daemon = _daemon(make_kioskd, {"orthanc": (orthanc.ae_title, orthanc.port)})
    _fresh(orthanc, daemon.port)
    daemon.start()
    submitted = _job(daemon, "import", str(big_disc.image), "--dest", "orthanc", "--keep")
    job_id = submitted["id"]

    def sending() -> bool:
        [row] = [j for j in _import_jobs(daemon) if j["id"] == job_id]
        phase = row["progress"].get("phase")
        # The moment: the job sends, and Orthanc has taken some of the instances.
        return phase == "sending" and orthanc.instance_count() > 0

    assert wait_until(sending, timeout=60, interval=0.01), _import_jobs(daemon)
    daemon.kill9()
    [killed] = _import_jobs(daemon)
    assert killed["state"] == "running"
    before_restart = orthanc.instance_count()
    # What the job recorded as accepted before the kill is at the destination (a re-run sends
    # only the rest).
    recorded = killed["result"].get("instances", {})
    assert {r["outcome"] for r in recorded.values()} <= {"success"}
    assert set(recorded) <= orthanc.instance_uids()

    daemon.start()
    job = _job(daemon, "job", str(job_id), "--wait", "--timeout", WAIT)
    assert job["state"] == "succeeded", (killed["progress"], before_restart, job)
    assert f"job {job_id} was running when kioskd stopped: requeued" in daemon.log()
    assert orthanc.instance_count() == 150
    assert orthanc.instance_uids() == set(big_disc.originals)
    assert set(job["result"]["instances"]) == set(big_disc.originals)
    commitment = job["result"]["commitment"]
    assert (commitment["state"], commitment["committed"]) == ("committed", 150)
    assert job["result"]["counts"]["sent"] == 150
    _assert_no_patient_data(daemon, big_disc)


# -- 5. a destination without Storage Commitment ---------------------------------------------------


def test_destination_without_commitment(
    make_kioskd: MakeKioskd, clean_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    disc = clean_discs[0]
    with Storescp(tmp_path / "scp") as scp:
        daemon = _daemon(make_kioskd, {"scp": (scp.ae_title, scp.port)})
        daemon.start()
        job = _import(daemon, disc.image, "--dest", "scp", "--keep")
        assert job["state"] == "failed", job
        assert "commitment" in job["error"].lower(), job["error"]
        counts = job["result"]["counts"]
        assert counts["sent"] == counts["total"] == 10  # the C-STOREs went through first
        assert job["result"]["commitment"]["state"] == "refused"
        assert set(scp.received()) == set(disc.originals)

        # Accepted when the config says so: the retry does not send again.
        written = {path: path.stat().st_mtime_ns for path in scp.files()}
        daemon.stop()
        daemon.settings["importer"]["commitment_required"] = False
        daemon.start()
        job = _job(daemon, "retry", str(job["id"]), "--wait", "--timeout", WAIT)
        assert job["state"] == "succeeded", job
        assert job["result"]["commitment"]["note"].startswith("accepted without commitment")
        assert job["result"]["counts"]["sent"] == 10
        assert {path: path.stat().st_mtime_ns for path in scp.files()} == written
    _assert_no_patient_data(daemon, disc)


def test_keep_local_copy_puts_the_reconciled_instances_into_our_store(
    make_kioskd: MakeKioskd, clean_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    disc = clean_discs[0]
    with Storescp(tmp_path / "scp") as scp:
        daemon = _daemon(
            make_kioskd, {"scp": (scp.ae_title, scp.port)}, {"commitment_required": False}
        )
        daemon.start()
        job = _import(daemon, disc.image, "--dest", "scp", "--keep", "--keep-local")
        assert job["state"] == "succeeded", job
        assert job["result"]["local_copy"] == {"stored": 10, "failed": 0}
        # Our store now holds exactly what the node got, indexed like any received instance.
        stored = {
            row["sop_instance_uid"]
            for row in index_rows(daemon, "SELECT sop_instance_uid FROM instances")
        }
        assert stored == set(disc.originals) == set(scp.received())
        calling = {
            row["calling_ae"] for row in index_rows(daemon, "SELECT calling_ae FROM instances")
        }
        assert calling == {"KIOSK"}
    _assert_no_patient_data(daemon, disc)


def test_a_disc_that_would_cross_the_free_space_reserve_is_refused_before_copying(
    make_kioskd: MakeKioskd, clean_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    disc = clean_discs[0]
    free_mb = shutil.disk_usage(tmp_path).free // 2**20
    with Storescp(tmp_path / "scp") as scp:
        # A reserve just above what is free now: the disc cannot be staged without crossing it.
        daemon = _daemon(
            make_kioskd,
            {"scp": (scp.ae_title, scp.port)},
            {"commitment_required": False},
            store={"free_space_reserve_mb": free_mb + 1},
        )
        daemon.start()
        job = _import(daemon, disc.image, "--dest", "scp", "--keep")
        assert job["state"] == "failed", job
        assert "not enough free space" in job["error"], job["error"]
        assert job["attempts"] == 1
        assert not list((daemon.var / "import").glob("job-*/disc"))
        assert scp.received() == {}
        scan = _kioskctl(daemon, "disc", "scan", str(disc.image))
        assert scan.returncode == 1 and "not enough free space" in scan.stderr


def test_instances_the_node_wants_converted_are_rewritten_into_files_and_decompressed(
    make_kioskd: MakeKioskd, clean_discs: tuple[Disc, Disc], tmp_path: Path
) -> None:
    disc = clean_discs[0]
    # storescp without +xa accepts the uncompressed syntaxes only: the disc's JPEG and
    # JPEG 2000 instances must be rewritten into a file and decompressed on the way.
    with Storescp(tmp_path / "scp", accept_all=False) as scp:
        daemon = _daemon(
            make_kioskd, {"scp": (scp.ae_title, scp.port)}, {"commitment_required": False}
        )
        daemon.start()
        job = _import(
            daemon, disc.image, "--dest", "scp", "--set", "PatientID=LOCAL-7", "--keep-local"
        )
        # Three patients and typed values: the clerk must decide; give all three the values.
        assert job["state"] == "awaiting_reconciliation", job
        for key in job["result"]["reconciliation"]["patients"]:
            job = _job(
                daemon, "reconcile", str(job["id"]), "--patient", key, "--set",
                "PatientID=LOCAL-7", "--wait", "--timeout", WAIT,
            )  # fmt: skip
        assert job["state"] == "succeeded", job
        received = scp.received_syntaxes()
        assert set(received) == set(disc.originals)
        assert set(received.values()) <= {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}
        converted = [
            uid
            for uid, source in disc.originals.items()
            if pydicom.dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
            not in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
        ]
        assert converted, "the disc should hold compressed instances"
        for uid, path in scp.received().items():
            ds = pydicom.dcmread(path)
            assert ds.PatientID == "LOCAL-7"
            original = pydicom.dcmread(disc.originals[uid])
            assert ds.OriginalAttributesSequence[-1].ModifiedAttributesSequence[0].PatientID == (
                original.PatientID
            )
            if uid in converted:
                assert ds.pixel_array.shape == original.pixel_array.shape
        # Only the converted instances needed a file of their own; the rest went from staging.
        out_files = list((daemon.var / "import").glob("job-*/out/*.dcm"))
        assert 0 < len(out_files) <= len(converted)
    _assert_no_patient_data(daemon, disc)
