"""Benchmark: printing a 24-image CT series on 2 films to DCMTK dcmprscp, and render speed.

In one run, on 24 synthetic CT slices (512x512, 16-bit; bench.receive's generator):

- kioskd receives the series (not timed); `kioskctl print dry STUDY --format STANDARD\\3,4
  --size 14INX17IN --wait` prints it on 2 films to a fresh dcmprscp. Reported: the command's
  wall time (CLI start, queue pick-up, N-GET, render, 24 N-SETs, 2 prints), and the job's own
  running time from its record.
- DCMTK's own print tools on the same files and the same dcmprscp: `dcmpsprt` renders each
  film (12 images, 3x4) into a Stored Print and its Hardcopy images, `dcmprscu` sends both.
  dcmpsprt keeps each image at its own 512x512; kioskd resizes each to its 700x637 image box
  (150 dpi on 14x17 in), so it renders and sends about 1.5 times the pixels.
- Rendering throughput in this process: `render_image` of the 24 slices into their box, 8-bit
  and 12-bit, as images/s.

Run: `.venv/bin/python -m bench.print [--runs 3]`. Prints seconds, images/s and ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from bench.receive import (
    DEFAULT_DATA_DIR,
    LOOPBACK,
    DataSpec,
    KioskdTarget,
    ensure_data_set,
    free_port,
    nodelay_env,
    start_process,
    stop_process,
)

SPEC = DataSpec("printct", 24, 512, 512)
FORMAT = "STANDARD\\3,4"
FILM_SIZE = "14INX17IN"
DCMTK = Path("/usr/bin")

_PRINTER_KEYS = """\
DisplayFormat = 1,1\\2,2\\3,3\\3,4\\4,4\\4,5
FilmSizeID = 8INX10IN\\10INX12IN\\11INX14IN\\14INX14IN\\14INX17IN
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
FilmDestination = MAGAZINE\\PROCESSOR
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MinDensity = 20
BorderDensity = 150\\20\\BLACK\\WHITE
EmptyImageDensity = 20\\BLACK\\WHITE
ImplicitOnly = false
DisableNewVRs = false
Supports12Bit = true
SupportsPresentationLUT = true
PresentationLUTMatchRequired = false
OmitSOPClassUIDFromCreateResponse = false
"""


def _dcmpstat_config(root: Path, section: str, *, port: int, scu: bool) -> Path:
    """A dcmpstat.cfg for the SCP (LOCALPRINTER) or for DCMTK's own client (PRINTER)."""
    for sub in ("log", "spool", "db"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    text = (
        "[[GENERAL]]\n[APPLICATION]\n"
        f"LogDirectory = {root}/log\n[PRINT]\nDirectory = {root}/spool\n"
        f"DeletePrintJobs = false\n[DATABASE]\nDirectory = {root}/db\n[[COMMUNICATION]]\n"
    )
    if scu:
        text += "[NETWORK]\naetitle = DCMTKSCU\n"
    kind, host = ("PRINTER", LOOPBACK) if scu else ("LOCALPRINTER", "localhost")
    text += (
        f"[{section}]\nAetitle = PRINTSCP\nHostname = {host}\nPort = {port}\nType = {kind}\n"
        + _PRINTER_KEYS
    )
    path = root / "dcmpstat.cfg"
    path.write_text(text)
    return path


class PrintScp:
    """A fresh dcmprscp in its own directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.config = _dcmpstat_config(root, "PRINTSCP", port=self.port, scu=False)
        self.proc = start_process(
            [str(DCMTK / "dcmprscp"), "-c", str(self.config), "-p", "PRINTSCP"],
            root / "dcmprscp.log",
            nodelay_env(),
            root,
        )
        time.sleep(0.3)

    def films(self) -> int:
        """Stored Print objects written so far (one per printed film)."""
        return sum(1 for _ in (self.root / "db").glob("SP_*.dcm"))

    def stop(self) -> None:
        """SIGTERM and wait."""
        stop_process(self.proc)


class PrintKioskd(KioskdTarget):
    """kioskd with one printer, `dry`, at the benchmark's dcmprscp."""

    def __init__(self, workdir: Path, scp_port: int) -> None:
        super().__init__(workdir)
        self.scp_port = scp_port

    def prepare(self) -> None:
        """The shipped defaults plus the printer (150 dpi, 8-bit, film box printing)."""
        super().prepare()
        config_path = self.workdir / "kiosk.toml"
        config = tomllib.loads(config_path.read_text())
        config["printers"] = {
            "dry": {
                "ae_title": "PRINTSCP",
                "host": LOOPBACK,
                "port": self.scp_port,
                "display_formats": [FORMAT],
                "default_display_format": FORMAT,
            }
        }
        config_path.write_text(tomli_w.dumps(config))

    def kioskctl(self, *args: str) -> str:
        """Run kioskctl against this daemon; its stdout."""
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
        return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout


def kioskd_print(workdir: Path, files: list[Path]) -> dict[str, float]:
    """Seconds of one kioskd print job of `files` (2 films), end to end and in the runner."""
    scp = PrintScp(workdir / "scp")
    target = PrintKioskd(workdir / "kioskd", scp.port)
    target.start()
    try:
        subprocess.run(
            [str(DCMTK / "storescu"), "-R", "-aec", "KIOSK", LOOPBACK, str(target.port)]
            + [str(f) for f in files],
            check=True,
            capture_output=True,
            env=nodelay_env(),
        )
        study = json.loads(target.kioskctl("studies"))[0]["study_uid"]
        started = time.perf_counter()
        job = json.loads(
            target.kioskctl(
                "print", "dry", study, "--size", FILM_SIZE, "--wait", "--timeout", "600"
            )
        )
        wall = time.perf_counter() - started
        if job["state"] != "succeeded" or scp.films() != 2:
            raise RuntimeError(f"print job: {job['state']} {job['error']}; {scp.films()} film(s)")
    finally:
        target.stop()
        scp.stop()
    return {"wall": wall, "job": job["finished_at"] - job["started_at"]}


def dcmtk_print(workdir: Path, files: list[Path]) -> dict[str, float]:
    """Seconds of DCMTK's dcmpsprt (render both films) and dcmprscu (send them)."""
    scp = PrintScp(workdir / "scp")
    client = _dcmpstat_config(workdir / "client", "PRT", port=scp.port, scu=True)
    try:
        started = time.perf_counter()
        for first in (0, 12):
            subprocess.run(
                [
                    *(str(DCMTK / "dcmpsprt"), "-c", str(client), "-p", "PRT", "-l", "3", "4"),
                    *("--filmsize", FILM_SIZE, *(str(f) for f in files[first : first + 12])),
                ],
                check=True,
                capture_output=True,
                env=nodelay_env(),
            )
        rendered = time.perf_counter() - started
        stored = sorted((workdir / "client" / "db").glob("SP_*.dcm"))
        subprocess.run(
            [str(DCMTK / "dcmprscu"), "-c", str(client), "-p", "PRT", *(str(p) for p in stored)],
            check=True,
            capture_output=True,
            env=nodelay_env(),
        )
        wall = time.perf_counter() - started
        if scp.films() != 2:
            raise RuntimeError(f"DCMTK printed {scp.films()} film(s)")
    finally:
        scp.stop()
    return {"wall": wall, "render": rendered}


def render_rate(files: list[Path], bits: int) -> float:
    """Images per second of `render_image` into the 3x4 box of a 14x17 in film at 150 dpi."""
    from appliance.printing.compose import PrintImage
    from appliance.printing.filmsize import film_pixels
    from appliance.printing.layout import film_geometry, parse_display_format
    from appliance.printing.render import RenderSettings, read_header, render_image

    columns, rows = film_pixels(FILM_SIZE, "PORTRAIT", {}, 150)
    box = film_geometry(parse_display_format(FORMAT), columns, rows).boxes[0]
    settings = RenderSettings(bits=bits)
    started = time.perf_counter()
    for path in files:
        image = PrintImage(path, path.name)
        render_image(image, (box.width, box.height), settings, read_header(image))
    return len(files) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the medians."""
    parser = argparse.ArgumentParser(prog="python -m bench.print", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    args = parser.parse_args(argv)
    files = sorted(ensure_data_set(SPEC, args.data_dir).directory.glob("*.dcm"))
    runs: list[dict[str, Any]] = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-print-") as tmp:
            kiosk = kioskd_print(Path(tmp) / "kiosk", files)
            dcmtk = dcmtk_print(Path(tmp) / "dcmtk", files)
        run = {
            "kioskd_wall": kiosk["wall"],
            "kioskd_job": kiosk["job"],
            "dcmtk_wall": dcmtk["wall"],
            "dcmtk_render": dcmtk["render"],
            "render_8bit_images_per_s": render_rate(files, 8),
            "render_12bit_images_per_s": render_rate(files, 12),
        }
        runs.append(run)
        print(f"run {number}: " + ", ".join(f"{k} {v:.2f}" for k, v in run.items()), flush=True)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"\n24 CT images (512x512) on 2 films {FORMAT} {FILM_SIZE}, median of {args.runs}:")
    print(f"  kioskctl print --wait, end to end : {median['kioskd_wall']:6.2f} s")
    print(f"  kioskd job (runner start -> end)  : {median['kioskd_job']:6.2f} s")
    print(f"  DCMTK dcmpsprt + dcmprscu         : {median['dcmtk_wall']:6.2f} s")
    print(f"    of which dcmpsprt rendering     : {median['dcmtk_render']:6.2f} s")
    print(
        f"  ratio kioskd job / DCMTK          : {median['kioskd_job'] / median['dcmtk_wall']:6.2f}"
    )
    print(
        f"  rendering (in process, 700x637 box): {median['render_8bit_images_per_s']:.1f} "
        f"images/s 8-bit, {median['render_12bit_images_per_s']:.1f} images/s 12-bit"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
