"""The DICOM Conformance Statement (docs/conformance.md) stays true to the code.

Its generated tables must equal a fresh rendering, list every UID of the reference lists, and
describe what the listener really offers; its association rejection table is checked against a
live listener on loopback.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from appliance.config import KioskConfig, NodeConfig
from appliance.config.schema import DicomConfig
from appliance.dicom import conformance, scu, statuses
from appliance.dicom.server import DicomServer, scp_contexts
from appliance.dicom.sop_classes import VERIFICATION, storage_sop_classes
from appliance.dicom.syntaxes import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    preference,
    supported_syntaxes,
)
from appliance.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from appliance.store import InstanceStore, StoreIndex

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "conformance.md"
PACKAGED_DATA = REPO / "appliance" / "dicom" / "data"
SHARED_SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "spec"
CSV_FILES = ("storage-sop-classes.csv", "transfer-syntaxes.csv")


def _doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def _blocks() -> dict[str, str]:
    return conformance.document_blocks(_doc_text())


def _reference_csv(name: str) -> Path:
    """The reference list: the shared spec when present, else the packaged copy."""
    shared = SHARED_SPEC / name
    return shared if shared.is_file() else PACKAGED_DATA / name


def _csv_uids(name: str, column: str) -> list[str]:
    with _reference_csv(name).open(newline="", encoding="utf-8") as fh:
        return [row[column] for row in csv.DictReader(fh)]


def _column(block: str, index: int) -> list[str]:
    """The cells of one column of a generated markdown table (header and rule skipped)."""
    rows = [line for line in block.splitlines() if line.startswith("|")][2:]
    return [row.strip("|").split(" | ")[index].strip() for row in rows]


# -- the generated blocks ------------------------------------------------------------------------


def test_document_has_every_generated_block_once() -> None:
    assert sorted(_blocks()) == sorted(conformance.BLOCKS)


def test_generated_blocks_are_fresh() -> None:
    fresh = conformance.render_blocks()
    for name, body in _blocks().items():
        assert body == fresh[name], (
            f"docs/conformance.md: block {name!r} is stale; run "
            f"{conformance.REGENERATE} docs/conformance.md"
        )


def test_check_command_passes_on_committed_document() -> None:
    assert conformance.main(["--check", str(DOC)]) == 0


@pytest.mark.parametrize(
    ("csv_name", "column", "block"),
    [
        ("storage-sop-classes.csv", "sop_class_uid", "storage-sop-classes"),
        ("transfer-syntaxes.csv", "transfer_syntax_uid", "transfer-syntaxes"),
    ],
)
def test_every_reference_uid_is_listed(csv_name: str, column: str, block: str) -> None:
    uid_column = 1 if block == "storage-sop-classes" else 2
    listed = set(_column(_blocks()[block], uid_column))
    expected = _csv_uids(csv_name, column)
    assert expected, f"{csv_name} is empty"
    missing = [uid for uid in expected if uid not in listed]
    assert not missing, f"not in the {block} table of docs/conformance.md: {missing}"


@pytest.mark.parametrize("name", CSV_FILES)
def test_packaged_reference_lists_equal_shared_spec(name: str) -> None:
    shared = SHARED_SPEC / name
    if not SHARED_SPEC.is_dir():
        pytest.skip(f"{SHARED_SPEC} is absent (not a full checkout of the workspace)")
    assert shared.is_file(), f"{shared} is missing"
    assert (PACKAGED_DATA / name).read_bytes() == shared.read_bytes(), (
        f"appliance/dicom/data/{name} differs from {shared}: copy the spec into the package"
    )


# -- the tables describe what the listener offers -------------------------------------------------


def test_storage_table_lists_exactly_the_listener_contexts() -> None:
    contexts = scp_contexts(preference([]))
    offered = [str(cx.abstract_syntax) for cx in contexts if cx.abstract_syntax != VERIFICATION]
    assert _column(_blocks()["storage-sop-classes"], 1) == offered
    assert offered == [sop.uid for sop in storage_sop_classes()]
    assert set(_column(_blocks()["storage-sop-classes"], 2)) == {"SCP"}


def test_every_storage_context_uses_the_documented_order() -> None:
    documented = _column(_blocks()["transfer-syntaxes"], 2)
    assert documented == preference([])
    assert sorted(documented) == sorted(supported_syntaxes())
    for cx in scp_contexts(preference([])):
        if cx.abstract_syntax != VERIFICATION:
            assert [str(ts) for ts in cx.transfer_syntax] == documented


def test_transfer_syntax_order_follows_the_stated_rule() -> None:
    """Lossless compressed > Explicit VR LE > Deflated > Implicit VR LE > Big Endian > lossy."""
    table = supported_syntaxes()
    order = preference([])
    kinds = [table[uid].kind for uid in order]
    first_native = kinds.index("native")
    assert set(kinds[:first_native]) == {"lossless"}
    natives = order[first_native : first_native + 4]
    assert natives == [EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE]
    assert set(kinds[first_native + 4 :]) == {"lossy"}


def test_verification_tables_match_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    scp = [cx for cx in scp_contexts(preference([])) if cx.abstract_syntax == VERIFICATION]
    assert len(scp) == 1
    assert _column(_blocks()["verification-scp-context"], 3) == [
        str(ts) for ts in scp[0].transfer_syntax
    ]

    proposed: list[list[str]] = []

    def fake_associate(self: AE, *args: object, **kwargs: object) -> Association:
        proposed.extend([str(ts) for ts in cx.transfer_syntax] for cx in self.requested_contexts)
        raise RuntimeError("captured")

    monkeypatch.setattr(AE, "associate", fake_associate)
    node = NodeConfig(ae_title="PEER", host="127.0.0.1", port=104)
    with pytest.raises(RuntimeError, match="captured"):
        scu.echo(KioskConfig(), node)
    assert proposed == [_column(_blocks()["verification-scu-context"], 3)]


def test_implementation_identifiers_are_listed() -> None:
    block = _blocks()["implementation-identifiers"]
    assert f"| {IMPLEMENTATION_CLASS_UID} |" in block
    assert f"| {IMPLEMENTATION_VERSION_NAME} |" in block


def test_every_storage_status_is_documented() -> None:
    codes = _column(_blocks()["storage-statuses"], 2)
    assert codes == [f"0x{code:04X}" for code in statuses.STORAGE_STATUS_TEXT]
    constants = {
        value for name, value in vars(statuses).items() if name.isupper() and isinstance(value, int)
    }
    assert constants == set(statuses.STORAGE_STATUS_TEXT)


def test_configuration_table_lists_every_dicom_key() -> None:
    keys = _column(_blocks()["configuration"], 0)
    assert [k for k in keys if k.startswith("`dicom.")] == [
        f"`dicom.{name}`" for name in DicomConfig.model_fields
    ]


# -- the command line ----------------------------------------------------------------------------


def test_check_names_a_stale_block_and_write_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "conformance.md"
    text = _doc_text()
    stale = text.replace(f"| {IMPLEMENTATION_CLASS_UID} |", "| 1.2.3 |")
    assert stale != text
    copy.write_text(stale, encoding="utf-8")

    assert conformance.main(["--check", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "implementation-identifiers" in err
    assert "storage-sop-classes" not in err

    assert conformance.main(["--write", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == text
    assert conformance.main(["--check", str(copy)]) == 0


def test_check_names_a_missing_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "conformance.md"
    copy.write_text(
        re.sub(
            r"<!-- BEGIN GENERATED: configuration -->.*?<!-- END GENERATED: configuration -->",
            "",
            _doc_text(),
            flags=re.DOTALL,
        ),
        encoding="utf-8",
    )
    assert conformance.main(["--check", str(copy)]) == 1
    assert "configuration" in capsys.readouterr().err
    assert conformance.main(["--write", str(copy)]) == 1


# -- the association rejection table against a live listener -------------------------------------

_REJECTION_ROW = re.compile(
    r"^\| (?P<result>\d) \(rejected-\w+\) \| (?P<source>\d) \(.*?\) "
    r"\| (?P<reason>\d) \((?P<name>[\w-]+)\) \|",
    re.MULTILINE,
)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[DicomServer]:
    """An in-process listener: AE KIOSK, calling AE allow list [GOOD], one association at most."""
    dicom = DicomConfig(
        bind="127.0.0.1", max_associations=1, allowed_calling_ae_titles=["GOOD"]
    ).model_copy(update={"port": 0})
    config = KioskConfig(dicom=dicom)
    index = StoreIndex(tmp_path / "kiosk.sqlite")
    server = DicomServer(config, InstanceStore(tmp_path / "store", index, 0))
    server.start()
    try:
        yield server
    finally:
        server.stop_accepting()
        server.drain(5)
        index.close()


def _settle(server: DicomServer, open_associations: int) -> None:
    """Wait until the listener has let go of associations that already ended."""
    deadline = time.monotonic() + 10
    while server.active_associations() > open_associations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.active_associations() == open_associations


def _rejection(
    server: DicomServer, calling: str, called: str, *, open_associations: int = 0
) -> tuple[int, int, int] | None:
    """Associate and return (result, source, reason) of the rejection, or None if accepted."""
    _settle(server, open_associations)
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=called)
    if assoc.is_established:
        assoc.release()
        return None
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert rj is not None
    assert rj.result is not None and rj.result_source is not None and rj.diagnostic is not None
    return int(rj.result), int(rj.result_source), int(rj.diagnostic)


def test_rejection_table_matches_the_listener(listener: DicomServer) -> None:
    documented = {
        m["name"]: (int(m["result"]), int(m["source"]), int(m["reason"]))
        for m in _REJECTION_ROW.finditer(_doc_text())
    }
    assert set(documented) == {
        "called-AE-title-not-recognized",
        "calling-AE-title-not-recognized",
        "local-limit-exceeded",
    }
    called, calling, limit = (
        documented["called-AE-title-not-recognized"],
        documented["calling-AE-title-not-recognized"],
        documented["local-limit-exceeded"],
    )
    assert _rejection(listener, "GOOD", "KIOSK") is None
    assert _rejection(listener, "GOOD", "ELSEWHERE") == called
    assert _rejection(listener, "STRANGER", "KIOSK") == calling
    # The documented precedence: the Called AE Title is reported before the Calling AE Title.
    assert _rejection(listener, "STRANGER", "ELSEWHERE") == called

    _settle(listener, 0)
    holder = AE(ae_title="GOOD")
    holder.add_requested_context(VERIFICATION)
    held = holder.associate("127.0.0.1", listener.port, ae_title="KIOSK")
    assert held.is_established
    try:
        assert _rejection(listener, "GOOD", "KIOSK", open_associations=1) == limit
        # ... and the local limit before either AE title.
        assert _rejection(listener, "STRANGER", "ELSEWHERE", open_associations=1) == limit
    finally:
        held.release()
