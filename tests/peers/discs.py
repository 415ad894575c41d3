"""Inspect disc images with tools we did not write (xorriso, dciodvfy, dcmdump, pydicom)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet


def extract_iso(image: Path, target: Path) -> Path:
    """Unpack an ISO image with xorriso (ISO 9660 names as on the disc)."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", f"stdio:{image}", "-extract", "/", str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


def iso_paths(image: Path) -> list[str]:
    """Every file path in the image as xorriso lists it."""
    out = subprocess.run(
        ["xorriso", "-indev", f"stdio:{image}", "-find", "/", "-type", "f"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return sorted(line.strip().strip("'") for line in out.splitlines() if line.startswith("'"))


def dciodvfy_errors(dicomdir: Path) -> list[str]:
    """The Error lines dciodvfy prints for a DICOMDIR (it exits 1 on any)."""
    result = subprocess.run(
        ["dciodvfy", str(dicomdir)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def fileset_sop_uids(root: Path) -> set[str]:
    """SOP Instance UIDs listed in the DICOMDIR, read by pydicom's FileSet."""
    fs = FileSet(pydicom.dcmread(root / "DICOMDIR"))
    return {str(instance.SOPInstanceUID) for instance in fs}


def dcmdump_ok(path: Path) -> bool:
    """True when DCMTK's dcmdump reads the file without error."""
    result = subprocess.run(
        ["/usr/bin/dcmdump", "-q", str(path)], capture_output=True, timeout=60, check=False
    )
    return result.returncode == 0
