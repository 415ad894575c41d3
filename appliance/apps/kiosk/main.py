"""`kiosk`: the clerk's touch-screen TUI (Textual). Not built yet: it lands with its own issue."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Explain that the TUI is not available yet and point to kioskctl."""
    print(
        "kiosk: the clerk TUI is not part of this release yet; use `kioskctl studies` and "
        "`kioskctl status`.",
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    sys.exit(main())
