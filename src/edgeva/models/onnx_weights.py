"""Load convolution weights from an ONNX export into an equivalent PyTorch module.

Exports with BatchNorm folded into the convolutions rename parameters (``onnx::Conv_1178``),
so names cannot be matched. Instead both graphs are walked in execution order: the
convolutions a PyTorch forward pass calls are paired, in order, with the ONNX graph's Conv
nodes (which the exporter emitted in the same order), and every pair must agree on shape,
stride, padding and groups.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgeva.errors import ModelError

__all__ = ["load_conv_weights_from_onnx"]


def _convs_in_call_order(model: nn.Module, example: torch.Tensor) -> list[nn.Conv2d]:
    order: list[nn.Conv2d] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append(m)) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def load_conv_weights_from_onnx(model: nn.Module, path: str | Path, *, example: torch.Tensor) -> None:
    """Copy the weights and biases of every ONNX Conv node into ``model``'s convolutions.

    Raises:
        ModelError: unreadable file, or graphs that do not line up (count or shapes).
    """
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise ModelError(f"{path}: cannot read ONNX model ({exc.__class__.__name__})") from None
    tensors = {t.name: t for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    convs = _convs_in_call_order(model, example)
    if len(nodes) != len(convs):
        raise ModelError(f"{path}: has {len(nodes)} convolutions, the PyTorch model has {len(convs)}")
    for i, (node, conv) in enumerate(zip(nodes, convs, strict=True)):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = torch.from_numpy(numpy_helper.to_array(tensors[node.input[1]]).copy())
        if (
            weight.shape != conv.weight.shape
            or list(attrs.get("strides", [1, 1])) != list(conv.stride)
            or attrs.get("group", 1) != conv.groups
        ):
            raise ModelError(
                f"{path}: convolution {i} ({node.input[1]}) has shape {tuple(weight.shape)}, "
                f"the PyTorch model expects {tuple(conv.weight.shape)}"
            )
        with torch.no_grad():
            conv.weight.copy_(weight)
            if len(node.input) > 2:
                bias = torch.from_numpy(numpy_helper.to_array(tensors[node.input[2]]).copy())
                if conv.bias is None:
                    raise ModelError(f"{path}: convolution {i} has a bias the PyTorch model lacks")
                conv.bias.copy_(bias)
