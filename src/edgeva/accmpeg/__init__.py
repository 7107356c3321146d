"""AccMPEG: accuracy gradients, the camera-side quality selector, and online ROI encoding."""

from edgeva.accmpeg.camera import DEFAULT_GAMMA, AccMPEGQuality, CameraChunk, ChunkCamera
from edgeva.accmpeg.selector import QualitySelector, SelectorMeta, load_selector, save_selector

__all__ = [
    "DEFAULT_GAMMA", "AccMPEGQuality", "CameraChunk", "ChunkCamera",
    "QualitySelector", "SelectorMeta", "load_selector", "save_selector",
]
