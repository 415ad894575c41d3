"""Verify the encrypted web bundle of a secure disc image (WEB.P7M), after burning.

The bundle's bytes are already compared with what was written by `verify.verify_image` (it is
in the manifest); this proves they are what a recipient needs: the envelope opens with the
job's password, the content is a sound ZIP archive (every member's CRC-32, as `unzip -t`
checks), it has INDEX.HTM, and every page is well-formed XHTML whose links stay inside the
archive (or name DICOM content on the disc), as the clear web pages are checked.

The decrypted archive (patient data in clear) lives in an unnamed temporary file that is gone
when the check ends. Member names are only compared, never turned into local paths.
"""

from __future__ import annotations

import io
import posixpath
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO, Final, cast

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from appliance.media.pdi_options import WEB_BUNDLE_NAME
from appliance.media.pdi_web import INDEX_NAME
from appliance.media.secure import SecureFileReader, SecureMediaError
from appliance.media.verify import VerifyReport

SPOOL_BYTES: Final = 32 * 1024 * 1024
"""A decrypted archive up to this size stays in memory; a larger one spills to an unnamed
temporary file."""
READ_BYTES: Final = 1024 * 1024
"""Read-ahead over the image file."""
PAGE_SUFFIXES: Final = (".HTM", ".HTML")
DICOMDIR_NAME: Final = "DICOMDIR"
DICOM_DIR: Final = "DICOM/"
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_LINK_ATTRIBUTES: Final = ("href", "src")
_XHTML_SCRIPT: Final = "{http://www.w3.org/1999/xhtml}script"


def _safe_member(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )


def _link_problem(page: str, link: str, members: set[str], disc_dicom: set[str]) -> str | None:
    """Why `link` on `page` does not stay inside the archive (or on the disc's DICOM part)."""
    if _SCHEME.match(link) or link.startswith(("/", "\\")):
        return f"{page} links outside the archive ({link[:60]!r})"
    path = link.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None  # a link within the page itself
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
    if target in members or target in disc_dicom:
        return None
    return f"{page} links to {path[:60]!r}, which is neither in the archive nor DICOM content"


def _page_problems(
    archive: zipfile.ZipFile, page: str, members: set[str], disc_dicom: set[str]
) -> list[str]:
    try:
        tree = ET.fromstring(archive.read(page))
    except ET.ParseError:
        return [f"{page} is not well-formed XHTML"]
    problems: list[str] = []
    for node in tree.iter():
        if node.tag == _XHTML_SCRIPT:
            problems.append(f"{page} holds a script")
        for attribute in _LINK_ATTRIBUTES:
            link = node.get(attribute)
            if link is not None:
                problem = _link_problem(page, link, members, disc_dicom)
                if problem is not None:
                    problems.append(problem)
    return problems


def check_bundle_archive(archive: BinaryIO, disc_files: Collection[str] = ()) -> list[str]:
    """Problems of a decrypted web bundle (empty: sound). `disc_files` are the POSIX paths of
    the files on the disc; links may name its DICOMDIR and files under DICOM/."""
    disc_dicom = {f for f in disc_files if f == DICOMDIR_NAME or f.startswith(DICOM_DIR)}
    try:
        with zipfile.ZipFile(archive) as opened:
            names = opened.namelist()
            problems = [
                f"member name {n[:60]!r} is not a safe relative path"
                for n in names
                if not _safe_member(n)
            ]
            if len(set(names)) != len(names):
                problems.append("the archive holds the same member twice")
            damaged = opened.testzip()
            if damaged is not None:
                problems.append(f"member {damaged[:60]!r} is damaged (CRC-32 mismatch)")
            members = set(names)
            if INDEX_NAME not in members:
                problems.append(f"the archive has no {INDEX_NAME}")
            for page in sorted(n for n in members if n.upper().endswith(PAGE_SUFFIXES)):
                problems += _page_problems(opened, page, members, disc_dicom)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        return [f"is not a readable ZIP archive ({type(exc).__name__})"]
    return problems


def verify_web_bundle(
    image: Path,
    reader: SecureFileReader,
    disc_files: Collection[str],
    *,
    name: str = WEB_BUNDLE_NAME,
) -> VerifyReport:
    """Decrypt `name` from the ISO image `image` with `reader` (the job's password; it must
    accept non-DICOM content) and check the archive (`check_bundle_archive`)."""
    report = VerifyReport(image=image)
    report.checked_files = 1
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(image))
        try:
            with (
                tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spooled,
                iso.open_file_from_iso(iso_path=f"/{name};1") as raw,
            ):
                clear = cast(BinaryIO, spooled)  # a binary file in all but its declared type
                reader.decrypt(io.BufferedReader(raw, READ_BYTES), clear, name=name)
                clear.seek(0)
                for problem in check_bundle_archive(clear, disc_files):
                    report.add(name, problem)
        finally:
            iso.close()
    except SecureMediaError as exc:
        report.add(name, f"does not decrypt: {exc}")
    except (PyCdlibException, OSError) as exc:
        report.add(name, f"cannot be read from the image ({type(exc).__name__})")
    return report
