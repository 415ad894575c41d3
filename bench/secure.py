"""Secure DICOM File benchmark: our writer next to `openssl cms -encrypt` on the same CT study.

Data: the synthetic CT study of `bench.receive` (400 slices of 512x512 16-bit noise, about
210 MB; `--quick`: 50 slices), generated once and cached. For the blob variants the files are
concatenated into one file beforehand (not timed).

Per run, on warm page cache, each variant writes into a fresh temporary folder, after an
`os.sync()` (not timed) so no variant pays for the write-back of the one before:

- `kiosk`: `SecureFileWriter.encrypt_file` per file, one after the other: AES-256-CBC, a
  password recipient (PBKDF2-HMAC-SHA256 KEK derived once per job, see below), Digested-data
  with the SHA-256 of the whole file. The same work as `openssl cms -encrypt` plus the
  SHA-256 of the content: the like-for-like figure the targets are about.
- `kiosk +manifest`: the same, also hashing (SHA-256) every written file for the disc
  manifest, as the burn job does: work openssl's runs do not do. (Before this variant existed
  `kiosk` included that hash, so it paid for a second SHA-256 pass openssl never makes.)
- `kiosk x2`: `kiosk +manifest` on two threads: exactly what the burn job runs on a 2-core box
  (`fileset.encrypt_fileset`, `WORKERS` threads, output hashed).
- `openssl/file`: `openssl cms -encrypt -binary -aes256 -pwri_password PW` per file, serial.
- `openssl/file x2`: the same, two processes at a time.
- `openssl blob`: the same command once on the concatenated study.
- `openssl blob -stream`: with `-stream` (indefinite-length BER, the fastest openssl mode).
- `kiosk -> null`: the `kiosk` work with every output going to /dev/null: the cost of the
  cryptography and the CMS structures without creating 400 files.
- `cp`: `shutil.copyfile` of the 400 files into a fresh folder: what merely writing 400 files
  costs on this file system (a floor for every per-file variant that writes).
- `aes raw`: `cryptography` AES-256-CBC over the blob in 1 MiB chunks, nothing written: the
  ceiling of the cipher alone.

openssl derives its PBKDF2 key per file with 2048 rounds; our writer derives once per job with
the default (600,000) rounds. That derivation is timed apart ("PBKDF2 per job") and not in the
`kiosk` figures. Reported: median and best wall time per variant, MB/s (10^6 bytes of input),
the ratios against openssl, and the PBKDF2 cost. One output of each variant is decrypted with
`openssl cms -decrypt` to make sure the run produced real files.

Usage (from the repository root):

    .venv/bin/python -m bench.secure --quick
    .venv/bin/python -m bench.secure --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.receive import DEFAULT_DATA_DIR, FULL_SPECS, QUICK_SPECS, ensure_data_set

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
PASSWORD = "Bench-Pass-2024"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Figures:
    """What one benchmark invocation measured."""

    files: int
    megabytes: float
    runs: int
    seconds: dict[str, list[float]]
    """Wall time per variant, one value per run."""
    pbkdf2_seconds: list[float]
    """Our per-job PBKDF2 derivation at the default iteration count, one per run."""
    pbkdf2_iterations: int
    openssl_version: str


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _openssl_encrypt(source: Path, target: Path, *extra: str) -> None:
    result = subprocess.run(
        [
            OPENSSL,
            "cms",
            "-encrypt",
            "-binary",
            "-aes256",
            *extra,
            "-pwri_password",
            PASSWORD,
            "-in",
            str(source),
            "-outform",
            "DER",
            "-out",
            str(target),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl cms -encrypt failed: {result.stderr.decode()[-300:]}")


def _check_openssl_opens(path: Path, scratch: Path) -> None:
    """A run only counts if openssl can decrypt what it produced."""
    result = subprocess.run(
        [
            OPENSSL,
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(path),
            "-pwri_password",
            PASSWORD,
            "-out",
            str(scratch / "check.out"),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{path.name} does not decrypt: {result.stderr.decode()[-300:]}")


VARIANTS = (
    "kiosk",
    "kiosk +manifest",
    "kiosk x2",
    "kiosk -> null",
    "cp",
    "openssl/file",
    "openssl/file x2",
    "openssl blob",
    "openssl blob -stream",
    "aes raw",
)


def _one_run(files: list[Path], blob: Path, work: Path, times: dict[str, list[float]]) -> float:
    """Time every variant once into `work`; return our PBKDF2 time of this run."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from appliance.media.secure import EnvelopeSettings, PasswordKek, SecureFileWriter
    from appliance.media.secure.fileset import WORKERS

    started = time.perf_counter()
    kek = PasswordKek.derive(PASSWORD)
    pbkdf2 = time.perf_counter() - started
    writer = SecureFileWriter(EnvelopeSettings(passwords=(kek,)))

    def ours(target: Path, workers: int, manifest: bool) -> None:
        target.mkdir()
        if workers == 1:
            for path in files:
                writer.encrypt_file(path, target / path.stem, hash_output=manifest)
            return
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(
                lambda p: writer.encrypt_file(p, target / p.stem, hash_output=manifest), files
            ):
                pass

    def theirs(target: Path, workers: int) -> None:
        target.mkdir()
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda p: _openssl_encrypt(p, target / f"{p.stem}.p7m"), files):
                pass

    def to_null() -> None:
        with open(os.devnull, "wb") as null:
            for path in files:
                with path.open("rb") as source:
                    writer.encrypt(source, path.stat().st_size, null, hash_output=False)

    def copy(target: Path) -> None:
        target.mkdir()
        for path in files:
            shutil.copyfile(path, target / path.stem)

    def raw() -> None:
        encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CBC(os.urandom(16))).encryptor()
        buffer = bytearray(CHUNK + 16)
        with blob.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                encryptor.update_into(chunk, buffer)

    first = files[0].stem
    variants: dict[str, tuple[Callable[[], None], Path]] = {
        "kiosk": (lambda: ours(work / "k1", 1, False), work / "k1" / first),
        "kiosk +manifest": (lambda: ours(work / "km", 1, True), work / "km" / first),
        "kiosk x2": (lambda: ours(work / "k2", WORKERS, True), work / "k2" / first),
        "openssl/file": (lambda: theirs(work / "o1", 1), work / "o1" / f"{first}.p7m"),
        "openssl/file x2": (lambda: theirs(work / "o2", 2), work / "o2" / f"{first}.p7m"),
        "openssl blob": (lambda: _openssl_encrypt(blob, work / "b.p7m"), work / "b.p7m"),
        "openssl blob -stream": (
            lambda: _openssl_encrypt(blob, work / "s.p7m", "-stream"),
            work / "s.p7m",
        ),
    }
    for name, (action, output) in variants.items():
        # Start each variant with no dirty pages of the previous one still being written back.
        os.sync()
        times[name].append(_timed(action))
        _check_openssl_opens(output, work)
        # Drop each output before the next variant, so the page cache stays comparable.
        if output.parent != work:
            shutil.rmtree(output.parent)
        else:
            output.unlink()
    times["kiosk -> null"].append(_timed(to_null))
    os.sync()
    times["cp"].append(_timed(lambda: copy(work / "cp")))
    shutil.rmtree(work / "cp")
    times["aes raw"].append(_timed(raw))
    return pbkdf2


