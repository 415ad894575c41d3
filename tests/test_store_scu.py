"""Storage SCU (appliance.dicom.store_scu) against real Storage SCPs on loopback.

kioskd stores data sets byte for byte, so it shows that what we send is exactly the stored
file's data set; DCMTK storescp with and without `+xa` plays a peer that takes compressed data
or only uncompressed data (then we must decompress); Orthanc is a second real archive. Peers
that abort (storescp `--abort-after`, a pynetdicom SCP aborting mid-way) must cost us the
instances, never a crash.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE

from appliance.config import KioskConfig, NodeConfig
from appliance.dicom.scu_session import AssociationFailedError
from appliance.dicom.scu_transport import WakingAE
from appliance.dicom.server import configure_ae
from appliance.dicom.store_plan import MAX_CONTEXTS, plan_batches
from appliance.dicom.store_scu import (
    InstanceResult,
    MoveOriginator,
    Outcome,
    SendItem,
    send_instances,
)
from appliance.dicom.store_wire import encode_store_command
from appliance.errors import KioskError
from appliance.identity import IMPLEMENTATION_CLASS_UID
from tests.peers.data import (
    DCMTK_UNREADABLE,
    dataset_bytes,
    make_instance,
    pydicom_sample_files,
)
from tests.peers.kioskd import KioskdProcess
from tests.peers.orthanc import Orthanc
from tests.peers.pynetdicom_scp import AbortingStorageSCP
from tests.peers.storescp import Storescp

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
CONFIG = KioskConfig()


def _item(path: Path) -> SendItem:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return SendItem(
        path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID)
    )


def _samples(names: list[str] | None = None) -> list[SendItem]:
    """pydicom's samples, one per SOP Instance UID (several variants share one)."""
    items: dict[str, SendItem] = {}
    for path in pydicom_sample_files():
        if names is not None and path.name not in names:
            continue
        item = _item(path)
        items.setdefault(item.sop_instance_uid, item)
    return list(items.values())


def _node(ae_title: str, port: int) -> NodeConfig:
    return NodeConfig(ae_title=ae_title, host="127.0.0.1", port=port)


