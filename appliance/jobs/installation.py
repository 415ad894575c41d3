"""The installation's own secret: one random key per appliance, made on first use."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def installation_secret(var: Path) -> bytes:
    """A random key kept in `<var>/secret.key` (mode 0600), made on first use. Keyed hashes
    of it give each job stable pseudonyms and UID maps across retries and restarts."""
    path = var / "secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        var.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        return key
    except FileExistsError:  # pragma: no cover - a concurrent first use
        return path.read_bytes()
