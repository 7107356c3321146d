"""Online adaptation of the selector from the server (issue 10, part 3; beyond the paper).

The server holds the final DNN, so it can compute AccGrad itself. Every ``every`` chunks the
camera also uploads one frame (the chunk's first, the one its selector looked at) encoded
alone at high quality (``crf``); the server decodes it, computes its AccGrad against its
own low-quality re-encoding (``crf_low``, as :func:`~edgeva.accmpeg.accgrad.compute_accgrad`
defines L), thresholds it into a mask with the selector's own scale and threshold, adds
(frozen-backbone features, mask) to the camera's buffer, fine-tunes the head on the whole
buffer with the training step of :mod:`edgeva.accmpeg.train` (``head_step``), and sends the
adapted weights back, serialised in float16; the camera applies them from its next chunk.

This is EdgeCam's continuous learning (:mod:`edgeva.runtime.learning`: the cloud labels
hard frames with the golden model and fine-tunes a copy of the edge's model, BatchNorm
statistics frozen) applied to AccMPEG's selector, with AccGrad as the label.

Every cost is real: the uploaded frame's bytes are encoder output, the downlink bytes are the
length of the serialised weights, and the server's seconds are measured. Only the layers
named by ``layers`` are trained and sent: ``last`` (the head's final 1x1 convolution, 65
weights: re-weighting the 64 hidden features the training scenes taught, 130 bytes down) or
``head`` (all three layers, about 131 KB down).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgeva.accmpeg.accgrad import accgrad, low_quality
from edgeva.accmpeg.camera import selector_scale
from edgeva.accmpeg.selector import QualitySelector
from edgeva.accmpeg.train import frame_features, ground_truth_masks, head_step
from edgeva.models import Detector
from edgeva.video import EncoderSettings, decode_chunk, encode_chunk, grid_shape, resize_even

__all__ = ["AdaptOptions", "AdaptRound", "HeadServer", "SelectorAdaptation", "ADAPT_LAYERS", "head_payload", "apply_payload"]

# Which head parameters are trained and sent: name prefixes in ``QualitySelector.head``.
ADAPT_LAYERS = {"last": ("6.",), "head": ("",)}


@dataclass(frozen=True)
class AdaptOptions:
    """How a camera's selector is adapted online."""

    every: int = 0  # chunks between uploaded frames (0: no adaptation)
    crf: int = 30  # quality of the uploaded frame, AccGrad's H (CRF 23 doubles its bytes for no measured gain)
    steps: int = 20  # fine-tuning steps per round, over the whole buffer
    lr: float = 5e-3
    layers: str = "last"  # ADAPT_LAYERS: what is trained and sent back
    buffer: int = 16  # frames kept per camera (the oldest dropped)
    pos_weight: float = 4.0  # as training's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"adapt_every={self.every}: must be >= 0 (0: off)")
        if self.layers not in ADAPT_LAYERS:
            raise ValueError(f"adapt_layers={self.layers!r}: choose from {', '.join(ADAPT_LAYERS)}")
        if self.steps < 1 or self.buffer < 1:
            raise ValueError("adaptation needs at least one step and a buffer of at least one frame")

    def due(self, chunk_index: int) -> bool:
        """Whether the camera uploads a frame after chunk ``chunk_index`` (0-based)."""
        return self.every > 0 and (chunk_index + 1) % self.every == 0


@dataclass(frozen=True)
class AdaptRound:
    """One adaptation round's costs."""

    up_bytes: int  # the uploaded frame
    down_bytes: int  # the new weights
    camera_s: float  # encoding the frame
    server_s: float  # decoding, AccGrad, features, fine-tuning, serialising


def _trained(model: QualitySelector, layers: str) -> dict[str, torch.nn.Parameter]:
    prefixes = ADAPT_LAYERS[layers]
    return {name: p for name, p in model.head.named_parameters() if name.startswith(prefixes)}


def head_payload(model: QualitySelector, layers: str) -> bytes:
    """The adapted head parameters as the server sends them: float16 values, concatenated in
    the head's parameter order (both ends know the architecture, so nothing else travels)."""
    values = [p.detach().to(torch.float16).reshape(-1) for p in _trained(model, layers).values()]
    return torch.cat(values).numpy().tobytes()


