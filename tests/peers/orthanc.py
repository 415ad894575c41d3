"""Orthanc as a peer: Storage SCP, Q/R SCP, Storage Commitment SCP, worklists, REST for checks.

    with Orthanc(tmp_path / "orthanc", modalities={"kiosk": ("KIOSK", "127.0.0.1", port)}) as o:
        ... DICOM to 127.0.0.1:o.port, called AE o.ae_title ("ORTHANC") ...
        o.get("/statistics")["CountInstances"]
        o.post("/tools/find", {"Level": "Study", "Query": {"PatientName": "DOE*"}})
        o.upload(path)                      # store a file through REST
        o.instance_uids()                   # SOP Instance UIDs it holds

The config follows PEERS.md: C-FIND/MOVE/GET allowed for any AE, the Called AE Title not
checked, storage and index in the work dir, no jobs saved. `modalities` fills
`DicomModalities` (C-MOVE destinations, storage commitment peers: name -> (AE, host, port));
`config` entries are merged over the defaults (e.g. {"DicomScpTimeout": 5}); `worklists` turns
on the worklist plugin over `<workdir>/worklists`. Readiness waits for `GET /system` = 200.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.peers.net import free_port
from tests.peers.process import PeerProcess

ORTHANC = Path("/usr/sbin/Orthanc")
WORKLIST_PLUGIN = "/usr/share/orthanc/plugins/libModalityWorklists.so"


class Orthanc(PeerProcess):
    """`/usr/sbin/Orthanc config.json` in its own work dir."""

    name = "orthanc"

    def __init__(
        self,
        workdir: Path,
        *,
        ae_title: str = "ORTHANC",
        modalities: dict[str, tuple[str, str, int]] | None = None,
        config: dict[str, Any] | None = None,
        worklists: bool = False,
    ) -> None:
        super().__init__(workdir, ae_title=ae_title)
        self.modalities = dict(modalities or {})
        self.extra_config = dict(config or {})
        self.worklists = worklists
        self.http_port = 0
        # Orthanc's REST API must never go through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def config_file(self) -> Path:
        """The config.json Orthanc is started with."""
        return self.workdir / "config.json"

    @property
    def worklist_dir(self) -> Path:
        """Where `.wl` files go when `worklists` is on."""
        return self.workdir / "worklists"

    def config(self) -> dict[str, Any]:
        """The effective configuration (defaults of PEERS.md, then `config` extras)."""
        db = self.workdir / "db"
        data: dict[str, Any] = {
            "Name": "kiosk-test",
            "StorageDirectory": str(db),
            "IndexDirectory": str(db),
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowFindWorklist": True,
            "DicomModalities": {
                name: {"AET": aet, "Host": host, "Port": port}
                for name, (aet, host, port) in self.modalities.items()
            },
            "SaveJobs": False,
            "Plugins": [],
        }
        if self.worklists:
            data["Plugins"] = [WORKLIST_PLUGIN]
            data["Worklists"] = {"Enable": True, "Database": str(self.worklist_dir)}
        data.update(self.extra_config)
        return data

    def prepare(self) -> None:
        """Choose the HTTP port, create the dirs and write config.json."""
        if not self.http_port:
            self.http_port = free_port()
            while self.http_port == self.port:
                self.http_port = free_port()
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        if self.worklists:
            self.worklist_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config(), indent=2))

    def argv(self) -> list[str]:
        """`Orthanc config.json`."""
        return [str(ORTHANC), str(self.config_file)]

    def ready(self) -> bool:
        """The DICOM port is open and `GET /system` answers."""
        if not super().ready():
            return False
        try:
            self.get("/system")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True

    # -- REST -------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One REST call; returns the decoded JSON answer (None when the body is empty)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method
        )
        with self._opener.open(req, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def get(self, path: str) -> Any:
        """GET `path` (e.g. "/statistics")."""
        return self.request("GET", path)

    def post(self, path: str, data: Any) -> Any:
        """POST `data` as JSON (bytes are posted as they are)."""
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        """DELETE `path` (e.g. "/instances/{id}")."""
        return self.request("DELETE", path)

    def upload(self, path: Path) -> Any:
        """Store a DICOM file through `POST /instances`."""
        return self.post("/instances", path.read_bytes())

    def instance_uids(self) -> set[str]:
        """SOP Instance UIDs of every instance Orthanc holds."""
        answer = self.post("/tools/find", {"Level": "Instance", "Query": {}, "Expand": True})
        return {str(item["MainDicomTags"]["SOPInstanceUID"]) for item in answer}

    def instance_count(self) -> int:
        """`CountInstances` of `GET /statistics`."""
        return int(self.get("/statistics")["CountInstances"])
