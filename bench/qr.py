"""Query/Retrieve benchmark: kioskd's C-FIND and C-MOVE SCP next to DCMTK dcmqrscp and Orthanc.

C-FIND: an archive of `--studies` synthetic studies (one small instance each, generated once
and cached in bench/.data) is loaded with storescu into kioskd, Orthanc and, for at most 500
studies (its limit per storage area), dcmqrscp. kioskd is then measured twice: with exactly
those files, and after synthetic index rows bring it to `--instances` instances (100 per study
by default: 1,000,000), which only it
can hold (a 1 M-file archive takes hours to load into the peers). Each query is DCMTK `findscu`
(Study Root, STUDY level, `-q`), wall time per run, median of `--runs`; the number of matches
is checked once per target with `-X` and must be the same everywhere.

C-MOVE: the 400-slice CT study of bench/receive.py (512x512, 210 MB) is loaded into kioskd and
Orthanc (and dcmqrscp, as a third figure); `movescu` moves it to a fresh DCMTK `storescp` (+xa,
writing files) registered as destination in each. Wall time of `movescu`, median of `--runs`;
a run counts only if storescp holds all 400 files afterwards.

    .venv/bin/python -m bench.qr                 # full: 10,000 studies / 1,000,000 instances
    .venv/bin/python -m bench.qr --quick         # 500 studies, 50 CT slices, 3 runs
    .venv/bin/python -m bench.qr --only find     # or: move
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from bench.receive import DEFAULT_DATA_DIR, DataSpec, ensure_data_set
from tests.peers.dcmqrscp import Dcmqrscp
from tests.peers.dcmtk import dcmtk_env
from tests.peers.kioskd import KioskdProcess
from tests.peers.orthanc import Orthanc
from tests.peers.storescp import Storescp

ARCHIVE_ROOT = "1.2.826.0.1.3680043.10.3333"
LAST_NAMES = [
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS", "MULLER", "SCHMIDT", "SCHNEIDER",
    "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER", "SCHULZ", "HOFFMANN", "DOE",
]  # fmt: skip
DCMQRSCP_MAX_STUDIES = 500
"""dcmqrscp 3.6.7 keeps at most 500 studies per storage area (more replace the oldest)."""
MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG", "NM", "PT"]

QUERIES: dict[str, list[str]] = {
    "wildcard name": ["PatientName=DOE*"],
    "date range": ["StudyDate=20230301-20230331"],
    "name + date": ["PatientName=S*", "StudyDate=20220101-20221231"],
}
"""The C-FIND queries (matching keys) measured."""

RETURN_KEYS = [
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
]
"""Requested in every query (dcmqrscp ignores the last two)."""


def _run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, env=dcmtk_env(), timeout=timeout, check=False)


# -- the synthetic archive ------------------------------------------------------------------------


def ensure_archive(studies: int, data_dir: Path) -> list[Path]:
    """`studies` one-instance studies (cached): names, IDs, dates and modalities spread so that
    the queries above match a realistic share."""
    directory = data_dir / f"qr-archive-{studies}-v1"
    files = sorted(directory.glob("*.dcm"))
    if len(files) == studies:
        return files
    print(f"generating {studies} studies in {directory} ...", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix=".qr-archive.", dir=data_dir))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for n in range(studies):
        uid = f"{ARCHIVE_ROOT}.{n + 1}"
        meta.MediaStorageSOPInstanceUID = f"{uid}.1.1"
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = f"{uid}.1.1"
        ds.StudyInstanceUID = uid
        ds.SeriesInstanceUID = f"{uid}.1"
        ds.PatientName = f"{LAST_NAMES[(n * 7) % len(LAST_NAMES)]}^P{n % 97}"
        ds.PatientID = f"PID{n // 2:06d}"
        ds.PatientBirthDate = f"{1930 + n % 80}0{1 + n % 9}1{n % 9}"
        ds.PatientSex = "MF"[n % 2]
        day = n * 1096 // studies  # three years, evenly
        ds.StudyDate = f"{2021 + day // 365}{1 + (day % 365) // 31:02d}{1 + (day % 31) % 28:02d}"
        ds.StudyTime = f"{8 + n % 10:02d}{n % 60:02d}00"
        ds.AccessionNumber = f"A{n:07d}"
        ds.StudyID = str(n % 1000)
        ds.StudyDescription = "BENCH STUDY"
        ds.Modality = MODALITIES[n % len(MODALITIES)]
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.save_as(scratch / f"{n:06d}.dcm", enforce_file_format=True)
    if directory.exists():
        shutil.rmtree(directory)
    scratch.rename(directory)
    return sorted(directory.glob("*.dcm"))


def add_synthetic_instances(index_file: Path, per_study: int) -> int:
    """Give every study of a kioskd index `per_study` instances (index rows only)."""
    conn = sqlite3.connect(index_file, timeout=60)
    try:
        studies = [row[0] for row in conn.execute("SELECT study_uid FROM studies")]
        now = time.time()
        with conn:
            for study in studies:
                series = f"{study}.9"
                conn.execute(
                    "INSERT INTO series (series_uid, study_uid, modality, series_number) "
                    "VALUES (?, ?, 'CT', 9)",
                    (series, study),
                )
                conn.executemany(
                    "INSERT INTO instances (sop_instance_uid, series_uid, study_uid, "
                    "sop_class_uid, instance_number, transfer_syntax_uid, path, size, "
                    "received_at) VALUES (?, ?, ?, '1.2.840.10008.5.1.4.1.1.2', ?, "
                    "'1.2.840.10008.1.2.1', ?, 0, ?)",
                    [
                        (f"{series}.{k}", series, study, k, f"synthetic/{series}.{k}", now)
                        for k in range(1, per_study)
                    ],
                )
        (count,) = conn.execute("SELECT COUNT(*) FROM instances").fetchone()
        return int(count)
    finally:
        conn.close()


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured thing on one target."""

    work: str
    target: str
    seconds: list[float]
    detail: str = ""

    @property
    def median(self) -> float:
        """Median seconds."""
        return statistics.median(self.seconds)


