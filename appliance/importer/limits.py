"""Limits the reader applies to what a disc contains (from `[importer]` in the config)."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.schema import ImporterConfig

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Bounds on single files of a disc, so a hostile disc cannot exhaust disk or memory."""

    max_file_bytes: int = 4096 * _MIB
    """Files larger than this are skipped without being copied."""

    max_decompressed_ratio: float = 200.0
    """A compressed object whose decoded size exceeds its stored size this many times is
    treated as a decompression bomb and skipped."""

    @classmethod
    def from_config(cls, config: ImporterConfig) -> ReadLimits:
        """The limits configured in `[importer]`."""
        return cls(
            max_file_bytes=config.max_file_mb * _MIB,
            max_decompressed_ratio=config.max_decompressed_ratio,
        )
