"""Encode frames with per-macroblock quality, and decode them back (PyAV / FFmpeg).

Per-macroblock quality uses FFmpeg's region-of-interest side data: an ``addroi`` filter
chain tags each frame with rectangles and a QP offset, and the encoder applies the offset to
the macroblocks inside. Measured constraints this module is built on (see DESIGN.md):
libx264 applies ROI only with adaptive quantisation on, i.e. in CRF mode (constant QP
silently ignores it); libx265 and libvpx-vp9 honour it in CRF mode too.

A chunk encoded by :func:`encode_chunk` is independently decodable: a fresh encoder per
chunk, keyframe first, flushed at the end (as AccMPEG's 10-frame chunks). A
:class:`StreamEncoder` keeps one encoder for a continuous stream instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np

from edgeva.errors import CodecError
from edgeva.video.blocks import grid_shape, map_to_rects

__all__ = [
    "CODECS",
    "CodecSpec",
    "EncoderSettings",
    "QualityMap",
    "EncodedPacket",
    "EncodedChunk",
    "encode_chunk",
    "decode_chunk",
    "StreamEncoder",
    "Mp4Writer",
    "roi_codecs",
    "resize_even",
]

# No Python log callback: edgeva raises its own errors naming the input, and a Python
# callback called from FFmpeg's decoder threads deadlocks against avcodec_free_context.
av.logging.set_level(None)


@dataclass(frozen=True)
class CodecSpec:
    """How edgeva drives one FFmpeg encoder."""

    encoder: str  # FFmpeg encoder name
    decoder: str  # FFmpeg decoder name
    qp_range: int  # ROI qoffset is a fraction of this many QP steps
    crf_max: int


CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec("libx264", "h264", qp_range=51, crf_max=51),
    "hevc": CodecSpec("libx265", "hevc", qp_range=51, crf_max=51),
    "vp9": CodecSpec("libvpx-vp9", "vp9", qp_range=63, crf_max=63),
}


@dataclass(frozen=True)
class EncoderSettings:
    """Encoder choices shared by every chunk of a stream."""

    codec: str = "h264"  # key of CODECS
    preset: str = "veryfast"  # x264/x265 speed preset; VP9 uses realtime mode, cpu-used 8
    threads: int = 1  # encoder threads (cameras are small: one by default)
    fps: float = 10.0  # stream frame rate, for time stamps and rate control

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise CodecError(f"codec {self.codec!r}: unknown (choose from {', '.join(CODECS)})")
        if self.threads < 1:
            raise CodecError(f"threads={self.threads}: must be >= 1")

    def options(self, crf: int) -> dict[str, str]:
        """FFmpeg private options for this encoder at base quality ``crf``."""
        if self.codec == "h264":
            # aq-mode 1 even where the preset turns it off (ultrafast): x264 ignores ROI without AQ.
            # cpu-independent: x264's AVX-512 macroblock-tree code gives output that depends on
            # buffer alignment, so the same frames encoded twice (even on one thread) differed
            # by up to 1.5% in bytes; the canonical code path makes every encode reproducible.
            return {
                "crf": str(crf), "preset": self.preset, "threads": str(self.threads), "forced-idr": "1", "aq-mode": "1",
                "x264-params": "cpu-independent=1",
            }
        if self.codec == "hevc":
            return {
                "crf": str(crf),
                "preset": self.preset,
                "forced-idr": "1",
                "x265-params": f"log-level=error:pools={self.threads}:frame-threads=1",
            }
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}


@dataclass(frozen=True, eq=False)
class QualityMap:
    """Encoding quality per 16x16 macroblock, as a CRF value per block (lower = better).

    The encoder runs at the base quality (``base``, or the highest CRF in the map when not
    given) and encodes every block at a QP offset ``crf - base`` from it. Any number of
    levels is allowed.
    """

    crf: np.ndarray  # (rows, cols) integers, rows/cols from blocks.grid_shape
    base: int | None = None  # the encoder's CRF; None: the map's highest CRF

    def __post_init__(self) -> None:
        crf = np.asarray(self.crf)
        if crf.ndim != 2 or crf.size == 0:
            raise ValueError(f"quality map must be a non-empty (rows, cols) array, got shape {crf.shape}")
        if not np.issubdtype(crf.dtype, np.integer):
            raise ValueError(f"quality map must hold integer CRF values, got dtype {crf.dtype}")
        if self.base is not None and self.base < crf.max():
            raise ValueError(f"base CRF {self.base} is below the map's lowest quality (CRF {crf.max()})")
        object.__setattr__(self, "crf", crf.astype(np.int16))

    @classmethod
    def uniform(cls, frame_size: tuple[int, int], crf: int) -> QualityMap:
        return cls(np.full(grid_shape(*frame_size), crf, dtype=np.int16))

    @classmethod
    def two_level(cls, high_mask: np.ndarray, *, crf_high: int, crf_low: int) -> QualityMap:
        """Blocks where ``high_mask`` is true at ``crf_high``, the rest at ``crf_low``."""
        if crf_high > crf_low:
            raise ValueError(f"crf_high={crf_high} must not exceed crf_low={crf_low} (lower CRF is higher quality)")
        return cls(np.where(np.asarray(high_mask, dtype=bool), crf_high, crf_low).astype(np.int16), base=crf_low)

    @property
    def base_crf(self) -> int:
        return int(self.crf.max()) if self.base is None else self.base

    @property
    def high_fraction(self) -> float:
        """Fraction of blocks encoded better than the base quality."""
        return float(np.mean(self.crf < self.base_crf))

    def roi_rects(self, frame_size: tuple[int, int], qp_range: int) -> list[tuple[int, int, int, int, float]]:
        """Disjoint ROI rectangles ``(x, y, w, h, qoffset)``, qoffset in [-1, 0]."""
        offsets = self.crf - self.base_crf
        return [
            (x, y, w, h, max(-1.0, level / qp_range))
            for x, y, w, h, level in map_to_rects(offsets, frame_size, skip=0)
        ]


class EncodedPacket(NamedTuple):
    data: bytes
    pts: int  # presentation position: frame index within the stream
    dts: int  # decode position in frame units (negative while B-frames are being reordered)
    keyframe: bool


@dataclass
class EncodedChunk:
    """The bytes of a run of frames, with what a receiver needs to decode them."""

    codec: str
    width: int
    height: int
    fps: float
    first_frame: int  # stream index of the chunk's first frame
    frame_count: int
    packets: list[EncodedPacket] = field(default_factory=list)
    encode_s: float = 0.0  # wall time spent encoding (measured)

    @property
    def nbytes(self) -> int:
        return sum(len(p.data) for p in self.packets)

    def to_bytes(self) -> bytes:
        """Concatenated packets (Annex-B for H.264/HEVC)."""
        return b"".join(p.data for p in self.packets)


def resize_even(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` to even width and height (yuv420p needs them)."""
    h, w = image.shape[:2]
    size = (max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _to_yuv(image: np.ndarray, pts: int, time_base: Fraction) -> av.VideoFrame:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CodecError(f"frame {pts}: expected an RGB uint8 (H, W, 3) array, got {image.dtype} {image.shape}")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuv420p")
    frame.pts = pts
    frame.time_base = time_base
    return frame


class _RoiTagger:
    """An FFmpeg filter graph ``buffer -> addroi x N -> buffersink`` that tags frames."""

    def __init__(self, rects: Sequence[tuple[int, int, int, int, float]], width: int, height: int, time_base: Fraction):
        self.graph = av.filter.Graph()
        node = self.graph.add_buffer(width=width, height=height, format="yuv420p", time_base=time_base)
        for x, y, w, h, qoffset in rects:
            roi = self.graph.add("addroi", f"x={x}:y={y}:w={w}:h={h}:qoffset={qoffset:.6f}:clear=0")
            node.link_to(roi)
            node = roi
        sink = self.graph.add("buffersink")
        node.link_to(sink)
        self.graph.configure()

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        self.graph.push(frame)
        return self.graph.pull()


def _open_encoder(settings: EncoderSettings, width: int, height: int, crf: int) -> av.CodecContext:
    spec = CODECS[settings.codec]
    if not 0 <= crf <= spec.crf_max:
        raise CodecError(f"crf={crf}: out of range for {settings.codec} (0..{spec.crf_max})")
    if width % 2 or height % 2:
        raise CodecError(f"frame size {width}x{height}: width and height must be even for yuv420p")
    try:
        ctx = av.CodecContext.create(spec.encoder, "w")
    except (av.error.FFmpegError, ValueError) as exc:
        raise CodecError(f"encoder {spec.encoder}: not available in this FFmpeg build ({exc})") from None
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 1000)
    ctx.framerate = Fraction(settings.fps).limit_denominator(1001)
    ctx.thread_count = settings.threads
    ctx.options = settings.options(crf)
    return ctx


