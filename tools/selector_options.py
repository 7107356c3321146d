"""docs/accmpeg-selector.md's figures on the selector's training options (backbone fine-tuning,
degraded inputs): train a selector on the demo's two scenes (60 frames spread over each, 15
epochs) with the given ``TrainConfig`` options, then score it on the four unseen demo videos
against each video's own-scale AccGrad truth: precision (recall) at the top 10% of blocks and
precision at recall 0.8, on the clean frames and on degraded ones (the training
augmentation's mix of exposure, blur, noise and JPEG, with a seed no training uses).

    EDGEVA_ASSETS=../shared/assets .venv/bin/python tools/selector_options.py out/opts ft2 '{"finetune_stages": 2, "seed": 1}'

Writes ``OUT/NAME.pt`` (reused when present) and ``OUT/NAME.json``; prints the training time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgeva import assets
from edgeva.accmpeg.selector import load_selector, save_selector
from edgeva.accmpeg.train import (
    TrainConfig,
    block_precision_recall,
    degraded_frames,
    own_scale,
    sample_indices,
    selector_scores,
    train_selector,
)
from edgeva.cli.demo import EVAL_VIDEOS, TRAIN_VIDEOS
from edgeva.video import read_frames

TRAIN, VIDEOS = TRAIN_VIDEOS, EVAL_VIDEOS  # the demo's scenes: trained on, and unseen
DEGRADED_SEED = 1000  # never a training seed


def _scores(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    top, at_recall = block_precision_recall(probabilities, truth, fraction=0.1), block_precision_recall(probabilities, truth, recall=0.8)
    return {"p10": round(top["precision"], 3), "r10": round(top["recall"], 2), "p_r08": round(at_recall["precision"], 3)}


def main(out: Path, name: str, options: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"{name}.pt"
    if not checkpoint.is_file():
        start = time.perf_counter()
        save_selector(train_selector(TrainConfig(videos=list(TRAIN), frames_per_video=60, epochs=15, **options)), checkpoint)
        print(f"{name}: trained in {time.perf_counter() - start:.0f} s wall", flush=True)
    selector = load_selector(checkpoint)
    rows = {}
    for video in VIDEOS:
        probabilities, truth = selector_scores(selector, video, frames=60, scale=own_scale(video, frames=60))
        path = assets.resolve_video(video)
        indices = sample_indices(path, 60)
        wanted = set(indices)
        frames = [f for i, f in enumerate(read_frames(path, max(indices) + 1)) if i in wanted]
        degraded = degraded_frames(frames, path, DEGRADED_SEED, 0)
        on_degraded = np.concatenate([selector.predict(degraded[i : i + 8]) for i in range(0, len(degraded), 8)])
        rows[video] = {"frames": len(truth), "clean": _scores(probabilities, truth), "degraded": _scores(on_degraded, truth)}
        print(name, video, rows[video], flush=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) == 4 else {})
