"""kioskctl commands that talk to other nodes or guard local data: find, retrieve, send, lock.

`register(subparsers)` adds them to kioskctl's parser (called from `main.build_parser`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from appliance.apps.kioskctl.job_output import (
    EXIT_OK,
    add_wait_options,
    finish_job,
)
from appliance.control import Control
from appliance.errors import KioskError
from appliance.jobs.send_request import SendRequest


def parse_keys(pairs: list[str]) -> dict[str, str]:
    """`Keyword=value` arguments as a dict (an empty value asks for the key to be returned)."""
    keys: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise KioskError(f"expected KEY=VALUE (e.g. PatientName=DOE*), got {pair!r}")
        keys[name.strip()] = value
    return keys


_STUDY_COLUMNS = (
    ("StudyDate", "DATE", 8),
    ("ModalitiesInStudy", "MOD", 8),
    ("NumberOfStudyRelatedSeries", "SER", 4),
    ("NumberOfStudyRelatedInstances", "INST", 6),
    ("PatientID", "PATIENT ID", 12),
    ("PatientName", "PATIENT", 24),
    ("AccessionNumber", "ACCESSION", 12),
    ("StudyInstanceUID", "STUDY UID", 0),
)
_SERIES_COLUMNS = (
    ("Modality", "MOD", 5),
    ("SeriesNumber", "NUM", 5),
    ("NumberOfSeriesRelatedInstances", "INST", 6),
    ("SeriesDescription", "DESCRIPTION", 28),
    ("SeriesInstanceUID", "SERIES UID", 0),
)


def _row(values: list[tuple[str, int]]) -> str:
    return " ".join(text[:width].ljust(width) if width else text for text, width in values)


def _find_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--level", choices=("study", "series"), default="study")
    parser.add_argument(
        "--limit", type=int, help="matches kept (default retrieve.max_find_matches)"
    )


def _find_arguments(args: argparse.Namespace) -> tuple[str, list[str], int | None]:
    """Level, keys and limit, wherever the options stood among the KEY=VALUE arguments.

    argparse stops matching positionals at the first option, so `find NODE --level series K=V`
    would leave `K=V` unparsed; the words after NODE are therefore taken as they come and parsed
    here, options and keys intermixed.
    """
    rest = argparse.ArgumentParser(prog="kioskctl find NODE", add_help=False)
    _find_options(rest)
    rest.add_argument("keys", nargs="*")
    rest.set_defaults(level=args.level, limit=args.limit)
    parsed = rest.parse_intermixed_args(args.rest)
    return parsed.level, parsed.keys, parsed.limit


def cmd_find(control: Control, args: argparse.Namespace) -> int:
    """C-FIND on a registry node."""
    level, pairs, limit = _find_arguments(args)
    answer = control.find(args.node, level.upper(), parse_keys(pairs), limit)
    if args.json:
        print(json.dumps(answer))
        return EXIT_OK
    columns = _STUDY_COLUMNS if answer["level"] == "STUDY" else _SERIES_COLUMNS
    print(_row([(title, width) for _, title, width in columns]))
    for match in answer["matches"]:
        print(_row([(match.get(key, "") or "-", width) for key, _, width in columns]))
    count = len(answer["matches"])
    print(f"{count} match(es)")
    if answer["truncated"]:
        print(f"incomplete: the node has more than {count} matches; narrow the query")
    return EXIT_OK


def cmd_retrieve(control: Control, args: argparse.Namespace) -> int:
    """Queue a retrieve job (C-MOVE of a study or series to this kiosk)."""
    job = control.submit_retrieve(args.node, args.study_uid, args.series_uid)
    return finish_job(control, job, args)


def cmd_send(control: Control, args: argparse.Namespace) -> int:
    """Queue a send job (optionally with storage commitment)."""
    request = SendRequest(
        node=args.node,
        study_uids=list(args.study_uids),
        series_uids=list(args.series or []),
        sop_instance_uids=list(args.instance or []),
        commit=args.commit,
    )
    job = control.submit_send(request)
    return finish_job(control, job, args)


def cmd_lock(control: Control, args: argparse.Namespace) -> int:
    """Lock or unlock a local study against retention."""
    outcome = control.lock_study(args.study_uid, args.lock)
    if args.json:
        print(json.dumps(outcome))
    else:
        print(f"study {args.study_uid}: {'locked' if args.lock else 'unlocked'}")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add find, retrieve, send, lock and unlock to kioskctl's subparsers."""
    find = sub.add_parser("find", help="C-FIND on a node (Study Root, study or series level)")
    find.add_argument("node", help="node name from [nodes.NAME]")
    _find_options(find)
    find.add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="e.g. PatientName=DOE*"
    )
    find.set_defaults(func=cmd_find)

    retrieve = sub.add_parser("retrieve", help="queue a C-MOVE of a study (or series) to us")
    retrieve.add_argument("node", help="node name from [nodes.NAME]")
    retrieve.add_argument("study_uid", metavar="STUDY_UID")
    retrieve.add_argument("series_uid", nargs="?", metavar="SERIES_UID")
    add_wait_options(retrieve)
    retrieve.set_defaults(func=cmd_retrieve)

    send = sub.add_parser("send", help="queue a send of local studies to a node")
    send.add_argument("node", help="node name from [nodes.NAME]")
    send.add_argument("study_uids", nargs="*", metavar="STUDY_UID")
    send.add_argument("--series", action="append", metavar="SERIES_UID", help="repeatable")
    send.add_argument("--instance", action="append", metavar="SOP_INSTANCE_UID", help="repeatable")
    send.add_argument(
        "--commit", action="store_true", help="request storage commitment and wait for it"
    )
    add_wait_options(send)
    send.set_defaults(func=cmd_send)

    for name, locked, text in (
        ("lock", True, "keep a local study from automatic deletion"),
        ("unlock", False, "let retention delete a study's committed instances again"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("study_uid", metavar="STUDY_UID")
        parser.set_defaults(func=cmd_lock, lock=locked)
