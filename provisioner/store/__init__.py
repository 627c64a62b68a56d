"""The provisioner's state: employees, account links, runs, the append-only audit log, the job
queue of accepted HR changes (`jobs`) and the run lock (`run_lock`)."""

from provisioner.store.database import AppendOnlyError, Store, StoreError, open_store

__all__ = ["AppendOnlyError", "Store", "StoreError", "open_store"]
