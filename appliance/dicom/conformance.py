"""The code-dependent tables of the DICOM Conformance Statement (docs/conformance.md).

Each table is a named block between marker comments in the document:

    <!-- BEGIN GENERATED: storage-sop-classes -->
    ...
    <!-- END GENERATED: storage-sop-classes -->

The blocks are rendered from the same functions and constants the listener uses, so the
statement cannot drift from the code without a test failing:

    python -m appliance.dicom.conformance --write docs/conformance.md   # regenerate in place
    python -m appliance.dicom.conformance --check docs/conformance.md   # exit 1 when stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

from appliance import __version__
from appliance.config.example import toml_value
from appliance.config.schema import DicomConfig, StoreConfig
from appliance.dicom import mwl_conformance, qr_conformance, statuses
from appliance.dicom.server import scp_contexts
from appliance.dicom.sop_classes import VERIFICATION, storage_sop_classes
from appliance.dicom.syntaxes import preference, supported_syntaxes
from appliance.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from appliance.printing import conformance as print_conformance

DEFAULT_PATH = Path("docs/conformance.md")
"""Where the statement lives, relative to the repository root."""

REGENERATE = "python -m appliance.dicom.conformance --write"
"""The command that rewrites the generated blocks (quoted in error messages)."""

_BLOCK_RE = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED: (?P<name>[a-z0-9-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- END GENERATED: (?P=name) -->)",
    re.DOTALL,
)

KIND_TEXT = {
    "lossless": "Lossless compressed (or encapsulated uncompressed)",
    "native": "Uncompressed (or deflated)",
    "lossy": "Lossy compressed",
}
"""How each `TransferSyntax.kind` is described in the statement."""

STORAGE_STATUS_WHEN = {
    statuses.SUCCESS: (
        "The instance is complete on disk (fsynced, renamed into place) and indexed."
    ),
    statuses.OUT_OF_RESOURCES: (
        "Storing the instance would cross the free-space reserve of the store "
        "(`store.free_space_reserve_mb`), or the file system is full. Nothing is kept."
    ),
    statuses.DATASET_MISMATCH: (
        "The SOP Class UID in the data set differs from the presentation context, the SOP "
        "Instance UID differs from the request's Affected SOP Instance UID, or a UID needed to "
        "file the instance (SOP Instance, Study Instance, Series Instance) is missing or "
        "malformed. Nothing is kept."
    ),
    statuses.CANNOT_UNDERSTAND: (
        "The received bytes cannot be parsed as a data set in the negotiated transfer syntax. "
        "Nothing is kept."
    ),
    statuses.PROCESSING_FAILURE: (
        "Any other local failure (file system or index error). Nothing is kept; the sender may "
        "send the instance again."
    ),
}
"""When our Storage SCP answers with each status of `statuses.STORAGE_STATUS_TEXT`."""

CONFIG_KEYS: tuple[tuple[str, type[DicomConfig] | type[StoreConfig], str], ...] = (
    *(("dicom", DicomConfig, name) for name in DicomConfig.model_fields),
    ("store", StoreConfig, "free_space_reserve_mb"),
)
"""The configuration keys listed in section 4.4 (table, model, field)."""


class ConformanceError(Exception):
    """The document's generated blocks are missing, unknown or stale."""


# -- rendering helpers -------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text safe for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


CONTEXT_HEADER = (
    "Abstract Syntax",
    "SOP Class UID",
    "Transfer Syntax Name",
    "Transfer Syntax UID",
    "Role",
    "Extended Negotiation",
)
"""The columns of every presentation context table (the row providers give rows in this order)."""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table (no trailing newline)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _hex(status: int) -> str:
    return f"0x{status:04X}"


# -- the blocks -----------------------------------------------------------------------------------


def storage_sop_classes_table() -> str:
    """Every storage SOP class the Storage SCP accepts: name, UID, role."""
    rows = [(sop.name, sop.uid, "SCP") for sop in storage_sop_classes()]
    return _table(("SOP Class Name", "SOP Class UID", "Role"), rows)


