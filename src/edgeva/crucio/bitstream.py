"""Crucio's chunk bitstream: a small header and the range-coded latent.

Layout (little-endian): version (1 byte), chunk length n (1), keyframe bitmap (ceil(n/8)),
frame height and width (2 + 2), quantisation step (float32, 4), a flag saying whether the
per-channel symbol ranges fit in one byte (1), then per latent channel its lowest and
highest symbol (1 or 2 bytes each), then the range coder's 32-bit words. Each channel's
symbols are coded with the entropy model's probabilities of the integers in its range
(``constriction``'s range coder with a categorical model per channel); a channel whose
symbols are all equal costs only its range. Encoder and decoder compute the tables from
the same float parameters in float64, so decoding returns exactly the symbols encoded.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np

from edgeva.errors import CodecError

__all__ = ["ChunkHeader", "pack_chunk", "unpack_chunk", "read_header", "bin_probabilities"]

VERSION = 1


@dataclass(frozen=True)
class ChunkHeader:
    frames: int  # frames in the chunk (sent or not)
    keyframes: tuple[int, ...]  # indices within the chunk of the frames the clip holds
    height: int  # original frame size
    width: int
    step: float  # quantisation step


def bin_probabilities(loc: float, scale: float, low: int, high: int) -> np.ndarray:
    """Logistic probabilities of the integers ``low..high`` (location and scale in steps)."""
    k = np.arange(low, high + 1, dtype=np.float64)
    upper = 1.0 / (1.0 + np.exp(-(k + 0.5 - loc) / scale))
    lower = 1.0 / (1.0 + np.exp(-(k - 0.5 - loc) / scale))
    return np.maximum(upper - lower, 1e-12)


def _pack_header(header: ChunkHeader) -> bytes:
    bitmap = np.zeros(math.ceil(header.frames / 8) * 8, bool)
    bitmap[list(header.keyframes)] = True
    return struct.pack("<BB", VERSION, header.frames) + np.packbits(bitmap, bitorder="little").tobytes() + struct.pack(
        "<HHf", header.height, header.width, header.step
    )


def pack_chunk(symbols: np.ndarray, header: ChunkHeader, loc: np.ndarray, scale: np.ndarray) -> bytes:
    """Header + range-coded ``symbols`` ((C, ...) integers; ``loc``/``scale`` per channel, in steps)."""
    symbols = np.asarray(symbols, np.int64)
    channels = symbols.reshape(len(symbols), -1)
    low, high = channels.min(axis=1), channels.max(axis=1)
    small = bool(low.min() >= -128 and high.max() <= 127)
    ranges = np.stack([low, high], 1).astype(np.int8 if small else np.int16).tobytes()
    encoder = constriction.stream.queue.RangeEncoder()
    for c, values in enumerate(channels):
        if high[c] > low[c]:
            table = bin_probabilities(float(loc[c]), float(scale[c]), int(low[c]), int(high[c]))
            encoder.encode((values - low[c]).astype(np.int32), constriction.stream.model.Categorical(table, perfect=False))
    words = encoder.get_compressed().astype("<u4").tobytes()
    return _pack_header(header) + struct.pack("<B", int(small)) + ranges + words


def read_header(data: bytes) -> tuple[ChunkHeader, int]:
    """The chunk's header and the offset of what follows it.

    Raises:
        CodecError: the bytes are not a chunk of this version or are cut short.
    """
    try:
        version, frames = struct.unpack_from("<BB", data, 0)
        if version != VERSION:
            raise CodecError(f"crucio chunk: version {version}, expected {VERSION}")
        offset = 2 + math.ceil(frames / 8)
        bitmap = np.unpackbits(np.frombuffer(data[2:offset], np.uint8), bitorder="little")[:frames]
        height, width, step = struct.unpack_from("<HHf", data, offset)
    except struct.error:
        raise CodecError("crucio chunk: header cut short") from None
    return ChunkHeader(frames, tuple(np.flatnonzero(bitmap).tolist()), height, width, float(step)), offset + 8


def unpack_chunk(
    data: bytes, latent_shape: Callable[[ChunkHeader], tuple[int, ...]], params: Callable[[float], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, ChunkHeader]:
    """Inverse of :func:`pack_chunk`. The receiver derives the latent's (C, ...) shape from
    the header (``latent_shape``) and the entropy model's per-channel (location, scale) from
    the step (``params``).

    Raises:
        CodecError: the bytes are not a chunk of this version or are cut short.
    """
    header, offset = read_header(data)
    shape = latent_shape(header)
    loc, scale = params(header.step)
    try:
        (small,) = struct.unpack_from("<B", data, offset)
        dtype = np.dtype(np.int8 if small else np.int16)
        size = shape[0] * 2 * dtype.itemsize
        ranges = np.frombuffer(data[offset + 1 : offset + 1 + size], dtype).astype(np.int64).reshape(shape[0], 2)
        words = np.frombuffer(data[offset + 1 + size :], "<u4").astype(np.uint32)
    except (struct.error, ValueError):
        raise CodecError("crucio chunk: cut short") from None
    decoder = constriction.stream.queue.RangeDecoder(words)
    per_channel = int(np.prod(shape[1:]))
    out = np.empty((shape[0], per_channel), np.int64)
    for c, (low, high) in enumerate(ranges):
        if high > low:
            table = bin_probabilities(float(loc[c]), float(scale[c]), int(low), int(high))
            out[c] = decoder.decode(constriction.stream.model.Categorical(table, perfect=False), per_channel) + low
        else:
            out[c] = low
    return out.reshape(shape), header
