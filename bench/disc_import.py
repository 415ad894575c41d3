"""Benchmark: importing a disc (ISO image) to a Storage SCP, against DCMTK storescu.

In one run, on the synthetic CT study of bench.receive (400 x 512x512x16-bit, ~210 MB), made
into a disc image once with tools we did not write (`dcmmkdir` + `xorriso -as mkisofs -R -J`):

- ours: kioskd running on its defaults plus a registry node for a fresh DCMTK `storescp`;
  `kioskctl import DISC.iso --dest sink --set PatientID=... --set PatientName=... --wait`:
  the disc is read with pycdlib into staging, scanned, every instance gets the typed identity
  (with Original Attributes Sequence) and is sent; storescp offers no Storage Commitment, so
  the config accepts a node without it. Timed from job submission to the job's end, as the job
  store records it. The daemon's peak RSS is sampled.
- the reference: `storescu +sd` sending the folder extracted from the same image to another
  fresh storescp (the issue's reference; the extraction by `xorriso -osirrox`, which storescu
  needs to send from an image at all, is timed and reported apart).

A run only counts if both storescp instances received all 400 files.

Run: `.venv/bin/python -m bench.disc_import [--runs 3] [--quick]`. Prints seconds and ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.receive import (
    CALLING_AE,
    DEFAULT_DATA_DIR,
    FULL_SPECS,
    LOOPBACK,
    QUICK_SPECS,
    STORESCU,
    KioskdTarget,
    RssSampler,
    StorescpTarget,
    ensure_data_set,
    nodelay_env,
)


def build_disc(files: list[Path], image: Path) -> Path:
    """A DICOM disc image of `files` (DICOMDIR by dcmmkdir, ISO by xorriso), made once."""
    if image.exists():
        return image
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-disc-") as tmp:
        root = Path(tmp) / "root"
        images = root / "DICOM"
        images.mkdir(parents=True)
        for n, path in enumerate(files):
            shutil.copyfile(path, images / f"IM{n:06d}")
        subprocess.run(
            ["/usr/bin/dcmmkdir", "--recurse", "DICOM"], cwd=root, check=True, capture_output=True
        )
        partial = image.with_suffix(".partial")
        subprocess.run(
            ["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", str(partial), str(root)],
            check=True,
            capture_output=True,
        )
        partial.rename(image)
    return image


def extract(image: Path, target: Path) -> Path:
    """The image's files as a folder (xorriso), for the reference sender."""
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", f"stdio:{image}", "-extract", "/", str(target)],
        check=True,
        capture_output=True,
    )
    return target


class ImportingKioskd(KioskdTarget):
    """kioskd on its defaults, plus the node `sink` and imports that accept no commitment."""

    def __init__(self, workdir: Path, sink_port: int) -> None:
        super().__init__(workdir)
        self.sink_port = sink_port

    def prepare(self) -> None:
        """The usual benchmark config with the registry node and importer settings added."""
        import tomli_w

        super().prepare()
        config_path = self.workdir / "kiosk.toml"
        import tomllib

        config = tomllib.loads(config_path.read_text())
        config["nodes"] = {
            "sink": {"ae_title": "STORESCP", "host": LOOPBACK, "port": self.sink_port}
        }
        config["importer"] = {"udev": False, "commitment_required": False, "eject": False}
        config_path.write_text(tomli_w.dumps(config))

    def kioskctl(self, *args: str) -> dict[str, Any]:
        """Run kioskctl --json against this daemon; its parsed output."""
        env = {**nodelay_env(), "KIOSK_ETC_DIR": str(self.workdir / "etc")}
        argv = [
            sys.executable,
            "-m",
            "appliance.apps.kioskctl",
            "--config",
            str(self.workdir / "kiosk.toml"),
            "--json",
            *args,
        ]
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
        result: dict[str, Any] = json.loads(out)
        return result


