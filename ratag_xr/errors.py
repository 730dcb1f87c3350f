"""The one error hierarchy of ratag_xr.

Every error the package raises on purpose derives from :class:`RatagError`, so a
caller (the CLI, a notebook, a batch script) can catch "anything ratag_xr refused"
in one place.  Messages name the file, set or frame and say what was expected and
what was found.
"""

from __future__ import annotations

from pathlib import Path


class RatagError(Exception):
    """Base class of every error raised by ratag_xr."""


class WfmError(RatagError):
    """A Tektronix ``.wfm`` file cannot be used.  ``path`` names the file."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class WfmFormatError(WfmError, ValueError):
    """The bytes contradict the WFM format: bad byte-order mark, impossible sizes, ..."""


class WfmTruncatedError(WfmFormatError):
    """The file is shorter than its header declares (expected vs found in the message)."""


class WfmUnsupportedError(WfmError, ValueError):
    """A valid WFM file of a kind ratag_xr does not read (version, curve format)."""


class NotAnalogWaveformError(WfmUnsupportedError):
    """A digital or IQ waveform: not a PMT trace."""


class ConfigError(RatagError, ValueError):
    """A run configuration key is unknown, has the wrong type or an invalid value."""


class RunLayoutError(RatagError, ValueError):
    """A run directory does not look like a run (no sets, unparsable set name, ...)."""


class StoreError(RatagError):
    """The Zarr run store is missing, inconsistent or cannot be extended as asked."""


class IngestOrderError(StoreError):
    """A new raw file sorts before files already ingested: the store must be rebuilt."""


class OwnershipError(RatagError):
    """A removal was refused: the folder is not something ratag_xr made.  ``path`` names it."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputError(RatagError):
    """An output folder cannot be written (read-only, no permission, not a folder)."""


class BusyError(OutputError):
    """Another ratag-xr command holds the output folder's lock (and waiting was refused)."""


class AnalysisError(RatagError):
    """An analysis step cannot be done for a set (the reason is recorded, the run goes on)."""



class ReportError(OutputError):
    """The run report cannot be written as asked (``path`` names the report)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
