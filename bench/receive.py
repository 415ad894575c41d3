"""Reception benchmark: how fast kioskd takes C-STOREs, next to DCMTK storescp and Orthanc.

Two synthetic data sets (a CT study of 512x512 16-bit slices and a set of small 64x64
instances, Explicit VR Little Endian) are generated once and cached. Each data set is sent
with DCMTK `storescu` over one association to each target, every target freshly started on a
free loopback port with empty storage. The wall time of the `storescu` run is measured; the
median over `--runs` is reported as MB/s (10^6 bytes of sent files) and instances/s.

A run only counts if the target stored exactly what was sent (files and index for kioskd,
files for storescp, `/statistics` for Orthanc), so a broken receiver cannot look fast.

Usage (from the repository root):

    .venv/bin/python -m bench.receive --quick
    .venv/bin/python -m bench.receive --runs 3
    .venv/bin/python -m bench.receive --runs 1 --targets kioskd --sets small --py-spy /tmp/prof
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / "bench" / ".data"
LOOPBACK = "127.0.0.1"
STORESCU = Path("/usr/bin/storescu")
STORESCP = Path("/usr/bin/storescp")
ECHOSCU = Path("/usr/bin/echoscu")
ORTHANC = Path("/usr/sbin/Orthanc")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
CALLING_AE = "BENCHSCU"
DATA_FORMAT = 1
"""Bump when the generated files change, so stale caches are regenerated."""

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
SEND_TIMEOUT = 900.0


class BenchError(RuntimeError):
    """A target failed to start, to receive or to store what was sent."""


# -- data sets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    """What to generate: `count` CT instances of `rows` x `columns` 16-bit pixels."""

    key: str
    count: int
    rows: int
    columns: int

    @property
    def dirname(self) -> str:
        """Cache directory name; encodes everything the content depends on."""
        return f"{self.key}-{self.count}-{self.rows}x{self.columns}-v{DATA_FORMAT}"

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. `ct 400x512x512`."""
        return f"{self.key} {self.count}x{self.rows}x{self.columns}"


FULL_SPECS = {
    "ct": DataSpec("ct", 400, 512, 512),
    "small": DataSpec("small", 2000, 64, 64),
}
QUICK_SPECS = {
    "ct": DataSpec("ct", 50, 512, 512),
    "small": DataSpec("small", 200, 64, 64),
}


@dataclass(frozen=True)
class DataSet:
    """A generated data set on disk."""

    spec: DataSpec
    directory: Path
    total_bytes: int

    @property
    def count(self) -> int:
        """Number of instances."""
        return self.spec.count


