"""Load the layered configuration.

Layers, later wins: packaged defaults -> /etc/kiosk/kiosk.toml -> /etc/kiosk/conf.d/*.toml (sorted)
-> the --config file -> environment overrides (KIOSK__SECTION__KEY=value, value in TOML syntax or a
bare string). Tables merge key by key; any other value replaces the earlier one.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from appliance.config.schema import KioskConfig
from appliance.errors import ConfigError

ENV_PREFIX = "KIOSK__"
ETC_DIR_ENV = "KIOSK_ETC_DIR"
"""Environment variable that relocates /etc/kiosk (tests, development)."""


def etc_dir() -> Path:
    """The system configuration directory, /etc/kiosk unless KIOSK_ETC_DIR says otherwise."""
    return Path(os.environ.get(ETC_DIR_ENV, "/etc/kiosk"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"config: {path} is not valid UTF-8 (TOML files are UTF-8)") from None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn KIOSK__A__B=value variables into the nested table {a: {b: value}}."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = parts[: depth + 1]
                raise ConfigError(
                    f"config: {'.'.join(parts)}: {name} conflicts with "
                    f"{ENV_PREFIX}{'__'.join(p.upper() for p in prefix)}, which sets "
                    f"{'.'.join(prefix)} as a whole"
                )
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(
                f"config: {'.'.join(parts)}: {name} would replace a table set by other variables"
            )
        node[parts[-1]] = _parse_env_value(raw)
    return tree


def layer_files(extra: Path | None) -> list[Path]:
    """The configuration files that apply, in the order they are merged."""
    files = []
    system = etc_dir()
    if (system / "kiosk.toml").is_file():
        files.append(system / "kiosk.toml")
    conf_d = system / "conf.d"
    if conf_d.is_dir():
        files.extend(sorted(p for p in conf_d.glob("*.toml") if p.is_file()))
    if extra is not None:
        if not extra.is_file():
            raise ConfigError(f"config: {extra} does not exist")
        files.append(extra)
    return files


def _format_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if not key:
        # Cross-field checks name their key themselves ("profiles.x.drive: ...").
        return "config: " + first["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"config: {key}: {first['msg']}{suffix}"


def load_config(extra: Path | None = None, environ: Mapping[str, str] | None = None) -> KioskConfig:
    """Build the effective configuration from every layer and validate it once.

    Raises ConfigError with a one-line message naming the offending key.
    """
    defaults = resources.files("appliance.config").joinpath("defaults.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(defaults)
    for path in layer_files(extra):
        data = _merge(data, _read_toml(path))
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    try:
        config = KioskConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
    return _absolutise(config)


def _absolutise(config: KioskConfig) -> KioskConfig:
    """Resolve relative paths once, so a later chdir cannot move the store."""
    paths = config.paths
    resolved = paths.model_copy(
        update={
            "var": paths.var.absolute(),
            "store": paths.store.absolute() if paths.store else None,
            "index": paths.index.absolute() if paths.index else None,
        }
    )
    return config.model_copy(update={"paths": resolved})


def dump_config(config: KioskConfig) -> str:
    """The effective configuration as TOML (what `kioskd --dump-config` prints)."""
    data = config.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)
