"""Video in and out: frame sources, the macroblock grid, and the ROI-capable codec."""

from edgeva.video.blocks import (
    MB,
    boxes_to_mask,
    dilate,
    grid_shape,
    map_to_rects,
    psnr,
    rects_to_map,
    resample_blocks,
    upsample,
)
from edgeva.video.codec import (
    CODECS,
    EncodedChunk,
    EncodedPacket,
    EncoderSettings,
    Mp4Writer,
    QualityMap,
    StreamEncoder,
    decode_chunk,
    encode_chunk,
    resize_even,
)
from edgeva.video.source import Frame, VideoInfo, open_video, read_frames

__all__ = [
    "MB", "boxes_to_mask", "dilate", "grid_shape", "map_to_rects", "psnr", "rects_to_map", "resample_blocks", "upsample",
    "CODECS", "EncodedChunk", "EncodedPacket", "EncoderSettings", "Mp4Writer", "QualityMap",
    "StreamEncoder", "decode_chunk", "encode_chunk", "resize_even",
    "Frame", "VideoInfo", "open_video", "read_frames",
]
