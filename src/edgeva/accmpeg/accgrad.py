"""Accuracy gradients (AccMPEG, Du et al.; dissertation ch. 3, eq. 3.1).

For a frame with original pixels H and low-quality encoding L (what the camera would send
at the base quality), the AccGrad of a 16x16 macroblock B is

    AccGrad_B = sum_{i in B} || dAcc(D(X); D(H)) / dX_i |_{X=L} ||_1 * || H_i - L_i ||_1

where D is the final DNN. It says how much encoding B at high quality would change the
DNN's accuracy: large where the gradient is large *and* where low quality actually changed
the pixels.

The differentiable Acc: the final DNN's own training loss on X with D(H)'s detections as
ground truth (``Detector.pseudo_label_loss``; for YOLOX its SimOTA-assigned objectness, class
and IoU losses). This is what AccMPEG's implementation does for its detectors, and it is the
natural choice: the loss is the quantity the detector was trained to make agree with labels,
it is zero-sum-free of thresholds (no NMS inside), and it penalises both missed reference
objects (positives losing objectness/class/box quality) and hallucinated ones (negatives
gaining objectness). A dense loss between raw outputs would instead weigh the thousands of
sub-threshold anchor points that never reach a result.

One forward pass on H (targets and label assignment), one forward and one backward pass on L.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from edgeva.assets import cache_dir, file_identity
from edgeva.errors import ModelError
from edgeva.models import Detector, frames_to_tensor
from edgeva.video import MB, EncoderSettings, decode_chunk, encode_chunk, grid_shape

__all__ = ["accgrad", "low_quality", "AccGradCache", "compute_accgrad", "block_sum", "ACCGRAD_VERSION"]

ACCGRAD_VERSION = 1  # bump when the definition changes: cached values are keyed by it


def block_sum(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) per-pixel values -> (B, rows, cols) sums over each 16x16 macroblock."""
    b, h, w = pixels.shape
    rows, cols = grid_shape(h, w)
    padded = torch.nn.functional.pad(pixels, (0, cols * MB - w, 0, rows * MB - h))
    return padded.reshape(b, rows, MB, cols, MB).sum(dim=(2, 4))


def accgrad(detector: Detector, originals: Sequence[np.ndarray], lows: Sequence[np.ndarray], *, target_score: float = 0.4) -> np.ndarray:
    """AccGrad maps (B, rows, cols) for frames of equal size.

    Args:
        detector: the final DNN; must implement ``pseudo_label_loss``.
        originals: H, RGB uint8 frames.
        lows: L, the same frames after low-quality encoding and decoding.
        target_score: D(H)'s detections at or above this score are the ground truth
            (use the accuracy metric's threshold).
    """
    if not hasattr(detector, "pseudo_label_loss"):
        raise ModelError(f"model {detector.name!r}: has no training loss, so AccGrad cannot be computed for it")
    high = frames_to_tensor(originals)
    low = frames_to_tensor(lows).requires_grad_(True)
    with torch.no_grad():
        raw_high, box = detector.raw_outputs(high)
        targets = [d.above(target_score) for d in detector.decode(raw_high, box)]
    raw_low, _ = detector.raw_outputs(low)
    loss = detector.pseudo_label_loss(raw_low, targets, box, assign_from=raw_high)
    (grad,) = torch.autograd.grad(loss, low)
    per_pixel = grad.abs().sum(1) * (high - low.detach()).abs().sum(1)  # L1 over channels, both terms
    return block_sum(per_pixel).numpy().astype(np.float32)


def low_quality(frames: Sequence[np.ndarray], crf: int, settings: EncoderSettings = EncoderSettings(), *, chunk: int = 10) -> list[np.ndarray]:
    """Frames as the camera would send them at base quality: ``chunk``-frame chunks at ``crf``."""
    out: list[np.ndarray] = []
    for i in range(0, len(frames), chunk):
        out += decode_chunk(encode_chunk(frames[i : i + chunk], crf, settings, first_frame=i))
    return out


