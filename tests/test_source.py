from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import frames_of, video_path
from edgeva.errors import VideoError
from edgeva.video import open_video, read_frames


def test_file_source_limit_start_and_metadata():
    source = open_video(video_path("store-aisle-detection"), start=5, limit=4)
    frames = list(source)
    assert [f.index for f in frames] == [5, 6, 7, 8]
    assert source.info.width == 480 and source.info.height == 270
    assert source.info.fps == pytest.approx(50 / 3)
    assert frames[0].image.shape == (270, 480, 3) and frames[0].image.dtype == np.uint8
    assert frames[1].time > frames[0].time
    np.testing.assert_array_equal(frames[0].image, frames_of("store-aisle-detection", 6)[5])


def test_step_subsamples():
    frames = list(open_video(video_path("store-aisle-detection"), start=2, step=5, limit=3))
    assert [f.index for f in frames] == [2, 7, 12]


def test_resize_and_loop():
    frames = list(open_video(video_path("people-detection"), size=(240, 136), loop=True, limit=30))
    assert len(frames) == 30  # the clip has 23 frames: the source wrapped around
    assert frames[23].index == 0
    assert frames[0].image.shape == (136, 240, 3)


def test_image_folder_pattern(tmp_path):
    originals = frames_of("people-detection", 3)
    for i, image in enumerate(originals, start=1):
        cv2.imwrite(str(tmp_path / f"{i:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    source = open_video(str(tmp_path / "%06d.png"), fps=5)
    frames = list(source)
    assert len(frames) == 3
    assert source.info.fps == 5
    np.testing.assert_array_equal(frames[2].image, originals[2])  # PNG is lossless


def test_missing_and_corrupt_inputs_are_clear_errors(tmp_path):
    with pytest.raises(VideoError, match="nope.mp4"):
        open_video(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="junk.mp4"):
        read_frames(junk)


def test_unreachable_stream_times_out_with_a_clear_error():
    with pytest.raises(VideoError, match="rtsp://127.0.0.1:9/none"):
        open_video("rtsp://127.0.0.1:9/none", open_timeout=2, read_timeout=2)