def _uid(*parts: str) -> str:
    """A deterministic UID for the given parts (so cached data sets are reproducible)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["kiosk-bench", *parts]))


def _write_instance(
    path: Path,
    spec: DataSpec,
    number: int,
    study_uid: str,
    series_uid: str,
    pixels: bytes,
) -> None:
    """Write one CT Image Storage instance as a PS3.10 file (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    sop_uid = _uid(spec.dirname, "sop", str(number))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240119"
    ds.StudyTime = ds.SeriesTime = "072730"
    ds.ContentTime = f"0730{number % 60:02d}"
    ds.AccessionNumber = f"BENCH{spec.key.upper()}"[:16]
    ds.Modality = "CT"
    ds.Manufacturer = "kiosk-bench"
    ds.StudyDescription = f"BENCH {spec.label}"
    ds.SeriesDescription = "SYNTHETIC AXIAL"
    ds.PatientName = f"BENCH^{spec.key.upper()}"
    ds.PatientID = f"BENCH-{spec.key.upper()}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number + 1
    ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-float(number):.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = _uid(spec.dirname, "for")
    ds.SliceLocation = f"{-float(number):.1f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.PixelSpacing = ["0.9765625", "0.9765625"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    ds.save_as(path, enforce_file_format=True)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def ensure_data_set(spec: DataSpec, data_dir: Path) -> DataSet:
    """Return the cached data set for `spec`, generating it first if needed.

    Generation writes into a scratch directory and renames it into place after the manifest,
    so an interrupted generation is never mistaken for a complete one.
    """
    directory = data_dir / spec.dirname
    manifest = _read_manifest(directory)
    if (
        manifest is not None
        and manifest.get("spec") == asdict(spec)
        and sum(1 for _ in directory.glob("*.dcm")) == spec.count
    ):
        return DataSet(spec, directory, int(manifest["total_bytes"]))

    import numpy as np

    print(f"generating {spec.label} in {directory} ...", flush=True)
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.", dir=data_dir))
    try:
        rng = np.random.default_rng(zlib.crc32(spec.dirname.encode()))
        study_uid = _uid(spec.dirname, "study")
        series_uid = _uid(spec.dirname, "series")
        total = 0
        for number in range(spec.count):
            # Full 16-bit noise: incompressible, so no layer can shortcut the bytes.
            pixels = rng.integers(0, 65536, size=spec.rows * spec.columns, dtype=np.uint16)
            path = scratch / f"IM{number:05d}.dcm"
            _write_instance(path, spec, number, study_uid, series_uid, pixels.tobytes())
            total += path.stat().st_size
        (scratch / "manifest.json").write_text(
            json.dumps({"spec": asdict(spec), "total_bytes": total}, indent=2)
        )
        if directory.exists():
            shutil.rmtree(directory)
        scratch.rename(directory)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
    print(
        f"  {spec.count} files, {total / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return DataSet(spec, directory, total)


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def echo(port: int, called_ae: str) -> bool:
    """True if a C-ECHO to 127.0.0.1:`port` succeeds.

    Readiness is probed with a whole association, not a bare TCP connect: a connection that
    never sends an A-ASSOCIATE-RQ is not what a sender does, and some kioskd versions kept it
    open until the ACSE timeout, which held up their shutdown (they drain on SIGTERM).
    """
    argv = [str(ECHOSCU), "-to", "2", "-ta", "2", "-aet", CALLING_AE, "-aec", called_ae]
    probe = subprocess.run(
        [*argv, LOOPBACK, str(port)],
        capture_output=True,
        env=nodelay_env(),
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def nodelay_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment with TCP_NODELAY=1 (DCMTK and Orthanc leave Nagle on without it)."""
    env = dict(os.environ if base is None else base)
    env["TCP_NODELAY"] = "1"
    return env


def start_process(
    argv: list[str], log: Path, env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a server in its own session (so its whole process group can be signalled)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the process group, escalate to SIGKILL after `timeout`; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return -signal.SIGKILL
    # The leader is gone; make sure no child of its group lingers.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return int(proc.returncode)


def proc_status_kib(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), or None if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Polls VmRSS of one process in a background thread and keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.peak_kib = max(self.peak_kib, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- targets -------------------------------------------------------------------------------


class Target:
    """A receiver started fresh in `workdir` with empty storage; subclasses say how."""

    name: ClassVar[str]
    ae_title: ClassVar[str]
    verifies_count: ClassVar[bool] = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        """The receiving process (the one whose memory we watch)."""
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        """argv and environment of the server, after `prepare()`."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create directories/config; choose ports."""
        self.port = free_port()

    def ready(self) -> bool:
        """True once the server answers a C-ECHO."""
        return echo(self.port, self.ae_title)

    def start(self) -> None:
        """Start the server and wait until it is ready."""
        self.workdir.mkdir(parents=True)
        self.prepare()
        argv, env = self.command()
        self.proc = start_process(argv, self.log, env, self.workdir)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} not ready after {STARTUP_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """Stop the server (idempotent); returns its exit code."""
        if self.proc is None:
            return None
        return stop_process(self.proc)

    def stored_count(self) -> int:
        """How many instances the target holds now."""
        raise NotImplementedError

    def log_text(self) -> str:
        """Everything the server wrote."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Log lines worth reporting (warnings, errors)."""
        return []


class KioskdTarget(Target):
    """Our daemon, `python -m appliance.apps.kioskd`, with its shipped defaults."""

    name = "kioskd"
    ae_title = "KIOSK"

    @property
    def var(self) -> Path:
        """The daemon's var directory."""
        return self.workdir / "var"

    def prepare(self) -> None:
        """Write the TOML config: loopback bind, no free-space reserve, own var dir."""
        import tomli_w

        super().prepare()
        (self.workdir / "etc").mkdir()
        config = {
            "dicom": {"ae_title": self.ae_title, "port": self.port, "bind": LOOPBACK},
            "paths": {"var": str(self.var)},
            "store": {"free_space_reserve_mb": 0},
        }
        (self.workdir / "kiosk.toml").write_text(tomli_w.dumps(config))

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The daemon, with no host /etc/kiosk and no systemd."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("KIOSK") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
        }
        env["KIOSK_ETC_DIR"] = str(self.workdir / "etc")
        argv = [
            sys.executable,
            "-m",
            "appliance.apps.kioskd",
            "--config",
            str(self.workdir / "kiosk.toml"),
        ]
        return argv, nodelay_env(env)

    def stored_count(self) -> int:
        """Instance files in the store; raises if the index or `.incoming` disagree."""
        store = self.var / "store"
        files = sum(1 for _ in store.glob("*/*/*.dcm"))
        partial = sum(1 for p in (store / ".incoming").glob("*") if p.is_file())
        if partial:
            raise BenchError(f"kioskd left {partial} partial file(s) in .incoming")
        uri = f"file:{self.var / 'kiosk.sqlite'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            indexed = int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        if indexed != files:
            raise BenchError(f"kioskd has {files} files but {indexed} index rows")
        return files

    def problems(self) -> list[str]:
        """WARNING/ERROR/CRITICAL lines and tracebacks."""
        return [
            line
            for line in self.log_text().splitlines()
            if any(w in line for w in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback"))
        ]


class StorescpTarget(Target):
    """DCMTK storescp: writes each instance to a file, no fsync, no index."""

    name = "storescp"
    ae_title = "STORESCP"

    def command(self) -> tuple[list[str], dict[str, str]]:
        """`storescp -aet STORESCP +xa -od DIR PORT`."""
        incoming = self.workdir / "in"
        incoming.mkdir()
        argv = [str(STORESCP), "-aet", self.ae_title, "+xa", "-od", str(incoming), str(self.port)]
        return argv, nodelay_env()

    def stored_count(self) -> int:
        """Files in the output directory."""
        return sum(1 for p in (self.workdir / "in").iterdir() if p.is_file())

    def problems(self) -> list[str]:
        """storescp prints only warnings and errors without -v."""
        return [
            line for line in self.log_text().splitlines() if line.startswith(("W:", "E:", "F:"))
        ]


class SinkTarget(StorescpTarget):
    """`storescp --ignore`: receives and discards; the ceiling set by the sender."""

    name = "sink"
    verifies_count = False

    def command(self) -> tuple[list[str], dict[str, str]]:
        """storescp that reads the data sets and throws them away."""
        argv, env = super().command()
        return [argv[0], "--ignore", *argv[1:]], env


class OrthancTarget(Target):
    """Orthanc with an SQLite index and its default (synced) storage area."""

    name = "orthanc"
    ae_title = "ORTHANC"

    def prepare(self) -> None:
        """Write config.json with a DICOM and an HTTP port, storage in the work dir."""
        super().prepare()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        db = self.workdir / "db"
        db.mkdir()
        config = {
            "Name": "kiosk-bench",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
            "Plugins": [],
        }
        (self.workdir / "config.json").write_text(json.dumps(config, indent=2))

    def command(self) -> tuple[list[str], dict[str, str]]:
        """`Orthanc config.json`."""
        return [str(ORTHANC), str(self.workdir / "config.json")], nodelay_env()

    def _get(self, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{LOOPBACK}:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        """DICOM port open and `GET /system` answers 200."""
        if not echo(self.port, self.ae_title):
            return False
        try:
            self._get("/system")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True

    def stored_count(self) -> int:
        """`CountInstances` from `GET /statistics`."""
        return int(self._get("/statistics")["CountInstances"])

    def problems(self) -> list[str]:
        """Orthanc's E (error) lines; it logs its routine start/stop messages as W."""
        return [line for line in self.log_text().splitlines() if line.startswith("E")]


TARGETS: dict[str, type[Target]] = {
    cls.name: cls for cls in (KioskdTarget, StorescpTarget, OrthancTarget, SinkTarget)
}
DEFAULT_TARGETS = ("kioskd", "storescp", "orthanc")


# -- profiling -----------------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, rate: int, mode: str) -> Iterator[None]:
    """Record `pid` with py-spy (raw collapsed stacks) while the block runs, if asked to.

    `mode` is `idle` (every thread, waiting included: wall time) or `gil` (only the thread
    holding the GIL: where the interpreter's time goes).
    """
    if output is None:
        yield
        return
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        raise BenchError("py-spy is not installed (pip install py-spy)")
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--threads",
        f"--{mode}",
        "--output",
        str(output),
    ]
    log = output.with_suffix(".log")
    with log.open("wb") as out:
        spy = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(0.5)  # let it attach before the first association
    try:
        yield
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


_THREAD_PLUMBING = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}


def _function(frame: str) -> str:
    """`name (file:line)` -> `name (file)`, so the lines of one function add up."""
    head, sep, _ = frame.rpartition(":")
    return f"{head})" if sep and frame.endswith(")") else frame


@dataclass(frozen=True)
class Profiling:
    """py-spy options: where to write, samples per second, `idle` or `gil`."""

    directory: Path
    rate: int
    mode: str


def summarise_profile(path: Path, rate: int, top: int = 8) -> str:
    """Per thread: seconds sampled, then self and inclusive time per function.

    Input is py-spy's raw output (`thread (tid): name;frame;...;leaf count` lines). With
    `--idle` a thread's samples cover its wall time, so the percentages say where each
    thread spends its time, waiting included; with `--gil` only the GIL holder is sampled.
    """
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_thread: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith(("thread ", "process ")):
            thread, frames = frames[0].split(": ", 1)[-1], frames[1:]
        names = [_function(f) for f in frames]
        per_thread[thread] += count
        if names:
            own[thread][names[-1]] += count
        for name in set(names):
            if name.split(" (")[0] not in _THREAD_PLUMBING:
                incl[thread][name] += count
    total = sum(per_thread.values())
    if not total:
        return f"{path}: no samples"
    out = [f"{path}: {total} samples at {rate}/s"]
    for thread, n in per_thread.most_common():
        out.append(f"  thread {thread}: {n} samples ({n / rate:.1f} s)")
        out.append("    self:")
        out += [f"      {c * 100 / n:5.1f} %  {f}" for f, c in own[thread].most_common(top)]
        out.append("    inclusive:")
        out += [f"      {c * 100 / n:5.1f} %  {f}" for f, c in incl[thread].most_common(top)]
    return "\n".join(out)


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Measurement:
    """One storescu run against one freshly started target."""

    target: str
    data_set: str
    run: int
    seconds: float
    instances: int
    bytes: int
    ok: bool
    rss_baseline_kib: int | None = None
    rss_peak_kib: int | None = None
    error: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        """Throughput in 10^6 bytes of sent files per second."""
        return self.bytes / 1e6 / self.seconds

    @property
    def inst_per_s(self) -> float:
        """Instances per second."""
        return self.instances / self.seconds


def storescu_argv(target: Target, data: DataSet) -> list[str]:
    """One association, only the contexts the files need (-R), the directory scanned (+sd)."""
    return [
        str(STORESCU),
        "-R",
        "-aet",
        CALLING_AE,
        "-aec",
        target.ae_title,
        "+sd",
        "+sp",
        "*.dcm",
        LOOPBACK,
        str(target.port),
        str(data.directory),
    ]


def measure(
    target_cls: type[Target],
    data: DataSet,
    run: int,
    scratch: Path,
    profiling: Profiling | None = None,
) -> Measurement:
    """Start the target fresh, send the data set once, verify, stop and clean up."""
    target = target_cls(scratch / f"{target_cls.name}-{data.spec.key}-{run}")
    result = Measurement(
        target=target.name,
        data_set=data.spec.key,
        run=run,
        seconds=float("nan"),
        instances=data.count,
        bytes=data.total_bytes,
        ok=False,
    )
    profile = (
        profiling.directory / f"kioskd-{data.spec.key}-run{run}-{profiling.mode}.txt"
        if profiling is not None and target.name == "kioskd"
        else None
    )
    rate, mode = (profiling.rate, profiling.mode) if profiling else (0, "")
    try:
        target.start()
        result.rss_baseline_kib = proc_status_kib(target.pid, "VmRSS")
        with py_spy(target.pid, profile, rate, mode), RssSampler(target.pid) as sampler:
            started = time.perf_counter()
            sent = subprocess.run(
                storescu_argv(target, data),
                capture_output=True,
                text=True,
                env=nodelay_env(),
                timeout=SEND_TIMEOUT,
                check=False,
            )
            result.seconds = time.perf_counter() - started
        hwm = proc_status_kib(target.pid, "VmHWM")
        result.rss_peak_kib = max(hwm or 0, sampler.peak_kib) or None
        output = (sent.stdout + sent.stderr).strip()
        if sent.returncode != 0:
            raise BenchError(f"storescu exited with {sent.returncode}:\n{output[-3000:]}")
        if output:
            result.problems.append(f"storescu: {output[:500]}")
        if target.verifies_count:
            stored = target.stored_count()
            if stored != data.count:
                raise BenchError(f"{target.name} holds {stored} instances, {data.count} were sent")
        result.ok = True
    except (BenchError, OSError, ValueError, subprocess.SubprocessError, sqlite3.Error) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        code = target.stop()
        result.problems += target.problems()
        if code not in (None, 0) and target.name == "kioskd":
            result.problems.append(f"kioskd exited with {code}")
        if not result.ok and target.log.exists():
            result.error += f"\n--- {target.name} log tail ---\n{target.log_tail()}"
        shutil.rmtree(target.workdir, ignore_errors=True)
        os.sync()  # don't let this run's dirty pages be written back during the next one
    return result


# -- reporting -----------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.0f} MiB" if kib else "-"


def report(results: list[Measurement], data_sets: list[DataSet], targets: list[str]) -> str:
    """The summary table: medians per data set and target, then the ratios."""
    lines: list[str] = []
    header = (
        f"{'data set':<25} {'target':<9} {'ok':>5} {'median s':>9} {'MB/s':>8} {'inst/s':>8} "
        f"{'min-max inst/s':>16} {'peak RSS':>9}"
    )
    for data in data_sets:
        lines += ["", header, "-" * len(header)]
        medians: dict[str, float] = {}
        for name in targets:
            runs = [r for r in results if r.data_set == data.spec.key and r.target == name]
            good = [r for r in runs if r.ok]
            label = f"{data.spec.label} ({data.total_bytes / 1e6:.0f} MB)"
            if not good:
                lines.append(f"{label:<25} {name:<9} {0:>2}/{len(runs):<2} FAILED")
                continue
            seconds = _median([r.seconds for r in good])
            medians[name] = data.count / seconds
            rates = [r.inst_per_s for r in good]
            peak = max((r.rss_peak_kib or 0) for r in good)
            lines.append(
                f"{label:<25} {name:<9} {len(good):>2}/{len(runs):<2} {seconds:>9.3f} "
                f"{data.total_bytes / 1e6 / seconds:>8.1f} {data.count / seconds:>8.1f} "
                f"{f'{min(rates):.0f}-{max(rates):.0f}':>16} {_mib(peak):>9}"
            )
        if "kioskd" in medians:
            ratios = [
                f"kioskd/{other} = {medians['kioskd'] / medians[other]:.2f}"
                for other in ("orthanc", "storescp", "sink")
                if other in medians
            ]
            if ratios:
                lines.append(f"{'':<25} ratios (median throughput): " + ", ".join(ratios))
    return "\n".join(lines)


def kioskd_memory(results: list[Measurement]) -> str:
    """Baseline and peak RSS of kioskd per data set."""
    lines = []
    for key in dict.fromkeys(r.data_set for r in results):
        runs = [r for r in results if r.target == "kioskd" and r.data_set == key and r.ok]
        if runs:
            base = max(r.rss_baseline_kib or 0 for r in runs)
            peak = max(r.rss_peak_kib or 0 for r in runs)
            lines.append(f"kioskd RSS ({key}): at ready {_mib(base)}, peak (VmHWM) {_mib(peak)}")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.receive", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per target and set (median)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 50 CT + 200 small instances"
    )
    parser.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated, of {', '.join(TARGETS)} (sink = storescp --ignore)",
    )
    parser.add_argument("--sets", default="ct,small", help="comma-separated, of ct, small")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="cache of generated data sets"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record kioskd with py-spy into DIR (slows kioskd: its figures are then not valid)",
    )
    parser.add_argument("--py-spy-rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument(
        "--py-spy-mode",
        choices=("idle", "gil"),
        default="idle",
        help="idle: all threads, waits included (wall time); gil: only the GIL holder",
    )
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [t for t in targets if t not in TARGETS] + [s for s in sets if s not in FULL_SPECS]
    if unknown:
        parser.error(f"unknown target or set: {', '.join(unknown)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.targets, args.sets = targets, sets
    return args


def check_tools(targets: list[str]) -> None:
    """Fail early if a program the run needs is missing."""
    needed = [STORESCU, ECHOSCU]
    if {"storescp", "sink"} & set(targets):
        needed.append(STORESCP)
    if "orthanc" in targets:
        needed.append(ORTHANC)
    missing = [str(p) for p in needed if not os.access(p, os.X_OK)]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (apt-get install dcmtk orthanc)")


def kioskd_version() -> str:
    """The commit of the code under test (read-only git queries), marked if it has changes."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = git("diff", "--quiet", "HEAD", "--", "appliance").returncode != 0
    return head.stdout.strip() + (" + uncommitted changes in appliance/" if dirty else "")


def load_average() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    return f"load average {os.getloadavg()[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    """Generate or load the data, measure every target on every set, print the table."""
    args = parse_args(argv)
    check_tools(args.targets)
    print(
        f"kioskd {kioskd_version()}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
        f"runs {args.runs}; targets {', '.join(args.targets)}; {load_average()}",
        flush=True,
    )
    specs = QUICK_SPECS if args.quick else FULL_SPECS
    data_sets = [ensure_data_set(specs[key], args.data_dir) for key in args.sets]
    results: list[Measurement] = []
    profiling = (
        Profiling(args.py_spy, args.py_spy_rate, args.py_spy_mode)
        if args.py_spy is not None
        else None
    )
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as scratch:
        for data in data_sets:
            for run in range(1, args.runs + 1):
                # Targets alternate within a run, so slow drifts hit all of them alike.
                for name in args.targets:
                    m = measure(TARGETS[name], data, run, Path(scratch), profiling)
                    results.append(m)
                    status = "ok" if m.ok else "FAILED"
                    print(
                        f"{data.spec.label:<18} run {run}/{args.runs} {name:<9} {status:<6} "
                        f"{m.seconds:7.3f} s {m.mb_per_s:8.1f} MB/s {m.inst_per_s:8.1f} inst/s "
                        f"RSS peak {_mib(m.rss_peak_kib)}; {load_average()}",
                        flush=True,
                    )
                    if m.error:
                        print("  " + m.error.replace("\n", "\n  "), flush=True)
    print(f"\nat the end: {load_average()} (on {os.cpu_count()} CPUs)")
    print(report(results, data_sets, args.targets))
    memory = kioskd_memory(results)
    if memory:
        print("\n" + memory)
    problems = sorted({f"{r.target}: {p}" for r in results for p in r.problems})
    if problems:
        print(f"\nlog lines worth a look ({len(problems)} distinct):")
        for line in problems[:40]:
            print("  " + line)
    if profiling is not None:
        for path in sorted(profiling.directory.glob(f"kioskd-*-{profiling.mode}.txt")):
            print("\n" + summarise_profile(path, profiling.rate))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = [
            asdict(r) | {"mb_per_s": r.mb_per_s, "inst_per_s": r.inst_per_s} for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
