"""An annotated example configuration, rendered from the schema so it cannot drift.

Every key of every table is shown with its default and the field's docstring as a comment.
Keys without a usable default (the fields of a `[nodes.NAME]` entry, optional paths) are shown
commented out with an illustrative value, so the file as committed loads to the defaults.

    python -m appliance.config.example                  # print it
    python -m appliance.config.example --write PATH     # (re)write the committed copy
    python -m appliance.config.example --check PATH     # exit 1 when PATH differs
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from appliance.config.schema import KioskConfig

DEFAULT_PATH = Path("docs/kiosk.toml.example")
"""Where the committed example lives, relative to the repository root."""

WIDTH = 100
"""Line width of the rendered comments."""

EXAMPLE_NODE_NAME = "pacs"
"""The node name used in the commented-out `[nodes.NAME]` example."""

EXAMPLE_VALUES: dict[str, Any] = {
    "paths.store": "/var/lib/kiosk/store",
    "paths.index": "/var/lib/kiosk/kiosk.sqlite",
    "nodes.NAME.ae_title": "PACS",
    "nodes.NAME.host": "pacs.example.org",
    "nodes.NAME.port": 104,
    "drives.NAME.directory": "/var/lib/kiosk/discs",
    "drives.NAME.faults.capacity_mb": 650,
    "drives.NAME.faults.write_error_at_percent": 50,
    "profiles.NAME.capacity_mb": 650,
    "profiles.NAME.drive": "burner",
    "auto_burn.profile": "cd",
    "auto_burn.called_ae": "BURN_CD",
    "auto_burn.calling_ae": "CT_SCANNER",
    "auto_burn.modality": "CT",
    "printers.NAME.ae_title": "DRYVIEW",
    "printers.NAME.host": "printer.example.org",
    "printers.NAME.port": 5040,
    "printers.NAME.max_density": 320,
    "printers.NAME.min_density": 20,
    "retrieve.destination_ae": "KIOSK_QR",
    "retention.max_age_hours": 720,
    "importer.mwl_node": "pacs",
    "importer.udev_replay": "/var/lib/kiosk/disc-events.jsonl",
    "importer.qr_node": "pacs",
    "importer.default_destination": "pacs",
    "retention.high_watermark_percent": 90,
    "security.signing_key": "/etc/kiosk/keys/signing.key",
    "security.signing_certificate": "/etc/kiosk/keys/signing.pem",
    "security.decryption_keys.NAME.key": "/etc/kiosk/kiosk.key",
    "security.decryption_keys.NAME.certificate": "/etc/kiosk/kiosk.pem",
}
"""Illustrative values for keys that have no default (required, or None meaning "derived")."""

_HEADER = """\
Disc kiosk configuration: every key, with its default.

