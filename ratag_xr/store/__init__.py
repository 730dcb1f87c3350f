"""The Zarr waveform store: discovery of raw runs, ingest, lazy opening."""

from ratag_xr.store.discover import (
    RunLayout,
    SetLayout,
    Twin,
    discover_run,
    natural_key,
    natural_sorted,
    parse_set_name,
)
from ratag_xr.store.ingest import IngestSummary, default_store, ingest
from ratag_xr.store.open import (
    alpha_nodes,
    open_run,
    open_set,
    read_set_frames,
    run_nodes,
    set_frame_count,
    store_state,
)

__all__ = ["IngestSummary", "RunLayout", "SetLayout", "Twin", "alpha_nodes", "check_codec",
           "default_store", "discover_run", "ingest", "natural_key", "natural_sorted",
           "open_run", "open_set", "parse_set_name", "read_set_frames",
           "set_frame_count", "run_nodes", "store_state"]