def run(files: list[Path], runs: int, scratch: Path) -> Figures:
    """Measure every variant `runs` times; return the figures."""
    from appliance.media.secure import DEFAULT_ITERATIONS

    blob = scratch / "study.blob"
    with blob.open("wb") as out:
        for path in files:
            out.write(path.read_bytes())
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    pbkdf2: list[float] = []
    for number in range(runs):
        work = Path(tempfile.mkdtemp(prefix=f"run{number}-", dir=scratch))
        try:
            pbkdf2.append(_one_run(files, blob, work, times))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    version = subprocess.run([OPENSSL, "version"], capture_output=True, text=True, check=False)
    return Figures(
        files=len(files),
        megabytes=sum(p.stat().st_size for p in files) / 1e6,
        runs=runs,
        seconds=times,
        pbkdf2_seconds=pbkdf2,
        pbkdf2_iterations=DEFAULT_ITERATIONS,
        openssl_version=version.stdout.strip(),
    )


def report(figures: Figures) -> str:
    """Human-readable summary with ratios of the medians."""
    medians = {name: statistics.median(values) for name, values in figures.seconds.items()}
    rate = {name: figures.megabytes / seconds for name, seconds in medians.items()}
    lines = [
        f"{figures.files} files, {figures.megabytes:.1f} MB, {figures.runs} runs (warm cache), "
        f"{figures.openssl_version}",
        f"{'variant':<22}{'median s':>10}{'best s':>10}{'MB/s':>10}",
    ]
    for name, values in figures.seconds.items():
        lines.append(f"{name:<22}{medians[name]:>10.3f}{min(values):>10.3f}{rate[name]:>10.0f}")
    lines += [
        "ratios of throughput (higher is better for kiosk):",
        f"  kiosk / openssl blob -stream = {rate['kiosk'] / rate['openssl blob -stream']:.2f}"
        "   (target >= 0.8)",
        f"  kiosk / openssl/file         = {rate['kiosk'] / rate['openssl/file']:.2f}"
        "   (target > 3)",
        f"  kiosk +manifest / openssl blob -stream = "
        f"{rate['kiosk +manifest'] / rate['openssl blob -stream']:.2f}"
        "   (plus the output's SHA-256)",
        f"  kiosk x2 / openssl/file x2   = {rate['kiosk x2'] / rate['openssl/file x2']:.2f}",
        f"  kiosk x2 / openssl blob -stream = "
        f"{rate['kiosk x2'] / rate['openssl blob -stream']:.2f}   (the burn job's way)",
        f"  kiosk -> null / openssl blob -stream = "
        f"{rate['kiosk -> null'] / rate['openssl blob -stream']:.2f}   (no per-file writes)",
        f"  cp / openssl blob -stream    = {rate['cp'] / rate['openssl blob -stream']:.2f}"
        "   (the ceiling for anything writing 400 files here)",
        f"  kiosk / cp                   = {rate['kiosk'] / rate['cp']:.2f}",
        f"  kiosk / aes raw              = {rate['kiosk'] / rate['aes raw']:.2f}",
        f"PBKDF2 per job ({figures.pbkdf2_iterations} rounds of HMAC-SHA256, once per disc, not "
        f"in the figures above): median {statistics.median(figures.pbkdf2_seconds) * 1000:.0f} ms",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 slices instead of 400")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    spec = (QUICK_SPECS if args.quick else FULL_SPECS)["ct"]
    data = ensure_data_set(spec, args.data_dir)
    files = sorted(data.directory.glob("*.dcm"))
    with tempfile.TemporaryDirectory(prefix="bench-secure-") as scratch:
        figures = run(files, args.runs, Path(scratch))
    print(report(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(figures), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
