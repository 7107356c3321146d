from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva import assets
from edgeva.errors import ModelError
from edgeva.models import (
    Detections,
    create_detector,
    frames_to_tensor,
    list_detectors,
    register_detector,
)


def _onnx_output(path, x):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def test_yolox_matches_onnx_runtime(yolox):
    x = torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        ours = yolox(x).numpy()
    theirs = _onnx_output(assets.find("yolox_nano.onnx"), x)
    assert ours.shape == theirs.shape == (1, 3549, 85)
    assert np.abs(ours - theirs).max() <= 1e-3


def test_fastestdet_matches_onnx_runtime(fastestdet):
    x = torch.rand(1, 3, 352, 352, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = fastestdet(x).numpy()
    theirs = _onnx_output(assets.find("fastestdet_coco.onnx"), x)
    assert ours.shape == theirs.shape == (1, 85, 22, 22)
    assert np.abs(ours - theirs).max() <= 1e-3


@pytest.mark.parametrize("name", list_detectors())
def test_every_registered_detector_finds_people_and_has_input_gradients(name):
    detector = create_detector(name)
    frames = [frames_of("one-by-one-person-detection", 151)[i] for i in (100, 150)]  # a person walks by
    dets = detector.detect(frames)
    assert len(dets) == 2 and all(isinstance(d, Detections) for d in dets)
    assert any("person" in d.labels for d in dets)
    for d in dets:
        assert ((d.boxes[:, 2] <= 768) & (d.boxes[:, 3] <= 432) & (d.boxes[:, 0] >= 0)).all()
    images = frames_to_tensor(frames).requires_grad_(True)
    raw, _ = detector.raw_outputs(images)
    raw.square().sum().backward()
    grad = images.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_yolox_runs_at_native_resolution_and_at_416(yolox):
    frame = frames_of("one-by-one-person-detection", 151)[100]
    native = yolox.detect([frame])[0]
    small = create_detector("yolox-nano", input_size=(416, 416)).detect([frame])[0]
    box = yolox.letterbox(frame.shape[:2])
    assert box.input_size == (448, 768) and box.ratio == (1.0, 1.0)
    assert "person" in native.labels and "person" in small.labels


def test_registry_is_open_and_names_are_unique():
    with pytest.raises(ValueError, match="already registered"):
        register_detector("yolox-nano")(lambda **kw: None)
    with pytest.raises(ModelError, match="'nope'"):
        create_detector("nope")
    with pytest.raises(ModelError, match="multiple of 32"):
        create_detector("yolox-nano", input_size=(400, 400))


def test_detections_container_validates_and_indexes():
    d = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), np.array([0.9, 0.2]), np.array([0, 2]))
    assert d.above(0.5).labels == ["person"]
    assert len(d[np.array([False, True])]) == 1
    assert Detections.from_json(d.to_json()).labels == d.labels
    with pytest.raises(ValueError, match="shape"):
        Detections(np.zeros((2, 3)), np.zeros(2), np.zeros(2))
