"""The results database and its export."""

from sparsebench.store.db import ResultsStore
from sparsebench.store.export import export_tables

__all__ = ["ResultsStore", "export_tables"]
