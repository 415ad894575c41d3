"""`kioskctl decrypt`: a file encrypted by openssl cms (password) opens to the same bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.data import make_instance

PASSWORD = "Tr0ub4dor&3-kiosk"


def _kioskctl(tmp_path: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK")}
    env["KIOSK_ETC_DIR"] = str(tmp_path / "etc")
    env["KIOSK__PATHS__VAR"] = str(tmp_path / "var")
    return subprocess.run(
        [sys.executable, "-m", "appliance.apps.kioskctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _openssl_encrypt(tmp_path: Path, cipher: str = "-aes256") -> tuple[Path, Path]:
    """A generated instance and its Secure DICOM File made by openssl cms (password)."""
    plain = make_instance(tmp_path)
    secure = tmp_path / "secure.p7m"
    subprocess.run(
        [
            "openssl",
            "cms",
            "-encrypt",
            "-binary",
            cipher,
            "-pwri_password",
            PASSWORD,
            "-in",
            str(plain),
            "-outform",
            "DER",
            "-out",
            str(secure),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return plain, secure


@pytest.mark.parametrize("cipher", ["-aes256", "-aes128", "-des3"])
def test_decrypt_openssl_file(tmp_path: Path, cipher: str) -> None:
    plain, secure = _openssl_encrypt(tmp_path, cipher)
    out = tmp_path / "out.dcm"
    result = _kioskctl(
        tmp_path,
        "--json",
        "decrypt",
        str(secure),
        "-o",
        str(out),
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == plain.read_bytes()
    info = json.loads(result.stdout)
    assert info["size"] == plain.stat().st_size
    assert PASSWORD not in result.stdout + result.stderr


def test_decrypt_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    _, secure = _openssl_encrypt(tmp_path)
    out = tmp_path / "out.dcm"
    result = _kioskctl(
        tmp_path,
        "decrypt",
        str(secure),
        "-o",
        str(out),
        "--password-stdin",
        stdin="not-the-password-1\n",
    )
    assert result.returncode == 1
    assert "password" in result.stderr.lower()
    assert "not-the-password-1" not in result.stderr
    assert not out.exists()
