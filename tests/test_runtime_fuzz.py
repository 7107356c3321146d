"""Fuzzing what a node decodes from the network (``wire.py``, ``decode_chunk``) with
Hypothesis, for a bounded number of examples each: random bytes as protobuf, and real
encoded chunks (a sample clip in H.264, HEVC and VP9) with flipped bits, cut packets,
shuffled or repeated packets and lying headers. Every input must either decode to exactly
what it declares or raise the receiver's clean error (``BadMessage``); never crash, hang or
raise anything else."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import frames_of
from edgeva.runtime.proto import runtime_pb2 as pb
from edgeva.runtime.wire import BadMessage, chunk_to_pb, decode_frames, detections_from_pb
from edgeva.video import CODECS, EncoderSettings, encode_chunk

FUZZ = settings(max_examples=300, deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow])
MAX_PIXELS = 4 * 96 * 64  # four frames of the clip's size: the bound a node would apply


@functools.cache
def _chunk(codec: str) -> bytes:
    frames = [cv2.resize(f, (96, 64), interpolation=cv2.INTER_AREA) for f in frames_of("store-aisle-detection", 3)]
    return chunk_to_pb(encode_chunk(frames, 30, EncoderSettings(codec=codec))).SerializeToString()


def _decodes_cleanly(msg: pb.Chunk) -> None:
    try:
        frames = decode_frames(msg, max_pixels=MAX_PIXELS)
    except BadMessage:
        return
    assert len(frames) == msg.frame_count
    assert all(f.shape == (msg.height, msg.width, 3) and f.dtype == np.uint8 for f in frames)


@pytest.mark.timeout(300)
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_never_get_past_the_checks_unexplained(data):
    try:
        request = pb.ChunkRequest.FromString(data)
    except DecodeError:
        return
    _decodes_cleanly(request.chunk)
    for result in pb.ChunkReply.FromString(data).results if _parses(pb.ChunkReply, data) else []:
        try:
            detections_from_pb(result.detections)
        except BadMessage:
            pass


def _parses(kind, data: bytes) -> bool:
    try:
        kind.FromString(data)
    except DecodeError:
        return False
    return True


@st.composite
def _mutated_chunk(draw) -> pb.Chunk:
    msg = pb.Chunk.FromString(_chunk(draw(st.sampled_from(sorted(CODECS)))))
    packets = list(msg.packets)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(packets) - 1))
        data = bytearray(packets[i].data)
        action = draw(st.sampled_from(["flip", "cut", "zero", "repeat", "drop"]))
        if action == "flip" and data:
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif action == "zero" and data:
            start = draw(st.integers(0, len(data) - 1))
            data[start : start + draw(st.integers(1, 64))] = bytes(min(64, len(data) - start))
        elif action == "repeat":
            packets.insert(i, pb.Packet(data=bytes(data), pts=packets[i].pts, keyframe=packets[i].keyframe))
        elif action == "drop" and len(packets) > 1:
            packets.pop(i)
            continue
        packets[i] = pb.Packet(data=bytes(data), pts=packets[i].pts, dts=packets[i].dts, keyframe=packets[i].keyframe)
    if draw(st.booleans()):
        packets = draw(st.permutations(packets))
    del msg.packets[:]
    msg.packets.extend(packets)
    if draw(st.booleans()):  # a header that lies about the size or the count
        msg.width = draw(st.sampled_from([0, 2, 48, 96, 98, 192, 4096, 5000, -96]))
        msg.height = draw(st.sampled_from([0, 2, 32, 64, 66, 128, 4096, -64]))
        msg.frame_count = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 240, 100000, -3]))
    if draw(st.booleans()):
        msg.codec = draw(st.sampled_from([*sorted(CODECS), "", "mjpeg", "h264 "]))
    return msg


@pytest.mark.timeout(300)
@FUZZ
@given(_mutated_chunk())
def test_damaged_chunks_decode_to_what_they_declare_or_fail_cleanly(msg):
    _decodes_cleanly(msg)


@pytest.mark.timeout(120)
@FUZZ
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=12),
       st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=4),
       st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4))
def test_detections_from_the_wire_are_checked(boxes, scores, classes):
    try:
        dets = detections_from_pb(pb.Detections(boxes=boxes, scores=scores, class_ids=classes))
    except BadMessage:
        return
    assert len(dets) == len(scores) and np.isfinite(dets.boxes).all() and np.isfinite(dets.scores).all()


def test_a_small_message_cannot_declare_a_huge_decode():
    """The issue's case: a chunk under the message limit declaring 4096x4096 x 240 frames is
    refused before anything is decoded, and a chunk whose stream is larger than its header
    says stops at the first frame."""
    msg = pb.Chunk.FromString(_chunk("h264"))
    huge = pb.Chunk(codec="h264", width=4096, height=4096, frame_count=240, packets=msg.packets)
    with pytest.raises(BadMessage, match=r"million pixels, more than"):
        decode_frames(huge)  # the default bound (64 million pixels)
    liar = pb.Chunk(codec="h264", width=48, height=32, frame_count=3, packets=msg.packets)  # really 96x64
    with pytest.raises(BadMessage, match=r"96x64, declared 48x32|cannot decode"):
        decode_frames(liar, max_pixels=MAX_PIXELS)
    short = pb.Chunk(codec="h264", width=96, height=64, frame_count=2, packets=msg.packets)  # really 3 frames
    with pytest.raises(BadMessage, match="more than the 2 frames declared"):
        decode_frames(short, max_pixels=MAX_PIXELS)
    assert len(decode_frames(msg, max_pixels=MAX_PIXELS)) == 3