def accepted_transfer_syntaxes() -> list[str]:
    """The transfer syntax UIDs of the default configuration, in order of acceptance."""
    return preference([])


def transfer_syntaxes_table() -> str:
    """The transfer syntaxes of every storage context, in default order of acceptance."""
    table = supported_syntaxes()
    rows = [
        (str(rank), table[uid].name, uid, KIND_TEXT[table[uid].kind])
        for rank, uid in enumerate(accepted_transfer_syntaxes(), start=1)
    ]
    return _table(("Preference", "Transfer Syntax Name", "Transfer Syntax UID", "Kind"), rows)


def verification_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes of the Verification context, in order of acceptance."""
    for context in scp_contexts(accepted_transfer_syntaxes()):
        if context.abstract_syntax == VERIFICATION:
            return [str(uid) for uid in context.transfer_syntax]
    raise ConformanceError("the listener offers no Verification presentation context")


def verification_scu_transfer_syntaxes() -> list[str]:
    """The transfer syntaxes `scu.echo` proposes: it names none, so pynetdicom's defaults."""
    return [str(uid) for uid in DEFAULT_TRANSFER_SYNTAXES]


def _verification_table(uids: Iterable[str], role: str) -> str:
    table = supported_syntaxes()
    rows = [("Verification", VERIFICATION, table[uid].name, uid, role, "None") for uid in uids]
    return _table(CONTEXT_HEADER, rows)


def verification_scp_table() -> str:
    """The Verification context the listener accepts, transfer syntaxes in acceptance order."""
    return _verification_table(verification_transfer_syntaxes(), "SCP")


def verification_scu_table() -> str:
    """The Verification context `kioskctl echo` proposes."""
    return _verification_table(verification_scu_transfer_syntaxes(), "SCU")


def implementation_identifiers_table() -> str:
    """Implementation Class UID and Version Name, as sent in A-ASSOCIATE and File Meta."""
    rows = [
        ("Implementation Class UID", IMPLEMENTATION_CLASS_UID),
        ("Implementation Version Name", IMPLEMENTATION_VERSION_NAME),
        ("Product version", __version__),
    ]
    return _table(("Identifier", "Value"), rows)


def association_defaults_table() -> str:
    """The general association parameters, with the shipped defaults."""
    dicom = DicomConfig()
    max_pdu = f"{dicom.max_pdu} bytes" if dicom.max_pdu else "unlimited"
    rows = [
        ("Application Context Name", "1.2.840.10008.3.1.1.1", "fixed"),
        ("Maximum PDU size received", max_pdu + " (0 = unlimited)", "`dicom.max_pdu`"),
        ("Maximum PDU size sent", "the maximum the peer announces", "fixed"),
        (
            "Simultaneous associations accepted",
            str(dicom.max_associations),
            "`dicom.max_associations`",
        ),
        ("Associations initiated by one `kioskctl echo`", "1", "fixed"),
        ("Asynchronous operations window", "not supported (1 invoked, 1 performed)", "fixed"),
        ("ACSE timeout", f"{dicom.acse_timeout:g} s", "`dicom.acse_timeout`"),
        ("DIMSE timeout", f"{dicom.dimse_timeout:g} s", "`dicom.dimse_timeout`"),
        ("Network (idle) timeout", f"{dicom.network_timeout:g} s", "`dicom.network_timeout`"),
        ("Drain period on shutdown", f"{dicom.drain_seconds:g} s", "`dicom.drain_seconds`"),
    ]
    return _table(("Parameter", "Default", "Configuration key"), rows)


