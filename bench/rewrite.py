"""Import rewrite speed: the identity rewrite of a study against `cp -r` of the same folder.

    .venv/bin/python -m bench.rewrite --runs 3

Data: the synthetic CT study of `bench.receive` (400 x 512x512 16-bit, about 210 MB, generated
into bench/.data/ once). Each run, in one process and on the same filesystem: `cp -r` of the
folder, then `rewrite_all` with a new identity (UIDs kept) with 1 and 2 workers (the splice
path), the same with the splice path switched off (1 worker: the header path, as before the
splice path existed; same output bytes), then with new UIDs (2 workers). The page cache is warm
for all (the files were just read by the previous step), so the figures compare CPU and copy
cost, not the disc. Measures, asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom

from appliance.importer import rewrite
from appliance.importer.rewrite import ImportIdentity
from appliance.importer.rewrite_batch import RewriteItem, rewrite_all
from appliance.importer.uid_plan import UidPlan, collect_uids
from appliance.media.reidentify import NewIdentity
from bench.receive import DEFAULT_DATA_DIR, DataSpec, ensure_data_set

SECRET = b"bench-secret-0123456789"


def _items(src: Path, out: Path) -> list[RewriteItem]:
    identity = ImportIdentity(
        NewIdentity(patient_name="LOCAL^BENCH", patient_id="MRN-1", issuer_of_patient_id="HOSP"),
        "KIOSK",
        "OTHER HOSPITAL",
    )
    return [
        RewriteItem(p, out / p.name, None, "1.2.840.10008.1.2.1", identity)
        for p in sorted(src.glob("*.dcm"))
    ]


def main() -> None:
    """Run the benchmark and print files/s and MB/s per variant."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    data = ensure_data_set(DataSpec("ct", 400, 512, 512), args.data_dir)
    src = data.directory
    files = sorted(src.glob("*.dcm"))
    total = sum(p.stat().st_size for p in files)
    originals: set[str] = set()
    for path in files:
        originals |= collect_uids(pydicom.dcmread(path, stop_before_pixels=True))
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=src.parent) as tmp:
        work = Path(tmp)
        for _ in range(args.runs):
            variants: dict[str, Callable[[Path], object]] = {
                "cp -r": lambda out: subprocess.run(["cp", "-r", str(src), str(out)], check=True),
                "rewrite, 1 worker": lambda out: rewrite_all(
                    _items(src, _made(out)), uid_plan=UidPlan.keep(), workers=1
                ),
                "rewrite, 2 workers": lambda out: rewrite_all(
                    _items(src, _made(out)), uid_plan=UidPlan.keep(), workers=2
                ),
                "rewrite, header path, 1 worker": lambda out: _header_path(
                    lambda: rewrite_all(_items(src, _made(out)), uid_plan=UidPlan.keep(), workers=1)
                ),
                "rewrite new UIDs, 2 workers": lambda out: rewrite_all(
                    _items(src, _made(out)),
                    uid_plan=UidPlan.new_uids(SECRET, originals),
                    workers=2,
                ),
            }
            for label, action in variants.items():
                out = work / "out"
                start = time.perf_counter()
                action(out)
                times.setdefault(label, []).append(time.perf_counter() - start)
                shutil.rmtree(out)
    reference = statistics.median(times["cp -r"])
    print(f"{len(files)} files, {total / 1e6:.0f} MB, {args.runs} runs (median)")
    for label, values in times.items():
        seconds = statistics.median(values)
        print(
            f"{label:30s} {seconds:6.2f} s  {len(files) / seconds:7.0f} files/s  "
            f"{total / 1e6 / seconds:7.0f} MB/s  {reference / seconds:5.2f}x cp"
        )


def _header_path(action: Callable[[], object]) -> object:
    """Run `action` with the splice path switched off (the rewrite as it was before it)."""
    with _splice_path_off():
        return action()


@contextmanager
def _splice_path_off() -> Iterator[None]:
    saved = rewrite._SPLICE_PATH
    rewrite._SPLICE_PATH = False
    try:
        yield
    finally:
        rewrite._SPLICE_PATH = saved


def _made(path: Path) -> Path:
    path.mkdir()
    return path


if __name__ == "__main__":
    main()
