"""Applications: specs (``person>=1,car>=1,bottle>=3``) and the apps folder on disk.

An app is a binary event classifier: "at least ``n`` objects of COCO class ``cls`` are in
the frame", labelled by the final DNN (YOLOX-Nano) on the original frames.

The apps folder written by ``edgeva apps train``::

    manifest.json             format, base (input size, segments, freeze points, latencies),
                              stream fps, videos, and per app its class, count, event stats,
                              per-freeze-point recall / false-positive rate and weight files
    weights/<app>/freeze-<k>.pt   the app's branch (segments k.. + head) at freeze point k
    heldout.npz               held-out labels and every app's scores at every freeze point
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeva.errors import ConfigError, ModelError
from edgeva.mainstream.accuracy import EventStats
from edgeva.mainstream.scheduler import AppProfile, Problem
from edgeva.models.detections import COCO_NAMES

__all__ = ["AppSpec", "parse_apps", "AppsFolder", "load_apps", "FORMAT"]

FORMAT = "edgeva-mainstream-apps"
_SPEC = re.compile(r"^\s*([a-z][a-z ]*?)\s*(?:>=\s*(\d+))?\s*$")


@dataclass(frozen=True)
class AppSpec:
    """"At least ``min_count`` objects of ``cls`` are present"."""

    cls: str  # a COCO class name
    min_count: int = 1

    @property
    def name(self) -> str:
        return f"{self.cls}>={self.min_count}"

    @property
    def slug(self) -> str:
        """File-system-safe name."""
        return f"{self.cls.replace(' ', '_')}-ge{self.min_count}"

    @property
    def class_id(self) -> int:
        return COCO_NAMES.index(self.cls)

    def labels(self, counts: np.ndarray) -> np.ndarray:
        """(T, 80) per-class object counts -> (T,) bool event labels."""
        return counts[:, self.class_id] >= self.min_count


def parse_apps(text: str) -> list[AppSpec]:
    """``"person>=1,car,bottle>=3"`` -> app specs (a bare class means ``>=1``).

    Raises:
        ConfigError: empty spec, bad syntax, an unknown COCO class, or a duplicate app.
    """
    specs: list[AppSpec] = []
    for part in text.split(","):
        match = _SPEC.match(part.lower())
        if not part.strip() or match is None:
            raise ConfigError(f"app spec {part.strip()!r}: expected CLASS or CLASS>=N (e.g. person>=1,car>=2)")
        cls, count = match.group(1), int(match.group(2) or 1)
        if cls not in COCO_NAMES:
            raise ConfigError(f"app spec {part.strip()!r}: unknown COCO class {cls!r} (see assets/models/coco80.names)")
        if count < 1:
            raise ConfigError(f"app spec {part.strip()!r}: the count must be at least 1")
        spec = AppSpec(cls, count)
        if spec in specs:
            raise ConfigError(f"app spec {part.strip()!r}: given twice")
        specs.append(spec)
    return specs


class AppsFolder:
    """A trained apps folder: its manifest, branch weights on demand, held-out scores."""

    def __init__(self, root: Path, manifest: dict):
        self.root, self.manifest = root, manifest
        self.specs = [AppSpec(a["cls"], a["min_count"]) for a in manifest["apps"]]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def stream_fps(self) -> int:
        return int(self.manifest["stream_fps"])

    @property
    def layer_latencies(self) -> list[float]:
        return [float(x) for x in self.manifest["base"]["layer_latencies_ms"]]

    @property
    def freeze_points(self) -> list[int]:
        return [int(k) for k in self.manifest["base"]["freeze_points"]]

    def profiles(self, apps: list[int] | None = None) -> list[AppProfile]:
        out = []
        for i in apps if apps is not None else range(len(self.specs)):
            a = self.manifest["apps"][i]
            st = a["stats"]
            out.append(AppProfile(
                self.specs[i].name, EventStats(st["event_length_s"], st["event_frequency"], st["correlation"]),
                {int(k): float(v) for k, v in a["recall"].items()},
                {int(k): float(v) for k, v in a["false_positive"].items()},
            ))
        return out

    def problem(self, apps: list[int] | None = None, *, units: str = "stream", latencies: list[float] | None = None,
                fractional: bool = False) -> Problem:
        return Problem(self.profiles(apps), latencies or self.layer_latencies, self.stream_fps, units=units,  # type: ignore[arg-type]
                       fractional=fractional)

    def load_branch(self, app: int, freeze: int, base) -> torch.nn.Module:
        """The app's branch at ``freeze`` (a :class:`~edgeva.mainstream.base.Branch`), eval mode.

        Raises:
            ModelError: missing or unreadable weights.
        """
        from edgeva.mainstream.base import Branch

        rel = self.manifest["apps"][app]["weights"].get(str(freeze))
        if rel is None:
            raise ModelError(f"{self.root}: app {self.specs[app].name} has no model at freeze point {freeze}")
        path = self.root / rel
        branch = Branch(base, freeze)
        try:
            branch.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except FileNotFoundError:
            raise ModelError(f"{self.root}: corrupt apps folder (missing {rel})") from None
        except Exception as exc:
            raise ModelError(f"{self.root}: corrupt apps folder ({rel}: {exc.__class__.__name__})") from None
        return branch.eval()

    def heldout(self) -> dict[str, np.ndarray]:
        """``labels`` (A, T) bool, ``scores`` (A, K, T) probabilities, ``video`` (T,) ids."""
        path = self.root / "heldout.npz"
        try:
            with np.load(path) as data:
                out = {k: data[k] for k in ("labels", "scores", "video")}
        except FileNotFoundError:
            raise ModelError(f"{self.root}: corrupt apps folder (missing heldout.npz)") from None
        except Exception as exc:
            raise ModelError(f"{self.root}: corrupt apps folder (heldout.npz: {exc.__class__.__name__})") from None
        a, k = len(self.specs), len(self.freeze_points)
        if out["scores"].shape[:2] != (a, k) or out["labels"].shape[0] != a:
            raise ModelError(f"{self.root}: corrupt apps folder (heldout.npz does not match the manifest)")
        return out


def load_apps(root: str | Path) -> AppsFolder:
    """Open and validate an apps folder written by ``edgeva apps train``.

    Raises:
        ModelError: not a folder, no or corrupt manifest, unknown format, missing weight files.
    """
    root = Path(root)
    path = root / "manifest.json"
    if not root.is_dir():
        raise ModelError(f"{root}: no such apps folder")
    if not path.is_file():
        raise ModelError(f"{root}: not an apps folder (no manifest.json; create one with `edgeva apps train`)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: corrupt manifest ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"{path}: not an edgeva Mainstream apps manifest")
    try:
        folder = AppsFolder(root, manifest)
        folder.profiles()
        points = folder.freeze_points
        if len(folder.layer_latencies) != 7 or not folder.specs:
            raise ValueError("base latencies or apps")
        for app in manifest["apps"]:
            for k in points:
                if not (root / app["weights"][str(k)]).is_file():
                    raise ModelError(f"{root}: corrupt apps folder (missing {app['weights'][str(k)]})")
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: corrupt manifest ({exc.__class__.__name__}: {exc})") from None
    return folder
