"""Continuous learning of the edge model (EdgeCam): drift collection and FastestDet fine-tuning.

1. The edge's :class:`DriftCollector` keeps, per window of locally inferred frames, the
   ones with the lowest mean detection confidence (EdgeCam's drift data collector).
2. The cloud labels them with the golden model and :func:`fine_tune` adapts a copy of the
   edge's FastestDet to those labels.
3. The edge checks the returned weights before serving them (:func:`gate_update`): on its
   :class:`ValidationSet` (frames it inferred, never trained on, labelled by the golden
   model) the new model's F1 must not be lower than the serving model's; otherwise the
   update is refused (and recorded), and the edge keeps its model. Measured with
   ``edgeva bench learning``: one round on one-by-one-person-detection took held-out F1
   from 0.543 to 0.172, and was swapped in before this gate existed.

The training loss is edgeva's own, after the idea of FastestDet's (dog-qiuqiu/FastestDet,
``module/loss.py``): a target is assigned to the grid cell holding the box centre and to
the neighbours right of and below it (the cells whose ``tanh`` offset can still reach the
centre); objectness is regressed with Smooth-L1 towards the IoU of the cell's predicted box
(an IoU-aware target), positives re-weighted against the many empty cells; boxes use the
SIoU loss (Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box Regression",
arXiv:2205.12740); classes use the negative log-likelihood of the head's softmax.
BatchNorm statistics stay frozen: a few dozen frames cannot estimate them.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edgeva.metrics import f1_score
from edgeva.models import Detections, frames_to_tensor
from edgeva.models.fastestdet import FastestDet

__all__ = [
    "DriftCollector", "ValidationSet", "GateResult", "gate_update", "mean_confidence", "siou_loss", "fastestdet_loss",
    "FineTuneResult", "fine_tune", "LABEL_SCORE",
]

LABEL_SCORE = 0.4  # golden detections at least this confident become labels (the F1 threshold)


def mean_confidence(detections: Detections) -> float:
    """Mean score of a frame's detections; 0 for a frame with none (nothing recognised)."""
    return float(detections.scores.mean()) if len(detections) else 0.0


class DriftCollector:
    """Keeps the ``keep`` least confident frames of each window of ``window`` frames.

    ``add`` returns the kept frames when a window closes, else None. Thread-safe.
    """

    def __init__(self, window: int, keep: int):
        if not 1 <= keep <= window:
            raise ValueError(f"keep={keep} must be in 1..window={window}")
        self.window, self.keep = window, keep
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self._seen = 0
        self._heap: list[tuple[float, int, np.ndarray]] = []  # (-confidence, order, frame): most confident on top

    def add(self, image: np.ndarray, detections: Detections) -> list[np.ndarray] | None:
        entry = (-mean_confidence(detections), next(self._order), image)
        with self._lock:
            self._seen += 1
            if len(self._heap) < self.keep:
                heapq.heappush(self._heap, entry)
            elif entry > self._heap[0]:  # less confident than the most confident kept frame
                heapq.heapreplace(self._heap, entry)
            if self._seen < self.window:
                return None
            frames = [image for _, _, image in sorted(self._heap, key=lambda e: e[1])]
            self._reset()
            return frames


class ValidationSet:
    """Frames an edge keeps to check model updates on: every ``every``-th frame it inferred
    (so never one the drift collector saw), the most recent ``size`` of them, each labelled
    once by the golden model. Thread-safe.
    """

    def __init__(self, size: int, every: int):
        if size < 0 or every < 1:
            raise ValueError(f"size={size} must be >= 0 and every={every} >= 1")
        self.size, self.every = size, every
        self._seen = 0
        self._items: deque[list] = deque(maxlen=size or None)  # [image, labels or None]
        self._lock = threading.Lock()

    def offer(self, image: np.ndarray) -> bool:
        """Take ``image`` if it is a validation frame (then keep it out of training)."""
        if not self.size:
            return False
        with self._lock:
            self._seen += 1
            if self._seen % self.every:
                return False
            self._items.append([image, None])
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def frames(self) -> list[np.ndarray]:
        with self._lock:
            return [item[0] for item in self._items]

    def label(self, labeller: Callable[[list[np.ndarray]], list[Detections]]) -> tuple[list[np.ndarray], list[Detections]]:
        """The frames and their golden labels; unlabelled frames are labelled first by
        ``labeller`` (a failure propagates and leaves them unlabelled)."""
        with self._lock:
            items = list(self._items)
        missing = [item for item in items if item[1] is None]
        if missing:
            for item, labels in zip(missing, labeller([item[0] for item in missing]), strict=True):
                item[1] = labels
        return [item[0] for item in items], [item[1] for item in items]


