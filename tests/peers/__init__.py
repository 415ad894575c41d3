"""Real peers for tests: our own kioskd as a subprocess, DCMTK tools, sample data."""
