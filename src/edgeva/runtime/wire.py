"""Conversions between edgeva's objects and the runtime's protocol buffers, with the checks
a receiver applies before trusting a message (sizes, counts, codec names).

Any malformed message raises :class:`BadMessage`; servicers answer it with
``INVALID_ARGUMENT`` and keep serving.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeva.errors import CodecError, EdgevaError
from edgeva.models import COCO_NAMES, Detections
from edgeva.runtime.proto import runtime_pb2 as pb
from edgeva.video import (
    CODECS,
    EncodedChunk,
    EncodedPacket,
    EncoderSettings,
    decode_chunk,
    encode_chunk,
)

__all__ = [
    "BadMessage", "MAX_SIDE", "MAX_FRAMES", "MAX_CHUNK_PIXELS", "detections_to_pb", "detections_from_pb", "chunk_to_pb",
    "chunk_from_pb", "decode_frames", "encode_frame",
]

MAX_SIDE = 4096  # largest frame width or height a node accepts
MAX_FRAMES = 240  # most frames in one chunk
MAX_CHUNK_PIXELS = 64_000_000  # most decoded pixels in one chunk unless the config says (security.max_chunk_mpixels)


class BadMessage(EdgevaError):
    """A message that is well-formed protobuf but not a valid request."""


def detections_to_pb(dets: Detections) -> pb.Detections:
    return pb.Detections(boxes=dets.boxes.reshape(-1).tolist(), scores=dets.scores.tolist(), class_ids=dets.class_ids.tolist())


def detections_from_pb(msg: pb.Detections) -> Detections:
    n = len(msg.scores)
    if len(msg.boxes) != 4 * n or len(msg.class_ids) != n:
        raise BadMessage(f"detections: {len(msg.boxes)} box values and {len(msg.class_ids)} classes for {n} scores")
    classes = np.asarray(msg.class_ids, dtype=np.int64)
    if n and (classes.min() < 0 or classes.max() >= len(COCO_NAMES)):
        raise BadMessage(f"detections: class ids outside 0..{len(COCO_NAMES) - 1}")
    boxes, scores = np.asarray(msg.boxes, np.float32).reshape(n, 4), np.asarray(msg.scores, np.float32)
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise BadMessage("detections: boxes or scores that are not finite numbers")
    try:
        return Detections(boxes, scores, classes)
    except ValueError as exc:
        raise BadMessage(f"detections: {exc}") from None


def chunk_to_pb(chunk: EncodedChunk) -> pb.Chunk:
    return pb.Chunk(
        codec=chunk.codec, width=chunk.width, height=chunk.height, fps=chunk.fps, frame_count=chunk.frame_count,
        packets=[pb.Packet(data=p.data, pts=p.pts, dts=p.dts, keyframe=p.keyframe) for p in chunk.packets],
    )


def chunk_from_pb(msg: pb.Chunk) -> EncodedChunk:
    """Check and convert a received chunk.

    Raises:
        BadMessage: unknown codec, sizes out of range, or no packets.
    """
    if msg.codec not in CODECS:
        raise BadMessage(f"chunk: unknown codec {msg.codec!r}")
    if not (2 <= msg.width <= MAX_SIDE and 2 <= msg.height <= MAX_SIDE):
        raise BadMessage(f"chunk: frame size {msg.width}x{msg.height} outside 2..{MAX_SIDE}")
    if not 1 <= msg.frame_count <= MAX_FRAMES:
        raise BadMessage(f"chunk: frame_count {msg.frame_count} outside 1..{MAX_FRAMES}")
    if not msg.packets:
        raise BadMessage("chunk: no packets")
    packets = [EncodedPacket(p.data, p.pts, p.dts, p.keyframe) for p in msg.packets]
    return EncodedChunk(msg.codec, msg.width, msg.height, msg.fps or 10.0, 0, msg.frame_count, packets)


def decode_frames(msg: pb.Chunk, *, max_pixels: int = MAX_CHUNK_PIXELS) -> list[np.ndarray]:
    """RGB frames of a received chunk, bounded to ``max_pixels`` decoded pixels in all.

    Raises:
        BadMessage: the chunk fails the checks, declares more pixels than allowed, or does
            not decode to its declared size and frame count (decoding stops at the first
            frame that breaks them).
    """
    chunk = chunk_from_pb(msg)
    try:
        return decode_chunk(chunk, max_pixels=max_pixels)
    except CodecError as exc:
        raise BadMessage(str(exc)) from None


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def encode_frame(image: np.ndarray, *, scale: float = 1.0, crf: int = 23, settings: EncoderSettings = EncoderSettings()) -> pb.Chunk:
    """One frame (or crop) as an intra-coded chunk, resized by ``scale`` to even sides."""
    h, w = image.shape[:2]
    size = (_even(w * scale), _even(h * scale))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return chunk_to_pb(encode_chunk([image], crf, settings))
