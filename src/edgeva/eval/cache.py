"""The evaluation's on-disk cache: references and replays as JSON files, keyed by content.

Safe under concurrency (several local processes or Ray workers on shared storage): an entry
is written to a temporary file of its own in the same folder and moved into place with
``os.replace``, so a reader sees either no entry or a whole one, and two writers of the same
key each publish a whole file (the last one wins; both hold the same result). An entry that
is truncated, corrupt or of another shape (a worker killed mid-write by an older edgeva, a
damaged disk) is treated as missing and recomputed, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from edgeva import assets
from edgeva.models import Detections
from edgeva.net import Exchange
from edgeva.schemes.base import ChunkOutcome

__all__ = ["cache_file", "load_entry", "store_entry", "outcomes_to_json", "outcomes_from_json", "detections_from_json"]


def cache_file(kind: str, payload: dict) -> Path:
    """The file of the ``kind`` entry ("reference", "replay") keyed by ``payload``."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return assets.cache_dir() / "eval" / kind / f"{digest}.json"


def load_entry(path: Path) -> dict | None:
    """The entry at ``path``, or None when there is none or it is not a whole JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable, truncated, not UTF-8 or not JSON
        return None
    return data if isinstance(data, dict) else None


def store_entry(path: Path, data: dict) -> None:
    """Publish ``data`` at ``path`` atomically: a unique temporary file, flushed, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def outcomes_to_json(outcomes: list[ChunkOutcome]) -> dict:
    return {
        "chunks": [
            {
                "first_frame": o.first_frame, "frames": o.frames, "sent_frames": o.sent_frames, "high_fraction": o.high_fraction,
                "adapt": [o.adapt_up_bytes, o.downlink_bytes, o.adapt_server_s],
                "rounds": [[r.camera_s, r.nbytes, r.server_s] for r in o.rounds],
                "detections": [d.to_json() for d in o.detections],
            }
            for o in outcomes
        ]
    }


def outcomes_from_json(data: dict) -> list[ChunkOutcome] | None:
    """The replay in a cache entry, or None when the entry does not have the replay's shape."""
    try:
        return [
            ChunkOutcome(
                c["first_frame"], c["frames"], [Exchange(*r) for r in c["rounds"]],
                [Detections.from_json(d) for d in c["detections"]], c["sent_frames"], c["high_fraction"], *c.get("adapt", ()),
            )
            for c in data["chunks"]
        ]
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def detections_from_json(data: dict, frames: int) -> list[Detections] | None:
    """A cached reference (one Detections per frame), or None when it is not one."""
    try:
        dets = [Detections.from_json(d) for d in data["detections"]]
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return dets if len(dets) == frames else None