@torch.no_grad()
def apply_payload(model: QualitySelector, payload: bytes, layers: str) -> None:
    """Load weights from :func:`head_payload` into the camera's selector.

    Raises:
        ValueError: a payload of another size than the ``layers`` of this selector.
    """
    values = torch.from_numpy(np.frombuffer(payload, dtype=np.float16).copy()).float()
    params = list(_trained(model, layers).values())
    if values.numel() != sum(p.numel() for p in params):
        raise ValueError(f"selector weights: {values.numel()} values received, {sum(p.numel() for p in params)} expected for layers {layers!r}")
    offset = 0
    for p in params:
        p.copy_(values[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


class HeadServer:
    """The server side of one camera: its frames and masks so far, and its head.

    Args:
        selector: the selector the camera started with (copied; the original is untouched).
        detector: the final DNN (AccGrad).
        options: the adaptation's settings.
        settings: encoder settings (the low-quality re-encoding of AccGrad's L).
    """

    def __init__(self, selector: QualitySelector, detector: Detector, options: AdaptOptions, settings: EncoderSettings = EncoderSettings()):
        self.model = copy.deepcopy(selector).eval()
        self.detector, self.options, self.settings = detector, options, settings
        self.buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.rounds = 0

    def example(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, mask) of a decoded high-quality frame: the head's training pair."""
        meta = self.model.meta
        low = low_quality([frame], meta.crf_low, self.settings)
        maps = accgrad(self.detector, [frame], low)
        mask = torch.from_numpy(ground_truth_masks(maps, meta.accgrad_scale, meta.accgrad_threshold).astype(np.float32))
        if selector_scale(meta, frame.shape[1]) == 0.5:  # the camera's selector sees it at half size (AccMPEGQuality)
            frame = resize_even(frame, 0.5)
            mask = F.adaptive_max_pool2d(mask[:, None], grid_shape(*frame.shape[:2]))[:, 0]
        return frame_features(self.model, [frame]), mask

    def adapt(self, frame: np.ndarray) -> bytes:
        """Add a decoded frame to the buffer, fine-tune, return the weights to send."""
        opts = self.options
        self.buffer = [*self.buffer, self.example(frame)][-opts.buffer :]
        torch.manual_seed(opts.seed + self.rounds)
        self.rounds += 1
        params = list(_trained(self.model, opts.layers).values())
        optimizer = torch.optim.Adam(params, lr=opts.lr)
        pos_weight = torch.tensor(opts.pos_weight)
        by_shape: dict[tuple, list] = {}
        for pair in self.buffer:
            by_shape.setdefault(tuple(pair[0].shape), []).append(pair)
        self.model.head.eval()  # BatchNorm statistics stay frozen: a few frames cannot estimate them
        with torch.enable_grad():
            for _ in range(opts.steps):
                for batch in by_shape.values():
                    head_step(self.model, batch, optimizer, pos_weight)
        return head_payload(self.model, opts.layers)


class SelectorAdaptation:
    """Camera and server of one stream: after each due chunk the camera uploads a frame and
    the server's new weights are applied to ``camera`` (the camera's own selector)."""

    def __init__(self, camera: QualitySelector, detector: Detector, options: AdaptOptions, settings: EncoderSettings = EncoderSettings()):
        self.camera, self.options, self.settings = camera, options, settings
        self.server = HeadServer(camera, detector, options, settings)

    def after_chunk(self, chunk_index: int, frames: Sequence[np.ndarray]) -> AdaptRound | None:
        """The round after chunk ``chunk_index`` (None when none is due); the camera's
        selector holds the new weights when it returns."""
        if not self.options.due(chunk_index):
            return None
        start = time.perf_counter()
        encoded = encode_chunk([frames[0]], self.options.crf, self.settings, first_frame=0)
        camera_s = time.perf_counter() - start
        start = time.perf_counter()
        payload = self.server.adapt(decode_chunk(encoded)[0])
        server_s = time.perf_counter() - start
        apply_payload(self.camera, payload, self.options.layers)
        return AdaptRound(encoded.nbytes, len(payload), camera_s, server_s)
