"""Continuous learning: the SIoU box loss, FastestDet's fine-tuning loss, one retraining
round raising the edge model's F1 against the golden model on held-out frames, and the
validation gate refusing an update that lowers F1."""

from __future__ import annotations

import pytest
import torch

from edgeva import assets
from edgeva.bench.learning import split_frames
from edgeva.metrics import f1_score
from edgeva.models import create_detector
from edgeva.runtime.learning import (
    DriftCollector,
    ValidationSet,
    fastestdet_loss,
    fine_tune,
    gate_update,
    siou_loss,
)
from edgeva.video import read_frames


@pytest.fixture
def one_thread():
    """One torch thread: on a 2-core machine shared with other jobs, two threads run training
    several times slower (measured: 4x for YOLOX-Nano inference at load 6)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_siou_is_zero_for_a_perfect_box_and_grows_with_error():
    box = torch.tensor([[5.0, 5.0, 2.0, 3.0]])
    loss, iou = siou_loss(box, box)
    assert float(iou) > 0.999 and abs(float(loss)) < 1e-5
    near, _ = siou_loss(torch.tensor([[5.5, 5.0, 2.0, 3.0]]), box)
    far, _ = siou_loss(torch.tensor([[7.0, 6.0, 1.0, 1.0]]), box)
    assert 0 < float(near) < float(far)


def test_loss_prefers_the_right_answer_and_has_finite_gradients():
    torch.manual_seed(0)
    h = w = 4
    target = [torch.tensor([[2.0, 0.3, 0.6, 0.25, 0.5]])]  # class 2, centre (0.3, 0.6) -> cell (1, 2)
    raw = torch.zeros(1, 85, h, w)
    raw[:, 5:] = 1 / 80
    raw[:, 0] = 0.5
    random_loss, _ = fastestdet_loss(raw, target)
    good = raw.clone()
    good[:, 0] = 0.0
    good[0, 0, 2:4, 1:3] = 1.0  # the centre's cell and its right/below neighbours
    good[0, 5:, 2:4, 1:3] = 0.0
    good[0, 7, 2:4, 1:3] = 1.0
    good_loss, parts = fastestdet_loss(good, target)
    assert float(good_loss) < float(random_loss) and parts["cls"] < 1e-3
    trainable = raw.clone().requires_grad_(True)
    loss, _ = fastestdet_loss(trainable, target)
    loss.backward()
    assert torch.isfinite(trainable.grad).all() and trainable.grad.abs().sum() > 0
    empty, _ = fastestdet_loss(raw, [torch.zeros(0, 5)])  # a frame with no labels: objectness only
    assert float(empty) > 0


def test_one_retraining_round_raises_held_out_f1(yolox, one_thread):
    """bottle-detection, where FastestDet is weak: drift frames from the first half of the
    video, held-out frames from the second half (never trained on)."""
    edge = create_detector("fastestdet")  # fine-tuned in place: not the shared fixture
    train, test = split_frames(str(assets.find("bottle-detection.mp4")), window=60, held_out=30)
    collector = DriftCollector(len(train), keep=16)
    drift = None
    for image, dets in zip(train, edge.detect(train), strict=True):
        drift = collector.add(image, dets) or drift
    assert drift is not None and len(drift) == 16
    reference = yolox.detect(test)
    before = f1_score(edge.detect(test), reference)["f1"]
    result = fine_tune(edge, drift, yolox.detect(drift), epochs=8)
    after = f1_score(edge.detect(test), reference)["f1"]
    assert result.loss_after < result.loss_before and result.objects > 0
    assert after > before + 0.1, (before, after)


def _misclassifying_copy(detector):
    """A real FastestDet whose class head is shifted by one class (what a bad update can do)."""
    bad = create_detector("fastestdet")
    state = {k: v.clone() for k, v in detector.state_dict().items()}
    for key in state:
        if key.startswith(("detect_head.cls_layers.conv5x5.3.", "detect_head.cls_layers.conv5x5.4.")) and state[key].ndim:
            state[key] = state[key].roll(1, dims=0)
    bad.load_state_dict(state)
    return bad.eval()


def test_the_gate_refuses_an_update_that_lowers_validation_f1(yolox, fastestdet, one_thread):
    validation = ValidationSet(size=4, every=3)
    frames = read_frames(str(assets.find("store-aisle-detection.mp4")), 12)
    taken = [i for i, frame in enumerate(frames) if validation.offer(frame)]
    assert taken == [2, 5, 8, 11] and len(validation) == 4  # every 3rd frame, never given to training
    checks, labels = validation.label(yolox.detect)
    assert sum(len(d) for d in labels) > 0
    assert validation.label(lambda frames: pytest.fail("labelled twice"))[1] == labels  # labelled once
    bad = gate_update(fastestdet.detect, _misclassifying_copy(fastestdet).detect, checks, labels)
    assert not bad.accepted and bad.f1_after < bad.f1_before and bad.frames == 4 and "refused" in bad.reason
    same = gate_update(fastestdet.detect, fastestdet.detect, checks, labels)
    assert same.accepted and same.f1_after == same.f1_before  # "does not drop": equal is kept
    assert not gate_update(fastestdet.detect, fastestdet.detect, [], []).accepted  # nothing to check on: refused
