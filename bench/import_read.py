"""Disc-import reading benchmark: stage + scan of an ISO image, next to plain copies of it.

Data: the synthetic CT study of `bench.receive` (400 slices of 512x512 16-bit noise, Explicit VR
Little Endian, about 210 MB; `--quick`: 50 slices), generated once and cached, put into an ISO
image with `xorriso -as mkisofs -R -J` (not timed).

Per run, on warm page cache, each into a fresh temporary folder:

- `stage`: `importer.staging.stage` of the image (pycdlib, sequential, temp + rename per file).
- `scan`: `importer.catalog.scan` of the staged folder (headers only, checks, catalog).
- `read`: `importer.reading.scan_source` (stage then scan, what the import job runs).
- `overlap`: the same with `overlap=True` (files examined in a second thread while staging).
- `xorriso`: `xorriso -osirrox on -extract / DIR` of the same image: an established tool
  copying the same files out (the staging reference).
- `cp`: `cp -r` of the extracted folder: the file system's own copy speed.

Reported: median and best seconds per variant, MB/s of image file bytes, and the ratios
stage/xorriso, (stage+scan)/xorriso, read/xorriso and overlap/read. A run counts only if the
catalog holds every instance.

Usage (from the repository root):

    .venv/bin/python -m bench.import_read --quick
    .venv/bin/python -m bench.import_read --runs 5
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
from collections.abc import Callable
from pathlib import Path

from bench.receive import DEFAULT_DATA_DIR, FULL_SPECS, QUICK_SPECS, ensure_data_set


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _timed_command(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def run(files: list[Path], runs: int, scratch: Path) -> dict[str, list[float]]:
    """Build the image once, then time every variant `runs` times."""
    from appliance.importer.catalog import scan
    from appliance.importer.limits import ReadLimits
    from appliance.importer.reading import scan_source
    from appliance.importer.source import open_source
    from appliance.importer.staging import stage

    layout = scratch / "layout" / "DICOM"
    layout.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, layout / path.stem.upper()[:8])
    image = scratch / "study.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-R", "-J", "-o", str(image), str(layout.parent)],
        check=True,
        capture_output=True,
    )
    subprocess.run(["cat", str(image)], check=True, stdout=subprocess.DEVNULL)  # warm cache
    limits = ReadLimits()
    times: dict[str, list[float]] = {
        "stage": [],
        "scan": [],
        "read": [],
        "overlap": [],
        "xorriso": [],
        "cp": [],
    }
    for number in range(runs):
        work = Path(tempfile.mkdtemp(prefix=f"run{number}-", dir=scratch))
        try:

            def do_stage(work: Path = work) -> None:
                with open_source(image) as source:
                    stage(source, work / "disc", limits=limits)

            times["stage"].append(_timed(do_stage))
            catalog = None

            def do_scan(work: Path = work) -> None:
                nonlocal catalog
                catalog = scan(work / "disc", limits=limits)

            times["scan"].append(_timed(do_scan))
            if catalog is None or len(catalog.instances) != len(files):
                raise RuntimeError("the catalog does not hold every instance")
            for variant, overlap in (("read", False), ("overlap", True)):

                def do_read(work: Path = work, overlap: bool = overlap) -> None:
                    found = scan_source(image, work / f"read-{overlap}", limits, overlap=overlap)
                    if len(found.instances) != len(files):
                        raise RuntimeError("the catalog does not hold every instance")

                times[variant].append(_timed(do_read))
            extract = work / "xorriso"
            extract_cmd = ["xorriso", "-osirrox", "on", "-indev", f"stdio:{image}"]
            extract_cmd += ["-extract", "/", str(extract)]
            times["xorriso"].append(_timed_command(extract_cmd))
            times["cp"].append(_timed_command(["cp", "-r", str(extract), str(work / "cp")]))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return times


def report(times: dict[str, list[float]], megabytes: float, count: int) -> str:
    """Human-readable summary with ratios of the medians."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [
        f"{count} files, {megabytes:.1f} MB, {len(times['stage'])} runs (warm cache)",
        f"{'variant':<10}{'median s':>10}{'best s':>10}{'MB/s':>10}",
    ]
    for name, values in times.items():
        lines.append(
            f"{name:<10}{medians[name]:>10.3f}{min(values):>10.3f}"
            f"{megabytes / medians[name]:>10.0f}"
        )
    both = medians["stage"] + medians["scan"]
    lines.append(
        f"stage/xorriso = {medians['stage'] / medians['xorriso']:.2f}, "
        f"(stage+scan)/xorriso = {both / medians['xorriso']:.2f}, "
        f"stage/cp = {medians['stage'] / medians['cp']:.2f}"
    )
    lines.append(
        f"read/xorriso = {medians['read'] / medians['xorriso']:.2f}, "
        f"overlap/read = {medians['overlap'] / medians['read']:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 slices instead of 400")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    if shutil.which("xorriso") is None:
        print("xorriso is missing", file=sys.stderr)
        return 2
    spec = (QUICK_SPECS if args.quick else FULL_SPECS)["ct"]
    data = ensure_data_set(spec, args.data_dir)
    files = sorted(data.directory.glob("*.dcm"))
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        times = run(files, args.runs, Path(scratch))
    print(report(times, megabytes, len(files)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"megabytes": megabytes, "seconds": times}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
