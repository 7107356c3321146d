"""``Detections``: the one result container for object detectors, and box operations in torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Detections", "COCO_NAMES", "box_iou", "nms", "batched_nms"]

COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # the 80 COCO classes in model output order (same as assets/models/coco80.names)


@dataclass
class Detections:
    """Detected objects in one frame.

    Attributes:
        boxes: (N, 4) float32, xyxy in frame pixels.
        scores: (N,) float32 confidences in [0, 1].
        class_ids: (N,) int64 indices into ``names``.
        names: class names of the detector that produced the result.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: Sequence[str] = field(default=COCO_NAMES, repr=False)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        if self.boxes.size == 0:
            self.boxes = self.boxes.reshape(0, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        n = len(self.scores)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4) to match {n} scores, got {self.boxes.shape}")
        if self.class_ids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},), got {self.class_ids.shape}")

    @classmethod
    def empty(cls, names: Sequence[str] = COCO_NAMES) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), names)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int | slice | np.ndarray) -> Detections:
        """A new ``Detections`` holding the selected objects (mask, indices or slice)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.names)

    @property
    def labels(self) -> list[str]:
        return [self.names[c] for c in self.class_ids]

    def above(self, score: float) -> Detections:
        return self[self.scores >= score]

    def scaled(self, sx: float, sy: float) -> Detections:
        """Boxes scaled by (sx, sy), e.g. back to the original frame after resizing."""
        return Detections(self.boxes * np.array([sx, sy, sx, sy], np.float32), self.scores, self.class_ids, self.names)

    def to_json(self) -> list[dict]:
        return [
            {"box": [round(float(v), 2) for v in box], "score": round(float(s), 4), "class_id": int(c), "label": self.names[c]}
            for box, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]

    @classmethod
    def from_json(cls, items: list[dict], names: Sequence[str] = COCO_NAMES) -> Detections:
        if not items:
            return cls.empty(names)
        return cls(
            np.array([d["box"] for d in items], np.float32),
            np.array([d["score"] for d in items], np.float32),
            np.array([d["class_id"] for d in items], np.int64),
            names,
        )

    @staticmethod
    def merge(parts: Sequence[Detections], iou_threshold: float = 0.5) -> Detections:
        """Union of several results with duplicates (same class, IoU above threshold) removed."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections.empty()
        boxes = torch.from_numpy(np.concatenate([p.boxes for p in parts]))
        scores = torch.from_numpy(np.concatenate([p.scores for p in parts]))
        classes = torch.from_numpy(np.concatenate([p.class_ids for p in parts]))
        keep = batched_nms(boxes, scores, classes, iou_threshold).numpy()
        return Detections(boxes.numpy()[keep], scores.numpy()[keep], classes.numpy()[keep], parts[0].names)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of kept boxes, highest score first."""
    order = scores.argsort(descending=True)
    if order.numel() == 0:
        return order
    iou = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, class_ids: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    # Shift each class into its own region of the plane so one NMS pass handles all classes.
    offsets = class_ids.to(boxes.dtype) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)