def _drop_sei(data: bytes, codec: str) -> bytes:
    """Remove SEI NAL units (x264/x265 write their version banner, ~0.6 KB, into every
    keyframe of a fresh encoder); decoders do not need them."""
    if codec not in ("h264", "hevc") or not data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        return data
    out = bytearray()
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, s in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(data)
        if n + 1 < len(starts) and data[end - 1] == 0:
            end -= 1  # four-byte start code of the next unit
        header = data[s + 3] if s + 3 < len(data) else 0
        nal_type = header & 0x1F if codec == "h264" else (header >> 1) & 0x3F
        if (codec == "h264" and nal_type == 6) or (codec == "hevc" and nal_type in (39, 40)):
            continue
        out += b"\x00" + data[s:end]
    return bytes(out)


def _collect(packets: Iterable[av.Packet], codec: str, ms_per_frame: float) -> list[EncodedPacket]:
    out = []
    for packet in packets:
        pts = round(float(packet.pts) / ms_per_frame)
        dts = round(float(packet.dts) / ms_per_frame) if packet.dts is not None else pts
        out.append(EncodedPacket(_drop_sei(bytes(packet), codec), pts, dts, bool(packet.is_keyframe)))
    return out


def _check_geometry(frames: Sequence[np.ndarray], quality: QualityMap | None) -> tuple[int, int]:
    if not frames:
        raise CodecError("cannot encode an empty chunk")
    height, width = frames[0].shape[:2]
    if quality is not None and quality.crf.shape != grid_shape(height, width):
        raise CodecError(
            f"quality map shape {quality.crf.shape} does not match the {width}x{height} frame grid {grid_shape(height, width)}"
        )
    return height, width


