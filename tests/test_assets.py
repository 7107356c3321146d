from __future__ import annotations

import shutil

import pytest

from edgeva import assets
from edgeva.errors import AssetError


def test_find_by_name_and_stem_verifies_sha():
    by_name = assets.find("people-detection.mp4")
    assert by_name == assets.find("people-detection")
    assert by_name.stat().st_size > 0
    assert assets.find("yolox_nano.onnx").name == "yolox_nano.onnx"


def test_unknown_asset_is_a_clear_error():
    with pytest.raises(AssetError, match="no-such-thing"):
        assets.find("no-such-thing.mp4")


def test_corrupt_copy_is_refused(tmp_path, monkeypatch):
    good = assets.find("people-detection.mp4")
    (tmp_path / "videos").mkdir()
    corrupt = tmp_path / "videos" / "people-detection.mp4"
    shutil.copy(good, corrupt)
    with corrupt.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff\x00\xff")
    monkeypatch.setenv("EDGEVA_ASSETS", str(tmp_path))
    with pytest.raises(AssetError, match="people-detection.mp4.*SHA-256"):
        assets.find("people-detection.mp4")


def test_missing_asset_without_upstream_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVA_ASSETS", str(tmp_path))
    with pytest.raises(AssetError, match="store-aisle-detection.mp4"):
        assets.find("store-aisle-detection.mp4")


def test_cache_copy_is_used_when_assets_dir_is_unset(monkeypatch, tmp_path):
    good = assets.find("coco80.names")
    monkeypatch.delenv("EDGEVA_ASSETS")
    monkeypatch.setenv("EDGEVA_CACHE", str(tmp_path))
    target = tmp_path / "assets" / "models" / "coco80.names"
    target.parent.mkdir(parents=True)
    shutil.copy(good, target)
    assert assets.find("coco80.names", download=False) == target
