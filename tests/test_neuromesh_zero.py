"""NeuroMesh's zero decoding (a detection head on the MAE encoder's latent tokens, distilled
from YOLOX-Nano) and the detection-aware sampler reward, on real frames.

A small MAE (width 64, 2 + 1 blocks) is trained here for a few steps on the first 40 frames
of bottle-detection (three or four bottles in every frame, so every clip has targets)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva.errors import ModelError
from edgeva.models import Detections, box_iou, create_detector
from edgeva.neuromesh import MaeSpec, NeuroMeshCodec, save_mae
from edgeva.neuromesh.model import to_tubelets
from edgeva.neuromesh.train import (
    NeuroMeshTrainConfig,
    detection_reward,
    reward_detector,
    train_mae,
    uint8_frames,
)
from edgeva.neuromesh.zero import (
    BOX,
    HeadSpec,
    LatentHead,
    ZeroDecoder,
    decode_frames,
    head_loss,
    head_targets,
    latent_raw,
    load_head,
    save_head,
)
from edgeva.neuromesh.zero_train import HeadTrainConfig, read_head_data, train_head, visible_top_k
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.video import EncoderSettings

EDGEVA = [sys.executable, "-m", "edgeva.cli"]
VIDEO = "bottle-detection"
SMALL = MaeSpec(width=64, depth=2, decoder_width=64, decoder_depth=1)
HEAD = HeadSpec(width=64)


def _mae_config(**kw) -> NeuroMeshTrainConfig:
    base = dict(videos=[VIDEO], frames_per_video=40, steps=20, batch=2, eval_every=10, spec=SMALL, log=lambda _m: None)
    return NeuroMeshTrainConfig(**{**base, **kw})


def _head_config(**kw) -> HeadTrainConfig:
    base = dict(videos=[VIDEO], frames_per_video=40, steps=40, eval_every=10, spec=HEAD, log=lambda _m: None)
    return HeadTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def codec() -> NeuroMeshCodec:
    torch.set_num_threads(1)
    return train_mae(_mae_config())


@pytest.fixture(scope="module")
def data(codec):
    return read_head_data(codec, VIDEO, 32, 0.4)


@pytest.fixture(scope="module")
def head(codec):
    return train_head(_head_config(), codec)


def _clip_targets(codec, data, start: int):
    frames = data.frames[start : start + codec.spec.clip_frames]
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()[None] / 255.0
    grid = codec.model.grid(clip)
    targets = head_targets(data.targets[start : start + codec.spec.clip_frames], grid, codec.spec)
    return clip, grid, {k: v[None] for k, v in targets.items()}


def test_head_output_shape_and_decoding_invert_the_targets(codec, data):
    clip, grid, targets = _clip_targets(codec, data, 0)
    visible = visible_top_k(codec, clip, 0.7)
    raw = latent_raw(codec.model, LatentHead(SMALL, HEAD), clip, visible)
    n = int(np.prod(grid))
    assert raw.shape == (1, n, 2, BOX + 80) and visible.shape == (1, round(0.3 * n))
    # Raw output built from the targets decodes back to YOLOX-Nano's boxes (one per cell).
    ideal = torch.full(raw.shape, -20.0)
    positive = targets["obj"][0] > 0
    ideal[0, ..., 0][positive] = 20.0
    ideal[0, ..., 1:3] = torch.logit(targets["box"][0, ..., :2].clamp(1e-4, 1 - 1e-4))
    ideal[0, ..., 3:5] = targets["box"][0, ..., 2:]
    ideal[0, ..., BOX:].scatter_(-1, targets["cls"][0][..., None] + 0, 20.0)
    size = tuple(clip.shape[3:])
    decoded = decode_frames(ideal[0], grid, SMALL, HEAD, size, size)
    assert len(decoded) == 8 and sum(len(d) for d in decoded) == int(positive.sum()) > 0
    for got, want in zip(decoded, data.targets[:8], strict=True):
        iou = box_iou(torch.from_numpy(got.boxes), torch.from_numpy(want.boxes)).numpy()
        assert len(got) == 0 or iou.max(1).min() > 0.99, iou
    assert head_loss(ideal, targets) < 0.05 < head_loss(raw, targets)


def test_distillation_lowers_the_loss_on_training_frames(codec, data, head):
    # The untrained head (same seed, same initial weights) against the distilled one on
    # training clips: the property distillation must give (the numbers depend on the CPU).
    torch.manual_seed(0)
    untrained = LatentHead(SMALL, HEAD).eval()
    losses = []
    for model in (untrained, head.head):
        total = 0.0
        for start in (0, 8, 16):
            clip, _, targets = _clip_targets(codec, data, start)
            with torch.inference_mode():
                total += head_loss(latent_raw(codec.model, model, clip, visible_top_k(codec, clip, 0.5)), targets).item()
        losses.append(total)
    assert losses[1] < losses[0], losses
    assert head.meta.val_loss < head.meta.untrained_val_loss and head.meta.best_step > 0


def test_head_training_is_deterministic_for_a_seed(codec):
    a, b = (train_head(_head_config(steps=2, eval_every=1), codec) for _ in range(2))
    assert a.meta.val_loss == b.meta.val_loss
    assert all(torch.equal(x, y) for x, y in zip(a.head.state_dict().values(), b.head.state_dict().values(), strict=True))


def test_detection_reward_follows_the_detectors_loss_not_the_pixel_error(codec):
    frames = frames_of(VIDEO, 8)
    clip, _ = codec.clips(frames)
    n = to_tubelets(clip, SMALL).shape[1]
    with torch.no_grad():
        out = codec.model(clip, keep=round(0.3 * n), sample=False)
    detector = reward_detector(tuple(clip.shape[3:]))
    reward = detection_reward(detector, clip, out, SMALL)[0].numpy()
    error = (out.pixels() - to_tubelets(clip, SMALL)).pow(2).mean(-1)[0].detach().numpy()
    assert reward.shape == (n,) and reward.mean() == pytest.approx(1.0, rel=1e-4)
    # Its mass sits on the bottles YOLOX-Nano finds (cells their boxes cover), far more than
    # the pixel error's does: it is the detector's loss gradient, not the painting error.
    dets = detector.detect(uint8_frames(clip))
    objects = np.zeros(n, bool).reshape(4, *codec.model.grid(clip)[1:])
    for f, d in enumerate(dets):
        for x1, y1, x2, y2 in (d.above(0.4).boxes / SMALL.patch).astype(int):
            objects[f // 2, y1 : y2 + 1, x1 : x2 + 1] = True
    objects = objects.reshape(-1)
    share = lambda r: r[objects].sum() / r.sum()  # noqa: E731
    assert objects.mean() < 0.5 and share(reward) > share(error) + 0.1, (objects.mean(), share(reward), share(error))
    assert np.corrcoef(reward, error)[0, 1] < 0.99


def test_the_detection_reward_moves_only_the_sampler(codec):
    # One step from the same seed: the MAE's weights get the same gradient (the reward only
    # enters the REINFORCE term, whose probabilities come from detached tokens); the sampler's differ.
    pixel, detection = (train_mae(_mae_config(steps=1, eval_every=1, reward=r)) for r in ("pixel", "detection"))
    assert detection.meta.reward == "detection"
    a, b = pixel.model.state_dict(), detection.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("sampler."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("sampler."))


def test_zero_decoding_scheme_answers_on_the_same_chunks(codec, head, tmp_path):
    mae_path, head_path = tmp_path / "mae.pt", tmp_path / "head.pt"
    save_mae(codec, mae_path)
    save_head(head, head_path)
    frames = frames_of(VIDEO, 10)
    ctx = SchemeContext(server=Server(create_detector("yolox-nano")),
                        settings=EncoderSettings(fps=30), frame_size=frames[0].shape[:2], fps=30,
                        checkpoints={"mae": str(mae_path), "mae-head": str(head_path)})
    outcomes = [create_scheme(name, ctx, mask_ratio=0.5, crf=30).process(frames, 0) for name in ("neuromesh", "neuromesh-zero")]
    assert outcomes[0].nbytes == outcomes[1].nbytes  # the same camera, the same chunk
    assert len(outcomes[1].detections) == 10 and all(isinstance(d, Detections) for d in outcomes[1].detections)
    for d in outcomes[1].detections:
        assert (d.boxes[:, 2] <= frames[0].shape[1]).all() and (d.boxes[:, 3] <= frames[0].shape[0]).all()


def test_bad_head_checkpoints_are_one_clear_line(codec, head, tmp_path):
    good = tmp_path / "head.pt"
    save_head(head, good)
    mae = tmp_path / "mae.pt"
    save_mae(codec, mae)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:3000])
    damaged = tmp_path / "damaged.pt"
    torch.save({"format": "edgeva-neuromesh-head", "spec": {"width": 64}}, damaged)
    for path, message in ((tmp_path / "gone.pt", "no such neuromesh head checkpoint"), (corrupt, "not a readable neuromesh head checkpoint"),
                          (mae, "not an edgeva neuromesh head checkpoint"), (damaged, "neuromesh head checkpoint is damaged")):
        with pytest.raises(ModelError, match=message):
            load_head(path)
    other = NeuroMeshCodec(type(codec.model)(SMALL), codec.meta)  # same shape, other weights
    with pytest.raises(ModelError, match="head trained on another MAE"):
        ZeroDecoder(other, load_head(good))
    other_path = tmp_path / "other-mae.pt"
    save_mae(other, other_path)
    env = os.environ.copy()
    for args, message in (
        (["eval", "--videos", VIDEO, "--schemes", "neuromesh-zero", "--mae", str(other_path), "--mae-head", str(good), "--out", str(tmp_path / "o")],
         "head.pt: head trained on another MAE"),
        (["eval", "--videos", VIDEO, "--schemes", "neuromesh-zero", "--mae", str(mae), "--mae-head", str(corrupt), "--out", str(tmp_path / "o")],
         "corrupt.pt: not a readable neuromesh head checkpoint"),
        (["neuromesh", "train", "--videos", VIDEO, "--reward", "speed", "--out", str(tmp_path / "m.pt")],
         "reward 'speed': choose from pixel, detection"),
    ):
        proc = subprocess.run([*EDGEVA, *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr
