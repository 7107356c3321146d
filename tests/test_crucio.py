"""Crucio: training, real bitstreams, the keyframe GRU, checkpoints and the scheme."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva.crucio import load_crucio
from edgeva.crucio.bitstream import ChunkHeader, pack_chunk, unpack_chunk
from edgeva.crucio.train import CrucioTrainConfig, train_crucio
from edgeva.errors import CodecError, ModelError
from edgeva.models import create_detector
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.video import EncoderSettings

EDGEVA = [sys.executable, "-m", "edgeva.cli"]
TRAIN = "car-detection"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny codec trained through the command line (the checkpoint every test below uses)."""
    out = tmp_path_factory.mktemp("crucio") / "crucio.pt"
    proc = subprocess.run([*EDGEVA, "crucio", "train", "--videos", TRAIN, "--frames-per-video", "60", "--steps", "100",
                           "--gru-steps", "10", "--out", str(out)], capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "held-out PSNR" in proc.stdout
    return out


@pytest.fixture(scope="module")
def codec(checkpoint):
    return load_crucio(checkpoint)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_bytes_are_real_and_decode_to_the_reconstruction_exactly(codec):
    frames = frames_of(TRAIN, 10)
    sent = codec.camera(frames, step=1.0, threshold=None)
    header, decoded = codec.server(sent.data)
    assert header.keyframes == tuple(range(10)) and header.step == 1.0
    with torch.inference_mode():
        symbols = codec.autoencoder.quantise(codec.to_clip(frames), 1.0)
    direct = codec.reconstruct(symbols, header)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, direct))
    coarse = codec.camera(frames, step=2.0, threshold=None)
    assert len(coarse.data) < len(sent.data)  # a coarser step is fewer real bytes
    with pytest.raises(CodecError, match="crucio chunk"):
        codec.server(sent.data[:9])


def test_range_coder_round_trips_symbols():
    rng = np.random.default_rng(0)
    symbols = np.round(rng.laplace(0, 2, size=(4, 3, 5, 7))).astype(np.int64)
    symbols[2] = 3  # a constant channel costs only its range
    header = ChunkHeader(10, (0, 2, 4, 6, 8, 9), 80, 112, 1.5)
    loc, scale = np.zeros(4), np.full(4, 2.0)
    data = pack_chunk(symbols, header, loc, scale)
    out, back = unpack_chunk(data, lambda h: (4, 3, 5, 7), lambda step: (loc, scale))
    assert np.array_equal(out, symbols) and back == header
    assert len(data) < symbols.size  # entropy coded: well under a byte per symbol


def test_training_buys_quality_and_bytes_on_held_out_frames(codec):
    # Held-out frames of the training video (the last 20%), the 100-step model against the
    # same network after one step: training must raise PSNR and cut the bytes. Against a flat
    # fill of each frame's mean colour (24.0 dB) the 100-step model is not reliably better
    # (measured: 24.75 dB with seed 0, 23.93 dB with seed 1; after one step 22.3 and 21.7 dB,
    # 69 and 104 KB against 28 and 10 KB), so that is reported in the docs, not asserted.
    frames = frames_of(TRAIN, 60)[50:60]
    untrained = train_crucio(CrucioTrainConfig(videos=[TRAIN], frames_per_video=60, steps=1, gru_steps=1, log=lambda _m: None))

    def measure(c) -> tuple[float, int]:
        sent = c.camera(frames, step=1.0, threshold=None)
        _, decoded = c.server(sent.data)
        return float(np.mean([_psnr(f, d) for f, d in zip(frames, decoded)])), len(sent.data)

    (ours, ours_bytes), (first, first_bytes) = measure(codec), measure(untrained)
    assert ours > first + 0.5, (ours, first)
    assert ours_bytes < first_bytes / 1.5, (ours_bytes, first_bytes)


def test_keyframe_gru_sends_fewer_frames_than_all(codec):
    frames = frames_of("store-aisle-detection", 30)
    kept = [len(codec.keyframes(frames[i : i + 10], 0.5)) for i in range(0, 30, 10)]
    assert all(codec.spec.min_frames <= k < 10 for k in kept), kept
    assert len(codec.keyframes(frames[:10], None)) == 10


def test_training_is_deterministic_for_a_seed():
    cfg = dict(videos=[TRAIN], frames_per_video=60, steps=3, gru_steps=2, eval_every=1, batch=2, crop=64, log=lambda _m: None)
    a, b = train_crucio(CrucioTrainConfig(**cfg)), train_crucio(CrucioTrainConfig(**cfg))
    assert a.meta.val_loss == b.meta.val_loss
    assert all(torch.equal(x, y) for x, y in zip(a.autoencoder.state_dict().values(), b.autoencoder.state_dict().values()))


def test_bad_checkpoints_are_one_clear_line(tmp_path, checkpoint):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:5000])
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something-else"}, foreign)
    damaged = tmp_path / "damaged.pt"
    payload = torch.load(checkpoint, weights_only=False)
    payload["autoencoder"].pop("decoder.0.weight")
    torch.save(payload, damaged)
    for path, message in ((tmp_path / "gone.pt", "no such crucio checkpoint"), (corrupt, "not a readable crucio checkpoint"),
                          (foreign, "not an edgeva crucio checkpoint"), (damaged, "crucio checkpoint is damaged")):
        with pytest.raises(ModelError, match=message):
            load_crucio(path)
    proc = subprocess.run([*EDGEVA, "eval", "--videos", "people-detection", "--schemes", "crucio", "--crucio", str(corrupt),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "corrupt.pt: not a readable crucio checkpoint" in proc.stderr


def test_crucio_scheme_returns_a_result_for_every_frame(checkpoint):
    frames = frames_of("store-aisle-detection", 27)
    ctx = SchemeContext(server=Server(create_detector("yolox-nano", score_threshold=0.1)), settings=EncoderSettings(fps=16.7),
                        frame_size=frames[0].shape[:2], fps=16.7, checkpoints={"crucio": str(checkpoint)})
    scheme = create_scheme("crucio", ctx)
    scheme.reset()
    outcomes = [scheme.process(frames[i : i + 10], i) for i in range(0, 27, 10)]  # the last chunk has 7 frames
    assert [o.frames for o in outcomes] == [10, 10, 7]
    assert all(len(o.detections) == o.frames for o in outcomes)
    assert all(len(o.rounds) == 1 and o.rounds[0].nbytes > 0 for o in outcomes)
    assert sum(o.sent_frames for o in outcomes) < 27
