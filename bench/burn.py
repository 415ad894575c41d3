"""Benchmark: a burn job (job submitted -> verified ISO) against the reference tool chain.

In one run, on the synthetic CT study of bench.receive (400 x 512x512x16-bit, ~210 MB):

- kioskd receives the study (not timed), then `kioskctl burn --wait` makes one disc on the
  embedded pseudo-drive. From the job record: submitted -> finished, and the phase timings the
  job keeps (file set, PDI, ISO, write to the drive, verify). The drive write is the "burn" step,
  reported apart as the issue asks (a real drive is the bottleneck there, at 8-54 MB/s).
- The reference chain on the same files: copy into a Level-1 tree (cp), `dcmmkdir`,
  `genisoimage -iso-level 1` (or `xorriso -as mkisofs` where genisoimage is missing), and
  `xorriso -indev stdio:IMG -check_media`.

Run: `.venv/bin/python -m bench.burn [--runs 3] [--quick]`. Prints seconds and ratios.
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
    DEFAULT_DATA_DIR,
    FULL_SPECS,
    QUICK_SPECS,
    KioskdTarget,
    ensure_data_set,
    nodelay_env,
    storescu_argv,
)


def _run(argv: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - started


def reference_chain(files: list[Path], workdir: Path) -> dict[str, float]:
    """Seconds of each step of the reference chain on `files`."""
    root = workdir / "root"
    images = root / "DICOM"
    images.mkdir(parents=True)
    started = time.perf_counter()
    for n, path in enumerate(files):
        shutil.copyfile(path, images / f"IM{n:06d}")
    times = {"copy": time.perf_counter() - started}
    times["dcmmkdir"] = _run(["/usr/bin/dcmmkdir", "--recurse", "DICOM"], cwd=root)
    image = workdir / "ref.iso"
    if shutil.which("genisoimage"):
        argv = ["genisoimage", "-quiet", "-iso-level", "1", "-o", str(image), str(root)]
    else:
        argv = [
            "xorriso",
            "-as",
            "mkisofs",
            "-quiet",
            "-iso-level",
            "1",
            "-o",
            str(image),
            str(root),
        ]
    times["iso"] = _run(argv)
    times["check_media"] = _run(["xorriso", "-indev", f"stdio:{image}", "-check_media", "--"])
    return times


def kioskd_burn(target: KioskdTarget) -> dict[str, Any]:
    """Submit one burn job for everything received and wait for it; the finished job."""
    env = {**nodelay_env(), "KIOSK_ETC_DIR": str(target.workdir / "etc")}
    kioskctl = [
        sys.executable,
        "-m",
        "appliance.apps.kioskctl",
        "--config",
        str(target.workdir / "kiosk.toml"),
        "--json",
    ]
    studies = json.loads(
        subprocess.run(
            [*kioskctl, "studies"], check=True, capture_output=True, text=True, env=env
        ).stdout
    )
    out = subprocess.run(
        [*kioskctl, "burn", *(s["study_uid"] for s in studies), "--wait", "--timeout", "600"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    job: dict[str, Any] = json.loads(out)
    if job["state"] != "succeeded":
        raise RuntimeError(f"burn job failed: {job['error']}")
    return job


def one_run(data_dir: Path, files: list[Path], workdir: Path) -> dict[str, float]:
    """One measurement of both sides."""
    target = KioskdTarget(workdir / "kioskd")
    target.start()
    try:
        subprocess.run(
            storescu_argv(target, _DataSetView(data_dir)),
            check=True,
            capture_output=True,
            env=nodelay_env(),
        )
        job = kioskd_burn(target)
    finally:
        target.stop()
    timings = job["result"]["timings"]
    total = job["finished_at"] - job["created_at"]
    ref = reference_chain(files, workdir / "ref")
    return {
        "kioskd_total": total,
        "kioskd_without_write": total - timings.get("write", 0.0),
        "kioskd_queued": job["started_at"] - job["created_at"],
        "kioskd_write": timings.get("write", 0.0),
        **{f"kioskd_{k}": v for k, v in timings.items() if k != "write"},
        "ref_total": sum(ref.values()),
        "ref_without_copy": ref["dcmmkdir"] + ref["iso"] + ref["check_media"],
        **{f"ref_{k}": v for k, v in ref.items()},
    }


class _DataSetView:
    """The two attributes of bench.receive.DataSet that storescu_argv reads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 instances instead of 400")
    args = parser.parse_args(argv)
    spec = (QUICK_SPECS if args.quick else FULL_SPECS)["ct"]
    data = ensure_data_set(spec, DEFAULT_DATA_DIR)
    files = sorted(data.directory.glob("*.dcm"))
    runs = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kiosk-bench-burn-") as tmp:
            runs.append(one_run(data.directory, files, Path(tmp)))
        print(
            f"run {n + 1}: kioskd {runs[-1]['kioskd_without_write']:.2f} s (+ write "
            f"{runs[-1]['kioskd_write']:.2f} s), reference {runs[-1]['ref_total']:.2f} s",
            flush=True,
        )
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"\n{spec.label}, {data.total_bytes / 1e6:.0f} MB, median of {args.runs} runs")
    for key, value in med.items():
        print(f"  {key:<24} {value:7.3f} s")
    print(
        f"\nratio kioskd (without drive write) / reference chain with copy:    "
        f"{med['kioskd_without_write'] / med['ref_total']:.2f}"
    )
    print(
        f"ratio kioskd (without drive write) / reference chain without copy: "
        f"{med['kioskd_without_write'] / med['ref_without_copy']:.2f}"
    )
    mb = data.total_bytes / 1e6
    print(f"drive write (pseudo-drive, xorriso stdio:): {mb / med['kioskd_write']:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
