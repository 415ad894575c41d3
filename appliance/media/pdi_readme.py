"""README.TXT of an IHE PDI disc: who made it, what it holds, how to open it, what it conforms to.

The README sits on the disc's surface and is readable by anyone without a viewer, so it takes a
`ContentSummary` (counts, modalities, study years), never the patient tree: no name, ID or birth
date can reach it. Study dates are printed as years only, because a full date of care is patient
data under common de-identification rules (HIPAA Safe Harbor keeps only the year); on a secure
disc even years and modalities are left out and only counts remain.

Plain Latin-1 text with CRLF line ends (read by any editor, Windows Notepad included).
"""

from __future__ import annotations

import re
import textwrap
from datetime import date

from appliance.media.pdi_catalog import ContentSummary
from appliance.media.pdi_options import WEB_BUNDLE_NAME, PdiOptions

README_NAME = "README.TXT"
WIDTH = 76
BUNDLE_ZIP_NAME = "web.zip"
"""What the README's command calls the decrypted archive."""
BUNDLE_INDEX_NAME = "INDEX.HTM"
"""The start page inside the archive (the web content's INDEX.HTM)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    # Operator-configured text may hold tabs or stray control characters: show them as spaces.
    return " ".join(_CONTROL.sub(" ", text).split())


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    # No breaks at hyphens or inside words: "STD-GEN-CD" and file names stay whole.
    lines = textwrap.wrap(
        _clean(text),
        WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_on_hyphens=False,
        break_long_words=False,
    )
    return lines or [""]


def _field(label: str, value: object) -> list[str]:
    return _wrap(str(value), " " * 15, first=f"  {label + ':':<13}")


def readme_text(
    summary: ContentSummary,
    options: PdiOptions,
    *,
    profile_name: str,
    created: date,
    index_name: str,
    checksums_name: str,
) -> str:
    """The README as text (lines joined by CRLF, ending with CRLF)."""
    lines = [
        "README - IMAGING DISC",
        "=" * 21,
        "",
        *_wrap(f"This disc was created by {options.institution_name}."),
    ]
    contact = [c for c in (_clean(c) for c in options.institution_contact.splitlines()) if c]
    if contact:
        lines += ["", "Questions about this disc:"]
        for line in contact:
            lines += _wrap(line, "  ")
    lines += [
        "",
        *_wrap(
            f"Created on {created.isoformat()} with {options.application_name}"
            f" version {options.application_version}."
        ),
        "",
        "WHAT THIS DISC HOLDS",
        "--------------------",
        *_field("Patients", summary.patients),
        *_field("Studies", summary.studies),
        *_field("Series", summary.series),
        *_field("Objects", summary.instances),
    ]
    if not options.secure:
        kinds = ", ".join(f"{count} {kind}" for kind, count in summary.record_types)
        lines += _field("Kinds", kinds)
        if summary.modalities:
            lines += _field("Modalities", ", ".join(summary.modalities))
        if summary.study_years:
            lines += _field("Study years", ", ".join(summary.study_years))
    lines += [
        "",
        *_wrap(
            "To protect privacy this file names no patient. Who the images belong to is recorded"
            " inside the DICOM files" + _pages_clause(options)
        ),
    ]
    if options.secure:
        lines += [
            "",
            "SECURITY",
            "--------",
            *_wrap(
                "The DICOM files on this disc are encrypted (DICOM Secure Media). To open them you"
                " need the password or key that the sender gives you separately. Apart from the"
                " encrypted files, this disc must not carry patient data: this file holds counts"
                " only."
            ),
        ]
    lines += ["", "HOW TO OPEN THIS DISC", "---------------------"]
    lines += _wrap(
        "With a DICOM viewer (any program that reads DICOM media): open the file DICOMDIR at"
        " the top of this disc. It lists every patient, study, series and image; the images"
        " themselves are in the folder DICOM.",
        "   ",
        first="1. ",
    )
    if options.web_content:
        lines += _wrap(
            f"With a web browser: open {index_name} at the top of this disc. The pages show"
            " the patient and study details and reduced previews of the images. The previews"
            " are for orientation only, not for diagnosis: use a DICOM viewer for that.",
            "   ",
            first="2. ",
        )
    if options.web_bundle:
        lines += _bundle_lines()
    lines += [
        "",
        *_wrap("This disc starts nothing by itself: it contains no autorun file and no program."),
    ]
    lines += [
        "",
        "STANDARDS",
        "---------",
        *_wrap(
            "This disc conforms to the IHE Radiology Portable Data for Imaging (PDI) profile,"
            f" content option {options.content_label}."
        ),
        "",
        *_wrap(
            "The DICOM files and the DICOMDIR form a DICOM PS3.10 file set recorded with the"
            f" DICOM PS3.11 media application profile {profile_name}."
        ),
        "",
        *_wrap(
            f"{checksums_name} lists the SHA-256 checksum of every file outside the folder DICOM"
            f" and the DICOMDIR (check with: sha256sum -c {checksums_name})."
        ),
    ]
    return "\r\n".join(lines) + "\r\n"


def _pages_clause(options: PdiOptions) -> str:
    if options.web_content:
        return " and shown on the web pages."
    if options.web_bundle:
        return f" and shown on the web pages inside the encrypted archive {WEB_BUNDLE_NAME}."
    return "."


def _bundle_lines() -> list[str]:
    """How to open the encrypted web bundle. The command names the placeholder PASSWORD,
    never a password; it stands on one line of its own, unwrapped, so it can be copied as it is
    (the only line wider than WIDTH)."""
    return [
        *_wrap(
            f"With a web browser, after decrypting: the file {WEB_BUNDLE_NAME} at the top of this"
            " disc is an encrypted ZIP archive of web pages with the patient and study details"
            " and reduced previews of the images (for orientation only, not for diagnosis). It"
            " opens with the same password or key as the DICOM files, for example with OpenSSL"
            " (replace PASSWORD by the password you were given):",
            "   ",
            first="2. ",
        ),
        "",
        f"  openssl cms -decrypt -inform DER -in {WEB_BUNDLE_NAME} -pwri_password PASSWORD"
        f" -out {BUNDLE_ZIP_NAME}",
        "",
        *_wrap(
            "With a private key and certificate instead of a password, replace"
            " -pwri_password PASSWORD by -inkey KEY.PEM -recip CERT.PEM. Then unpack"
            f" {BUNDLE_ZIP_NAME} into a folder of your computer (any ZIP program) and open"
            f" {BUNDLE_INDEX_NAME} there with a web browser.",
            "   ",
        ),
    ]


def readme_bytes(text: str) -> bytes:
    """Latin-1 bytes; characters Latin-1 lacks (e.g. in an institution name) become '?'."""
    return text.encode("latin-1", errors="replace")