def storage_statuses_table() -> str:
    """The C-STORE response statuses of our Storage SCP and when each is sent."""
    rows = []
    for code, text in statuses.STORAGE_STATUS_TEXT.items():
        category, _, meaning = text.partition(": ")
        if code not in STORAGE_STATUS_WHEN:
            raise ConformanceError(f"status {_hex(code)} has no explanation in STORAGE_STATUS_WHEN")
        comment = "No" if code == statuses.SUCCESS else "Yes (no patient data)"
        rows.append((category, meaning or "-", _hex(code), STORAGE_STATUS_WHEN[code], comment))
    header = ("Service Status", "Further Meaning", "Status Code", "Behaviour", "Error Comment")
    return _table(header, rows)


def configuration_table() -> str:
    """The configuration keys of the DICOM node with their defaults and meaning."""
    rows = []
    for table_name, model, name in CONFIG_KEYS:
        field = model.model_fields[name]
        rows.append(
            (f"`{table_name}.{name}`", f"`{toml_value(field.default)}`", field.description or "")
        )
    return _table(("Key", "Default", "Meaning"), rows)


def media_profiles_table() -> str:
    """Application profiles the file-set creator writes, with the transfer syntaxes each allows."""
    from appliance.dicom.syntaxes import supported_syntaxes
    from appliance.media.profiles import PROFILES

    names = supported_syntaxes()
    rows = []
    for profile in PROFILES.values():
        syntaxes = ", ".join(
            names[uid].name if uid in names else uid for uid in sorted(profile.transfer_syntaxes)
        )
        rows.append((f"`{profile.name}`", profile.media, profile.source, syntaxes))
    return _table(("Profile", "Medium", "Defined in", "Transfer syntaxes written"), rows)


def dicomdir_record_types_table() -> str:
    """DICOMDIR leaf record type per SOP class (others: PRIVATE for private classes)."""
    from appliance.media.dicomdir import RECORD_TYPES

    by_type: dict[str, list[str]] = {}
    for uid, record_type in RECORD_TYPES.items():
        by_type.setdefault(record_type, []).append(uid)
    rows = [(f"`{kind}`", str(len(uids))) for kind, uids in sorted(by_type.items())]
    return _table(("Directory record type", "SOP classes"), rows)


def print_scu_contexts_table() -> str:
    """The presentation contexts a print job proposes (its printer's meta SOP class only)."""
    return _table(CONTEXT_HEADER, print_conformance.context_rows())


def print_statuses_table() -> str:
    """Every Print Management status and what the print queue does with it."""
    return _table(print_conformance.STATUS_HEADER, print_conformance.status_rows())


def qr_scp_contexts_table() -> str:
    """The Q/R presentation contexts the listener accepts."""
    return _table(CONTEXT_HEADER, qr_conformance.scp_context_rows())


def qr_scp_keys_table() -> str:
    """The Study Root keys the Q/R SCP matches and returns."""
    return _table(qr_conformance.KEY_HEADER, qr_conformance.key_rows())


def qr_scp_statuses_table() -> str:
    """Every C-FIND and C-MOVE status of the Q/R SCP."""
    return _table(qr_conformance.STATUS_HEADER, qr_conformance.status_rows())


def storage_scu_fallback_table() -> str:
    """What the Storage SCU converts to when a peer accepts no stored syntax."""
    return _table(qr_conformance.FALLBACK_HEADER, qr_conformance.fallback_rows())


def mwl_scu_contexts_table() -> str:
    """The presentation contexts a Modality Worklist query proposes."""
    return _table(CONTEXT_HEADER, mwl_conformance.context_rows())


def mwl_scu_keys_table() -> str:
    """The keys of the Modality Worklist identifier the kiosk sends."""
    return _table(mwl_conformance.KEY_HEADER, mwl_conformance.key_rows())