@dataclass(frozen=True)
class GateResult:
    accepted: bool
    f1_before: float  # serving model on the validation frames, against the golden labels
    f1_after: float  # the update on the same frames
    frames: int
    reason: str


def gate_update(current: Callable[[list[np.ndarray]], list[Detections]],
                candidate: Callable[[list[np.ndarray]], list[Detections]],
                frames: Sequence[np.ndarray], labels: Sequence[Detections]) -> GateResult:
    """Accept an update only if its F1 against golden labels does not drop.

    Args:
        current: the serving model's inference (frames -> detections).
        candidate: the updated model's.
        frames: validation frames (never trained on).
        labels: the golden model's detections on them.
    """
    if not frames:
        return GateResult(False, float("nan"), float("nan"), 0, "no validation frames to check the update on")
    frames = list(frames)
    before = f1_score(current(frames), labels)["f1"]
    after = f1_score(candidate(frames), labels)["f1"]
    if after >= before:
        return GateResult(True, before, after, len(frames), f"F1 {before:.3f} -> {after:.3f} on {len(frames)} validation frames")
    return GateResult(False, before, after, len(frames),
                      f"refused: F1 would drop {before:.3f} -> {after:.3f} on {len(frames)} validation frames")


def siou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """SIoU loss of (N, 4) boxes given as (cx, cy, w, h); returns (loss per box, IoU per box).

    loss = 1 - IoU + (distance cost + shape cost) / 2, where the distance cost is scaled by
    an angle cost that is smallest when the centres line up with an axis.
    """
    p1, p2 = pred[:, :2] - pred[:, 2:] / 2, pred[:, :2] + pred[:, 2:] / 2
    t1, t2 = target[:, :2] - target[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2
    inter = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).clamp(min=0).prod(1)
    union = pred[:, 2:].prod(1) + target[:, 2:].prod(1) - inter + eps
    iou = inter / union
    enclose = torch.maximum(p2, t2) - torch.minimum(p1, t1)  # (cw, ch)
    delta = target[:, :2] - pred[:, :2]
    sigma = delta.norm(dim=1) + eps
    sin_alpha = delta[:, 1].abs() / sigma
    sin_beta = delta[:, 0].abs() / sigma
    sin_min = torch.where(sin_alpha > math.sqrt(2) / 2, sin_beta, sin_alpha)
    angle = torch.cos(2 * torch.arcsin(sin_min.clamp(-1, 1)) - math.pi / 2)
    rho = (delta / (enclose + eps)) ** 2
    gamma = 2 - angle
    distance = (2 - torch.exp(-gamma * rho[:, 0]) - torch.exp(-gamma * rho[:, 1]))
    omega = (pred[:, 2:] - target[:, 2:]).abs() / torch.maximum(pred[:, 2:], target[:, 2:]).clamp(min=eps)
    shape = ((1 - torch.exp(-omega)) ** 4).sum(1)
    return 1 - iou + (distance + shape) / 2, iou