def encode_chunk(
    frames: Sequence[np.ndarray],
    quality: QualityMap | int,
    settings: EncoderSettings = EncoderSettings(),
    *,
    first_frame: int = 0,
) -> EncodedChunk:
    """Encode frames as one independently decodable chunk.

    Args:
        frames: RGB uint8 arrays of equal size (even width and height).
        quality: a per-macroblock :class:`QualityMap`, or one CRF for the whole chunk.
        settings: codec, preset, threads and frame rate.
        first_frame: stream index of ``frames[0]`` (kept in the chunk for bookkeeping).

    Returns:
        The chunk, with its packets and the measured encode time.
    """
    height, width = _check_geometry(frames, quality if isinstance(quality, QualityMap) else None)
    if isinstance(quality, QualityMap):
        crf = quality.base_crf
        rects = quality.roi_rects((height, width), CODECS[settings.codec].qp_range)
    else:
        crf, rects = int(quality), []
    start = time.perf_counter()
    ms_per_frame = 1000.0 / settings.fps
    ctx = _open_encoder(settings, width, height, crf)
    tagger = _RoiTagger(rects, width, height, ctx.time_base) if rects else None
    packets: list[av.Packet] = []
    try:
        for i, image in enumerate(frames):
            frame = _to_yuv(image, round(i * ms_per_frame), ctx.time_base)
            if i == 0:
                frame.pict_type = av.video.frame.PictureType.I
            packets += ctx.encode(tagger(frame) if tagger else frame)
        packets += ctx.encode(None)
    except av.error.FFmpegError as exc:
        raise CodecError(f"{settings.codec} encoder failed on chunk at frame {first_frame}: {exc}") from None
    encoded = _collect(packets, settings.codec, ms_per_frame)
    encoded = [p._replace(pts=p.pts + first_frame, dts=p.dts + first_frame) for p in encoded]
    return EncodedChunk(
        codec=settings.codec,
        width=width,
        height=height,
        fps=settings.fps,
        first_frame=first_frame,
        frame_count=len(frames),
        packets=encoded,
        encode_s=time.perf_counter() - start,
    )


