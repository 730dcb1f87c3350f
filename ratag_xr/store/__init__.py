"""The Zarr waveform store: discovery of raw runs, ingest, lazy opening."""

from ratag_xr.store.discover import RunLayout, SetLayout, discover_run, parse_set_name
from ratag_xr.store.ingest import IngestSummary, default_store, ingest
from ratag_xr.store.open import open_run, open_set, run_nodes, store_state

__all__ = ["IngestSummary", "RunLayout", "SetLayout", "default_store", "discover_run", "ingest",
           "open_run", "open_set", "parse_set_name", "run_nodes", "store_state"]
