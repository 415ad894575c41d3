"""Layered configuration: defaults, /etc/kiosk, conf.d, --config, environment; validation; dump."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from appliance.config import dump_config, load_config
from appliance.config.loader import env_overrides
from appliance.errors import ConfigError

# -- helpers ----------------------------------------------------------------------------------


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty system configuration directory (KIOSK_ETC_DIR) and a clean working directory."""
    etc_dir = tmp_path / "etc"
    etc_dir.mkdir()
    monkeypatch.setenv("KIOSK_ETC_DIR", str(etc_dir))
    for name in list(os.environ):
        if name.startswith("KIOSK__"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return etc_dir


def _clean_env(etc_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KIOSK") and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")
    }
    env["KIOSK_ETC_DIR"] = str(etc_dir)
    env.update(extra or {})
    return env


def _run(
    module: str, *args: str, etc_dir: Path, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=_clean_env(etc_dir, env),
        cwd=cwd,
        timeout=60,
        check=False,
    )


def _kioskd(
    *args: str, etc_dir: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return _run("appliance.apps.kioskd", *args, etc_dir=etc_dir, env=env, cwd=cwd)


def _kioskctl(
    *args: str, etc_dir: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return _run("appliance.apps.kioskctl", *args, etc_dir=etc_dir, env=env, cwd=cwd)


def _one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {len(lines)}:\n{text}"
    return lines[0]


# -- load_config directly ---------------------------------------------------------------------


def test_defaults_load(etc: Path) -> None:
    config = load_config(environ={})
    packaged = tomllib.loads(
        (Path(__file__).parents[1] / "appliance" / "config" / "defaults.toml").read_text()
    )
    assert config.dicom.ae_title == packaged["dicom"]["ae_title"] == "KIOSK"
    assert config.dicom.port == packaged["dicom"]["port"] == 11112
    assert config.dicom.bind == "0.0.0.0"
    assert config.dicom.max_associations == 100
    assert config.dicom.max_pdu == 65536
    assert config.dicom.additional_ae_titles == []
    assert config.store.free_space_reserve_mb == 1024
    assert config.store.study_quiet_seconds == 30
    assert config.store.quiet_seconds_by_called_ae == {}
    assert config.logging.level == "INFO"
    assert config.logging.network_debug is False
    assert config.nodes == {}
    assert config.local_ae_titles == ["KIOSK"]
    # Relative paths are resolved against the working directory, once.
    assert config.paths.var == Path.cwd() / "var"
    assert config.paths.var.is_absolute()
    assert config.paths.store_dir == Path.cwd() / "var" / "store"
    assert config.paths.index_file == Path.cwd() / "var" / "kiosk.sqlite"


def test_missing_etc_dir_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_ETC_DIR", str(tmp_path / "does-not-exist"))
    assert load_config(environ={}).dicom.port == 11112


def _layered_port_stack(etc: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """dicom.port set at every layer, each with its own value."""
    _write(etc / "kiosk.toml", {"dicom": {"port": 1001}})
    # conf.d is merged in sorted (string) order: 10-a, 20-b, 9-z; other suffixes are ignored.
    _write(etc / "conf.d" / "9-z.toml", {"dicom": {"port": 1004}})
    _write(etc / "conf.d" / "20-b.toml", {"dicom": {"port": 1003}})
    _write(etc / "conf.d" / "10-a.toml", {"dicom": {"port": 1002}})
    _write(etc / "conf.d" / "99-ignored.toml.bak", {"dicom": {"port": 9999}})
    _write(etc / "conf.d" / "98-ignored.conf", {"dicom": {"port": 9998}})
    extra = _write(tmp_path / "extra.toml", {"dicom": {"port": 1005}})
    return extra, {"KIOSK__DICOM__PORT": "1006"}


def test_layering_order(etc: Path, tmp_path: Path) -> None:
    extra, environ = _layered_port_stack(etc, tmp_path)
    assert load_config(extra, environ=environ).dicom.port == 1006
    assert load_config(extra, environ={}).dicom.port == 1005
    assert load_config(environ={}).dicom.port == 1004
    (etc / "conf.d" / "9-z.toml").unlink()
    assert load_config(environ={}).dicom.port == 1003
    (etc / "conf.d" / "20-b.toml").unlink()
    assert load_config(environ={}).dicom.port == 1002
    (etc / "conf.d" / "10-a.toml").unlink()
    assert load_config(environ={}).dicom.port == 1001
    (etc / "kiosk.toml").unlink()
    assert load_config(environ={}).dicom.port == 11112
    # The environment still wins over everything, even with no file at all.
    assert load_config(environ=environ).dicom.port == 1006


def test_tables_merge_key_by_key_and_lists_replace(etc: Path, tmp_path: Path) -> None:
    _write(
        etc / "kiosk.toml",
        {
            "dicom": {"ae_title": "ETCAE", "max_pdu": 16384, "additional_ae_titles": ["A1", "A2"]},
            "nodes": {"pacs": {"ae_title": "PACS", "host": "10.1.2.3", "port": 104}},
            "store": {"quiet_seconds_by_called_ae": {"CT1": 10}},
        },
    )
    _write(etc / "conf.d" / "50-site.toml", {"dicom": {"max_associations": 7}})
    extra = _write(
        tmp_path / "extra.toml",
        {
            "dicom": {"additional_ae_titles": ["B1"]},
            "nodes": {"pacs": {"port": 11112}},
            "store": {"quiet_seconds_by_called_ae": {"MR1": 20}},
        },
    )
    config = load_config(extra, environ={"KIOSK__LOGGING__LEVEL": "DEBUG"})
    assert config.dicom.ae_title == "ETCAE"
    assert config.dicom.max_pdu == 16384
    assert config.dicom.max_associations == 7
    assert config.dicom.port == 11112  # untouched default
    assert config.dicom.additional_ae_titles == ["B1"]  # a list replaces, it does not append
    assert config.local_ae_titles == ["ETCAE", "B1"]
    pacs = config.nodes["pacs"]
    assert (pacs.ae_title, pacs.host, pacs.port) == ("PACS", "10.1.2.3", 11112)
    assert config.store.quiet_seconds_by_called_ae == {"CT1": 10, "MR1": 20}
    assert config.logging.level == "DEBUG"


def test_env_override_parsing(etc: Path) -> None:
    environ = {
        "KIOSK__DICOM__MAX_PDU": "0",  # int
        "KIOSK__DICOM__ACSE_TIMEOUT": "2.5",  # float
        "KIOSK__DICOM__ADDITIONAL_AE_TITLES": '["CTSCAN", "MRSCAN"]',  # list
        "KIOSK__DICOM__BIND": "127.0.0.1",  # not TOML: a bare string
        "KIOSK__DICOM__AE_TITLE": "MYKIOSK",  # bare string
        "KIOSK__LOGGING__NETWORK_DEBUG": "true",  # bool
        "KIOSK__LOGGING__LEVEL": '"WARNING"',  # quoted TOML string
        "kiosk__store__study_quiet_seconds": "5",  # not our prefix (case matters): ignored
        "KIOSK__STORE__QUIET_SECONDS_BY_CALLED_AE": "{ CTSCAN = 90 }",  # inline table
        "KIOSK__NODES__PACS__AE_TITLE": "PACS",  # nested tables, names lower-cased
        "KIOSK__NODES__PACS__HOST": "pacs.example.org",
        "KIOSK__NODES__PACS__PORT": "104",
        "KIOSK__PATHS__VAR": "/srv/kiosk/var",
        "KIOSK_ETC_DIR": "/nonexistent",  # single underscore: not an override
    }
    tree = env_overrides(environ)
    assert tree["dicom"]["max_pdu"] == 0
    assert isinstance(tree["dicom"]["max_pdu"], int)
    assert tree["dicom"]["acse_timeout"] == 2.5
    assert tree["dicom"]["additional_ae_titles"] == ["CTSCAN", "MRSCAN"]
    assert tree["dicom"]["bind"] == "127.0.0.1"
    assert tree["logging"]["network_debug"] is True
    assert tree["logging"]["level"] == "WARNING"
    assert tree["nodes"]["pacs"]["port"] == 104
    assert "etc_dir" not in tree and "_etc_dir" not in tree
    assert set(tree) == {"dicom", "logging", "store", "nodes", "paths"}

    config = load_config(environ=environ)
    assert config.dicom.max_pdu == 0
    assert config.dicom.acse_timeout == 2.5
    assert config.dicom.additional_ae_titles == ["CTSCAN", "MRSCAN"]
    assert config.dicom.bind == "127.0.0.1"
    assert config.dicom.ae_title == "MYKIOSK"
    assert config.logging.network_debug is True
    assert config.logging.level == "WARNING"
    assert config.store.study_quiet_seconds == 30
    assert config.store.quiet_seconds_by_called_ae == {"CTSCAN": 90}
    assert config.nodes["pacs"].host == "pacs.example.org"
    assert config.nodes["pacs"].port == 104
    assert config.paths.var == Path("/srv/kiosk/var")


def test_environ_defaults_to_process_environment(
    etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIOSK__DICOM__PORT", "4242")
    assert load_config().dicom.port == 4242
    assert load_config(environ={}).dicom.port == 11112


@pytest.mark.parametrize(
    ("where", "data", "key"),
    [
        ("file", {"dicom": {"prot": 104}}, "dicom.prot"),
        ("file", {"dicomm": {"port": 104}}, "dicomm"),
        ("file", {"nodes": {"pacs": {"ae_title": "P", "host": "h", "port": 1, "x": 1}}}, "x"),
        ("etc", {"store": {"quiet_seconds": 3}}, "store.quiet_seconds"),
    ],
)
def test_unknown_key_rejected(
    etc: Path, tmp_path: Path, where: str, data: dict[str, Any], key: str
) -> None:
    if where == "etc":
        _write(etc / "kiosk.toml", data)
        extra = None
    else:
        extra = _write(tmp_path / "extra.toml", data)
    with pytest.raises(ConfigError) as info:
        load_config(extra, environ={})
    message = _one_line(str(info.value))
    assert key in message
    assert "extra" in message.lower() or "not permitted" in message.lower()


def test_unknown_env_key_rejected(etc: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"KIOSK__DICOM__PROT": "104"})
    assert "dicom.prot" in _one_line(str(info.value))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dicom": {"port": 70000}}, "dicom.port"),
        ({"dicom": {"port": 0}}, "dicom.port"),
        ({"dicom": {"ae_title": "A" * 17}}, "dicom.ae_title"),
        ({"dicom": {"ae_title": "   "}}, "dicom.ae_title"),
        ({"dicom": {"ae_title": "BACK\\SLASH"}}, "dicom.ae_title"),
        ({"dicom": {"max_pdu": -1}}, "dicom.max_pdu"),
        ({"dicom": {"max_associations": 0}}, "dicom.max_associations"),
        ({"dicom": {"transfer_syntax_preference": ["1.2.x"]}}, "dicom.transfer_syntax_preference"),
        ({"logging": {"level": "VERBOSE"}}, "logging.level"),
        ({"store": {"study_quiet_seconds": 0}}, "store.study_quiet_seconds"),
        ({"nodes": {"pacs": {"ae_title": "PACS", "host": "h"}}}, "nodes.pacs.port"),
    ],
)
def test_bad_value_names_the_key(etc: Path, tmp_path: Path, data: dict[str, Any], key: str) -> None:
    extra = _write(tmp_path / "bad.toml", data)
    with pytest.raises(ConfigError) as info:
        load_config(extra, environ={})
    message = _one_line(str(info.value))
    assert message.startswith("config: ")
    assert key in message


def test_several_errors_are_one_line(etc: Path, tmp_path: Path) -> None:
    extra = _write(tmp_path / "bad.toml", {"dicom": {"port": 70000, "max_pdu": -1}})
    with pytest.raises(ConfigError) as info:
        load_config(extra, environ={})
    assert "(and 1 more)" in _one_line(str(info.value))


def test_invalid_toml_and_missing_file_are_config_errors(etc: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[dicom\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(broken, environ={})
    assert "broken.toml" in _one_line(str(info.value))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", environ={})
    assert "nope.toml" in _one_line(str(info.value))
    (etc / "conf.d").mkdir()
    (etc / "conf.d" / "10-broken.toml").write_text("port = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(environ={})
    assert "10-broken.toml" in _one_line(str(info.value))


def test_non_utf8_config_file_is_config_error(etc: Path, tmp_path: Path) -> None:
    """A file saved in Latin-1 (e.g. an operator's 'Müller' in a description) is invalid TOML:
    it must be reported like any other bad file, not escape as a UnicodeDecodeError."""
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(
        b'[nodes.pacs]\nae_title = "PACS"\nhost = "h"\nport = 104\ndescription = "Dr. M\xfcller"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(latin1, environ={})
    assert "latin1.toml" in _one_line(str(info.value))


def test_conflicting_env_overrides_are_config_error(etc: Path) -> None:
    """KIOSK__DICOM=5 next to KIOSK__DICOM__PORT=1 is a configuration error, not a crash."""
    with pytest.raises(ConfigError) as info:
        load_config(environ={"KIOSK__DICOM": "5", "KIOSK__DICOM__PORT": "1"})
    assert "dicom" in _one_line(str(info.value))


def test_dump_round_trips_in_process(etc: Path, tmp_path: Path) -> None:
    _write(etc / "kiosk.toml", {"dicom": {"ae_title": "ETCAE"}})
    extra = _write(
        tmp_path / "extra.toml",
        {
            "nodes": {"pacs": {"ae_title": "PACS", "host": "10.0.0.9", "port": 104}},
            "store": {"quiet_seconds_by_called_ae": {"SLOW": 600}},
            "paths": {"var": "relative/var"},
        },
    )
    config = load_config(extra, environ={"KIOSK__DICOM__PORT": "2104"})
    text = dump_config(config)
    data = tomllib.loads(text)
    assert data["dicom"]["ae_title"] == "ETCAE"
    assert data["dicom"]["port"] == 2104
    assert data["paths"]["var"] == str(Path.cwd() / "relative" / "var")
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(text)
    (etc / "kiosk.toml").unlink()
    assert load_config(dumped, environ={}) == config


# -- the executables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dicom": {"port": 70000}}, "dicom.port"),
        ({"dicom": {"ae_title": "ABCDEFGHIJKLMNOPQ"}}, "dicom.ae_title"),
        ({"dicom": {"max_pdu": -1}}, "dicom.max_pdu"),
        ({"dicom": {"colour": "blue"}}, "dicom.colour"),
    ],
)
def test_kioskd_bad_config_exits_with_one_line(
    etc: Path, tmp_path: Path, data: dict[str, Any], key: str
) -> None:
    bad = _write(tmp_path / "bad.toml", data)
    result = _kioskd("--config", str(bad), etc_dir=etc, cwd=tmp_path)
    assert result.returncode != 0
    assert key in _one_line(result.stderr)
    assert result.stdout == ""
    assert not (tmp_path / "var").exists(), "nothing may be created with a bad config"


def test_kioskd_bad_value_from_env_or_conf_d(etc: Path, tmp_path: Path) -> None:
    result = _kioskd(
        "--dump-config", etc_dir=etc, cwd=tmp_path, env={"KIOSK__DICOM__PORT": "70000"}
    )
    assert result.returncode != 0
    assert "dicom.port" in _one_line(result.stderr)
    _write(etc / "conf.d" / "10-site.toml", {"dicom": {"max_pdu": -1}})
    result = _kioskd(etc_dir=etc, cwd=tmp_path)
    assert result.returncode != 0
    assert "dicom.max_pdu" in _one_line(result.stderr)


def test_kioskd_unreadable_config_exits_with_one_line(etc: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[dicom]\nport = \n")
    result = _kioskd("--config", str(broken), etc_dir=etc, cwd=tmp_path)
    assert result.returncode != 0
    assert "broken.toml" in _one_line(result.stderr)
    result = _kioskd("--config", str(tmp_path / "missing.toml"), etc_dir=etc, cwd=tmp_path)
    assert result.returncode != 0
    assert "missing.toml" in _one_line(result.stderr)


def test_kioskd_non_utf8_config_exits_with_one_line(etc: Path, tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[dicom]\nae_title = "KIOSK"\n# r\xe9ception\n')
    result = _kioskd("--config", str(latin1), etc_dir=etc, cwd=tmp_path)
    assert result.returncode != 0
    assert "latin1.toml" in _one_line(result.stderr)


def test_kioskd_dump_config_round_trips(
    etc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(etc / "kiosk.toml", {"dicom": {"ae_title": "ETCAE", "port": 1001}})
    _write(etc / "conf.d" / "10-site.toml", {"dicom": {"port": 1002, "max_pdu": 32768}})
    extra = _write(
        tmp_path / "extra.toml",
        {
            "dicom": {"port": 1003, "additional_ae_titles": ["SLOWMOD"]},
            "nodes": {"pacs": {"ae_title": "PACS", "host": "10.0.0.9", "port": 104}},
            "store": {"quiet_seconds_by_called_ae": {"SLOWMOD": 600}},
        },
    )
    env = {"KIOSK__DICOM__PORT": "1004", "KIOSK__LOGGING__LEVEL": "DEBUG"}
    result = _kioskd("--config", str(extra), "--dump-config", etc_dir=etc, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = tomllib.loads(result.stdout)
    assert data["dicom"]["ae_title"] == "ETCAE"
    assert data["dicom"]["port"] == 1004
    assert data["dicom"]["max_pdu"] == 32768
    assert data["dicom"]["additional_ae_titles"] == ["SLOWMOD"]
    assert data["nodes"]["pacs"] == {
        "ae_title": "PACS",
        "host": "10.0.0.9",
        "port": 104,
        "description": "",
    }
    assert data["store"]["quiet_seconds_by_called_ae"] == {"SLOWMOD": 600}
    assert data["logging"]["level"] == "DEBUG"
    assert data["paths"]["var"] == str(tmp_path / "var")
    assert not (tmp_path / "var").exists(), "--dump-config must not create anything"

    # Fed back as the only layer, the dump reproduces itself exactly.
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(result.stdout)
    empty_etc = tmp_path / "empty-etc"
    empty_etc.mkdir()
    again = _kioskd("--config", str(dumped), "--dump-config", etc_dir=empty_etc, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    monkeypatch.chdir(tmp_path)
    expected = load_config(extra, environ=env)
    monkeypatch.setenv("KIOSK_ETC_DIR", str(empty_etc))
    assert load_config(dumped, environ={}) == expected


def test_kioskctl_config_option(etc: Path, tmp_path: Path) -> None:
    cfg = _write(
        tmp_path / "ctl.toml",
        {
            "paths": {"var": str(tmp_path / "ctlvar")},
            "nodes": {"pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 104}},
        },
    )
    result = _kioskctl("--config", str(cfg), "--json", "status", etc_dir=etc, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["daemon"] is None
    assert status["store"]["instances"] == 0
    assert status["store"]["reserve_bytes"] == 1024 * 1024 * 1024

    # The registry comes from the --config file.
    result = _kioskctl("--config", str(cfg), "echo", "nosuchnode", etc_dir=etc, cwd=tmp_path)
    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert "nosuchnode" in line
    assert "pacs" in line

    # Env overrides apply to kioskctl too.
    result = _kioskctl(
        "--config",
        str(cfg),
        "--json",
        "status",
        etc_dir=etc,
        cwd=tmp_path,
        env={"KIOSK__STORE__FREE_SPACE_RESERVE_MB": "7"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"]["reserve_bytes"] == 7 * 1024 * 1024

    bad = _write(tmp_path / "bad.toml", {"dicom": {"port": 70000}})
    result = _kioskctl("--config", str(bad), "status", etc_dir=etc, cwd=tmp_path)
    assert result.returncode == 2
    assert "dicom.port" in _one_line(result.stderr)
    assert result.stdout == ""
