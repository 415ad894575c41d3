"""DCMTK `findscu` and `movescu` as Q/R SCUs, with their answers parsed.

    answer = findscu(port, "KIOSK", ["QueryRetrieveLevel=STUDY", "PatientName=DOE*",
                                      "StudyInstanceUID"], workdir=tmp_path)
    answer.status            # final DIMSE status (0x0000, 0xFE00, 0xA900 ...)
    answer.matches           # the pending responses' identifiers (pydicom Datasets)
    answer.values("StudyInstanceUID")

    moved = movescu(port, "KIOSK", "STORESCP", ["QueryRetrieveLevel=STUDY",
                                                "StudyInstanceUID=1.2.3"])
    moved.status, moved.responses    # every C-MOVE response's status and counts

Both run with `-d` and read the statuses from DCMTK's debug log ("DIMSE Status : 0x...."):
what the peer sent, not what the tool made of it. Matches come from `findscu -X` files.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from tests.peers.dcmtk import DCMTK_BIN, dcmtk_env

_STATUS_RE = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})")
_COMMENT_RE = re.compile(r"\(0000,0902\) LO \[(.*?)\]")
_COUNT_RE = re.compile(r"(Remaining|Completed|Failed|Warning) Suboperations\s*:\s*(\d+)")
_MODEL = {"study": "-S", "patient": "-P"}


@dataclass
class FindAnswer:
    """What a findscu run got back."""

    status: int | None
    error_comment: str | None
    matches: list[Dataset]
    output: str
    returncode: int

    def values(self, keyword: str) -> list[str]:
        """The value of `keyword` in every match, as text (multi-values joined by `\\`)."""
        result = []
        for match in self.matches:
            value = match.get(keyword, "")
            value = getattr(value, "value", value)
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
                result.append("\\".join(str(v) for v in value))
            else:
                result.append("" if value is None else str(value))
        return result

    def uids(self, keyword: str) -> set[str]:
        """The set of values of a UID key over the matches."""
        return set(self.values(keyword))


def _run(tool: str, argv: list[str], timeout: float) -> tuple[str, int]:
    """Run a DCMTK tool; its log may quote values in any character set, so decode leniently."""
    result = subprocess.run(
        [str(DCMTK_BIN / tool), *argv],
        capture_output=True,
        env=dcmtk_env(),
        timeout=timeout,
        check=False,
    )
    output = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    return output, result.returncode


def _final(output: str, marker: str) -> tuple[int | None, str | None]:
    """The status and Error Comment of the last response the log shows after `marker`."""
    tail = output.rsplit(marker, 1)[-1] if marker in output else ""
    status = _STATUS_RE.search(tail)
    comment = _COMMENT_RE.search(tail)
    return (
        int(status.group(1), 16) if status else None,
        comment.group(1).strip() if comment else None,
    )


def findscu(
    port: int,
    called: str,
    keys: Sequence[str] = (),
    *,
    model: str = "study",
    query_file: Path | None = None,
    cancel_after: int | None = None,
    calling: str = "FINDSCU",
    workdir: Path | None = None,
) -> FindAnswer:
    """Run `/usr/bin/findscu` once and parse what came back."""
    outdir = Path(tempfile.mkdtemp(prefix="find-", dir=workdir))
    argv = [_MODEL[model], "-d", "-X", "-od", str(outdir), "-aec", called, "-aet", calling]
    for key in keys:
        argv += ["-k", key]
    if cancel_after is not None:
        argv += ["--cancel", str(cancel_after)]
    argv += ["127.0.0.1", str(port)]
    if query_file is not None:
        argv.append(str(query_file))
    output, returncode = _run("findscu", argv, timeout=120)
    status, comment = _final(output, "Received Final Find Response")
    matches = [pydicom.dcmread(path) for path in sorted(outdir.glob("rsp*.dcm"))]
    return FindAnswer(status, comment, matches, output, returncode)


@dataclass
class MoveResponse:
    """One C-MOVE response: status and sub-operation counts (None when absent)."""

    status: int
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class MoveAnswer:
    """What a movescu run got back."""

    responses: list[MoveResponse]
    output: str
    returncode: int

    @property
    def status(self) -> int | None:
        """The final status."""
        return self.responses[-1].status if self.responses else None

    @property
    def final_counts(self) -> dict[str, int]:
        """Sub-operation counts of the final response."""
        return self.responses[-1].counts if self.responses else {}

    @property
    def pending(self) -> list[MoveResponse]:
        """The pending responses."""
        return [r for r in self.responses if r.status in (0xFF00, 0xFF01)]


def movescu(
    port: int,
    called: str,
    destination: str,
    keys: Sequence[str],
    *,
    model: str = "study",
    calling: str = "MOVESCU",
    cancel_after: int | None = None,
    timeout: float = 300,
) -> MoveAnswer:
    """Run `/usr/bin/movescu` (the destination is a third node, not movescu itself)."""
    argv = [_MODEL[model], "-d", "-aec", called, "-aet", calling, "-aem", destination]
    for key in keys:
        argv += ["-k", key]
    if cancel_after is not None:
        argv += ["--cancel", str(cancel_after)]
    output, returncode = _run("movescu", [*argv, "127.0.0.1", str(port)], timeout)
    responses = []
    # Every response's dump starts with "Received ... Move Response" (pending or final).
    for block in re.split(r"Received (?:Final )?Move Response", output)[1:]:
        status = _STATUS_RE.search(block)
        if status is None:
            continue
        counts = {name.lower(): int(n) for name, n in _COUNT_RE.findall(block)}
        responses.append(MoveResponse(int(status.group(1), 16), counts))
    return MoveAnswer(responses, output, returncode)