Layers, later wins: packaged defaults -> /etc/kiosk/kiosk.toml -> /etc/kiosk/conf.d/*.toml
(sorted) -> the --config file -> environment variables KIOSK__SECTION__KEY=value (for example
KIOSK__DICOM__PORT=104). Write only the keys you change; `kioskd --dump-config` prints the
effective configuration. Unknown keys are errors.

Generated from appliance/config/schema.py by `python -m appliance.config.example`; do not edit
by hand."""


class ExampleError(Exception):
    """The schema has a key this renderer cannot show (no default and no example value)."""


def toml_value(value: Any) -> str:
    """A Python default as a TOML literal (strings, numbers, booleans, paths, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, PurePath):
        text = value.as_posix()
        if not value.is_absolute() and not text.startswith("."):
            text = "./" + text
        return json.dumps(text)
    if isinstance(value, str):
        # A JSON string literal is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise ExampleError(f"cannot render {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _comment(text: str, indent: str = "") -> list[str]:
    """`text` as `#` comment lines, paragraphs kept, wrapped to WIDTH."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        if lines:
            lines.append(f"{indent}#")
        joined = " ".join(line.strip() for line in paragraph.splitlines())
        wrapped = textwrap.wrap(joined, width=WIDTH - len(indent) - 2, break_on_hyphens=False)
        lines.extend(f"{indent}# {line}" for line in wrapped)
    return lines


def _description(field: FieldInfo, name: str) -> str:
    if not field.description:
        raise ExampleError(f"config key {name!r} has no docstring")
    return field.description


def _model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('section' | 'table' | 'array', model) for a field holding models, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section", annotation
    args = get_args(annotation)
    if (
        get_origin(annotation) is dict
        and len(args) == 2
        and isinstance(args[1], type)
        and issubclass(args[1], BaseModel)
    ):
        return "table", args[1]
    if (
        get_origin(annotation) is list
        and args
        and isinstance(args[0], type)
        and issubclass(args[0], BaseModel)
    ):
        return "array", args[0]
    return None


def _section_lines(
    model: type[BaseModel], header: str, qualified: str, *, commented: bool, array: bool = False
) -> list[str]:
    """One TOML table: its docstring, then every field with its docstring and value; nested
    models follow as sub-tables."""
    prefix = "# " if commented else ""
    lines = _comment(model.__doc__ or "")
    lines.append(f"{prefix}[[{header}]]" if array else f"{prefix}[{header}]")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{qualified}.{name}"
        kind = _model_of(field.annotation)
        if kind is not None and kind[0] == "section":
            nested.append((name, kind[1]))
            continue
        lines.append("")
        lines.extend(_comment(_description(field, key)))
        if kind is not None and kind[0] == "table":
            lines.extend(_inline_table_lines(name, kind[1], key))
            continue
        default = field.default
        if default is PydanticUndefined or default is None:
            if key not in EXAMPLE_VALUES:
                raise ExampleError(f"config key {key!r} has no default and no example value")
            if default is None:
                lines.append("# Not set by default (see above); for example:")
            lines.append(f"# {name} = {toml_value(EXAMPLE_VALUES[key])}")
        else:
            lines.append(f"{prefix}{name} = {toml_value(default)}")
    for name, sub in nested:
        lines.append("")
        lines.extend(
            _section_lines(sub, f"{header}.{name}", f"{qualified}.{name}", commented=commented)
        )
    return lines


def _inline_table_lines(name: str, model: type[BaseModel], qualified: str) -> list[str]:
    """A collection of tables inside a section (`[security] decryption_keys`): the fields of
    an entry, then a commented-out example as an inline table. Inline, because a
    `[section.name.NAME]` header could not follow the section's own keys and still leave a
    `name = ` line for readers looking the key up."""
    lines = ["#"]
    lines.extend(_comment("Empty by default. Each entry is a table with these keys:"))
    values: dict[str, Any] = {}
    for sub, field in model.model_fields.items():
        key = f"{qualified}.NAME.{sub}"
        text = " ".join(_description(field, key).split())
        wrapped = textwrap.wrap(f"{sub}: {text}", width=WIDTH - 4, break_on_hyphens=False)
        lines.extend(("# - " if n == 0 else "#   ") + line for n, line in enumerate(wrapped))
        default = field.default
        if key in EXAMPLE_VALUES:
            values[sub] = EXAMPLE_VALUES[key]
        elif default is PydanticUndefined or default is None:
            raise ExampleError(f"config key {key!r} has no default and no example value")
    entry = _EXAMPLE_NAMES.get(name, EXAMPLE_NODE_NAME)
    lines.append("# For example:")
    lines.append(f"# {name} = {toml_value({entry: values})}")
    return lines


_EXAMPLE_NAMES = {
    "drives": "burner",
    "profiles": "cd",
    "printers": "film",
    "decryption_keys": "kiosk",
}
"""Entry names of the commented-out examples of each collection (nodes use EXAMPLE_NODE_NAME)."""

_COLLECTION_NOTES = {
    "nodes": "`kioskctl echo NAME` takes NAME.",
    "drives": "The packaged defaults define [drives.pseudo] (ISO images under <var>/discs).",
    "profiles": "The packaged defaults define [profiles.cd], [profiles.dvd] and [profiles.bd].",
    "auto_burn": "None by default.",
    "printers": "None by default; `kioskctl print NAME ...` takes NAME.",
}


def render_example() -> str:
    """The annotated example configuration (TOML), every key with its default."""
    lines = _comment(_HEADER)
    for name, field in KioskConfig.model_fields.items():
        lines.append("")
        lines.append("")
        kind = _model_of(field.annotation)
        if kind is None:
            raise ExampleError(f"config table {name!r} holds no section model")
        shape, model = kind
        if shape == "section":
            lines.extend(_section_lines(model, name, name, commented=False))
            continue
        lines.extend(_comment(_description(field, name)))
        lines.append("#")
        header = (
            name if shape == "array" else f"{name}.{_EXAMPLE_NAMES.get(name, EXAMPLE_NODE_NAME)}"
        )
        table = f"[[{name}]]" if shape == "array" else f"[{name}.NAME]"
        lines.extend(
            _comment(
                f"One {table} per entry. {_COLLECTION_NOTES.get(name, '')} "
                "An example, commented out:"
            )
        )
        lines.append("")
        qualified = name if shape == "array" else f"{name}.NAME"
        lines.extend(
            _section_lines(model, header, qualified, commented=True, array=shape == "array")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the committed example; exit 1 when the check finds it stale."""
    parser = argparse.ArgumentParser(
        prog="python -m appliance.config.example",
        description="Render the annotated example configuration from the schema.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="PATH", help="write the example to PATH")
    group.add_argument(
        "--check",
        type=Path,
        metavar="PATH",
        nargs="?",
        const=DEFAULT_PATH,
        help=f"exit 1 when PATH (default {DEFAULT_PATH}) differs from the rendered example",
    )
    args = parser.parse_args(argv)
    text = render_example()
    if args.write is not None:
        args.write.write_text(text, encoding="utf-8")
        return 0
    if args.check is not None:
        try:
            current = args.check.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{args.check}: cannot read: {exc.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(
                f"{args.check} is stale: run python -m appliance.config.example "
                f"--write {args.check}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
