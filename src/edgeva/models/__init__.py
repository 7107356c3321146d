"""Detectors (YOLOX-Nano, FastestDet) behind one interface, with a name registry."""

from edgeva.models import fastestdet as _fastestdet  # noqa: F401  (registers "fastestdet")
from edgeva.models import yolox as _yolox  # noqa: F401  (registers "yolox-nano")
from edgeva.models.base import (
    Detector,
    Letterbox,
    create_detector,
    finish_detections,
    frames_to_tensor,
    list_detectors,
    register_detector,
)
from edgeva.models.detections import COCO_NAMES, Detections, batched_nms, box_iou, nms

__all__ = [
    "Detector", "Letterbox", "create_detector", "finish_detections", "frames_to_tensor", "list_detectors", "register_detector",
    "COCO_NAMES", "Detections", "batched_nms", "box_iou", "nms",
]