def load(called: str, port: int, directory: Path) -> None:
    """Send every file of `directory` with DCMTK storescu over one association."""
    argv = ["/usr/bin/storescu", "-aec", called, "+sd", "+sp", "*.dcm", "127.0.0.1", str(port)]
    argv.append(str(directory))
    if _run(argv, timeout=3600).returncode != 0:
        raise RuntimeError(f"loading {called} failed")


def timed(runs: int, action: Callable[[], None]) -> list[float]:
    """Wall times of `runs` calls."""
    result = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        result.append(time.perf_counter() - started)
    return result


def findscu_argv(port: int, called: str, keys: list[str], extra: list[str]) -> list[str]:
    """A Study Root STUDY-level findscu command line."""
    argv = ["/usr/bin/findscu", "-S", "-aec", called, "-k", "QueryRetrieveLevel=STUDY"]
    for key in RETURN_KEYS:
        if not any(k.startswith(key + "=") for k in keys):
            argv += ["-k", key]
    for key in keys:
        argv += ["-k", key]
    return [*argv, *extra, "127.0.0.1", str(port)]


def count_matches(port: int, called: str, keys: list[str]) -> int:
    """Matches of a query (findscu -X into a scratch dir)."""
    with tempfile.TemporaryDirectory() as scratch:
        result = _run(findscu_argv(port, called, keys, ["-X", "-od", scratch]))
        if result.returncode != 0:
            raise RuntimeError(f"findscu against {called} failed: {result.stderr[-500:]!r}")
        return len(list(Path(scratch).glob("rsp*.dcm")))


def measure_find(targets: dict[str, tuple[int, str]], runs: int) -> list[Figure]:
    """Every query on every target."""
    figures = []
    for name, keys in QUERIES.items():
        counts = {t: count_matches(port, called, keys) for t, (port, called) in targets.items()}
        if len(set(counts.values())) != 1:
            raise RuntimeError(f"{name}: the targets disagree on the matches: {counts}")
        for target, (port, called) in targets.items():
            argv = findscu_argv(port, called, keys, ["-q"])

            def run(argv: list[str] = argv, target: str = target) -> None:
                if _run(argv).returncode != 0:
                    raise RuntimeError(f"findscu failed against {target}")

            figures.append(Figure(name, target, timed(runs, run), f"{counts[target]} matches"))
    return figures


