"""DICOM networking: AE factory, presentation contexts, handlers, servers and SCUs."""
