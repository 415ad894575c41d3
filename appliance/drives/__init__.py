"""Optical drives: one interface (`base.OpticalDrive`); real, file-backed, fake, disabled drivers.

`factory.make_drive` builds one from plain settings. Nothing here knows about jobs: the burn runner
calls `media_info`, `write`, `verify_read_back` and `eject`, and translates `DriveError`s.
"""
