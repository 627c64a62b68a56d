"""The provisioner's state: employees, account links, runs and the append-only audit log."""

from provisioner.store.database import AppendOnlyError, Store, StoreError, open_store

__all__ = ["AppendOnlyError", "Store", "StoreError", "open_store"]
