"""The encrypted web bundle of a secure disc: the PDI web pages as one encrypted ZIP, WEB.P7M.

A secure disc must not show patient data in clear, so the web pages (INDEX.HTM, IHE_PDI/
pages and JPEG previews, exactly as `pdi_web` writes them for a clear disc, plus a copy of
README.TXT that INDEX.HTM links to) are rendered into a staging folder outside the disc tree,
packed into one ZIP archive and enveloped as CMS EnvelopedData with plain id-data content for
the recipients of the disc's DICOM files (same password KEKs, same certificates; see
`secure.plain`). Only the envelope lands on the disc; the staging folder is removed at once.

The archive is deterministic for the same pages: members sorted by path, every timestamp the
disc's creation date at midnight, fixed permissions; JPEG previews are stored (deflating them
gains nothing), pages and README are deflated.

Opening it: `openssl cms -decrypt -inform DER -in WEB.P7M -pwri_password PASSWORD -out web.zip`,
unzip, open INDEX.HTM (the README says so).
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from appliance.media.pdi_catalog import Catalog
from appliance.media.pdi_errors import PdiError
from appliance.media.pdi_options import WEB_BUNDLE_NAME, PdiOptions
from appliance.media.pdi_readme import README_NAME
from appliance.media.pdi_web import write_web_content
from appliance.media.secure import EnvelopeSettings, PlainDataWriter, SecureMediaError

log = logging.getLogger(__name__)

BUNDLE_NAME = WEB_BUNDLE_NAME
SITE_DIR = "site"
"""The pages' folder inside the staging folder (the archive's root)."""
ARCHIVE_NAME = "WEB.ZIP"
"""The clear archive inside the staging folder, before it is enveloped."""
STORED_SUFFIXES = frozenset({".JPG", ".JPEG", ".PNG"})
"""Members already compressed: stored, not deflated."""
_FILE_MODE = 0o100644  # a regular file, rw-r--r--, as unzip restores it
_UNIX = 3  # "made by" Unix: fixed so the archive does not depend on the writing platform


@dataclass(frozen=True, slots=True)
class WebBundle:
    """Where the bundle is made and who can open it."""

    staging: Path
    """A work folder outside the disc tree; emptied first and removed when done (it holds
    the pages in clear meanwhile)."""
    settings: EnvelopeSettings
    """The recipients and cipher of the disc's DICOM files (the same password KEKs)."""

    def check_outside(self, root: Path) -> None:
        """PdiError if the staging folder lies inside the disc tree `root` (the clear pages
        would be published)."""
        if self.staging.resolve().is_relative_to(root.resolve()):
            raise PdiError("the web bundle's staging folder must be outside the disc tree")


def pack_zip(folder: Path, target: Path, *, stamp: date) -> int:
    """Pack every file under `folder` into the ZIP `target`; return the member count.

    Deterministic: members in sorted POSIX path order, all dated `stamp` at 00:00:00, mode
    0644, "made by" Unix; directories are implied by the member paths. Large members stream.
    """
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())
    date_time = (max(stamp.year, 1980), stamp.month, stamp.day, 0, 0, 0)
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.create_system = _UNIX
            info.external_attr = _FILE_MODE << 16
            stored = path.suffix.upper() in STORED_SUFFIXES
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.file_size = path.stat().st_size  # decides ZIP64 for a huge member
            with path.open("rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
    return len(files)


def write_web_bundle(
    root: Path,
    bundle: WebBundle,
    catalog: Catalog,
    options: PdiOptions,
    *,
    created: date,
    readme: Path,
) -> Path:
    """Render the web pages of `catalog`, pack them with a copy of `readme`, and write the
    envelope to `root`/WEB.P7M; return its path.

    Raises PdiError when the staging folder lies inside `root`, or the pages, the archive or
    the envelope cannot be written.
    """
    bundle.check_outside(root)
    staging = bundle.staging.resolve()
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / SITE_DIR
    target = root / BUNDLE_NAME
    try:
        site.mkdir(parents=True)
        write_web_content(site, catalog, options, created=created, readme_name=README_NAME)
        shutil.copyfile(readme, site / README_NAME)
        archive = staging / ARCHIVE_NAME
        members = pack_zip(site, archive, stamp=created)
        shutil.rmtree(site)  # the clear pages go as soon as they are packed
        result = PlainDataWriter(bundle.settings).encrypt_file(archive, target)
    except SecureMediaError as exc:
        raise PdiError(f"the web bundle cannot be encrypted: {exc}") from None
    except OSError as exc:
        raise PdiError(f"the web bundle cannot be written: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "web bundle %s: %d files, %d bytes packed, %d bytes encrypted",
        BUNDLE_NAME,
        members,
        result.plaintext_size,
        result.size,
    )
    return target
