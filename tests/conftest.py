"""Shared fixtures: real sample videos and weights from ../shared/assets (or $EDGEVA_ASSETS)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
if not os.environ.get("EDGEVA_ASSETS") and _SHARED.is_dir():
    os.environ["EDGEVA_ASSETS"] = str(_SHARED)

from edgeva import assets  # noqa: E402
from edgeva.models import create_detector  # noqa: E402
from edgeva.video import read_frames  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's cache."""
    os.environ["EDGEVA_CACHE"] = str(tmp_path_factory.mktemp("edgeva-cache"))


def video_path(name: str) -> Path:
    return assets.find(f"{name}.mp4")


_frames_cache: dict[tuple[str, int, int], list[np.ndarray]] = {}


def frames_of(name: str, count: int, step: int = 1) -> list[np.ndarray]:
    """The first ``count`` frames (every ``step``-th) of a sample video, decoded once per session."""
    key = (name, count, step)
    if key not in _frames_cache:
        _frames_cache[key] = read_frames(video_path(name), count, step=step)
    return _frames_cache[key]


@pytest.fixture(scope="session")
def yolox():
    return create_detector("yolox-nano")


@pytest.fixture(scope="session")
def fastestdet():
    return create_detector("fastestdet")
