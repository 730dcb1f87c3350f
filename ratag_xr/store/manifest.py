"""The ingest manifest: an append-only JSON-lines log of what happened to each raw file.

Each line is one event for one file (``planned``, ``ok`` or ``bad``).  A line is
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

HASH_NAME = "blake2b"
_HASH_BLOCK = 8 * 2**20


def file_fingerprint(path: Path) -> dict:
    """Size (bytes) and modification time (ns) of a raw file."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def content_hash(path: Path) -> str:
    """``blake2b`` hex digest of the whole file, read in blocks."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return f"{HASH_NAME}:{digest.hexdigest()}"


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
        line = json.dumps(event, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.entries[(event["set"], event["file"])] = event

    def get(self, set_name: str, file_name: str) -> dict | None:
        return self.entries.get((set_name, file_name))

    def for_set(self, set_name: str, status: str | None = None) -> list[dict]:
        events = [e for (s, _), e in self.entries.items() if s == set_name]
        if status is not None:
            events = [e for e in events if e["status"] == status]
        return sorted(events, key=lambda e: e["file"])

    def summary(self) -> dict:
        ok = [e for e in self.entries.values() if e["status"] == "ok"]
        bad = [e for e in self.entries.values() if e["status"] == "bad"]
        return {"files_ok": len(ok), "frames_ok": sum(e["n_frames"] for e in ok),
                "files_bad": len(bad), "bad": [{"set": e["set"], "file": e["file"],
                                                "reason": e["reason"]} for e in bad]}
