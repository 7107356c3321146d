"""The shared base DNN: ImageNet ShuffleNetV2 0.5x split into named segments.

Mainstream shares a frozen prefix of one base model among apps. Here the base is edgeva's
ShuffleNetV2 0.5x (the FastestDet backbone) with its ImageNet weights, cut into six
segments; freeze point ``k`` (1..6) means segments ``[0, k)`` are frozen and shared:

    k=1 stem      first conv + max pool        k=4 stage3    rest of stage 3
    k=2 stage2    all of stage 2               k=5 stage4a   first 2 blocks of stage 4
    k=3 stage3a   first 4 blocks of stage 3    k=6 stage4    rest of stage 4

Every app adds its own head (global average pool + linear); in the scheduler's layer list
it is layer 6, so an app at the deepest freeze point still pays for its head.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edgeva.errors import ModelError
from edgeva.models.fastestdet import ShuffleNetV2

__all__ = [
    "SEGMENT_NAMES", "FREEZE_POINTS", "INPUT_SIZE", "BaseSegments", "AppHead", "Branch", "load_base",
    "preprocess", "resize_frame", "profile_latencies",
]

SEGMENT_NAMES = ("stem", "stage2", "stage3a", "stage3b", "stage4a", "stage4b")
FREEZE_POINTS = {1: "stem", 2: "stage2", 3: "stage3a", 4: "stage3", 5: "stage4a", 6: "stage4"}
INPUT_SIZE = (224, 128)  # (width, height): 16:9-ish, multiples of 32; small so training is cheap
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


class BaseSegments(nn.Module):
    """ShuffleNetV2 0.5x as six sequential segments (see the module docstring)."""

    def __init__(self, net: ShuffleNetV2):
        super().__init__()
        s3, s4 = list(net.stage3), list(net.stage4)
        self.segments = nn.ModuleList([
            nn.Sequential(net.first_conv, net.maxpool), net.stage2,
            nn.Sequential(*s3[:4]), nn.Sequential(*s3[4:]), nn.Sequential(*s4[:2]), nn.Sequential(*s4[2:]),
        ])
        self.out_channels = net.out_channels[-1]

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Segments ``[start, stop)`` on ``x`` (the output of segment ``start - 1``)."""
        for segment in self.segments[start:stop]:
            x = segment(x)
        return x


class AppHead(nn.Module):
    """Global average pool + linear: one event logit per frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3))).squeeze(1)


class Branch(nn.Module):
    """An app's own part at freeze point ``k``: copies of segments ``[k, 6)`` (fine-tuned) + head."""

    def __init__(self, base: BaseSegments, freeze: int):
        super().__init__()
        if freeze not in FREEZE_POINTS:
            raise ValueError(f"freeze point must be one of {sorted(FREEZE_POINTS)}, got {freeze}")
        self.freeze = freeze
        self.segments = nn.Sequential(*[copy.deepcopy(s) for s in base.segments[freeze:]])
        self.head = AppHead(base.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.segments(x))

    def train(self, mode: bool = True) -> Branch:
        # BatchNorm keeps its ImageNet statistics: a few hundred correlated video frames
        # would make poor batch statistics, and eval-mode BN keeps a branch equal to the base.
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self


def load_base() -> BaseSegments:
    """The base with its ImageNet weights, frozen and in eval mode.

    Raises:
        ModelError: the weight file is unreadable or not a ShuffleNetV2 0.5x backbone.
    """
    from edgeva import assets

    path = assets.find("shufflenetv2_x0.5_imagenet_backbone.pth")
    net = ShuffleNetV2()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # pickle, zip and key errors all mean the same to a user
        raise ModelError(f"{path}: not a ShuffleNetV2 0.5x backbone ({exc.__class__.__name__})") from None
    base = BaseSegments(net).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base


def resize_frame(image: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """An RGB uint8 frame at ``size`` = (width, height), by area averaging. Training and the
    runner both go through here, so apps see frames shrunk the same way."""
    import cv2

    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def preprocess(frames: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> torch.Tensor:
    """RGB uint8 frames (any size) -> normalised (B, 3, H, W) float at ``size`` = (width, height)."""
    arrays = [resize_frame(np.asarray(f), size) for f in frames]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return (x - _MEAN) / _STD


@torch.inference_mode()
def profile_latencies(base: BaseSegments, size: tuple[int, int] = INPUT_SIZE, repeats: int = 50) -> list[float]:
    """Median ms at batch 1 on one thread of each of the six segments and of one app head (7 entries).

    One thread, like the runner: on a shared 2-core box, two torch threads competing with
    other processes make latencies swing by 10x; one thread keeps them comparable.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _profile(base, size, repeats)
    finally:
        torch.set_num_threads(threads)


def _profile(base: BaseSegments, size: tuple[int, int], repeats: int) -> list[float]:
    x = torch.randn(1, 3, size[1], size[0])
    inputs = []
    for segment in base.segments:
        inputs.append(x)
        x = segment(x)
    modules = [*base.segments, AppHead(base.out_channels).eval()]
    inputs.append(x)
    out = []
    for module, inp in zip(modules, inputs):
        for _ in range(3):
            module(inp)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            module(inp)
            times.append(1000 * (time.perf_counter() - t0))
        out.append(statistics.median(times))
    return out
