"""FastestDet (dog-qiuqiu, https://github.com/dog-qiuqiu/FastestDet) in plain PyTorch.

A ShuffleNetV2 0.5x backbone, a single-scale (stride 16) SPP neck and an anchor-free head:
per grid cell, objectness (sigmoid), box terms (tanh offsets, sigmoid size relative to the
image) and a class softmax. 0.24 M parameters: edgeva's cheap camera/edge detector.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeva.errors import ModelError
from edgeva.models.base import Detector, Letterbox, register_detector
from edgeva.models.detections import Detections

__all__ = ["ShuffleNetV2", "FastestDet", "fastestdet"]


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ShuffleV2Block(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int, stride: int):
        super().__init__()
        self.stride = stride
        self.branch_main = nn.Sequential(
            *_conv_bn(cin, mid, 1), *_conv_bn(mid, mid, 3, stride, groups=mid, relu=False), *_conv_bn(mid, cout - cin, 1)
        )
        self.branch_proj = (
            nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin, relu=False), *_conv_bn(cin, cin, 1)) if stride == 2 else None
        )

    @staticmethod
    def channel_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        x = x.reshape(b * c // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, c // 2, h, w)
        return x[0], x[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is None:
            proj, main = self.channel_shuffle(x)
            return torch.cat([proj, self.branch_main(main)], 1)
        return torch.cat([self.branch_proj(x), self.branch_main(x)], 1)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 (Ma et al., ECCV 2018) feature extractor; returns stage 2, 3, 4 outputs
    (strides 8, 16, 32). 0.5x widths: 24, 48, 96, 192."""

    def __init__(self, stage_repeats: tuple[int, ...] = (4, 8, 4), stage_channels: tuple[int, ...] = (24, 48, 96, 192)):
        super().__init__()
        cin = stage_channels[0]
        self.first_conv = nn.Sequential(*_conv_bn(3, cin, 3, 2))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for idx, (repeats, cout) in enumerate(zip(stage_repeats, stage_channels[1:], strict=True)):
            blocks = []
            for i in range(repeats):
                blocks.append(ShuffleV2Block(cin if i == 0 else cin // 2, cout, cout // 2, 2 if i == 0 else 1))
                cin = cout
            setattr(self, f"stage{idx + 2}", nn.Sequential(*blocks))
        self.out_channels = tuple(stage_channels[1:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p1 = self.stage2(self.maxpool(self.first_conv(x)))
        p2 = self.stage3(p1)
        return p1, p2, self.stage4(p2)


class SPP(nn.Module):
    """Three depthwise 5x5 towers (receptive fields 5, 9, 13) over a 1x1 projection, residual."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.Conv1x1 = nn.Module()
        self.Conv1x1.conv1x1 = nn.Sequential(*_conv_bn(cin, cout, 1))
        self.S1 = nn.Sequential(*_conv_bn(cout, cout, 5, groups=cout))
        self.S2 = nn.Sequential(*_conv_bn(cout, cout, 5, groups=cout), *_conv_bn(cout, cout, 5, groups=cout))
        self.S3 = nn.Sequential(*[m for _ in range(3) for m in _conv_bn(cout, cout, 5, groups=cout)])
        self.output = nn.Sequential(*_conv_bn(cout * 3, cout, 1, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv1x1.conv1x1(x)
        y = torch.cat([self.S1(x), self.S2(x), self.S3(x)], 1)
        return self.relu(x + self.output(y))


class _Head(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv5x5 = nn.Sequential(*_conv_bn(cin, cin, 5, groups=cin), *_conv_bn(cin, cout, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5x5(x)


class DetectHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv1x1 = nn.Module()
        self.conv1x1.conv1x1 = nn.Sequential(*_conv_bn(cin, cin, 1))
        self.obj_layers, self.reg_layers, self.cls_layers = _Head(cin, 1), _Head(cin, 4), _Head(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1x1.conv1x1(x)
        return torch.cat([self.obj_layers(x).sigmoid(), self.reg_layers(x), self.cls_layers(x).softmax(dim=1)], 1)


class FastestDet(Detector):
    """FastestDet. ``forward`` returns the raw (B, 5 + classes, H/16, W/16) map of the ONNX
    export: objectness, 4 box terms, class probabilities. Trained on BGR 0..1 frames
    stretched to 352x352, which is the default input size here."""

    name = "fastestdet"
    pad_value = 0.0
    pixel_scale = 1.0 / 255.0

    def __init__(
        self,
        *,
        num_classes: int = 80,
        input_size: tuple[int, int] | None = (352, 352),
        score_threshold: float = 0.3,
        nms_threshold: float = 0.45,
    ):
        super().__init__(input_size=input_size, keep_aspect=False, score_threshold=score_threshold, nms_threshold=nms_threshold)
        self.backbone = ShuffleNetV2()
        c1, c2, c3 = self.backbone.out_channels
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.avg_pool = nn.AvgPool2d(3, 2, 1)
        self.SPP = SPP(c1 + c2 + c3, c2)
        self.detect_head = DetectHead(c2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1, p2, p3 = self.backbone(x)
        return self.detect_head(self.SPP(torch.cat([self.avg_pool(p1), p2, self.upsample(p3)], 1)))

    def decode_boxes(self, raw: torch.Tensor) -> torch.Tensor:
        """Differentiable: raw (B, C, H, W) -> (B, H*W, 4) xyxy boxes in input pixels."""
        b, _, h, w = raw.shape
        gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx = (raw[:, 1].tanh() + gx) / w
        cy = (raw[:, 2].tanh() + gy) / h
        bw, bh = raw[:, 3].sigmoid(), raw[:, 4].sigmoid()
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(b, -1, 4)
        return boxes * torch.tensor([w * 16, h * 16, w * 16, h * 16], dtype=raw.dtype)

    def decode(self, raw: torch.Tensor, box: Letterbox) -> list[Detections]:
        boxes = self.decode_boxes(raw)
        cls_score, cls_id = raw[:, 5:].max(dim=1)
        scores = (raw[:, 0] * cls_score).flatten(1)
        cls_id = cls_id.flatten(1)
        return [self._finish(boxes[b], scores[b], cls_id[b], box) for b in range(raw.shape[0])]

    def load_pth(self, path: str) -> FastestDet:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_state_dict(state)
        except Exception as exc:  # pickle, zip and key errors all mean the same to a user
            raise ModelError(f"{path}: not a FastestDet state dict ({exc.__class__.__name__}: {str(exc)[:120]})") from None
        return self


@register_detector("fastestdet")
def fastestdet(**kwargs) -> FastestDet:
    """FastestDet (COCO), weights from ``fastestdet_coco.pth``. The cheap edge model."""
    from edgeva import assets

    return FastestDet(**kwargs).load_pth(str(assets.find("fastestdet_coco.pth")))