def _align(n: int, to: int = 64) -> int:
    return -(-n // to) * to


def decode_chunk(chunk: EncodedChunk, *, threads: int = 1, max_pixels: int | None = None) -> list[np.ndarray]:
    """Decode an independently decodable chunk into RGB uint8 frames, in display order.

    The chunk's declared size and frame count are held to while decoding: the decoder
    refuses a picture much larger than declared before allocating it (FFmpeg's
    ``max_pixels``), and decoding stops at the first frame of another size or the first
    frame beyond the count, so a small message cannot make the receiver decode a large video.

    Args:
        chunk: the encoded chunk (its ``width``, ``height`` and ``frame_count`` are the
            declared ones).
        threads: decoder threads.
        max_pixels: refuse a chunk declaring more pixels than this in all (frames x width
            x height) before decoding anything (None: no bound).

    Raises:
        CodecError: too many pixels declared, a frame of another size or beyond the count,
            or bytes that do not decode into ``chunk.frame_count`` frames.
    """
    where = f"chunk at frame {chunk.first_frame}"
    declared = chunk.frame_count * chunk.width * chunk.height
    if max_pixels is not None and declared > max_pixels:
        raise CodecError(f"{where}: {chunk.frame_count} frames of {chunk.width}x{chunk.height} are {declared / 1e6:.1f} "
                         f"million pixels, more than the {max_pixels / 1e6:.1f} million allowed")
    ctx = av.CodecContext.create(CODECS[chunk.codec].decoder, "r")
    ctx.thread_count = threads
    ctx.options = {"max_pixels": str(_align(chunk.width) * _align(chunk.height))}  # coded sizes round up to blocks
    frames: list[np.ndarray] = []

    def take(decoded: list[av.VideoFrame]) -> None:
        for f in decoded:
            if (f.width, f.height) != (chunk.width, chunk.height):
                raise CodecError(f"{where}: frame {len(frames)} is {f.width}x{f.height}, declared {chunk.width}x{chunk.height}")
            if len(frames) >= chunk.frame_count:
                raise CodecError(f"{where}: more than the {chunk.frame_count} frames declared")
            frames.append(f.to_ndarray(format="rgb24"))

    try:
        for packet in chunk.packets:
            take(ctx.decode(av.Packet(packet.data)))
        take(ctx.decode(None))
    except av.error.FFmpegError as exc:
        raise CodecError(f"{where}: cannot decode ({exc})") from None
    if len(frames) != chunk.frame_count:
        raise CodecError(f"{where}: decoded {len(frames)} frames, expected {chunk.frame_count}")
    return frames


class StreamEncoder:
    """One encoder for a continuous stream; the ROI map may change at any frame.

    Packets come out as the encoder's look-ahead releases them; ``EncodedPacket.pts`` says
    which frame each belongs to, so bytes can be attributed to chunks afterwards.
    """

    def __init__(self, width: int, height: int, *, crf: int, settings: EncoderSettings = EncoderSettings()):
        self.settings = settings
        self.width, self.height, self.crf = width, height, crf
        self._ctx = _open_encoder(settings, width, height, crf)
        self._ms_per_frame = 1000.0 / settings.fps
        self._next = 0
        self._tagger: _RoiTagger | None = None
        self._rects_key: tuple | None = None

    def encode(self, frames: Sequence[np.ndarray], quality: QualityMap | None = None) -> list[EncodedPacket]:
        """Encode more frames; ``quality`` must keep the stream's base CRF (it sets offsets)."""
        _check_geometry(frames, quality)
        if quality is not None and quality.base_crf != self.crf:
            raise CodecError(f"quality map base CRF {quality.base_crf} differs from the stream's CRF {self.crf}")
        rects = quality.roi_rects((self.height, self.width), CODECS[self.settings.codec].qp_range) if quality else []
        key = tuple(rects)
        if key != self._rects_key:
            self._tagger = _RoiTagger(rects, self.width, self.height, self._ctx.time_base) if rects else None
            self._rects_key = key
        packets: list[av.Packet] = []
        for image in frames:
            frame = _to_yuv(image, round(self._next * self._ms_per_frame), self._ctx.time_base)
            self._next += 1
            packets += self._ctx.encode(self._tagger(frame) if self._tagger else frame)
        return _collect(packets, self.settings.codec, self._ms_per_frame)

    def close(self) -> list[EncodedPacket]:
        """Flush the encoder's delayed frames."""
        return _collect(self._ctx.encode(None), self.settings.codec, self._ms_per_frame)


class Mp4Writer:
    """Mux encoded packets (from chunks or a stream) into a playable MP4/MKV file."""

    _TIME_BASE = Fraction(1, 1000)

    def __init__(self, path: str | Path, *, codec: str, width: int, height: int, fps: float):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise CodecError(f"{self.path}: cannot write (folder {self.path.parent} does not exist)")
        try:
            self._container = av.open(str(self.path), "w")
        except (av.error.FFmpegError, OSError) as exc:
            raise CodecError(f"{self.path}: cannot write ({exc})") from None
        # A mux-only stream: packets are already encoded, so no encoder is opened here.
        self._stream = self._container.add_mux_stream(
            CODECS[codec].decoder, rate=Fraction(fps).limit_denominator(1001), width=width, height=height
        )
        self._stream.time_base = self._TIME_BASE
        self._ms_per_frame = 1000.0 / fps

    def write(self, packets: Iterable[EncodedPacket]) -> None:
        for p in packets:
            packet = av.Packet(p.data)
            packet.stream = self._stream
            packet.time_base = self._TIME_BASE  # the muxer rescales to its own
            packet.pts = round(p.pts * self._ms_per_frame)
            packet.dts = round(p.dts * self._ms_per_frame)
            packet.is_keyframe = p.keyframe
            try:
                self._container.mux(packet)
            except av.error.FFmpegError as exc:
                raise CodecError(f"{self.path}: cannot mux frame {p.pts} ({exc})") from None

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def roi_codecs() -> list[str]:
    """Codecs whose encoder exists in this FFmpeg build (all of them honour ROI in CRF mode)."""
    usable = []
    for name, spec in CODECS.items():
        try:
            av.codec.Codec(spec.encoder, "w")
            usable.append(name)
        except (av.error.FFmpegError, ValueError):
            continue
    return usable