def find_benchmark(args: argparse.Namespace, work: Path) -> list[Figure]:
    """Load the archive everywhere, then time the queries."""
    files = ensure_archive(args.studies, args.data_dir)
    kioskd = KioskdProcess(work / "kioskd", {"store": {"study_quiet_seconds": 3600}})
    dcmqrscp = Dcmqrscp(work / "dcmqrscp", max_studies=args.studies + 10)
    orthanc = Orthanc(work / "orthanc")
    try:
        kioskd.start()
        orthanc.start()
        started = time.perf_counter()
        targets = {"kioskd": (kioskd.port, "KIOSK"), "orthanc": (orthanc.port, "ORTHANC")}
        if args.studies <= DCMQRSCP_MAX_STUDIES:
            dcmqrscp.start()
            targets["dcmqrscp"] = (dcmqrscp.port, "DCMQRSCP")
        else:
            print(f"dcmqrscp left out: it holds at most {DCMQRSCP_MAX_STUDIES} studies per AE")
        for port, called in targets.values():
            load(called, port, files[0].parent)
        print(f"archive loaded in {time.perf_counter() - started:.0f} s", flush=True)
        figures = measure_find(targets, args.runs)
        total = add_synthetic_instances(kioskd.index_file, args.instances // args.studies)
        label = f"kioskd {total // 1000}k inst"
        figures += measure_find({label: (kioskd.port, "KIOSK")}, args.runs)
        return figures
    finally:
        kioskd.kill9()
        dcmqrscp.stop()
        orthanc.stop()


def move_benchmark(args: argparse.Namespace, work: Path) -> list[Figure]:
    """Move the CT study from each source to a fresh storescp, `runs` times."""
    data = ensure_data_set(DataSpec("ct", args.slices, 512, 512), args.data_dir)
    files = sorted(data.directory.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    figures = []
    with Storescp(work / "storescp") as scp:
        destination = ("STORESCP", "127.0.0.1", scp.port)
        sources: dict[str, tuple[Callable[[], int], str]] = {}
        node = {"ae_title": "STORESCP", "host": "127.0.0.1", "port": scp.port}
        kioskd = KioskdProcess(
            work / "kioskd-move",
            {"nodes": {"dest": node}, "store": {"study_quiet_seconds": 3600}},
        )
        orthanc = Orthanc(work / "orthanc-move", modalities={"dest": destination})
        dcmqrscp = Dcmqrscp(work / "dcmqrscp-move", move_destinations={"dest": destination})
        try:
            kioskd.start()
            orthanc.start()
            for ae, port in (("KIOSK", kioskd.port), ("ORTHANC", orthanc.port)):
                load(ae, port, data.directory)
            dcmqrscp.load(files)
            dcmqrscp.start()
            sources = {
                "kioskd": (lambda: kioskd.port, "KIOSK"),
                "orthanc": (lambda: orthanc.port, "ORTHANC"),
                "dcmqrscp": (lambda: dcmqrscp.port, "DCMQRSCP"),
            }
            for target, (port, called) in sources.items():
                seconds = []
                for _ in range(args.runs):
                    for path in scp.files():
                        path.unlink()
                    argv = [
                        "/usr/bin/movescu", "-S", "-aec", called, "-aem", "STORESCP",
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                        "127.0.0.1", str(port()),
                    ]  # fmt: skip
                    started = time.perf_counter()
                    result = _run(argv)
                    elapsed = time.perf_counter() - started
                    if result.returncode != 0 or len(scp.files()) != len(files):
                        raise RuntimeError(f"C-MOVE from {target} incomplete")
                    seconds.append(elapsed)
                figure = Figure("C-MOVE CT study", target, seconds)
                rate = data.total_bytes / 1e6 / figure.median
                figure.detail = f"{rate:.0f} MB/s, {len(files) / figure.median:.0f} inst/s"
                figures.append(figure)
        finally:
            kioskd.kill9()
            orthanc.stop()
            dcmqrscp.stop()
    return figures


def report(figures: list[Figure]) -> None:
    """Medians per work and target, and kioskd's ratio to the best peer."""
    works = list(dict.fromkeys(f.work for f in figures))
    for work in works:
        rows = [f for f in figures if f.work == work]
        print(f"\n{work}")
        for f in rows:
            spread = f"{min(f.seconds) * 1000:.0f}-{max(f.seconds) * 1000:.0f}"
            print(f"  {f.target:<22} {f.median * 1000:8.1f} ms  ({spread} ms)  {f.detail}")
        peers = [f.median for f in rows if f.target in ("dcmqrscp", "orthanc")]
        ours = [f for f in rows if f.target == "kioskd"]
        if peers and ours:
            best = min(peers)
            if work.startswith("C-MOVE"):
                print(f"  kioskd throughput / best peer: {best / ours[0].median:.2f}")
            else:
                print(f"  kioskd latency / best peer: {ours[0].median / best:.2f}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.qr", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("find", "move"))
    parser.add_argument("--quick", action="store_true", help="500 studies, 50 slices, 3 runs")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.studies, args.instances, args.slices, args.runs = 500, 50_000, 50, 3
    args.data_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-qr-") as scratch:
        work = Path(scratch)
        if args.only in (None, "find"):
            figures += find_benchmark(args, work)
        if args.only in (None, "move"):
            figures += move_benchmark(args, work)
    report(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([f.__dict__ for f in figures], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
