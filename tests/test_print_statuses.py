"""Every status of the print specification, returned in turn by the scripted Print SCP at each
step of a print: warnings let the print finish and are recorded, failures stop it with their
meaning in words and say whether another attempt may help (in-process, over loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom.uid import generate_uid

from appliance.config import KioskConfig
from appliance.config.schema import DicomConfig, PrinterConfig
from appliance.printing.compose import FilmSheet, PrintImage
from appliance.printing.errors import PrintStatusError
from appliance.printing.options import PrintChoices, resolve_options
from appliance.printing.run import check_printer, print_films
from appliance.printing.session import PrintSession
from appliance.printing.statuses import interpret
from tests.peers.print_data import write_pattern
from tests.peers.print_scp import Script, ScriptedPrintScp

WARNINGS = [0x0107, 0x0116, 0xB600, *range(0xB602, 0xB60B)]
FAILURES = [0x0106, 0x0110, 0x0112, 0x0117, 0x0120, 0x0121, 0x0211, 0x0213, 0xC600, 0xC616, 0xC6F0]
STEPS = ["session_create", "film_box_create", "image_box_set", "film_box_print"]


def _rotate(codes: list[int]) -> list[tuple[int, str]]:
    """Each code once, at the steps in turn (every step sees warnings and failures)."""
    return [(code, STEPS[n % len(STEPS)]) for n, code in enumerate(codes)]


# pynetdicom's SCP sends no attribute list with a status it does not know (0xB606-0xB608), so
# those three come at other steps than the film box N-CREATE here.
WARNING_CASES = [
    (code, "film_box_print" if step == "film_box_create" and 0xB606 <= code <= 0xB608 else step)
    for code, step in _rotate(WARNINGS)
]


class _Tracker:
    def __init__(self) -> None:
        self.printed: list[int] = []

    def progress(self, phase: str, done: int, total: int) -> None:
        pass

    def check_cancelled(self) -> None:
        pass

    def film_printing(self, number: int) -> None:
        pass

    def film_printed(self, number: int) -> None:
        self.printed.append(number)


@pytest.fixture(scope="module")
def scp() -> Iterator[ScriptedPrintScp]:
    """The scripted SCP (grayscale and colour)."""
    server = ScriptedPrintScp()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> FilmSheet:
    """One film with one image."""
    path = write_pattern(tmp_path_factory.mktemp("status"), generate_uid())
    return FilmSheet(1, (PrintImage(path, path.name),))


def _print(scp: ScriptedPrintScp, film: FilmSheet, script: Script) -> tuple[list[str], _Tracker]:
    scp.reset(script)
    printer = PrinterConfig(
        ae_title=scp.ae_title,
        host="127.0.0.1",
        port=scp.port,
        pixel_matrix={"8INX10IN": (96, 128)},
        film_sizes=["8INX10IN"],
        default_film_size="8INX10IN",
    )
    config = KioskConfig(dicom=DicomConfig(dimse_timeout=10, acse_timeout=10))
    options = resolve_options("p", printer, PrintChoices())
    tracker = _Tracker()
    with PrintSession(config, "p", printer) as session:
        check_printer(session)
        print_films(session, options, [film], tracker)
    return session.warnings, tracker


@pytest.mark.parametrize(("code", "step"), WARNING_CASES)
def test_warnings_finish_the_print_and_are_recorded(
    scp: ScriptedPrintScp, film: FilmSheet, step: str, code: int
) -> None:
    warnings, tracker = _print(scp, film, Script(statuses={step: [code]}))
    assert tracker.printed == [1]
    assert len(warnings) == 1
    assert f"0x{code:04X}" in warnings[0] and interpret(code).text in warnings[0]


@pytest.mark.parametrize(("code", "step"), _rotate(FAILURES))
def test_failures_stop_the_print_in_words(
    scp: ScriptedPrintScp, film: FilmSheet, step: str, code: int
) -> None:
    with pytest.raises(PrintStatusError) as caught:
        _print(scp, film, Script(statuses={step: [code]}))
    error = caught.value
    assert error.status == code
    assert interpret(code).text in str(error) and f"0x{code:04X}" in str(error)
    assert error.retryable == (code in (0x0110, 0x0213))
    assert "film_box_print" not in scp.operations() or step == "film_box_print"
    if step != "session_create":
        # What was created is deleted again.
        assert scp.operations()[-1] == "session_delete"


def test_printer_failure_status_stops_before_anything_is_created(
    scp: ScriptedPrintScp, film: FilmSheet
) -> None:
    with pytest.raises(Exception, match="reports FAILURE \\(FILM JAM\\)") as caught:
        _print(scp, film, Script(printer_status=("FAILURE", "FILM JAM")))
    assert getattr(caught.value, "retryable", False)
    assert scp.operations() == ["printer_get"]


def test_unanswered_request_is_a_lost_connection(scp: ScriptedPrintScp, film: FilmSheet) -> None:
    with pytest.raises(Exception, match="sent no response to image box 1 N-SET") as caught:
        _print(scp, film, Script(abort_at={"image_box_set": 1}))
    assert getattr(caught.value, "retryable", False)
