"""NeuroMesh: MAE + sampler training, tubelet selection, blanked encoding, reconstruction,
checkpoints and the scheme, on real frames.

The tests share one small MAE (width 64, 2 + 1 blocks) trained here on
the first 60 frames of car-detection (cars driving through a parking lot): the real model's
code path at a size that trains in seconds on an idle machine."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva.errors import ConfigError, ModelError
from edgeva.models import create_detector
from edgeva.neuromesh import MaeSpec, NeuroMeshCodec, load_mae, save_mae
from edgeva.neuromesh.codec import pack_mask, unpack_mask
from edgeva.neuromesh.model import from_tubelets, to_tubelets
from edgeva.neuromesh.train import NeuroMeshTrainConfig, train_mae
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.video import EncoderSettings, encode_chunk

EDGEVA = [sys.executable, "-m", "edgeva.cli"]
TRAIN = "car-detection"
SMALL = MaeSpec(width=64, depth=2, decoder_width=64, decoder_depth=1)


def _config(**kw) -> NeuroMeshTrainConfig:
    base = dict(videos=[TRAIN], frames_per_video=60, steps=100, batch=2, crop_width=256, eval_every=25, spec=SMALL, log=lambda _m: None)
    return NeuroMeshTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def codec() -> NeuroMeshCodec:
    torch.set_num_threads(1)
    return train_mae(_config())


@pytest.fixture(scope="module")
def checkpoint(codec, tmp_path_factory):
    path = tmp_path_factory.mktemp("neuromesh") / "mae.pt"
    save_mae(codec, path)
    return path


def _motion(frames: list[np.ndarray], codec: NeuroMeshCodec) -> np.ndarray:
    """(slots, rows, cols): per tubelet, the largest mean absolute change between consecutive
    frames at the MAE's input size."""
    clips, real = codec.clips(frames)
    small = clips.permute(0, 2, 1, 3, 4).reshape(-1, 3, *clips.shape[3:])[: len(frames)]
    diff = (small[1:] - small[:-1]).abs().mean(1)
    diff = torch.cat([diff, diff[-1:]])
    _, rows, cols = codec.model.grid(clips)
    p = codec.spec.patch
    per_block = diff.reshape(len(frames), rows, p, cols, p).mean((2, 4))
    return per_block.reshape(-1, 2, rows, cols).amax(1).numpy()[:real]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((a - b) ** 2)), 1e-10)))


def test_tubelets_round_trip_and_the_mask_bitmap_is_compact():
    spec = MaeSpec()
    clip = torch.rand(2, 3, 8, 32, 48)
    assert torch.equal(from_tubelets(to_tubelets(clip, spec), spec, (4, 2, 3)), clip)
    mask = np.random.default_rng(0).random((5, 9, 16)) < 0.3
    data = pack_mask(mask)
    assert len(data) == 5 + 90 and np.array_equal(unpack_mask(data), mask)


def test_training_is_deterministic_for_a_seed():
    cfg = dict(steps=3, eval_every=1, frames_per_video=40)
    a, b = train_mae(_config(**cfg)), train_mae(_config(**cfg))
    assert a.meta.val_loss == b.meta.val_loss
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_sampler_keeps_moving_tubelets_more_than_static_ones(codec):
    # Cars drive through frames 200-210 (the model trained on frames 0-47). Measured on this
    # machine: the 10% most-changing tubelets kept 0.60, the static half 0.24 (30% kept overall);
    # asserted: a gap of 0.15.
    frames = frames_of(TRAIN, 210)[200:210]
    motion = _motion(frames, codec)
    mask, _ = codec.choose(frames, 0.7)
    moving, static = mask[motion >= np.quantile(motion, 0.9)].mean(), mask[motion <= np.quantile(motion, 0.5)].mean()
    assert moving > static + 0.15, (moving, static)


def test_reconstruction_of_dropped_tubelets_beats_a_flat_fill(codec):
    # Held-out frames (48-56), sampler's top 30%, pixels in [0, 1] at the MAE's size. Measured
    # here: 31.7 dB against 24.3 dB (+7.3); asserted: +3 dB (CPUs differ in float rounding and
    # the training is short, so the trained weights differ from machine to machine).
    frames = frames_of(TRAIN, 56)[48:56]
    clips, _ = codec.clips(frames)
    mask, _ = codec.choose(frames, 0.7)
    visible = codec.visible_slots(mask, clips.shape[0])
    filled = to_tubelets(codec.reconstruct_clips(clips, visible), codec.spec)[0][~visible[0]].numpy()
    truth = to_tubelets(clips, codec.spec)[0][~visible[0]].numpy()
    ours, flat = _psnr(filled, truth), _psnr(np.full_like(truth, 128 / 255), truth)
    assert ours > flat + 3.0, (ours, flat)
    complexity = codec.complexity(frames, 0.7)
    assert complexity.kept_share == pytest.approx(mask.mean()) and 0 < complexity.probability_share <= 1
    assert complexity.dropped_mse > 0


