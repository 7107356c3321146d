"""The quality selector, its training, checkpoints and the AccMPEG camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva import assets
from edgeva.accmpeg import (
    AccMPEGQuality,
    ChunkCamera,
    QualitySelector,
    load_selector,
    save_selector,
)
from edgeva.accmpeg.train import TrainConfig, train_selector
from edgeva.errors import ModelError
from edgeva.video import decode_chunk, grid_shape


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small selector trained twice with the same seed (AccGrad computed once, then cached)."""
    out = tmp_path_factory.mktemp("selector")
    cfg = dict(videos=["people-detection", "store-aisle-detection"], frames_per_video=12, epochs=3, val_fraction=0.25, log=lambda _m: None)
    first = train_selector(TrainConfig(**cfg))
    second = train_selector(TrainConfig(**cfg))
    save_selector(first, out / "sel.pt")
    return first, second, out / "sel.pt"


def test_any_frame_size_gives_one_logit_per_macroblock():
    model = QualitySelector().eval()
    for h, w in [(270, 480), (432, 768), (100, 130)]:
        probs = model.predict(np.zeros((1, h, w, 3), np.uint8))
        assert probs.shape == (1, *grid_shape(h, w)) and ((probs >= 0) & (probs <= 1)).all()


def test_selector_traces_for_export():
    model = QualitySelector().eval()
    x = torch.rand(1, 3, 288, 480)
    traced = torch.jit.trace(model, x)
    other = torch.rand(1, 3, 448, 768)  # a trace is shape-generic only without data-dependent control flow
    torch.testing.assert_close(traced(other), model(other))


def test_training_is_deterministic_and_records_its_setting(trained):
    first, second, path = trained
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    meta = load_selector(path).meta
    assert meta.final_dnn == "yolox-nano" and (meta.crf_high, meta.crf_low) == (30, 40)
    assert meta.train_videos == ["people-detection.mp4", "store-aisle-detection.mp4"]
    assert meta.accgrad_scale > 0 and meta.accgrad_threshold == 0.4 and (270, 480) in meta.frame_sizes and meta.backbone == "yolox-nano-fpn"
    assert 1 <= meta.best_epoch <= 3 and 0 <= meta.val_recall <= 1


def test_checkpoint_for_another_dnn_or_corrupt_is_refused(trained, tmp_path):
    _, _, path = trained
    with pytest.raises(ModelError, match="trained for final DNN 'yolox-nano', not 'fastestdet'"):
        load_selector(path, final_dnn="fastestdet")
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="bad.pt"):
        load_selector(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ModelError, match="not an edgeva selector"):
        load_selector(other)
    warnings = []
    load_selector(path, frame_size=(1080, 1920), warn=warnings.append)
    assert warnings and "1920" in warnings[0]


def test_accmpeg_camera_lower_alpha_selects_more_and_chunks_decode(trained):
    model, _, _ = trained
    frames = frames_of("store-aisle-detection", 10)
    fractions = []
    for alpha in (0.05, 0.5, 0.95):
        chunk = ChunkCamera(AccMPEGQuality(model, alpha=alpha, gamma=0)).encode(frames, 40)
        fractions.append(chunk.high_fraction)
        assert chunk.encoded.first_frame == 40 and len(decode_chunk(chunk.encoded)) == 10
        assert chunk.policy_s > 0 and chunk.encode_s > 0
    assert fractions[0] >= fractions[1] >= fractions[2]
    assert fractions[0] > fractions[2]
    warnings = []
    policy = AccMPEGQuality(model, warn=warnings.append)
    big = [np.zeros((1080, 1920, 3), np.uint8)] * 2
    policy.quality(big, 0), policy.quality(big, 2)
    assert len(warnings) == 1 and "1920" in warnings[0]  # told once per stream
    assert policy.last_probabilities.shape == grid_shape(1080, 1920)  # looked at half size, mapped back to our grid


def test_selector_runs_at_half_size_only_on_frames_about_twice_its_training_width():
    from types import SimpleNamespace

    from edgeva.accmpeg.camera import selector_scale

    meta = SimpleNamespace(frame_sizes=[(432, 768)])
    assert [selector_scale(meta, w) for w in (480, 768, 1024, 1280, 1920)] == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert selector_scale(SimpleNamespace(frame_sizes=[]), 1920) == 1.0


def test_pretrained_backbones_are_loaded(yolox):
    shuffle = QualitySelector("shufflenetv2").load_pretrained()
    state = torch.load(assets.find("shufflenetv2_x0.5_imagenet_backbone.pth"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(shuffle.backbone.first_conv[0].weight, state["first_conv.0.weight"])
    darknet = QualitySelector("yolox-nano").load_pretrained()
    torch.testing.assert_close(darknet.backbone.stem.conv.conv.weight, yolox.backbone.backbone.stem.conv.conv.weight)
    with pytest.raises(ModelError, match="'vgg'"):
        QualitySelector("vgg")


def test_eval_reuses_a_selector_across_final_dnns_with_a_warning(trained, tmp_path):
    from edgeva.errors import EdgevaError
    from edgeva.eval.harness import EvalConfig, evaluate

    _, _, path = trained
    notes = []
    cfg = EvalConfig(videos=["people-detection"], schemes=["accmpeg"], model="fastestdet", checkpoints={"selector": str(path)}, frames=10, sweep=False)
    result = evaluate(cfg, log=notes.append)
    assert any("trained on yolox-nano" in n and "fastestdet" in n for n in notes)
    assert len(result.records) == 1 and result.records[0]["bytes"] > 0
    corrupt = tmp_path / "cut.pt"
    corrupt.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(EdgevaError, match="cut.pt"):
        evaluate(EvalConfig(videos=["people-detection"], schemes=["accmpeg"], checkpoints={"selector": str(corrupt)}, frames=10, sweep=False), log=notes.append)


def test_accmpeg_scheme_answers_every_frame_and_can_sample_frames(trained):
    from edgeva.models import create_detector
    from edgeva.schemes import SchemeContext, Server, create_scheme
    from edgeva.video import EncoderSettings

    _, _, path = trained
    frames = frames_of("store-aisle-detection", 30)
    ctx = SchemeContext(server=Server(create_detector("yolox-nano", score_threshold=0.1)), settings=EncoderSettings(fps=16.7),
                        frame_size=frames[0].shape[:2], fps=16.7, checkpoints={"selector": str(path)})
    sent, nbytes = {}, {}
    for divisor in (1, 3):
        scheme = create_scheme("accmpeg", ctx, alpha=0.5, fps_divisor=divisor)
        scheme.reset()
        outcomes = [scheme.process(frames[i : i + 10], i) for i in range(0, 30, 10)]
        assert all(len(o.detections) == o.frames == 10 for o in outcomes)
        assert all(0 < o.high_fraction < 1 for o in outcomes)
        sent[divisor], nbytes[divisor] = sum(o.sent_frames for o in outcomes), sum(o.nbytes for o in outcomes)
    assert sent == {1: 30, 3: 10}
    assert nbytes[3] < nbytes[1]


def test_training_mixes_frame_sizes_whose_padded_features_coincide():
    """768x432 at scale 0.5 (384x216: 24x14 blocks) and 480x270 at scale 0.75 (360x202: 23x13
    blocks) pad to the same 384x224 feature grid; a batch must never mix their masks."""
    import random

    cfg = TrainConfig(videos=["car-detection", "people-detection"], frames_per_video=6, epochs=2, val_fraction=0.2, log=lambda _m: None)
    model = train_selector(cfg)
    assert sorted(model.meta.frame_sizes) == [(270, 480), (432, 768)] and model.meta.best_epoch in (1, 2)
    from edgeva.accmpeg.train import epoch_batches

    feat = torch.zeros(1, 4, 14, 24)
    train = [[(feat, torch.zeros(1, 14, 24))], [(feat, torch.zeros(1, 13, 23))]] * 4
    for batch in epoch_batches(train, 8, random.Random(0)):
        assert len({tuple(m.shape) for _, m in batch}) == 1


def test_eval_takes_each_videos_own_selector(trained, tmp_path):
    """Leave-one-video-out: a per-video checkpoint replaces the shared one for that video only."""
    from edgeva.errors import ConfigError
    from edgeva.eval.harness import EvalConfig, evaluate

    model, _, path = trained
    shy = QualitySelector(model.backbone_name)
    shy.load_state_dict(model.state_dict())
    shy.meta = model.meta
    with torch.no_grad():
        shy.head[-1].bias.fill_(-50.0)  # no block high
    save_selector(shy, tmp_path / "shy.pt")
    cfg = EvalConfig(videos=["people-detection", "store-aisle-detection"], schemes=["accmpeg"], checkpoints={"selector": str(path)},
                     video_checkpoints={"people-detection": {"selector": str(tmp_path / "shy.pt")}}, frames=10, sweep=False)
    high = {r["video"]: r["high_fraction"] for r in evaluate(cfg, log=lambda _m: None).records}
    assert high["people-detection"] == 0.0 and high["store-aisle-detection"] > 0.0
    cfg.checkpoints = {}
    with pytest.raises(ConfigError, match="needs --selector"):
        evaluate(cfg, log=lambda _m: None)


def test_block_precision_recall_at_alpha_fraction_and_recall():
    from edgeva.accmpeg.train import block_precision_recall

    probabilities = np.array([[0.9, 0.8, 0.7, 0.1], [0.6, 0.5, 0.4, 0.3]])
    truth = np.array([[1, 0, 1, 0], [0, 0, 1, 0]], bool)
    assert block_precision_recall(probabilities, truth, alpha=0.65) == {"truth_fraction": 0.375, "selected_fraction": 0.375, "recall": 2 / 3, "precision": 2 / 3}
    assert block_precision_recall(probabilities, truth, fraction=0.25)["precision"] == 0.5
    at_recall = block_precision_recall(probabilities, truth, recall=1.0)
    assert at_recall["recall"] == 1.0 and at_recall["selected_fraction"] == 6 / 8
    with pytest.raises(ValueError):
        block_precision_recall(probabilities, truth, alpha=0.5, fraction=0.5)


def test_calibrated_selection_takes_a_fixed_share_of_blocks(trained):
    model, _, _ = trained
    frames = frames_of("store-aisle-detection", 10)
    rows, cols = grid_shape(*frames[0].shape[:2])
    for fraction in (0.1, 0.3):
        policy = AccMPEGQuality(model, fraction=fraction, gamma=0)
        chunk = ChunkCamera(policy).encode(frames, 0)
        assert chunk.high_fraction == pytest.approx(round(fraction * rows * cols) / (rows * cols))
        chosen = policy.select(policy.last_probabilities)
        assert policy.last_probabilities[chosen].min() >= policy.last_probabilities[~chosen].max()
    with pytest.raises(ValueError, match="fraction"):
        AccMPEGQuality(model, fraction=0.0)


def test_leave_one_out_selectors_are_keyed_by_their_inputs(tmp_path):
    from dataclasses import replace

    from edgeva.accmpeg.loo import leave_one_out, selector_key
    from edgeva.errors import ConfigError

    cfg = TrainConfig(videos=["people-detection", "store-aisle-detection"], frames_per_video=12)
    assert selector_key(cfg) == selector_key(replace(cfg, log=None))
    assert len({selector_key(cfg), selector_key(replace(cfg, videos=["people-detection"])), selector_key(replace(cfg, epochs=3))}) == 3
    with pytest.raises(ConfigError, match="no training video left"):
        leave_one_out(["people-detection"], ["people-detection"], cfg, tmp_path)


def test_a_selector_trained_on_several_scenes_is_more_precise_on_an_unseen_one():
    """Bottle-detection, unseen: at the same recall (0.8 of the blocks whose AccGrad is above
    0.4 x the video's own p99, one truth for both), the selector trained on the five other
    sample videos selects fewer useless blocks than the one trained on car-detection alone."""
    from edgeva.accmpeg.train import block_precision_recall, own_scale, selector_scores

    base = dict(frames_per_video=8, epochs=5, val_fraction=0.25, scales=(), log=lambda _m: None)
    one = train_selector(TrainConfig(videos=["car-detection"], **base))
    several = train_selector(TrainConfig(videos=["car-detection", "one-by-one-person-detection", "store-aisle-detection", "people-detection",
                                                 "fruit-and-vegetable-detection"], **base))
    truth_scale = own_scale("bottle-detection", frames=12)
    precision = {}
    for name, model in (("one", one), ("several", several)):
        probabilities, truth = selector_scores(model, "bottle-detection", frames=12, scale=truth_scale)
        precision[name] = block_precision_recall(probabilities, truth, recall=0.8)["precision"]
    print(precision)
    assert precision["several"] > precision["one"]