def test_stored_bytes_go_out_unchanged(make_kioskd: Callable[..., KioskdProcess]) -> None:
    """kioskd (which keeps what it receives) ends up with exactly each file's data set, in
    every stored syntax: native, deflated, big endian, JPEG, JPEG-LS, J2K, RLE."""
    daemon = make_kioskd()
    items = _samples()
    assert len({i.transfer_syntax_uid for i in items}) >= 9
    seen: list[InstanceResult] = []
    summary = send_instances(CONFIG, _node("KIOSK", daemon.port), items, on_result=seen.append)
    assert [r.sop_instance_uid for r in seen] == [i.sop_instance_uid for i in items]
    assert summary.failed == 0 and summary.completed == len(items), summary.results
    assert all(
        r.transfer_syntax_uid == i.transfer_syntax_uid for r, i in zip(seen, items, strict=True)
    )
    assert not any(r.converted for r in seen)
    stored = {p.stem: p for p in daemon.stored_files()}
    for item in items:
        target = stored[item.sop_instance_uid]
        sent = dataset_bytes(item.path)
        if item.transfer_syntax_uid == DEFLATED and len(sent) % 2:
            sent += b"\0"  # an odd deflated stream goes out padded to even length (PS3.5 A.5)
        assert dataset_bytes(target) == sent, item.path.name
        meta = pydicom.dcmread(target, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle == "KIOSK"  # our AE title as calling AE
        assert meta.TransferSyntaxUID == item.transfer_syntax_uid


LOSSLESS = [
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless
    "rtdose_rle_1frame.dcm",  # RLE
]
LOSSY = ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_small_odd_jpeg.dcm"]
"""Compressed samples with distinct SOP Instance UIDs (many variants share one)."""


def test_compressed_to_an_uncompressed_only_peer_is_decompressed(tmp_path: Path) -> None:
    """storescp without +xa takes only uncompressed syntaxes: the instances arrive in Explicit
    VR Little Endian with the pixels the source decodes to; lossy ones say they were lossy."""
    items = _samples(LOSSLESS + LOSSY + ["CT_small.dcm", "JPEG-lossy.dcm"])
    assert len(items) == len(LOSSLESS) + len(LOSSY) + 2
    # 12-bit JPEG Extended: no decoder here; it must fail alone, as a result, not a crash.
    (undecodable,) = [i for i in items if i.path.name == "JPEG-lossy.dcm"]
    items.remove(undecodable)
    items.insert(1, undecodable)
    with Storescp(tmp_path / "scp", accept_all=False) as scp:
        summary = send_instances(CONFIG, _node(scp.ae_title, scp.port), items)
        received = scp.received()
        syntaxes = scp.received_syntaxes()
    assert summary.completed == len(items) - 1, summary.results
    assert [r.sop_instance_uid for r in summary.results if r.outcome is Outcome.FAILURE] == [
        undecodable.sop_instance_uid
    ]
    assert "cannot convert" in summary.results[1].reason
    assert not summary.association_lost
    by_uid = {r.sop_instance_uid: r for r in summary.results}
    items.remove(undecodable)
    for item in items:
        result = by_uid[item.sop_instance_uid]
        assert result.converted == (item.transfer_syntax_uid != EXPLICIT)
        assert syntaxes[item.sop_instance_uid] == EXPLICIT
        got = pydicom.dcmread(received[item.sop_instance_uid])
        source = pydicom.dcmread(item.path)
        assert got.SOPInstanceUID == source.SOPInstanceUID
        assert np.array_equal(got.pixel_array, source.pixel_array), item.path.name
        if item.path.name in LOSSY:
            assert got.LossyImageCompression == "01"


def test_implicit_only_peer_gets_implicit_vr(tmp_path: Path) -> None:
    """A peer that accepts Implicit VR Little Endian only (storescp +xi): native, big endian
    and compressed sources are all re-encoded for it."""
    names = ["CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "rtplan.dcm"]
    items = _samples(names)
    assert len(items) == 3  # MR_small_bigendian and MR_small_RLE share a SOP Instance UID
    with Storescp(tmp_path / "scp", accept_all=False, extra=("+xi",)) as scp:
        summary = send_instances(CONFIG, _node(scp.ae_title, scp.port), items)
        syntaxes = scp.received_syntaxes()
        received = scp.received()
    assert summary.completed == len(items), summary.results
    assert set(syntaxes.values()) == {IMPLICIT}
    for item in items:
        got = pydicom.dcmread(received[item.sop_instance_uid])
        source = pydicom.dcmread(item.path)
        if "PixelData" in source:
            assert np.array_equal(got.pixel_array, source.pixel_array), item.path.name


def test_send_to_orthanc(tmp_path: Path) -> None:
    # Orthanc parses with DCMTK, which cannot read a few of pydicom's samples.
    items = [i for i in _samples() if i.path.name not in DCMTK_UNREADABLE]
    with Orthanc(tmp_path / "orthanc") as orthanc:
        summary = send_instances(CONFIG, _node("ORTHANC", orthanc.port), items)
        assert summary.completed == len(items), summary.results
        assert orthanc.instance_uids() == {i.sop_instance_uid for i in items}


def test_peer_that_aborts_on_the_first_request(tmp_path: Path) -> None:
    items = [_item(make_instance(tmp_path, instance_number=n)) for n in range(1, 6)]
    with Storescp(tmp_path / "scp", abort_after=True) as scp:
        seen: list[InstanceResult] = []
        summary = send_instances(
            CONFIG, _node(scp.ae_title, scp.port), items, on_result=seen.append
        )
    assert summary.association_lost
    assert summary.failed == len(items) and summary.completed == 0
    assert [r.sop_instance_uid for r in seen] == [i.sop_instance_uid for i in items]
    assert all(r.outcome is Outcome.FAILURE and "association lost" in r.reason for r in seen)


def test_peer_that_aborts_midway(tmp_path: Path) -> None:
    items = [_item(make_instance(tmp_path, instance_number=n)) for n in range(1, 9)]
    with AbortingStorageSCP(abort_at=4) as scp:
        summary = send_instances(CONFIG, _node(scp.ae_title, scp.port), items)
    assert summary.association_lost
    assert summary.completed == 3 and summary.failed == 5
    assert [r.outcome for r in summary.results] == [Outcome.SUCCESS] * 3 + [Outcome.FAILURE] * 5
    assert scp.received == [i.sop_instance_uid for i in items[:3]]
    assert summary.failed_uids == [i.sop_instance_uid for i in items[3:]]


def test_missing_file_and_stop_request(tmp_path: Path) -> None:
    items = [_item(make_instance(tmp_path, instance_number=n)) for n in range(1, 7)]
    items[1].path.unlink()
    sent: list[str] = []

    def stop() -> bool:
        return len(sent) >= 4

    with Storescp(tmp_path / "scp") as scp:
        summary = send_instances(
            CONFIG,
            _node(scp.ae_title, scp.port),
            items,
            on_result=lambda r: sent.append(r.sop_instance_uid),
            should_stop=stop,
        )
        received = set(scp.received())
    assert [r.outcome for r in summary.results] == [
        Outcome.SUCCESS,
        Outcome.FAILURE,
        Outcome.SUCCESS,
        Outcome.SUCCESS,
    ]
    assert "missing" in summary.results[1].reason
    assert summary.not_sent == [i.sop_instance_uid for i in items[4:]]
    assert not summary.association_lost
    assert received == {items[i].sop_instance_uid for i in (0, 2, 3)}


def test_prepare_hook_runs_ahead_in_order_and_its_errors_stay_per_instance(
    tmp_path: Path,
) -> None:
    """`prepare` sees every instance once, in order (the next one while the peer stores the
    one before); a KioskError fails only its instance; any other error is reported only after
    the instance in flight was answered, and fails that one and the rest (association aborted)."""
    items = [_item(make_instance(tmp_path, instance_number=n)) for n in range(1, 7)]
    seen: list[str] = []

    def prepare(item: SendItem, as_stored: bool) -> SendItem:
        assert as_stored
        seen.append(item.sop_instance_uid)
        if item is items[1]:
            raise KioskError("cannot rewrite this one")
        if item is items[4]:
            raise RuntimeError("a bug")
        return item

    results: list[InstanceResult] = []
    with Storescp(tmp_path / "scp") as scp:
        summary = send_instances(
            CONFIG,
            _node(scp.ae_title, scp.port),
            items,
            on_result=results.append,
            prepare=prepare,
        )
        received = set(scp.received())
    assert seen == [i.sop_instance_uid for i in items[:5]]
    assert [r.sop_instance_uid for r in results] == [i.sop_instance_uid for i in items]
    assert [r.outcome for r in results] == [
        Outcome.SUCCESS,
        Outcome.FAILURE,
        Outcome.SUCCESS,
        Outcome.SUCCESS,
        Outcome.FAILURE,
        Outcome.FAILURE,
    ]
    assert results[1].reason == "cannot rewrite this one"
    assert "local error (RuntimeError)" in results[4].reason
    assert summary.association_lost
    assert received == {items[i].sop_instance_uid for i in (0, 2, 3)}


def test_refused_and_unreachable_peers_raise(
    make_kioskd: Callable[..., KioskdProcess], tmp_path: Path
) -> None:
    items = [_item(make_instance(tmp_path))]
    daemon = make_kioskd()
    with pytest.raises(AssociationFailedError) as refused:
        send_instances(CONFIG, _node("NOT-KIOSK", daemon.port), items)
    assert refused.value.transient is False  # called AE title not recognised: permanent
    daemon.stop()
    with pytest.raises(AssociationFailedError) as unreachable:
        send_instances(CONFIG, _node("KIOSK", daemon.port), items)
    assert unreachable.value.transient is True


def test_identity_and_move_originator_on_the_wire(tmp_path: Path) -> None:
    """storescp's debug log shows our Implementation Class UID, the calling AE title we chose
    and the C-MOVE originator of each C-STORE sub-operation."""
    items = [_item(make_instance(tmp_path))]
    with Storescp(tmp_path / "scp", extra=("-d",)) as scp:
        summary = send_instances(
            CONFIG,
            _node(scp.ae_title, scp.port),
            items,
            calling_ae_title="MOVER",
            move_originator=MoveOriginator("ASKER", 42),
        )
        log = scp.log()
    assert summary.completed == 1
    assert IMPLEMENTATION_CLASS_UID in log
    assert "MOVER" in log
    assert "Move Originator AE Title      : ASKER" in log
    assert "Move Originator ID            : 42" in log


def test_nagle_is_off_on_our_associations(tmp_path: Path) -> None:
    with Storescp(tmp_path / "scp") as scp:
        ae = configure_ae(CONFIG, ae_class=WakingAE)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
        assert assoc.is_established
        try:
            raw = assoc.dul.socket.socket
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            assoc.release()


def test_more_than_128_contexts_split_into_associations() -> None:
    """Each SOP class whole in one association, none with more than 128 contexts."""
    items = [
        SendItem(Path(f"/x/{n}"), f"1.2.3.{n // 2}", f"9.{n}", EXPLICIT if n % 2 else IMPLICIT)
        for n in range(200)
    ]
    batches = plan_batches(items)
    assert len(batches) == 2
    assert all(len(b.contexts) <= MAX_CONTEXTS for b in batches)
    assert sorted(i.sop_instance_uid for b in batches for i in b.items) == sorted(
        i.sop_instance_uid for i in items
    )
    for batch in batches:
        classes = {i.sop_class_uid for i in batch.items}
        assert {cx[0] for cx in batch.contexts} == classes
    # Per class: each stored syntax alone; here both fallbacks are stored ones already.
    assert batches[0].contexts[:2] == [("1.2.3.0", [IMPLICIT]), ("1.2.3.0", [EXPLICIT])]


def test_command_set_is_what_pynetdicom_would_send() -> None:
    """The hand-rolled C-STORE-RQ command set equals pynetdicom's encoding byte for byte."""
    for originator in (None, ("MOVER", 3)):
        req = C_STORE()
        req.MessageID = 7
        req.Priority = 0
        req.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        req.AffectedSOPInstanceUID = "1.2.3.45"
        if originator:
            req.MoveOriginatorApplicationEntityTitle, req.MoveOriginatorMessageID = originator
        req.DataSet = BytesIO(b"\x08\x00\x16\x00")
        message = C_STORE_RQ()
        message.primitive_to_message(req)
        expected = next(iter(message.encode_msg(1, 16384))).presentation_data_value_list[0][1]
        ours = encode_store_command(
            message_id=7,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            sop_instance_uid="1.2.3.45",
            move_originator_ae=originator[0] if originator else None,
            move_originator_message_id=originator[1] if originator else None,
        )
        assert ours == expected[1:]  # after the message control header byte