def test_blanked_chunk_costs_fewer_bytes_than_full_frames_and_decodes_every_frame(codec):
    frames = frames_of("store-aisle-detection", 9)  # odd: the last tubelet slot is padded
    settings = EncoderSettings(fps=16.7)
    sent = codec.camera(frames, mask_ratio=0.7, crf=30, settings=settings)
    full = encode_chunk(frames, 30, settings)  # measured: 6,364 bytes (video + bitmap) against 17,305
    assert sent.data_bytes < 0.75 * full.nbytes, (sent.data_bytes, full.nbytes)
    assert sent.mask.shape[0] == 5 and abs(sent.mask.mean() - 0.3) < 0.02
    restored = codec.server(sent.chunk, pack_mask(sent.mask))
    assert len(restored) == 9 and restored[0].shape == frames[0].shape


def test_scheme_bytes_and_detections_repeat_run_to_run(checkpoint):
    frames = frames_of("store-aisle-detection", 20)
    runs = []
    for _ in range(2):
        ctx = SchemeContext(server=Server(create_detector("yolox-nano")), settings=EncoderSettings(fps=16.7),
                            frame_size=frames[0].shape[:2], fps=16.7, checkpoints={"mae": str(checkpoint)})
        scheme = create_scheme("neuromesh", ctx, mask_ratio=0.5, crf=30)
        scheme.reset()
        outcomes = [scheme.process(frames[i : i + 10], i) for i in range(0, 20, 10)]
        runs.append(([o.nbytes for o in outcomes], [d.to_json() for o in outcomes for d in o.detections]))
    assert runs[0] == runs[1]
    assert all(len(o) == 10 for o in [runs[0][1][:10], runs[0][1][10:]])


def test_bad_inputs_are_one_clear_line(tmp_path, checkpoint, codec):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else"}, foreign)
    short = tmp_path / "short-clips.pt"
    save_mae(NeuroMeshCodec(type(codec.model)(replace(SMALL, clip_frames=4)), codec.meta), short)
    small_patch = tmp_path / "patch8.pt"
    save_mae(NeuroMeshCodec(type(codec.model)(replace(SMALL, patch=8)), codec.meta), small_patch)
    for path, kwargs, message in ((tmp_path / "gone.pt", {}, "no such neuromesh MAE checkpoint"),
                                  (corrupt, {}, "not a readable neuromesh MAE checkpoint"),
                                  (foreign, {}, "not an edgeva neuromesh MAE checkpoint"),
                                  (short, {"clip_frames": 8}, "MAE trained on 4-frame clips, 8-frame clips expected"),
                                  (small_patch, {"patch": 16}, "MAE tubelets are 8x8 pixels, 16x16 expected")):
        with pytest.raises(ModelError, match=message):
            load_mae(path, **kwargs)
    for ratio in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ConfigError, match="mask ratio"):
            codec.camera(frames_of(TRAIN, 2), mask_ratio=ratio, crf=30, settings=EncoderSettings())
    env = os.environ.copy()
    for args, message in (
        (["eval", "--videos", "people-detection", "--schemes", "neuromesh", "--mae", str(small_patch), "--out", str(tmp_path / "o")],
         "patch8.pt: MAE tubelets are 8x8 pixels, 16x16 expected"),
        (["neuromesh", "train", "--videos", TRAIN, "--mask-ratio", "1.2", "--out", str(tmp_path / "m.pt")],
         "mask ratio 1.2: must be strictly between 0 and 1"),
    ):
        proc = subprocess.run([*EDGEVA, *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr, proc.stderr


@pytest.mark.parametrize("positions", [True, False])
def test_a_content_only_sampler_scores_a_shifted_tubelet_the_same(positions):
    from edgeva.neuromesh.model import VideoMAE

    torch.manual_seed(0)
    model = VideoMAE(MaeSpec(width=32, depth=1, decoder_width=32, decoder_depth=1, heads=2, sampler_heads=2,
                             sampler_positions=positions)).eval()
    clip = torch.from_numpy(np.stack(frames_of("store-aisle-detection", 8)[:8])[:, :144, :256]).permute(3, 0, 1, 2)[None].float() / 255
    shifted = torch.roll(clip, shifts=16, dims=4)  # every tubelet one column to the right, the last wrapping round
    with torch.no_grad():
        probs = model.keep_probabilities(clip).reshape(1, 4, 9, 16)
        moved = model.keep_probabilities(shifted).reshape(1, 4, 9, 16)
    same = torch.allclose(torch.roll(probs, shifts=1, dims=3), moved, rtol=1e-4, atol=1e-7)
    assert same is (not positions)  # with position codes a tubelet's score depends on where it is
