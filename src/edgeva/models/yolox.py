"""YOLOX (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430) in plain PyTorch.

The architecture follows the official Megvii implementation (CSPDarknet + PAFPN + decoupled
head). Weights come from an ONNX export whose BatchNorms are folded into the convolutions,
so every ``BaseConv`` here is a biased convolution followed by SiLU. The model runs at any
input size that is a multiple of 32; by default at the frame's native size, padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgeva.models.base import Detector, Letterbox, register_detector
from edgeva.models.detections import Detections, box_iou
from edgeva.models.onnx_weights import load_conv_weights_from_onnx

__all__ = ["YOLOX", "yolox_nano"]


class BaseConv(nn.Module):
    """Conv (BatchNorm folded in) + SiLU.

    Without autograd (detection) the SiLU overwrites the convolution's output instead of
    allocating another tensor: the same numbers, YOLOX-Nano 22-24% faster on this CPU (a 4-frame
    640x360 batch 108 -> 82 ms); with autograd (AccGrad, training) it keeps its input for the
    backward pass, and so does a trace (one graph whatever the grad mode it is replayed in).
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv(x), inplace=not (torch.is_grad_enabled() or torch.jit.is_tracing()))


class DWConv(nn.Module):
    """Depthwise conv + pointwise conv."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(cin, cin, k, stride, groups=cin)
        self.pconv = BaseConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv(depthwise: bool):
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, shortcut: bool, depthwise: bool):
        super().__init__()
        self.conv1 = BaseConv(cin, cout, 1)
        self.conv2 = _conv(depthwise)(cout, cout, 3, 1)
        self.use_add = shortcut and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool, depthwise: bool):
        super().__init__()
        hidden = cout // 2
        self.conv1 = BaseConv(cin, hidden, 1)
        self.conv2 = BaseConv(cin, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, cout, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, depthwise) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x)
        return self.conv3(torch.cat([self.m(x1), x2], dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: Sequence[int] = (5, 9, 13)):
        super().__init__()
        hidden = cin // 2
        self.conv1 = BaseConv(cin, hidden, 1)
        self.pools = nn.ModuleList([nn.MaxPool2d(k, 1, k // 2) for k in kernels])
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [p(x) for p in self.pools], dim=1))


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels -> 4 channels), then a conv."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = BaseConv(cin * 4, cout, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl, tr = x[..., ::2, ::2], x[..., ::2, 1::2]
        bl, br = x[..., 1::2, ::2], x[..., 1::2, 1::2]
        return self.conv(torch.cat([tl, bl, tr, br], dim=1))


class CSPDarknet(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool):
        super().__init__()
        c, d = int(width * 64), max(round(depth * 3), 1)
        conv = _conv(depthwise)
        self.stem = Focus(3, c)
        self.dark2 = nn.Sequential(conv(c, c * 2, 3, 2), CSPLayer(c * 2, c * 2, d, True, depthwise))
        self.dark3 = nn.Sequential(conv(c * 2, c * 4, 3, 2), CSPLayer(c * 4, c * 4, d * 3, True, depthwise))
        self.dark4 = nn.Sequential(conv(c * 4, c * 8, 3, 2), CSPLayer(c * 8, c * 8, d * 3, True, depthwise))
        self.dark5 = nn.Sequential(
            conv(c * 8, c * 16, 3, 2), SPPBottleneck(c * 16, c * 16), CSPLayer(c * 16, c * 16, d, False, depthwise)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class PAFPN(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool):
        super().__init__()
        c3, c4, c5 = (int(ch * width) for ch in (256, 512, 1024))
        n = round(3 * depth)
        conv = _conv(depthwise)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, depthwise)
        self.reduce_conv1 = BaseConv(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, depthwise)
        self.bu_conv2 = conv(c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, depthwise)
        self.bu_conv1 = conv(c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, depthwise)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.neck(*self.backbone(x))

    def neck(self, x2: torch.Tensor, x1: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The feature pyramid's top-down and bottom-up paths over CSPDarknet's strides 8, 16, 32."""
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    def __init__(self, num_classes: int, width: float, depthwise: bool):
        super().__init__()
        hidden = int(256 * width)
        conv = _conv(depthwise)
        self.stems, self.cls_convs, self.reg_convs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.cls_preds, self.reg_preds, self.obj_preds = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for cin in (int(ch * width) for ch in (256, 512, 1024)):
            self.stems.append(BaseConv(cin, hidden, 1))
            self.cls_convs.append(nn.Sequential(conv(hidden, hidden, 3), conv(hidden, hidden, 3)))
            self.reg_convs.append(nn.Sequential(conv(hidden, hidden, 3), conv(hidden, hidden, 3)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_out, obj_out = self.reg_preds[k](reg_feat), self.obj_preds[k](reg_feat)
            outputs.append(torch.cat([reg_out, obj_out.sigmoid(), cls_out.sigmoid()], 1).flatten(2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class YOLOX(Detector):
    """YOLOX detector. ``forward`` returns the raw (B, N, 5 + classes) tensor of the ONNX
    export: per anchor point (cx, cy, w, h) in grid units before decoding, objectness and
    class probabilities; anchor points ordered stride 8, 16, 32, row-major."""

    name = "yolox"
    strides = (8, 16, 32)

    def __init__(
        self,
        *,
        depth: float = 0.33,
        width: float = 0.25,
        depthwise: bool = True,
        num_classes: int = 80,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.45,
    ):
        super().__init__(input_size=input_size, keep_aspect=True, score_threshold=score_threshold, nms_threshold=nms_threshold)
        self.backbone = PAFPN(depth, width, depthwise)
        self.head = YOLOXHead(num_classes, width, depthwise)
        self._grids: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def _grid(self, input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if input_size not in self._grids:
            self._grids[input_size] = self._make_grid(input_size)
        return self._grids[input_size]

    @torch.inference_mode(False)  # cached grids must also serve passes that need gradients
    def _make_grid(self, input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        grids, strides = [], []
        for s in self.strides:
            gy, gx = torch.meshgrid(torch.arange(input_size[0] // s), torch.arange(input_size[1] // s), indexing="ij")
            grids.append(torch.stack([gx, gy], -1).reshape(-1, 2))
            strides.append(torch.full((grids[-1].shape[0], 1), float(s)))
        return torch.cat(grids).float(), torch.cat(strides)

    def decode_boxes(self, raw: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        """Differentiable: raw (B, N, 4+) -> (B, N, 4) xyxy boxes in input pixels."""
        grid, stride = self._grid(input_size)
        xy = (raw[..., :2] + grid) * stride
        wh = torch.exp(raw[..., 2:4]) * stride
        return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)

    def decode(self, raw: torch.Tensor, box: Letterbox) -> list[Detections]:
        boxes = self.decode_boxes(raw, box.input_size)
        cls_score, cls_id = raw[..., 5:].max(dim=-1)
        scores = raw[..., 4] * cls_score
        return [self._finish(boxes[b], scores[b], cls_id[b], box) for b in range(raw.shape[0])]

    def pseudo_label_loss(self, raw: torch.Tensor, targets: Sequence[Detections], box: Letterbox, *, assign_from: torch.Tensor) -> torch.Tensor:
        """YOLOX's training loss of ``raw`` against ``targets`` (detections in frame pixels).

        The loss is YOLOX's own (Ge et al. 2021, sec. 2.1): objectness BCE on every anchor
        point, class BCE with an IoU-scaled one-hot target and ``5 * (1 - IoU^2)`` box loss on
        the positives, normalised by the number of positives. Positives are assigned by
        SimOTA (in-box and in-centre candidates, cost = class BCE + 3 * -log IoU, dynamic k
        from the top-10 IoUs) computed on ``assign_from``, a fixed raw output (e.g. the model
        on the original frame), so the assignment does not move with the input being scored.

        Args:
            raw: (B, N, 85) output to score, usually with gradients.
            targets: B detection results taken as ground truth.
            box: the letterbox both outputs were computed with.
            assign_from: (B, N, 85) raw output used for label assignment (no gradient).

        Returns:
            Sum over the batch of per-image losses (scalar).
        """
        grid, stride = self._grid(box.input_size)
        centres = (grid + 0.5) * stride  # (N, 2) anchor point centres in input pixels
        ry, rx = box.ratio
        scale = torch.tensor([rx, ry, rx, ry])
        pred_boxes = self.decode_boxes(raw, box.input_size)
        with torch.no_grad():
            ref_boxes = self.decode_boxes(assign_from, box.input_size)
        total = raw.new_zeros(())
        for b, target in enumerate(targets):
            fg, gt_index, iou_target = self._simota(assign_from[b], ref_boxes[b], centres, stride, target, scale)
            obj_target = fg.float()
            loss = F.binary_cross_entropy(raw[b, :, 4].clamp(1e-6, 1 - 1e-6), obj_target, reduction="sum")
            if fg.any():
                gt_boxes = torch.from_numpy(target.boxes).float() * scale
                gt_cls = torch.from_numpy(target.class_ids)
                cls_target = F.one_hot(gt_cls[gt_index], raw.shape[-1] - 5).float() * iou_target[:, None]
                loss = loss + F.binary_cross_entropy(raw[b, fg, 5:].clamp(1e-6, 1 - 1e-6), cls_target, reduction="sum")
                iou = box_iou(pred_boxes[b, fg], gt_boxes[gt_index]).diagonal()
                loss = loss + 5.0 * (1 - iou.square()).sum()
            total = total + loss / max(int(fg.sum()), 1)
        return total

    @torch.no_grad()
    def _simota(self, raw: torch.Tensor, boxes: torch.Tensor, centres: torch.Tensor, stride: torch.Tensor, target: Detections, scale: torch.Tensor):
        n = raw.shape[0]
        if len(target) == 0:
            return torch.zeros(n, dtype=torch.bool), torch.zeros(0, dtype=torch.long), torch.zeros(0)
        gt = torch.from_numpy(target.boxes).float() * scale  # (G, 4) input pixels
        gt_centre = (gt[:, :2] + gt[:, 2:]) / 2
        in_box = ((centres[None] > gt[:, None, :2]) & (centres[None] < gt[:, None, 2:])).all(-1)  # (G, N)
        radius = 2.5 * stride.T  # (1, N)
        in_centre = ((centres[None] - gt_centre[:, None]).abs() < radius[..., None]).all(-1)
        candidate = (in_box | in_centre).any(0)
        iou = box_iou(gt, boxes)  # (G, N)
        cls_prob = (raw[:, 5:] * raw[:, 4:5]).sqrt().clamp(1e-6, 1 - 1e-6)  # YOLOX scores classes this way
        onehot = F.one_hot(torch.from_numpy(target.class_ids), raw.shape[1] - 5).float()
        cls_cost = -(onehot @ torch.log(cls_prob).T + (1 - onehot) @ torch.log(1 - cls_prob).T)  # (G, N)
        cost = cls_cost + 3.0 * -torch.log(iou + 1e-8) + 1e5 * ~(in_box & in_centre)
        cost[:, ~candidate] = float("inf")
        matching = torch.zeros_like(cost, dtype=torch.bool)
        top_iou = iou.masked_fill(~candidate[None], 0).topk(min(10, n), dim=1).values
        for g, k in enumerate(top_iou.sum(1).int().clamp(min=1).tolist()):
            finite = torch.isfinite(cost[g])
            k = min(k, int(finite.sum()))
            if k:
                matching[g, cost[g].masked_fill(~finite, float("inf")).topk(k, largest=False).indices] = True
        multiple = matching.sum(0) > 1  # an anchor point claimed by several objects keeps the cheapest
        if multiple.any():
            best = cost[:, multiple].argmin(0)
            matching[:, multiple] = False
            matching[best, multiple.nonzero().squeeze(1)] = True
        fg = matching.any(0)
        gt_index = matching[:, fg].float().argmax(0)
        return fg, gt_index, iou[gt_index, fg.nonzero().squeeze(1)]

    def load_onnx(self, path: str) -> YOLOX:
        load_conv_weights_from_onnx(self, path, example=torch.zeros(1, 3, 64, 64))
        return self


@register_detector("yolox-nano")
def yolox_nano(**kwargs) -> YOLOX:
    """YOLOX-Nano (COCO), weights from ``yolox_nano.onnx``. The final ("golden") DNN."""
    from edgeva import assets

    model = YOLOX(depth=0.33, width=0.25, depthwise=True, **kwargs)
    model.name = "yolox-nano"
    return model.load_onnx(str(assets.find("yolox_nano.onnx")))
