"""Who we are on the wire and in files: implementation identifiers (no dependencies)."""

from appliance import __version__

IMPLEMENTATION_CLASS_UID = "2.25.30720662854114292865718063311640967011"
"""Our Implementation Class UID (a UUID-derived 2.25 UID, PS3.5 B.2).

Sent in A-ASSOCIATE and written in the File Meta of every file we create."""

IMPLEMENTATION_VERSION_NAME = ("KIOSK_" + __version__.replace(".", ""))[:16]
"""Our Implementation Version Name (at most 16 characters)."""
