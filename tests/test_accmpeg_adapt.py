"""Online adaptation of the AccMPEG selector from the server (issue 10, part 3)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import frames_of, video_path
from edgeva.accmpeg.accgrad import compute_accgrad
from edgeva.accmpeg.adapt import AdaptOptions, HeadServer, SelectorAdaptation, apply_payload
from edgeva.accmpeg.selector import save_selector
from edgeva.accmpeg.train import (
    TrainConfig,
    block_precision_recall,
    ground_truth_masks,
    train_selector,
)
from edgeva.errors import ConfigError
from edgeva.eval.worker import summarize
from edgeva.models import create_detector
from edgeva.net import Link
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.video import EncoderSettings, encode_chunk

VIDEO = "store-aisle-detection"  # unseen by the selector below
HELD_OUT = (20, 30, 40, 50, 60)  # scored frames; adaptation sees only frame 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small selector trained on car-detection alone, the final DNN, frames of the unseen video."""
    selector = train_selector(TrainConfig(videos=["car-detection"], frames_per_video=8, epochs=5, val_fraction=0.25, scales=(), log=lambda _m: None))
    path = tmp_path_factory.mktemp("adapt") / "selector.pt"
    save_selector(selector, path)
    return selector, path, create_detector("yolox-nano", score_threshold=0.1), frames_of(VIDEO, 61)


def _precision(selector, frames, detector) -> float:
    meta = selector.meta
    maps = compute_accgrad(video_path(VIDEO), detector, HELD_OUT, crf_low=meta.crf_low)
    truth = ground_truth_masks(np.stack([maps[i] for i in HELD_OUT]), meta.accgrad_scale, meta.accgrad_threshold)
    probabilities = np.stack([selector.predict([frames[i]])[0] for i in HELD_OUT])
    return block_precision_recall(probabilities, truth, recall=0.8)["precision"]


def test_one_round_raises_precision_on_held_out_frames_and_counts_its_bytes(setup):
    selector, _path, detector, frames = setup
    camera = copy.deepcopy(selector)
    before = _precision(camera, frames, detector)
    adaptation = SelectorAdaptation(camera, detector, AdaptOptions(every=1))
    done = adaptation.after_chunk(0, frames[:10])
    after = _precision(camera, frames, detector)
    print(f"precision at recall 0.8 on held-out frames: {before:.3f} -> {after:.3f}")
    assert after > before + 0.02
    assert _precision(selector, frames, detector) == before  # the shared selector is untouched
    # Real costs: the uploaded frame is the encoder's output, the weights 65 float16 values.
    assert done.up_bytes == encode_chunk([frames[0]], 30, EncoderSettings(), first_frame=0).nbytes
    assert done.down_bytes == 65 * 2 and done.server_s > 0


def test_adaptation_is_deterministic_and_weights_round_trip(setup):
    selector, _path, detector, frames = setup
    options = AdaptOptions(every=1)
    payloads = [HeadServer(selector, detector, options).adapt(frames[0]) for _ in range(2)]
    assert payloads[0] == payloads[1]
    with pytest.raises(ValueError, match="130 values received"):
        apply_payload(selector, payloads[0] * 2, "last")
    assert AdaptOptions(every=2).due(1) and not AdaptOptions(every=2).due(0) and not AdaptOptions().due(0)


def test_scheme_replay_counts_uplink_frames_and_downlink_weights(setup):
    _selector, path, detector, frames = setup
    ctx = SchemeContext(server=Server(detector), settings=EncoderSettings(fps=16.7), frame_size=frames[0].shape[:2], fps=16.7,
                        checkpoints={"selector": str(path)})
    runs = {}
    for every in (0, 1):
        scheme = create_scheme("accmpeg", ctx, alpha=0.5, adapt_every=every)
        scheme.reset()
        outcomes = [scheme.process(frames[i : i + 10], i) for i in range(0, 30, 10)]
        runs[every] = (outcomes, summarize(outcomes, detector.detect(frames[:30]), fps=16.7, link=Link()))
    (frozen, off), (adapted, on) = runs[0], runs[1]
    assert off["adapt_up_bytes"] == off["downlink_bytes"] == 0 and off["bytes"] == off["uplink_bytes"]
    assert [o.downlink_bytes for o in adapted] == [130, 130, 130] and all(o.adapt_up_bytes > 0 for o in adapted)
    # The first chunk is encoded with the same selector either way; its upload also carries the frame.
    assert adapted[0].nbytes == frozen[0].nbytes + adapted[0].adapt_up_bytes
    assert on["bytes"] == on["uplink_bytes"] + on["downlink_bytes"] and on["adapt_up_bytes"] == sum(o.adapt_up_bytes for o in adapted)
    with pytest.raises(ConfigError, match="adapt_layers"):
        create_scheme("accmpeg", ctx, adapt_every=1, adapt_layers="all")


def test_runtime_camera_sends_frames_to_the_cloud_and_applies_the_weights_it_returns(setup, tmp_path, yolox, fastestdet):
    from edgeva.runtime.camera import CameraAgent
    from edgeva.runtime.store import open_store, start_run
    from runtime_support import cluster_config, running

    selector, path, _detector, _frames = setup
    cameras = [{"id": 1, "source": VIDEO, "edge": 1, "frames": 30, "fps": 0,
                "encoding": {"scheme": "accmpeg", "checkpoint": str(path), "alpha": 0.5, "chunk_frames": 10, "adapt_every": 1}}]
    config = cluster_config(tmp_path, edges=1, cameras=cameras)
    with running(config, yolox, fastestdet) as (config, nodes):
        sessions = open_store(config.database.url)
        start_run(sessions, "adapt", policy="edge-local", config_json=config.model_dump_json())
        agent = CameraAgent(config, 1, "adapt", sessions)
        stats = agent.run()
        cloud_rounds = nodes[0]._selectors["adapt", 1].rounds
    adapt = stats.adaptation
    assert adapt.rounds >= 1 and adapt.rounds + adapt.skipped + adapt.failed == 3 and adapt.failed == 0
    assert cloud_rounds == adapt.rounds and adapt.down_bytes == 130 * adapt.rounds and adapt.up_bytes > 0
    agent.adaptation.apply()  # weights that came back after the last chunk
    camera_head, trained_head = agent.scheme.selector.head[6].weight, selector.head[6].weight
    assert not np.allclose(camera_head.detach().numpy(), trained_head.detach().numpy())
    with pytest.raises(ConfigError, match="adapt_every: adapts AccMPEG"):
        cluster_config(tmp_path, cameras=[{**cameras[0], "encoding": {"adapt_every": 1}}])
