"""AccMPEG: accuracy gradients, the camera-side quality selector, and online ROI encoding."""

from edgeva.accmpeg.camera import (
    DEFAULT_GAMMA,
    AccMPEGQuality,
    CameraChunk,
    ChunkCamera,
    QualityPolicy,
    UniformQuality,
    create_policy,
    list_policies,
    register_policy,
)
from edgeva.accmpeg.selector import QualitySelector, SelectorMeta, load_selector, save_selector

__all__ = [
    "DEFAULT_GAMMA", "AccMPEGQuality", "CameraChunk", "ChunkCamera", "QualityPolicy", "UniformQuality",
    "create_policy", "list_policies", "register_policy",
    "QualitySelector", "SelectorMeta", "load_selector", "save_selector",
]
