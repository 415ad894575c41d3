"""Benchmarks of the kiosk firmware against established DICOM tools (not tests: see README.md)."""
