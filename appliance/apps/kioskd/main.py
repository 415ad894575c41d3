"""`kioskd`: the appliance daemon (systemd Type=notify)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance import __version__
from appliance.config import dump_config, load_config
from appliance.errors import ConfigError, KioskError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options of kioskd."""
    parser = argparse.ArgumentParser(prog="kioskd", description="Disc kiosk daemon.")
    parser.add_argument("--config", type=Path, help="extra TOML file, applied after /etc/kiosk")
    parser.add_argument(
        "--dump-config",
        action="store_true",
        help="print the effective configuration as TOML and exit",
    )
    parser.add_argument("--version", action="version", version=f"kioskd {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: validate config, then run the daemon until SIGTERM."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.dump_config:
        sys.stdout.write(dump_config(config))
        return 0

    from appliance.apps.kioskd.daemon import Daemon
    from appliance.service.logsetup import setup_logging

    setup_logging(config.logging.level, config.logging.network_debug)
    try:
        daemon = Daemon(config)
        return daemon.run()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (KioskError, OSError) as exc:
        print(f"kioskd: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
