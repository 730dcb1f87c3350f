"""The ingest manifest: an append-only JSON-lines log of what happened to each raw file.

Each line is one event for one file (``planned``, ``ok`` or ``bad``; for the twins of a
two-channel set also ``missing``: the expected alpha twin of a PMT file is absent, and
``orphan``: an alpha file has no PMT twin).  An alpha twin's events name its PMT file in
``twin_of``; ``role`` is ``pmt`` or ``alpha``.  A line is
appended and flushed to disk only after what it states is true (``ok`` after every
frame and per-frame coordinate of the file is written), so a kill at any moment leaves
a manifest that under-states, never over-states, the store.  A torn last line from a
kill is ignored when reading.  The newest event of a file wins.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import blake3

from ratag_xr.store.discover import natural_key

#: The content hash of new records: BLAKE3 (cryptographic, ~6 GB/s on one core, so hashing
#: costs little beside reading).  Records written with BLAKE2b (160-bit) are still checked
#: with their own algorithm, named before the ``:`` of each hash.
HASH_NAME = "blake3"
_HASH_BLOCK = 8 * 2**20


def new_digest(name: str = HASH_NAME):
    """A hash object of the algorithm ``name`` (``blake3`` or ``blake2b``)."""
    if name == "blake3":
        return blake3.blake3()
    if name == "blake2b":
        return hashlib.blake2b(digest_size=20)
    raise ValueError(f"unknown content hash algorithm {name!r}")


def file_fingerprint(path: Path) -> dict:
    """Size (bytes) and modification time (ns) of a raw file."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def content_hash(path: Path, like: str | None = None) -> str:
    """``<algorithm>:<hex digest>`` of the whole file, read in blocks; with ``like`` (a
    recorded hash) in that record's algorithm, so the two compare."""
    name = like.partition(":")[0] if like else HASH_NAME
    digest = new_digest(name)
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return f"{name}:{digest.hexdigest()}"


@dataclass
class Manifest:
    """The newest event per (set, file), read from and appended to ``path``."""

    path: Path
    entries: dict[tuple[str, str], dict]

    @classmethod
    def load(cls, path: Path) -> Manifest:
        entries: dict[tuple[str, str], dict] = {}
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                        key = (event["set"], event["file"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line torn by a kill: what it stated never happened
                    entries[key] = event
        return cls(path=path, entries=entries)

    def append(self, event: dict) -> None:
        """Append one event and force it to disk before returning."""
        self.extend([event])

    def extend(self, events: list[dict]) -> None:
        """Append several events and force them to disk once, before returning."""
        if not events:
            return
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for event in events:
            self.entries[(event["set"], event["file"])] = event

    def get(self, set_name: str, file_name: str) -> dict | None:
        return self.entries.get((set_name, file_name))

    def append_if_new(self, event: dict, keys=("status", "reason", "twin_of")) -> bool:
        """Append ``event`` unless the file's newest event already says the same."""
        old = self.get(event["set"], event["file"])
        if old is not None and all(old.get(k) == event.get(k) for k in keys):
            return False
        self.append(event)
        return True

    def for_set(self, set_name: str, status: str | None = None) -> list[dict]:
        """The set's newest events, in natural order of the file names."""
        events = [e for (s, _), e in self.entries.items() if s == set_name]
        if status is not None:
            events = [e for e in events if e["status"] == status]
        return sorted(events, key=lambda e: natural_key(e["file"]))

    def summary(self) -> dict:
        """Counts of the store's files and frames (a trigger counts once, however many
        channel files it has), the skipped files and the twin problems."""
        events = list(self.entries.values())
        ok = [e for e in events if e["status"] == "ok"]
        bad = [e for e in events if e["status"] == "bad" and not e.get("twin_of")]
        twins = [e for e in events if e["status"] in ("missing", "orphan")
                 or (e["status"] == "bad" and e.get("twin_of"))]
        return {"files_ok": len(ok),
                "frames_ok": sum(e["n_frames"] for e in ok if not e.get("twin_of")),
                "alpha_files_ok": sum(e.get("role") == "alpha" for e in ok),
                "files_bad": len(bad),
                "bad": [{"set": e["set"], "file": e["file"], "reason": e["reason"]}
                        for e in bad],
                "twins": [{"set": e["set"], "file": e["file"], "status": e["status"],
                           "reason": e.get("reason", "")} for e in twins]}
