"""Selector training options: backbone fine-tuning and camera-degradation augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva.accmpeg import QualitySelector, load_selector, save_selector
from edgeva.accmpeg.degrade import degrade
from edgeva.accmpeg.train import TrainConfig, degraded_frames, train_selector
from edgeva.errors import ConfigError

SMALL = dict(videos=["car-detection"], frames_per_video=6, epochs=2, val_fraction=0.2, log=lambda _m: None)


@pytest.mark.parametrize("backbone", ["yolox-nano-fpn", "yolox-nano", "shufflenetv2"])
def test_trunk_then_tail_is_the_backbone_for_every_split(backbone):
    model = QualitySelector(backbone).eval()
    x = model.prepare(torch.rand(1, 3, 120, 200) * 255)
    with torch.no_grad():
        whole = model.features(x)
        for stages in range(model.max_finetune_stages() + 1):
            split = model.pyramid_features(*model.tail(model.trunk(x, stages), stages))
            assert torch.allclose(split, whole, atol=1e-5), stages
            assert bool(model.tail_parameters(stages)) == (stages > 0)


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if k.startswith("backbone.") and not torch.equal(before[k], after[k])}


def test_finetuning_trains_the_last_stages_only_and_the_selector_runs_as_before(tmp_path):
    """The neck and dark5 change, CSPDarknet's earlier stages and every BatchNorm statistic
    stay pretrained; head-only training leaves the backbone untouched; the checkpoint loads
    into the same architecture and predicts one probability per block."""
    pretrained = QualitySelector().load_pretrained().state_dict()
    head_only = train_selector(TrainConfig(**SMALL))
    assert not _changed(pretrained, head_only.state_dict())
    tuned = train_selector(TrainConfig(**SMALL, finetune_stages=2))
    changed = _changed(pretrained, tuned.state_dict())
    assert any(k.startswith("backbone.backbone.dark5.") for k in changed)
    assert any(k.startswith("backbone.C3_n4.") for k in changed)
    assert not any(k.startswith(("backbone.backbone.dark4.", "backbone.backbone.dark3.", "backbone.backbone.stem.")) for k in changed)
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)
    save_selector(tuned, tmp_path / "tuned.pt")
    loaded = load_selector(tmp_path / "tuned.pt")
    frame = frames_of("car-detection", 1)[0]
    assert np.array_equal(loaded.predict([frame]), tuned.predict([frame]))
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in head_only.parameters())


def test_finetune_stages_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="finetune-stages 4"):
        train_selector(TrainConfig(**SMALL, finetune_stages=4))
    with pytest.raises(ConfigError, match="degrade -1"):
        train_selector(TrainConfig(**SMALL, degrade_variants=-1))


def test_degradation_changes_pixels_not_shape_and_is_seeded():
    frame = frames_of("car-detection", 1)[0]
    first = degrade(frame, np.random.default_rng(0))
    assert first.shape == frame.shape and first.dtype == np.uint8 and not np.array_equal(first, frame)
    assert np.array_equal(first, degrade(frame, np.random.default_rng(0)))
    assert not np.array_equal(first, degrade(frame, np.random.default_rng(1)))
    a, b = degraded_frames([frame], "car-detection", 0, 0), degraded_frames([frame], "car-detection", 0, 1)
    assert np.array_equal(a[0], degraded_frames([frame], "car-detection", 0, 0)[0]) and not np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="uint8"):
        degrade(frame.astype(np.float32), np.random.default_rng(0))


def test_training_with_degraded_copies_is_deterministic_and_uses_them():
    cfg = TrainConfig(**SMALL, degrade_variants=1)
    first, second = train_selector(cfg), train_selector(cfg)
    clean = train_selector(replace(cfg, degrade_variants=0))
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert any(not torch.equal(v, clean.head.state_dict()[k]) for k, v in first.head.state_dict().items())


def test_new_options_at_their_defaults_keep_older_selectors_keys():
    import hashlib
    import json
    from dataclasses import fields

    from edgeva import assets
    from edgeva.accmpeg.accgrad import ACCGRAD_VERSION
    from edgeva.accmpeg.loo import TRAIN_VERSION, selector_key

    cfg = TrainConfig(videos=["people-detection"], frames_per_video=12)
    keys = {selector_key(cfg), selector_key(replace(cfg, finetune_stages=1)), selector_key(replace(cfg, degrade_variants=2))}
    assert len(keys) == 3
    # The key as it was computed before these options existed (their names absent).
    added = ("videos", "log", "finetune_stages", "finetune_lr", "degrade_variants")
    settings = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in added}
    videos = [assets.file_identity(assets.resolve_video("people-detection"))]
    payload = json.dumps({"videos": videos, "settings": settings, "accgrad": ACCGRAD_VERSION, "train": TRAIN_VERSION}, sort_keys=True, default=str)
    assert selector_key(cfg) == hashlib.sha256(payload.encode()).hexdigest()[:16]
