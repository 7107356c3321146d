"""Find, verify and (where an upstream exists) download sample videos and weights.

Assets are never part of the repository. ``find(name)`` looks, in order, in:

1. the folder named by ``$EDGEVA_ASSETS`` (``videos/`` and ``models/`` sub-folders, or flat),
2. the cache folder ``$EDGEVA_CACHE/assets`` (default ``~/.cache/edgeva/assets``),
3. the public upstream, downloaded into the cache.

Every file is verified by SHA-256 before use; a mismatch is an error naming the file.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edgeva.errors import AssetError

__all__ = ["Asset", "ASSETS", "find", "cache_dir", "file_identity", "list_assets", "sample_videos", "resolve_video"]


@dataclass(frozen=True)
class Asset:
    """One known file: where it lives inside an assets folder and how to check it."""

    name: str  # file name, e.g. "yolox_nano.onnx"
    kind: str  # "videos" or "models": the sub-folder in an assets tree
    sha256: str  # every file is checked against this before use
    url: str | None = None  # pinned upstream download, None when the file is derived locally


_INTEL = "https://raw.githubusercontent.com/intel-iot-devkit/sample-videos/master/"
_FASTESTDET = "https://raw.githubusercontent.com/dog-qiuqiu/FastestDet/97df0a850c4949dcd7d9abf9c539679eee6b6a90/"
_YOLOX = "https://raw.githubusercontent.com/Bigisland1729/object-detection-models/6e770c5ef34fa42aaa2521eb7d0d9ec2bb5f40a3/"

ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("yolox_nano.onnx", "models", "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd", _YOLOX + "yolox_nano.onnx"),
        Asset("fastestdet_coco.pth", "models", "7f688d478ee474c82dbdb9c10e0ede2f8f3cf5d603f0825d2efd925eb561d05e", _FASTESTDET + "weights/weight_AP05%3A0.253207_280-epoch.pth"),
        Asset("fastestdet_coco.onnx", "models", "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880", _FASTESTDET + "example/onnx-runtime/FastestDet.onnx"),
        Asset("shufflenetv2_x0.5_imagenet_backbone.pth", "models", "c9e6e3ac1c4997e05529cfb4897a3b5d29165e3ed4105cfb6897fc11efa72e4b"),
        Asset("coco80.names", "models", "634a1132eb33f8091d60f2c346ababe8b905ae08387037aed883953b7329af84"),
        # Videos: Intel IoT DevKit "sample-videos", CC BY 4.0. The 480x270 clips were
        # re-encoded from the upstream GIF previews, so only the full videos can be downloaded.
        Asset("car-detection.mp4", "videos", "d31e0ebf194cc16e50eea784e7c3b0b1bb7976a4fb9b3fec26cb92a6704cca34", _INTEL + "car-detection.mp4"),
        Asset("one-by-one-person-detection.mp4", "videos", "a5964aa259099a482a8b360ffc2c57b5a30f84d5919236a4dad01f8e929ac07c", _INTEL + "one-by-one-person-detection.mp4"),
        Asset("bottle-detection.mp4", "videos", "d52ba94aedf8a923c342fe9ea1d2bd85f712c4cc0f49a6de1bac43eebe3a48ff", _INTEL + "bottle-detection.mp4"),
        Asset("people-detection.mp4", "videos", "ef0a99772263b2d42dc20fc2017ece2cb33a7f896290457ea04b05a5baf22e13"),
        Asset("store-aisle-detection.mp4", "videos", "fa0dbbc536bb883814e5df305922fbca55662965776152b6468b192418ac064a"),
        Asset("fruit-and-vegetable-detection.mp4", "videos", "2a098090b17b7bdfa7b6c3eccf3a980205b72499c5617c14ea79ab368d3e5ad4"),
    ]
}

_verified: dict[str, str] = {}


def cache_dir() -> Path:
    """Root of edgeva's cache (``$EDGEVA_CACHE`` or ``~/.cache/edgeva``), created on demand."""
    root = Path(os.environ.get("EDGEVA_CACHE") or Path.home() / ".cache" / "edgeva")
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_identity(path: str | Path) -> str | None:
    """``"<absolute path>|<size>|<mtime ns>"`` of a file, or None if it does not exist: the key
    under which edgeva caches what it derived from the file (a changed file is a new key)."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        return None
    return f"{p.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _sha256(path: Path) -> str:
    key = file_identity(path)
    if key is None:
        raise AssetError(f"{path}: no such file")
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def _candidates(asset: Asset) -> list[Path]:
    paths = []
    root = os.environ.get("EDGEVA_ASSETS")
    if root:
        paths += [Path(root) / asset.kind / asset.name, Path(root) / asset.name]
    paths.append(cache_dir() / "assets" / asset.kind / asset.name)
    return paths


def _verify(path: Path, asset: Asset) -> Path:
    if _sha256(path) != asset.sha256:
        raise AssetError(f"{path}: SHA-256 mismatch for {asset.name} (file is corrupt or a different version)")
    return path


def _download(asset: Asset) -> Path:
    target = cache_dir() / "assets" / asset.kind / asset.name
    if not asset.url:
        raise AssetError(
            f"{asset.name}: not found; set EDGEVA_ASSETS to a folder holding {asset.kind}/{asset.name} "
            "(there is no upstream download for this file)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(asset.url, timeout=30) as response, partial.open("wb") as fh:
            while block := response.read(1 << 20):
                fh.write(block)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AssetError(f"{asset.name}: not found locally and download from {asset.url} failed ({exc}); set EDGEVA_ASSETS") from None
    if _sha256(partial) != asset.sha256:
        partial.unlink(missing_ok=True)
        raise AssetError(f"{asset.name}: downloaded file from {asset.url} fails its SHA-256 check")
    partial.replace(target)
    return target


def find(name: str, *, download: bool = True) -> Path:
    """Path of a verified asset.

    Args:
        name: a file name from ``ASSETS`` (e.g. ``"car-detection.mp4"``) or its stem
            (``"car-detection"``).
        download: fetch from the upstream into the cache when no local copy exists.

    Raises:
        AssetError: unknown name, corrupt copy, or missing with no way to download it.
    """
    asset = ASSETS.get(name) or ASSETS.get(f"{name}.mp4")
    if asset is None:
        known = ", ".join(sorted(ASSETS))
        raise AssetError(f"{name}: unknown asset (known: {known})")
    for path in _candidates(asset):
        if path.is_file():
            return _verify(path, asset)
    if not download:
        raise AssetError(f"{asset.name}: not found (set EDGEVA_ASSETS to the shared assets folder)")
    return _download(asset)


def list_assets() -> dict[str, Path | None]:
    """Every known asset and where it was found locally (None where it is missing)."""
    found: dict[str, Path | None] = {}
    for name in ASSETS:
        try:
            found[name] = find(name, download=False)
        except AssetError:
            found[name] = None
    return found


def sample_videos() -> list[str]:
    """Names (stems) of the known sample videos."""
    return [Path(a.name).stem for a in ASSETS.values() if a.kind == "videos"]


def resolve_video(spec: str) -> str:
    """A video argument as given by a user: an existing path, a URL, an image pattern, or a
    sample-video name such as ``store-aisle-detection``."""
    if "://" in spec or "%" in spec or Path(spec).exists():
        return spec
    stem = Path(spec).stem if spec.endswith(".mp4") else spec
    if f"{stem}.mp4" in ASSETS and os.sep not in spec:
        return str(find(f"{stem}.mp4"))
    return spec