BLOCKS: dict[str, Callable[[], str]] = {
    "media-profiles": media_profiles_table,
    "dicomdir-record-types": dicomdir_record_types_table,
    "implementation-identifiers": implementation_identifiers_table,
    "association-defaults": association_defaults_table,
    "storage-sop-classes": storage_sop_classes_table,
    "transfer-syntaxes": transfer_syntaxes_table,
    "verification-scp-context": verification_scp_table,
    "verification-scu-context": verification_scu_table,
    "storage-statuses": storage_statuses_table,
    "configuration": configuration_table,
    "print-scu-contexts": print_scu_contexts_table,
    "print-statuses": print_statuses_table,
    "qr-scp-contexts": qr_scp_contexts_table,
    "qr-scp-keys": qr_scp_keys_table,
    "qr-scp-statuses": qr_scp_statuses_table,
    "storage-scu-fallback": storage_scu_fallback_table,
    "mwl-scu-contexts": mwl_scu_contexts_table,
    "mwl-scu-keys": mwl_scu_keys_table,
}
"""Every generated block of the statement, by marker name."""


def render_blocks() -> dict[str, str]:
    """Every block, freshly rendered (no trailing newline)."""
    return {name: render() for name, render in BLOCKS.items()}


# -- the document ---------------------------------------------------------------------------------


def document_blocks(text: str) -> dict[str, str]:
    """The generated blocks found in a document, by name, without their markers.

    Raises ConformanceError when a block name appears twice.
    """
    found: dict[str, str] = {}
    for match in _BLOCK_RE.finditer(text):
        name = match["name"]
        if name in found:
            raise ConformanceError(f"generated block {name!r} appears more than once")
        found[name] = match["body"].strip("\n")
    return found


def _check_names(found: Iterable[str]) -> None:
    names = set(found)
    missing = sorted(set(BLOCKS) - names)
    unknown = sorted(names - set(BLOCKS))
    if missing:
        raise ConformanceError(
            f"generated block(s) missing from the document: {', '.join(missing)}"
        )
    if unknown:
        raise ConformanceError(f"unknown generated block(s) in the document: {', '.join(unknown)}")


def stale_blocks(text: str) -> list[str]:
    """Names of the blocks whose content differs from a fresh rendering (document order).

    Raises ConformanceError when a block is missing, unknown or duplicated.
    """
    found = document_blocks(text)
    _check_names(found)
    fresh = render_blocks()
    return [name for name, body in found.items() if body != fresh[name]]


def regenerate(text: str) -> str:
    """The document with every generated block replaced by a fresh rendering."""
    _check_names(document_blocks(text))
    fresh = render_blocks()

    def replace(match: re.Match[str]) -> str:
        # Blank lines around the table keep markdown renderers from merging it with the markers.
        return f"{match['begin']}\n{fresh[match['name']]}\n\n{match['end']}"

    return _BLOCK_RE.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    """Write or check the generated blocks of the statement; exit 1 when stale or broken."""
    parser = argparse.ArgumentParser(
        prog="python -m appliance.dicom.conformance",
        description="Regenerate or check the code-dependent tables of the conformance statement.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--write", type=Path, metavar="PATH", help="rewrite the generated blocks of PATH in place"
    )
    group.add_argument(
        "--check",
        type=Path,
        metavar="PATH",
        nargs="?",
        const=DEFAULT_PATH,
        help=f"exit 1 when a generated block of PATH (default {DEFAULT_PATH}) is stale",
    )
    args = parser.parse_args(argv)
    path: Path | None = args.write or args.check
    if path is None:
        for name, body in render_blocks().items():
            sys.stdout.write(f"<!-- BEGIN GENERATED: {name} -->\n\n{body}\n\n")
            sys.stdout.write(f"<!-- END GENERATED: {name} -->\n\n")
        return 0
    try:
        text = path.read_text(encoding="utf-8")
        if args.write is not None:
            updated = regenerate(text)
            if updated != text:
                path.write_text(updated, encoding="utf-8")
            return 0
        stale = stale_blocks(text)
    except OSError as exc:
        print(f"{path}: cannot read or write: {exc.strerror}", file=sys.stderr)
        return 1
    except ConformanceError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if stale:
        print(
            f"{path}: generated block(s) stale: {', '.join(stale)}; run {REGENERATE} {path}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
