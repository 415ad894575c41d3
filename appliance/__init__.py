"""Disc kiosk firmware: receive DICOM studies, publish discs, import discs, print film."""

__version__ = "0.1.0"
