"""docs/kiosk.toml.example is generated from the schema and loads to the defaults."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from pydantic import BaseModel

from appliance.config import KioskConfig
from appliance.config.example import EXAMPLE_NODE_NAME, main, render_example
from appliance.config.schema import NodeConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "kiosk.toml.example"

# A commented-out table header or `key = value` line of the example (not prose).
_COMMENTED_SETTING = re.compile(r"^# (?=\[\[?[\w.]+\]\]?$|\w+ = )", re.MULTILINE)


def _sections() -> dict[str, type[BaseModel]]:
    """Every table of the configuration: the sections and the node registry's entry."""
    tables: dict[str, type[BaseModel]] = {}
    for name, field in KioskConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            tables[name] = annotation
    tables[f"nodes.{EXAMPLE_NODE_NAME}"] = NodeConfig
    return tables


def test_committed_example_is_current() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_example(), (
        "docs/kiosk.toml.example is stale: run "
        "python -m appliance.config.example --write docs/kiosk.toml.example"
    )


def test_example_loads_to_the_defaults() -> None:
    data = tomllib.loads(render_example())
    assert KioskConfig.model_validate(data) == KioskConfig()


def _comment_text(text: str) -> str:
    """Every comment of the example joined into one whitespace-normalised string."""
    comments = [line[1:] for line in text.splitlines() if line.startswith("#")]
    return " ".join(" ".join(comments).split())


def test_example_shows_every_key_of_every_table() -> None:
    text = render_example()
    comments = _comment_text(text)
    for table, model in _sections().items():
        header = f"[{table}]"
        assert re.search(rf"^(# )?{re.escape(header)}$", text, re.MULTILINE), header
        for key, field in model.model_fields.items():
            assert re.search(rf"^(# )?{key} = ", text, re.MULTILINE), f"{table}.{key}"
            assert field.description, f"{table}.{key} has no docstring"
            assert " ".join(field.description.split()) in comments, f"{table}.{key} docstring"


def test_example_with_everything_uncommented_is_valid() -> None:
    """The illustrative values (node, optional paths) are valid configuration too."""
    config = KioskConfig.model_validate(tomllib.loads(_COMMENTED_SETTING.sub("", render_example())))
    assert set(config.nodes) == {EXAMPLE_NODE_NAME}
    assert config.paths.store is not None
    assert config.paths.index is not None


def test_packaged_defaults_agree_with_the_schema() -> None:
    """defaults.toml repeats schema defaults; it must not contradict them (or the example).
    Only the collections it fills (one pseudo-drive, the cd/dvd/bd profiles) go beyond them."""
    text = resources.files("appliance.config").joinpath("defaults.toml").read_text("utf-8")
    packaged = KioskConfig.model_validate(tomllib.loads(text))
    collections = {"drives", "profiles"}
    assert packaged.model_dump(exclude=collections) == KioskConfig().model_dump(exclude=collections)
    assert set(packaged.drives) == {"pseudo"} and packaged.drives["pseudo"].kind == "pseudo"
    assert set(packaged.profiles) == {"cd", "dvd", "bd"}
    assert packaged.profiles[packaged.publishing.default_profile].media == "cd"


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(EXAMPLE)]) == 0
    copy = tmp_path / "kiosk.toml.example"
    copy.write_text(render_example().replace("port = 11112", "port = 104"), encoding="utf-8")
    assert main(["--check", str(copy)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--write", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == render_example()
