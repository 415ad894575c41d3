"""File-set benchmark: `build_fileset` next to DCMTK `dcmmkdir` on the same CT study.

Data: the synthetic CT study of `bench.receive` (400 slices of 512x512 16-bit noise, Explicit VR
Little Endian, about 210 MB; `--quick`: 50 slices), generated once and cached.

Per run, all on warm page cache, each into a fresh temporary folder:

- `kiosk`: `build_fileset(files, out, STD-GEN-CD)`: header parsing, structure check, copying
  the files under new File IDs with our File Meta, SHA-256 of every file, the DICOMDIR.
- `dcmmkdir`: `dcmmkdir --recurse IMAGES` over a copy of the files made beforehand (not timed):
  what DCMTK needs to index files that are already in place.
- `cp+dcmmkdir`: `cp -r` of the files into a file-set folder, then the same `dcmmkdir`: the
  nearest like-for-like job (copy and index; no hashing).

Reported: median and best wall time per variant, MB/s of source bytes, and the ratios of the
medians. A run counts only if both sides produced a DICOMDIR listing every instance.

Usage (from the repository root):

    .venv/bin/python -m bench.fileset --quick
    .venv/bin/python -m bench.fileset --runs 5
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.receive import DEFAULT_DATA_DIR, FULL_SPECS, QUICK_SPECS, ensure_data_set

DCMMKDIR = Path("/usr/bin/dcmmkdir")
DCMDUMP = Path("/usr/bin/dcmdump")


@dataclass(frozen=True)
class Figures:
    """What one benchmark invocation measured."""

    files: int
    megabytes: float
    profile: str
    import_seconds: float
    peak_rss_mib_before: float
    peak_rss_mib_after: float
    seconds: dict[str, list[float]]
    """Wall time per variant, one value per run."""


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _copy_as_file_ids(files: list[Path], target: Path) -> None:
    """Copy the files to `target` under names dcmmkdir accepts (<= 8 chars, no extension)."""
    target.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, target / path.stem.upper()[:8])


def _run_dcmmkdir(root: Path) -> None:
    result = subprocess.run(
        [str(DCMMKDIR), "--recurse", "IMAGES"], cwd=root, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"dcmmkdir failed: {result.stderr.decode(errors='replace')[-500:]}")


def _count_dcmmkdir_images(dicomdir: Path) -> int:
    dump = subprocess.run(
        [str(DCMDUMP), "-q", "+P", "0004,1430", str(dicomdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dump.stdout.count("[IMAGE]")


def run(files: list[Path], runs: int, profile_name: str, scratch: Path) -> Figures:
    """Measure every variant `runs` times; return the figures."""
    started = time.perf_counter()
    from appliance.media.fileset import build_fileset
    from appliance.media.profiles import get_profile

    import_seconds = time.perf_counter() - started
    profile = get_profile(profile_name)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: dict[str, list[float]] = {"kiosk": [], "dcmmkdir": [], "cp+dcmmkdir": []}
    for number in range(runs):
        work = Path(tempfile.mkdtemp(prefix=f"run{number}-", dir=scratch))
        try:
            out = work / "kiosk"
            result = None

            def ours(out: Path = out) -> None:
                nonlocal result
                result = build_fileset(files, out, profile, fileset_id="BENCH")

            times["kiosk"].append(_timed(ours))
            if result is None or result.instances != len(files):
                raise RuntimeError("build_fileset did not write every instance")

            ref = work / "ref"
            _copy_as_file_ids(files, ref / "IMAGES")

            def index_only(ref: Path = ref) -> None:
                _run_dcmmkdir(ref)

            times["dcmmkdir"].append(_timed(index_only))
            if _count_dcmmkdir_images(ref / "DICOMDIR") != len(files):
                raise RuntimeError("dcmmkdir did not list every instance")

            both = work / "both"
            both.mkdir()

            def copy_and_index(both: Path = both, ref: Path = ref) -> None:
                subprocess.run(["cp", "-r", str(ref / "IMAGES"), str(both / "IMAGES")], check=True)
                _run_dcmmkdir(both)

            times["cp+dcmmkdir"].append(_timed(copy_and_index))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Figures(
        files=len(files),
        megabytes=sum(p.stat().st_size for p in files) / 1e6,
        profile=profile_name,
        import_seconds=import_seconds,
        peak_rss_mib_before=rss_before / 1024,
        peak_rss_mib_after=rss_after / 1024,
        seconds=times,
    )


def report(figures: Figures) -> str:
    """Human-readable summary with ratios of the medians."""
    times = figures.seconds
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [
        f"{figures.files} files, {figures.megabytes:.1f} MB, profile {figures.profile}, "
        f"{len(times['kiosk'])} runs (warm cache)",
        f"{'variant':<14}{'median s':>10}{'best s':>10}{'MB/s':>10}",
    ]
    for name, values in times.items():
        median = medians[name]
        lines.append(
            f"{name:<14}{median:>10.3f}{min(values):>10.3f}{figures.megabytes / median:>10.0f}"
        )
    lines.append(
        f"ratio kiosk/dcmmkdir = {medians['kiosk'] / medians['dcmmkdir']:.2f}, "
        f"kiosk/(cp+dcmmkdir) = {medians['kiosk'] / medians['cp+dcmmkdir']:.2f}"
    )
    lines.append(
        f"import of the file-set modules: {figures.import_seconds:.2f} s (not timed); peak RSS "
        f"{figures.peak_rss_mib_before:.0f} MiB before the runs, "
        f"{figures.peak_rss_mib_after:.0f} MiB after"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 slices instead of 400")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", default="STD-GEN-CD")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    for tool in (DCMMKDIR, DCMDUMP):
        if not tool.exists():
            print(f"{tool} is missing (apt-get install dcmtk)", file=sys.stderr)
            return 2
    spec = (QUICK_SPECS if args.quick else FULL_SPECS)["ct"]
    data = ensure_data_set(spec, args.data_dir)
    files = sorted(data.directory.glob("*.dcm"))
    with tempfile.TemporaryDirectory(prefix="bench-fileset-") as scratch:
        figures = run(files, args.runs, args.profile, Path(scratch))
    print(report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(figures), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
