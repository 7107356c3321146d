"""NeuroMesh (dynamic patching-driven neural compression), small: a VideoMAE over 2 x 16 x 16
tubelets with an AdaMAE-style learned sampler (``model.py``), its training (``train.py``),
and the camera and server sides with the checkpoint file (``codec.py``)."""

from edgeva.neuromesh.codec import (
    CameraChunk,
    ContentComplexity,
    NeuroMeshCodec,
    NeuroMeshMeta,
    check_mask_ratio,
    load_mae,
    save_mae,
)
from edgeva.neuromesh.model import MaeSpec, VideoMAE

__all__ = ["CameraChunk", "ContentComplexity", "MaeSpec", "NeuroMeshCodec", "NeuroMeshMeta", "VideoMAE", "check_mask_ratio",
           "load_mae", "save_mae"]
