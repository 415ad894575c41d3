"""Received instances on disk and their SQLite index."""

from appliance.store.incoming import IncomingFile
from appliance.store.index import StoreIndex, connect
from appliance.store.records import DatasetMismatchError, InstanceRecord, UndecodableDatasetError
from appliance.store.store import InstanceStore, RecoveryReport, StoredResult

__all__ = [
    "DatasetMismatchError",
    "IncomingFile",
    "InstanceRecord",
    "InstanceStore",
    "RecoveryReport",
    "StoreIndex",
    "StoredResult",
    "UndecodableDatasetError",
    "connect",
]
