"""Selectors trained on many scenes, leave-one-video-out, cached by their inputs.

A selector evaluated on video V must never have seen V. With a pool of videos (the shared
sample videos by default), the selector for V is trained on every video of the pool but V:
more scenes than the two a single demo selector was trained on, and still unseen video for
each evaluated one. A trained selector is kept on disk under a key of everything that
determines it (the training videos' identities, every training setting, the AccGrad and
training versions), so a second evaluation reuses it and a changed setting retrains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path

from edgeva import assets
from edgeva.accmpeg.accgrad import ACCGRAD_VERSION
from edgeva.accmpeg.selector import save_selector
from edgeva.accmpeg.train import TrainConfig, train_selector
from edgeva.errors import ConfigError

__all__ = ["TRAIN_VERSION", "selector_key", "trained_selector", "leave_one_out"]

TRAIN_VERSION = 1  # bump when training changes behaviour: cached selectors are keyed by it
_ADDED = {"finetune_stages": 0, "finetune_lr": 2e-4, "degrade_variants": 0}  # TrainConfig fields newer than TRAIN_VERSION 1, with their defaults


def selector_key(cfg: TrainConfig) -> str:
    """A digest of everything a trained selector depends on."""
    settings = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("videos", "log")}
    for name, default in _ADDED.items():  # settings added later: at their default, the key of an older selector stays
        if settings[name] == default:
            del settings[name]
    videos = [assets.file_identity(p) or p for p in (assets.resolve_video(v) for v in cfg.videos)]
    payload = json.dumps({"videos": videos, "settings": settings, "accgrad": ACCGRAD_VERSION, "train": TRAIN_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def trained_selector(cfg: TrainConfig, folder: Path, *, name: str = "selector", retrain: bool = False,
                     on_stage: Callable[[str, int], Callable[[], None]] | None = None) -> tuple[Path, bool]:
    """The selector ``cfg`` describes: read from ``folder`` if one with the same key is there,
    else trained and written. Returns its path and whether it was trained now."""
    path = Path(folder) / f"{name}-{selector_key(cfg)}.pt"
    if path.is_file() and not retrain:
        return path, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the selector folder ({exc.strerror})") from None
    save_selector(train_selector(cfg, on_stage=on_stage), path)
    return path, True


def leave_one_out(evaluated: Sequence[str], pool: Sequence[str], base: TrainConfig, folder: Path, *, retrain: bool = False,
                  on_stage: Callable[[str, int], Callable[[], None]] | None = None) -> dict[str, Path]:
    """Per evaluated video (by stem): a selector trained on every video of ``pool`` but it.

    Args:
        evaluated: videos (paths or sample names) that will be evaluated.
        pool: candidate training videos; the evaluated one is left out of its own selector's.
        base: training settings; its ``videos`` is replaced per evaluated video.
        folder: where trained selectors are kept (and looked up).
    """
    out: dict[str, Path] = {}
    for video in evaluated:
        stem = Path(video).stem
        train = [v for v in pool if Path(v).stem != stem]
        if not train:
            raise ConfigError(f"{video}: no training video left once it is left out (pool: {', '.join(pool) or 'empty'})")
        base.log(f"selector for {stem}: trained on {', '.join(Path(v).stem for v in train)}")
        out[stem], _ = trained_selector(replace(base, videos=list(train)), folder, name=f"selector-without-{stem}", retrain=retrain, on_stage=on_stage)
    return out
