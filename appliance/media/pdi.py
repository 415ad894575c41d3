"""IHE PDI (Portable Data for Imaging) content of a disc: README, optional web pages, checksums.

Input: a directory holding a PS3.11 file set (`DICOMDIR` and `DICOM/...`). Output, next to it:

    README.TXT   always: institution, creating application, counts, how to open, conformance
    INDEX.HTM    with web content ("DICOM PLUS WEB"), see `pdi_web`
    IHE_PDI/     with web content: pages and JPEG previews
    WEB.P7M      secure discs with the encrypted web bundle instead: the pages (and a copy of
                 the README) as one encrypted ZIP, see `web_bundle`
    SHA256.TXT   `sha256sum` format: the SHA-256 of every file outside DICOM/ and DICOMDIR
                 (itself excluded); verify from the disc root with `sha256sum -c SHA256.TXT`

Never an autorun file: a disc that starts programs is refused by hospital policy and by IHE PDI.
Run this before the secure step (encryption): it reads the DICOMDIR and the instances in clear.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from appliance.media.manifest import Manifest, ManifestEntry, sha256_file
from appliance.media.pdi_catalog import DICOMDIR_NAME, Catalog, read_catalog
from appliance.media.pdi_errors import PdiError
from appliance.media.pdi_options import DICOM_ONLY, DICOM_PLUS_WEB, WEB_BUNDLE_NAME, PdiOptions
from appliance.media.pdi_readme import README_NAME, readme_bytes, readme_text
from appliance.media.pdi_web import INDEX_NAME, WEB_DIR, write_web_content
from appliance.media.web_bundle import WebBundle, write_web_bundle

__all__ = [
    "CHECKSUMS_NAME",
    "DICOM_ONLY",
    "DICOM_PLUS_WEB",
    "INDEX_NAME",
    "README_NAME",
    "WEB_BUNDLE_NAME",
    "WEB_DIR",
    "PdiError",
    "PdiOptions",
    "WebBundle",
    "write_pdi_content",
]

log = logging.getLogger(__name__)

CHECKSUMS_NAME = "SHA256.TXT"
DICOM_DIR = "DICOM"
DEFAULT_PROFILE = "STD-GEN-CD"
_PROFILE = re.compile(r"[A-Z][A-Z0-9-]{0,63}")
# Names a checksum line can carry without sha256sum's backslash escaping (and ISO-safe).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_OURS = (README_NAME, INDEX_NAME, WEB_DIR, WEB_BUNDLE_NAME, CHECKSUMS_NAME)


def write_pdi_content(
    root: Path,
    options: PdiOptions,
    *,
    profile_name: str = DEFAULT_PROFILE,
    created: date | None = None,
    external_files: Mapping[str, Path] | None = None,
    catalog: Catalog | None = None,
    web_bundle: WebBundle | None = None,
) -> Manifest:
    """Write the PDI content into `root` and return a Manifest of every file written.

    `profile_name` is the PS3.11 application profile the file set was recorded with (README
    claim); `created` the date printed (default today). Content of an earlier run (README,
    INDEX.HTM, IHE_PDI/, SHA256.TXT) is replaced, so a retried job starts clean.
    `external_files` maps the File IDs (POSIX paths) of instances that are not under `root`
    (streamed from the store onto the disc) to files holding the same data set. `catalog`,
    when given (`catalog_from_plan` of the file set just built), is used instead of reading
    the DICOMDIR back. `web_bundle` (required with `options.web_bundle`) is where the
    encrypted web bundle is staged and who can open it.
    Raises PdiError for a missing or hostile DICOMDIR, an autorun file, or a write failure.
    """
    if not _PROFILE.fullmatch(profile_name):
        raise PdiError(f"not a PS3.11 application profile name: {profile_name[:64]!r}")
    try:
        root = root.resolve(strict=True)
    except OSError as exc:
        raise PdiError(f"file-set root {root} does not exist") from exc
    _refuse_autorun(root)
    if options.web_bundle and web_bundle is None:
        raise PdiError("the encrypted web bundle needs its staging folder and recipients")
    if options.web_bundle and web_bundle is not None:
        web_bundle.check_outside(root)
    if catalog is None:
        catalog = read_catalog(root, external_files)
    created = created or date.today()
    try:
        _remove_previous(root)
        readme = root / README_NAME
        text = readme_text(
            catalog.summary(),
            options,
            profile_name=profile_name,
            created=created,
            index_name=INDEX_NAME,
            checksums_name=CHECKSUMS_NAME,
        )
        readme.write_bytes(readme_bytes(text))
        written = [readme]
        if options.web_content:
            written += write_web_content(
                root, catalog, options, created=created, readme_name=README_NAME
            )
        if options.web_bundle and web_bundle is not None:
            written.append(
                write_web_bundle(root, web_bundle, catalog, options, created=created, readme=readme)
            )
        manifest = _write_checksums(root, written)
    except OSError as exc:
        raise PdiError(f"PDI content cannot be written: {exc.strerror or exc}") from exc
    log.info(
        "PDI content written: %d files, %d bytes, %s",
        len(manifest.entries),
        manifest.total_bytes,
        options.content_label,
    )
    return manifest


def _refuse_autorun(root: Path) -> None:
    # We never write one; one left by someone else would make the disc start a program.
    for entry in root.iterdir():
        if entry.name.lower() == "autorun.inf":
            raise PdiError("the file-set root holds an autorun.inf: refusing to publish it")


def _remove_previous(root: Path) -> None:
    for name in _OURS:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _covered_files(root: Path) -> list[str]:
    """POSIX paths of every file the checksum list covers, sorted."""
    found: list[str] = []
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if here == root:
            dirs[:] = [d for d in dirs if d != DICOM_DIR]
            files[:] = [f for f in files if f not in (DICOMDIR_NAME, CHECKSUMS_NAME)]
        for name in [*dirs, *files]:
            if not _SAFE_NAME.fullmatch(name) or (here / name).is_symlink():
                rel = (here / name).relative_to(root).as_posix()
                raise PdiError(f"unexpected entry outside {DICOM_DIR}/: {rel[:80]!r}")
        found += [(here / f).relative_to(root).as_posix() for f in files]
    return sorted(found)


def _write_checksums(root: Path, written: list[Path]) -> Manifest:
    """Write SHA256.TXT; return the Manifest of `written` plus SHA256.TXT itself."""
    entries: dict[str, ManifestEntry] = {}
    lines = []
    for rel in _covered_files(root):
        path = root / rel
        entry = ManifestEntry(rel, sha256_file(path), path.stat().st_size)
        entries[rel] = entry
        # Two spaces: sha256sum's text-mode separator; LF ends: what sha256sum -c expects.
        lines.append(f"{entry.sha256}  {rel}\n")
    checksums = root / CHECKSUMS_NAME
    checksums.write_text("".join(lines), encoding="ascii", newline="\n")
    manifest = Manifest()
    for path in written:
        rel = path.relative_to(root).as_posix()
        manifest.add(entries[rel])
    manifest.add(ManifestEntry(CHECKSUMS_NAME, sha256_file(checksums), checksums.stat().st_size))
    return manifest