def ours(image: Path, workdir: Path, count: int) -> dict[str, float]:
    """One import through kioskd; seconds and peak RSS."""
    sink = StorescpTarget(workdir / "sink")
    sink.start()
    kioskd = ImportingKioskd(workdir / "kioskd", sink.port)
    try:
        kioskd.start()
        with RssSampler(kioskd.pid) as rss:
            job = kioskd.kioskctl(
                "import",
                str(image),
                "--dest",
                "sink",
                "--set",
                "PatientID=LOCAL-0001",
                "--set",
                "PatientName=Local^Patient",
                "--wait",
                "--timeout",
                "900",
            )
        if job["state"] != "succeeded":
            raise RuntimeError(f"import job ended {job['state']}: {job['error']}")
        received = sink.stored_count()
        if received != count:
            raise RuntimeError(f"storescp received {received} of {count} instances from kioskd")
    finally:
        kioskd.stop()
        sink.stop()
    timings = job["result"].get("timings", {})
    return {
        "kioskd_total": job["finished_at"] - job["created_at"],
        **{f"kioskd_{k}": float(v) for k, v in timings.items()},
        "kioskd_peak_rss_mb": rss.peak_kib / 1024,
    }


def reference(image: Path, workdir: Path, count: int) -> tuple[float, float]:
    """storescu +sd of the extracted folder to a fresh storescp; seconds of the extraction
    (reported apart: the issue's reference does not count it) and of storescu."""
    started = time.perf_counter()
    folder = extract(image, workdir / "extracted")
    extraction = time.perf_counter() - started
    sink = StorescpTarget(workdir / "ref-sink")
    sink.start()
    try:
        argv = [
            str(STORESCU),
            "-R",
            "-aet",
            CALLING_AE,
            "-aec",
            sink.ae_title,
            "+sd",
            "+r",
            LOOPBACK,
            str(sink.port),
            str(folder / "DICOM"),
        ]
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=nodelay_env())
        seconds = time.perf_counter() - started
        received = sink.stored_count()
        if received != count:
            raise RuntimeError(f"storescp received {received} of {count} from storescu")
    finally:
        sink.stop()
    return extraction, seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 instances instead of 400")
    args = parser.parse_args(argv)
    spec = (QUICK_SPECS if args.quick else FULL_SPECS)["ct"]
    data = ensure_data_set(spec, DEFAULT_DATA_DIR)
    files = sorted(data.directory.glob("*.dcm"))
    image = build_disc(files, DEFAULT_DATA_DIR / f"{data.directory.name}.iso")
    runs: list[dict[str, float]] = []
    for n in range(args.runs):
        # Scratch space next to the cached data, not /tmp: on this VM /tmp has slow file
        # creation (ext4 walking many recently freed inodes), which would mostly measure that.
        # Both sides (kioskd's var and both storescp folders) live there alike.
        with tempfile.TemporaryDirectory(prefix="import-", dir=DEFAULT_DATA_DIR) as tmp:
            run = ours(image, Path(tmp) / "ours", len(files))
            run["ref_extract"], run["ref_storescu"] = reference(
                image, Path(tmp) / "ref", len(files)
            )
        runs.append(run)
        print(
            f"run {n + 1}: kioskd import {run['kioskd_total']:.2f} s, "
            f"storescu +sd {run['ref_storescu']:.2f} s",
            flush=True,
        )
    med = {key: statistics.median(r[key] for r in runs if key in r) for key in runs[0]}
    mb = data.total_bytes / 1e6
    print(f"\n{spec.label}, {mb:.0f} MB, median of {args.runs} runs")
    for key, value in med.items():
        unit = "MB" if key.endswith("_mb") else "s"
        print(f"  {key:<26} {value:8.3f} {unit}")
    print(
        f"\nrate kioskd import {mb / med['kioskd_total']:.0f} MB/s, "
        f"storescu +sd {mb / med['ref_storescu']:.0f} MB/s"
    )
    print(f"ratio kioskd / storescu rate: {med['ref_storescu'] / med['kioskd_total']:.2f}")
    chain = med["ref_extract"] + med["ref_storescu"]
    print(
        "ratio kioskd / (xorriso extraction + storescu) rate, the DCMTK way from an image: "
        f"{chain / med['kioskd_total']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
