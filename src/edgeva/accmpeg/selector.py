"""The camera-side quality selector (AccMPEG's AccModel).

A pretrained light backbone gives features at strides 8, 16 and 32; they are brought to
stride 16 — one feature vector per 16x16 macroblock — and concatenated, then three
convolutions give one logit per macroblock: "encode this block at high quality". Fully
convolutional, any frame size; the forward pass has no data-dependent Python control flow,
so it traces and exports.

Backbones (``BACKBONES``), all pretrained, the choice measured (README, "selector backbone"):

* ``yolox-nano-fpn`` (default): YOLOX-Nano's feature extractor (CSPDarknet + PAFPN),
  pretrained on COCO detection: the analogue of the paper's MobileNet-SSD extractor. Its
  features already respond to the objects COCO-trained final DNNs care about, which is what
  a selector trained on two videos must carry over to unseen ones; on the unseen sample
  videos it ranked high-AccGrad blocks best (AUC) and over-selected least.
* ``yolox-nano``: the CSPDarknet alone (cheaper, over-selects cluttered scenes more).
* ``shufflenetv2``: the ImageNet ShuffleNetV2 0.5x backbone (selected almost every block of
  store-aisle: ImageNet texture features, no notion of COCO objects).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeva.checkpoints import read_checkpoint
from edgeva.errors import ModelError
from edgeva.models import frames_to_tensor
from edgeva.models.fastestdet import ShuffleNetV2
from edgeva.video import grid_shape

__all__ = ["QualitySelector", "SelectorMeta", "load_selector", "scale_mismatch", "save_selector", "BACKBONES"]

FORMAT = "edgeva-selector"  # the "format" key of a selector checkpoint

BACKBONES = ("yolox-nano-fpn", "yolox-nano", "shufflenetv2")

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


@dataclass
class SelectorMeta:
    """What a selector was trained for; stored inside its checkpoint."""

    final_dnn: str  # registry name of the final DNN whose AccGrad it learned
    crf_high: int
    crf_low: int
    accgrad_scale: float  # AccGrad values are divided by this before thresholding
    accgrad_threshold: float  # ground-truth high-quality blocks: normalised AccGrad >= this
    train_videos: list[str] = field(default_factory=list)
    frame_sizes: list[tuple[int, int]] = field(default_factory=list)  # (height, width) trained on
    frames_per_video: int = 0
    epochs: int = 0
    best_epoch: int = 0
    val_loss: float = float("nan")
    val_recall: float = float("nan")
    val_precision: float = float("nan")
    seed: int = 0
    backbone: str = "yolox-nano-fpn"
    input_scale: float = 1.0  # the selector sees frames resized by this (0.5: 4x cheaper)
    finetune_stages: int = 0  # backbone stages trained with the head (0: the head only)
    degrade_variants: int = 0  # degraded copies of each training frame
    version: int = 1


class QualitySelector(nn.Module):
    """Per-macroblock quality logits from a frame.

    ``forward`` takes a prepared (B, 3, H, W) tensor with H and W multiples of 32 and
    returns (B, H/16, W/16) logits; :meth:`predict` handles frames of any size.

    Args:
        backbone: one of ``BACKBONES``.
        hidden: channels of the head's hidden layers.
    """

    def __init__(self, backbone: str = "yolox-nano-fpn", hidden: int = 64, input_scale: float = 1.0):
        super().__init__()
        if input_scale not in (1.0, 0.5):
            raise ModelError(f"selector input scale {input_scale}: must be 1.0 or 0.5")
        self.input_scale = input_scale
        if backbone not in BACKBONES:
            raise ModelError(f"selector backbone {backbone!r}: unknown (choose from {', '.join(BACKBONES)})")
        self.backbone_name = backbone
        if backbone == "yolox-nano":
            from edgeva.models.yolox import CSPDarknet

            self.backbone = CSPDarknet(0.33, 0.25, depthwise=True)
            channels = (64, 128, 256)
        elif backbone == "yolox-nano-fpn":
            from edgeva.models.yolox import PAFPN

            self.backbone = PAFPN(0.33, 0.25, depthwise=True)
            channels = (64, 128, 256)
        else:
            self.backbone = ShuffleNetV2()
            channels = self.backbone.out_channels
        # 1x1 to mix the pyramid's channels, 3x3 for neighbouring blocks, 1x1 to the logit:
        # a 3x3 on all ~450 input channels would cost 9x more for no measured gain.
        self.head = nn.Sequential(
            nn.Conv2d(sum(channels), hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
        )
        self.meta: SelectorMeta | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """One feature vector per macroblock of the original frame: strides 8, 16, 32 of the
        input brought to 16 original pixels (at half input scale, stride 8 is one block)."""
        return self.pyramid_features(*self.backbone(x))

    def _chain(self) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], Callable | None]:
        """The backbone as a chain of stages (the last three give strides 8, 16, 32) and the
        neck over their outputs (None: the outputs are the pyramid)."""
        b = self.backbone
        if self.backbone_name == "shufflenetv2":
            return [lambda x: b.maxpool(b.first_conv(x)), b.stage2, b.stage3, b.stage4], None
        d = b.backbone if self.backbone_name == "yolox-nano-fpn" else b
        return [lambda x: d.dark2(d.stem(x)), d.dark3, d.dark4, d.dark5], (b.neck if d is not b else None)

    def max_finetune_stages(self) -> int:
        """How many last stages can be unfrozen: the neck (if any) and the two stages after
        the stride-8 one (the frozen part always ends with an output of the pyramid)."""
        return 2 + (self._chain()[1] is not None)

    def _split(self, stages: int) -> tuple[int, Callable | None]:
        if not 0 <= stages <= self.max_finetune_stages():
            raise ModelError(f"finetune stages {stages}: backbone {self.backbone_name} has 0 to {self.max_finetune_stages()}")
        chain, neck = self._chain()
        return 4 - max(stages - (neck is not None), 0), neck

    def trunk(self, x: torch.Tensor, stages: int = 0) -> tuple[torch.Tensor, ...]:
        """The backbone without its last ``stages`` stages (the neck counts as one): the
        outputs of its frozen part, which training computes once per frame."""
        if stages == 0:
            return tuple(self.backbone(x))
        frozen, _ = self._split(stages)
        outs = []
        for i, stage in enumerate(self._chain()[0][:frozen]):
            x = stage(x)
            if i >= 1:
                outs.append(x)
        return tuple(outs)

    def tail(self, inner: Sequence[torch.Tensor], stages: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last ``stages`` stages on :meth:`trunk`'s outputs: the pyramid (strides 8, 16, 32)."""
        if stages == 0:
            return tuple(inner)
        frozen, neck = self._split(stages)
        outs, x = list(inner), inner[-1]
        for stage in self._chain()[0][frozen:]:
            x = stage(x)
            outs.append(x)
        return tuple(neck(*outs)) if neck is not None else tuple(outs)

    def tail_parameters(self, stages: int) -> list[nn.Parameter]:
        """The weights :meth:`tail` uses (what fine-tuning ``stages`` stages trains)."""
        if stages == 0:
            return []
        frozen, neck = self._split(stages)
        params = [p for stage in self._chain()[0][frozen:] for p in stage.parameters()]
        if neck is not None:
            params += [p for n, p in self.backbone.named_parameters() if not n.startswith("backbone.")]
        return params

    def pyramid_features(self, p8: torch.Tensor, p16: torch.Tensor, p32: torch.Tensor) -> torch.Tensor:
        """Strides 8, 16, 32 brought to one vector per macroblock (see :meth:`features`)."""
        if self.input_scale == 0.5:
            return torch.cat([p8, F.interpolate(p16, scale_factor=2.0, mode="nearest"), F.interpolate(p32, scale_factor=4.0, mode="nearest")], 1)
        return torch.cat([F.avg_pool2d(p8, 2), p16, F.interpolate(p32, scale_factor=2.0, mode="nearest")], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """RGB float (B, 3, H, W) in 0..255 -> the backbone's input, padded to multiples of 32."""
        if self.input_scale != 1.0:
            images = F.interpolate(images, scale_factor=self.input_scale, mode="bilinear", antialias=True, align_corners=False)
        h, w = images.shape[2:]
        if self.backbone_name.startswith("yolox"):
            x = images.flip(1)  # YOLOX: BGR, 0..255
        else:
            x = (images - _MEAN) / _STD  # ImageNet: RGB, normalised
        x = F.pad(x, (0, math.ceil(w / 32) * 32 - w, 0, math.ceil(h / 32) * 32 - h))
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def predict(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Probability that each macroblock needs high quality: (B, rows, cols) in [0, 1]."""
        images = frames_to_tensor(frames)
        rows, cols = grid_shape(images.shape[2], images.shape[3])
        logits = self(self.prepare(images))
        return torch.sigmoid(logits[:, :rows, :cols]).numpy()

    def load_pretrained(self) -> QualitySelector:
        """Pretrained backbone weights: YOLOX-Nano's (COCO) or ShuffleNetV2's (ImageNet)."""
        from edgeva import assets

        if self.backbone_name.startswith("yolox"):
            from edgeva.models import create_detector

            pafpn = create_detector("yolox-nano").backbone
            self.backbone.load_state_dict((pafpn if self.backbone_name == "yolox-nano-fpn" else pafpn.backbone).state_dict())
            return self
        path = assets.find("shufflenetv2_x0.5_imagenet_backbone.pth")
        try:
            self.backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as exc:  # pickle, zip and key errors all mean the same to a user
            raise ModelError(f"{path}: not a ShuffleNetV2 0.5x backbone ({exc.__class__.__name__})") from None
        return self


def save_selector(model: QualitySelector, path: str | Path) -> None:
    if model.meta is None:
        raise ValueError("a selector is saved with its metadata (final DNN, QPs, thresholds)")
    torch.save({"format": FORMAT, "state_dict": model.state_dict(), "meta": asdict(model.meta)}, path)


def scale_mismatch(meta: SelectorMeta, frame_size: tuple[int, int]) -> str | None:
    """Why frames of ``frame_size`` (h, w) are far from every training size (> 2x in width), or None."""
    if not meta.frame_sizes:
        return None
    width = frame_size[1]
    if min(max(width / w, w / width) for _, w in meta.frame_sizes) <= 2.0:
        return None
    return f"selector trained on widths {sorted({w for _, w in meta.frame_sizes})}, used at {width}: objects change scale, expect weaker selections"


def load_selector(path: str | Path, *, final_dnn: str | None = None, frame_size: tuple[int, int] | None = None, warn=None) -> QualitySelector:
    """Load a checkpoint written by :func:`save_selector`.

    Args:
        final_dnn: refuse a selector trained for another final DNN (None: accept any).
        frame_size: (height, width) it will run on; a size far from every training size
            is reported through ``warn`` (macroblock semantics change with scale).
        warn: callable taking a message, for mismatches that are allowed but worth saying.

    Raises:
        ModelError: missing, corrupt or foreign file, or a final-DNN mismatch.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, "selector", FORMAT)
    try:
        meta = SelectorMeta(**{**checkpoint["meta"], "frame_sizes": [tuple(s) for s in checkpoint["meta"]["frame_sizes"]]})
        model = QualitySelector(meta.backbone, input_scale=meta.input_scale)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError, ModelError) as exc:
        raise ModelError(f"{path}: selector checkpoint is damaged ({exc.__class__.__name__})") from None
    if final_dnn is not None and meta.final_dnn != final_dnn:
        raise ModelError(
            f"{path}: selector was trained for final DNN {meta.final_dnn!r}, not {final_dnn!r} "
            "(train one for it; `edgeva eval` reuses a selector across final DNNs with a warning)"
        )
    model.meta = meta
    if frame_size is not None and warn is not None and (message := scale_mismatch(meta, frame_size)):
        warn(f"{path}: {message}")
    return model.eval().to(memory_format=torch.channels_last)