def _assign(targets: Sequence[torch.Tensor], grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Cells responsible for each target box.

    Args:
        targets: per image, (M, 5) rows of (class, cx, cy, w, h) normalised to [0, 1].

    Returns:
        image index, cell x, cell y, class, and the box in grid units (cx, cy, w, h), one row
        per (box, cell) pair; a box goes to the cell holding its centre and the neighbours
        right, below and diagonally (clipped to the grid).
    """
    h, w = grid
    rows = []
    for b, t in enumerate(targets):
        if len(t):
            rows.append(torch.cat([torch.full((len(t), 1), float(b)), t], 1))
    if not rows:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty, empty, torch.zeros(0, 4)
    all_t = torch.cat(rows)
    box = all_t[:, 2:6] * torch.tensor([w, h, w, h], dtype=all_t.dtype)
    out = []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        gx = box[:, 0].floor().long() + dx
        gy = box[:, 1].floor().long() + dy
        ok = (gx < w) & (gy < h)
        out.append((all_t[ok, 0].long(), gx[ok], gy[ok], all_t[ok, 1].long(), box[ok]))
    return tuple(torch.cat(parts) for parts in zip(*out))


def fastestdet_loss(raw: torch.Tensor, targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of FastestDet's raw output against labels.

    Args:
        raw: (B, 5 + C, H, W) from ``FastestDet.forward`` (objectness already a sigmoid,
            class scores already a softmax).
        targets: per image, (M, 5) rows (class, cx, cy, w, h) normalised to [0, 1].

    Returns:
        The total loss and its parts as floats (box, obj, cls).
    """
    bsz, _, h, w = raw.shape
    pobj = raw[:, 0]
    b, gx, gy, cls, tbox = _assign(targets, (h, w))
    tobj = torch.zeros_like(pobj)
    weight = torch.full_like(pobj, 0.75)  # empty cells
    box_loss = cls_loss = raw.new_zeros(())
    if len(b):
        reg = raw[b, 1:5, gy, gx]
        pbox = torch.stack([reg[:, 0].tanh() + gx, reg[:, 1].tanh() + gy, reg[:, 2].sigmoid() * w, reg[:, 3].sigmoid() * h], 1)
        per_box, iou = siou_loss(pbox, tbox)
        box_loss = per_box.mean()
        cls_loss = F.nll_loss(raw[b, 5:, gy, gx].clamp(min=1e-7).log(), cls)
        tobj[b, gy, gx] = iou.detach().clamp(min=0).to(tobj.dtype)
        positives = torch.bincount(b, minlength=bsz).to(pobj.dtype)
        weight[b, gy, gx] = 0.25 * (h * w) / positives[b]  # positives of an image weigh as much as its empty cells
    obj_loss = (F.smooth_l1_loss(pobj, tobj, reduction="none") * weight).mean()
    total = box_loss + obj_loss + cls_loss
    return total, {"box": box_loss.item(), "obj": obj_loss.item(), "cls": cls_loss.item()}


def _targets(labels: Sequence[Detections], sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    out = []
    for dets, (height, width) in zip(labels, sizes, strict=True):
        dets = dets.above(LABEL_SCORE)
        boxes = torch.from_numpy(dets.boxes).double() / torch.tensor([width, height, width, height], dtype=torch.float64)
        boxes = boxes.clamp(0, 1)
        cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                              boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
        keep = (cxcywh[:, 2] > 0) & (cxcywh[:, 3] > 0)
        out.append(torch.cat([torch.from_numpy(dets.class_ids).double()[:, None], cxcywh], 1)[keep].float())
    return out


@dataclass(frozen=True)
class FineTuneResult:
    loss_before: float
    loss_after: float
    objects: int  # labels trained on
    seconds: float


def fine_tune(model: FastestDet, images: Sequence[np.ndarray], labels: Sequence[Detections], *, epochs: int = 10,
              learning_rate: float = 5e-4, batch_size: int = 8, seed: int = 0) -> FineTuneResult:
    """Fine-tune ``model`` in place on frames and their golden-model labels.

    Frames are resized to the model's input first (FastestDet stretches), so frames of
    different cameras can share a batch. Random horizontal flips augment the data. After
    every epoch the loss over all frames is measured; the model ends with the weights of the
    best epoch, or its old weights if no epoch improved on them (a few frames can make
    Adam overshoot: measured once in a cluster run, 0.82 -> 2.08 without this guard).
    """
    import time

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} frames but {len(labels)} label sets")
    if not images:
        raise ValueError("fine_tune needs at least one frame")
    start = time.perf_counter()
    ih, iw = model.input_size
    x_all = frames_to_tensor([cv2.resize(image, (iw, ih), interpolation=cv2.INTER_AREA) for image in images])
    t_all = _targets(labels, [image.shape[:2] for image in images])
    generator = torch.Generator().manual_seed(seed)

    def loss_of(x: torch.Tensor, targets: list[torch.Tensor]) -> torch.Tensor:
        raw, _ = model.raw_outputs(x)
        return fastestdet_loss(raw, targets)[0]

    def full_loss() -> float:
        with torch.no_grad():
            return sum(float(loss_of(x_all[i : i + batch_size], t_all[i : i + batch_size])) * len(t_all[i : i + batch_size])
                       for i in range(0, len(t_all), batch_size)) / len(t_all)

    model.eval()  # BatchNorm keeps its running statistics
    before = best = full_loss()
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    for _ in range(epochs):
        order = torch.randperm(len(t_all), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x = x_all[idx]
            targets = [t_all[j].clone() for j in idx.tolist()]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
            for t, f in zip(targets, flip.tolist(), strict=True):
                if f and len(t):
                    t[:, 1] = 1 - t[:, 1]
            optimizer.zero_grad()
            loss_of(x, targets).backward()
            optimizer.step()
        loss = full_loss()
        if loss < best:
            best, best_state = loss, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)  # the epoch that fits the frames best (possibly none: the old weights)
    return FineTuneResult(before, best, sum(len(t) for t in t_all), time.perf_counter() - start)
