"""``edgeva bench apps``: does the shared-prefix runner really share?

``n`` apps branch off the base at the same freeze point and run on every frame; their
compute per frame is compared with one app's. Without sharing it would be ``n`` times; with
sharing it is one prefix plus ``n`` branches. Branches are copies of the base's own layers
with a random head: compute does not depend on the weights' values.
"""

from __future__ import annotations

import numpy as np
import torch

from edgeva.mainstream.base import FREEZE_POINTS, Branch, load_base
from edgeva.mainstream.runner import SharedRunner

__all__ = ["bench_sharing", "sharing_ratio"]


def _frames(video: str, frames: int) -> list[np.ndarray]:
    from edgeva import assets
    from edgeva.video import read_frames

    return read_frames(assets.resolve_video(video), limit=frames, size=(224, 128))


def sharing_ratio(base, images: list[np.ndarray], n_apps: int, freeze: int, repeats: int = 1) -> dict:
    """Measured ms per frame of ``n_apps`` sharing the prefix vs one app; and whether the
    shared run's outputs equal each app run alone."""
    torch.manual_seed(freeze)
    branches = [Branch(base, freeze).eval() for _ in range(n_apps)]
    shared = SharedRunner(base, branches, [1.0] * n_apps, 1.0)
    alone = [SharedRunner(base, [b], [1.0], 1.0) for b in branches]
    equal = True
    best_shared = best_single = float("inf")
    for _ in range(repeats):  # best of repeats: the machine may be shared
        shared.reset()
        for r in alone:
            r.reset()
        for image in images:
            out = shared.step(image, 0)
            for i, r in enumerate(alone):
                equal &= out[i] == r.step(image, 0)[0]
        best_shared = min(best_shared, shared.stats.compute_ms / len(images))
        best_single = min(best_single, min(r.stats.compute_ms for r in alone) / len(images))
    return {"apps": n_apps, "freeze": FREEZE_POINTS[freeze], "shared_ms": best_shared, "one_app_ms": best_single,
            "ratio": best_shared / best_single, "unshared_ratio": float(n_apps), "equal": bool(equal)}


def bench_sharing(video: str = "store-aisle-detection", frames: int = 20, n_apps: int = 6, repeats: int = 3,
                  threads: int = 1) -> list[dict]:
    torch.set_num_threads(threads)
    base = load_base()
    images = _frames(video, frames)
    return [sharing_ratio(base, images, n_apps, k, repeats) for k in FREEZE_POINTS]