class AccGradCache:
    """AccGrad maps on disk, one ``.npy`` per frame, keyed by (video, frame, final DNN, QP
    setting, AccGrad version)."""

    def __init__(self, video: str | Path, model: str, crf_low: int, *, root: Path | None = None):
        path = Path(video)
        ident = file_identity(path) or str(video)
        digest = hashlib.sha256(f"{ident}|{model}|{crf_low}|v{ACCGRAD_VERSION}".encode()).hexdigest()[:16]
        self.folder = (root or cache_dir() / "accgrad") / f"{path.stem}-{model}-crf{crf_low}-{digest}"

    def get(self, index: int) -> np.ndarray | None:
        """The cached map, or None (also for a damaged file: it is recomputed, not trusted)."""
        try:
            return np.load(self.folder / f"{index:07d}.npy")
        except (OSError, ValueError, EOFError):
            return None

    def put(self, index: int, value: np.ndarray) -> None:
        """Publish atomically (a temporary file of this writer's own, then a rename), so
        parallel workers writing the same frame never expose a partial file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{index:07d}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value)
            os.replace(tmp, self.folder / f"{index:07d}.npy")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def compute_accgrad(
    video: str | Path,
    detector: Detector,
    indices: Sequence[int],
    *,
    crf_low: int = 40,
    settings: EncoderSettings = EncoderSettings(),
    chunk: int = 10,
    batch_size: int = 2,
    target_score: float = 0.4,
    use_cache: bool = True,
    on_frame: Callable[[int], None] | None = None,
) -> dict[int, np.ndarray]:
    """AccGrad maps for frames ``indices`` of a video, from the cache where present.

    L for a frame is its decoded version inside the ``chunk``-frame chunk (aligned to
    multiples of ``chunk``) encoded at ``crf_low``: exactly what the camera sends.
    """
    from edgeva.video import open_video

    cache = AccGradCache(video, detector.name, crf_low)
    result: dict[int, np.ndarray] = {}
    todo = []
    for i in sorted(set(indices)):
        cached = cache.get(i) if use_cache else None
        if cached is not None:
            result[i] = cached
            if on_frame:
                on_frame(i)
        else:
            todo.append(i)
    if not todo:
        return result
    wanted_chunks = {i // chunk for i in todo}
    pending_h: list[np.ndarray] = []
    pending_l: list[np.ndarray] = []
    pending_i: list[int] = []

    def flush() -> None:
        if not pending_i:
            return
        maps = accgrad(detector, pending_h, pending_l, target_score=target_score)
        for i, m in zip(pending_i, maps, strict=True):
            result[i] = m
            if use_cache:
                cache.put(i, m)
            if on_frame:
                on_frame(i)
        pending_h.clear(), pending_l.clear(), pending_i.clear()

    buffer: list[np.ndarray] = []
    last = max(todo)
    for frame in open_video(video, limit=(last // chunk + 1) * chunk):
        if frame.index // chunk in wanted_chunks:
            buffer.append(frame.image)
        if len(buffer) == chunk or (frame.index == (last // chunk + 1) * chunk - 1 and buffer):
            start = frame.index - len(buffer) + 1
            lows = low_quality(buffer, crf_low, settings, chunk=chunk)
            for offset, (h, lo) in enumerate(zip(buffer, lows, strict=True)):
                if start + offset in todo:
                    pending_h.append(h), pending_l.append(lo), pending_i.append(start + offset)
                    if len(pending_i) == batch_size:
                        flush()
            buffer = []
    if buffer:  # the video ended inside the last chunk
        start = last - (last % chunk)
        lows = low_quality(buffer, crf_low, settings, chunk=chunk)
        for offset, (h, lo) in enumerate(zip(buffer, lows, strict=True)):
            if start + offset in todo:
                pending_h.append(h), pending_l.append(lo), pending_i.append(start + offset)
    flush()
    missing = [i for i in todo if i not in result]
    if missing:
        raise ModelError(f"{video}: frames {missing[:5]} are beyond the end of the video")
    return result
