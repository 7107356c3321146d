"""The cluster config: the shipped sample validates; a malformed file names the bad key."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import frames_of
from edgeva.errors import ConfigError
from edgeva.runtime.config import CLOUD, load_config, resolve_config_path


def test_shipped_sample_is_one_cloud_three_edges_three_cameras():
    config = load_config("cluster")
    assert len(config.edges) == 3 and len(config.cameras) == 3
    assert len({e.delay_factor for e in config.edges}) == 3  # heterogeneous edges
    assert config.route(config.cameras[0]) == ["edge-1", "edge-2", "edge-3", CLOUD]
    assert config.node("edge-2").delay_factor == config.edges[1].delay_factor
    assert config.node(CLOUD).model == "yolox-nano"


def _write(tmp_path, mutate) -> str:
    data = yaml.safe_load(resolve_config_path("cluster").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "mutate,names",
    [
        (lambda d: d["edges"][1].update(delay_factr=2), ["edges[1].delay_factr", "unknown key"]),
        (lambda d: d["edges"][0].update(delay_factor=0.5), ["edges[0].delay_factor"]),
        (lambda d: d["policy"].update(name="round-robin"), ["policy.name", "round-robin", "edge-shortest"]),
        (lambda d: d["cameras"][0]["encoding"].update(scheme="accmpeg"), ["cameras[0].encoding", "accmpeg", "checkpoint"]),
        (lambda d: d["cameras"][0]["encoding"].update(scheme="vp8-magic"), ["cameras[0].encoding.scheme", "vp8-magic", "uniform"]),
        (lambda d: d["cameras"][2].update(edge=9), ["cameras[2].edge", "9"]),
        (lambda d: d["cameras"][1].update(failover=["edge-7"]), ["cameras[1].failover", "edge-7"]),
        (lambda d: d["edges"].append(dict(d["edges"][0])), ["duplicate edge ids"]),
        (lambda d: d["security"].update(tls_cert="/nonexistent.pem"), ["security", "tls_cert"]),
        (lambda d: d["security"].update(token_env="EDGEVA_TEST_UNSET_TOKEN"), ["security", "EDGEVA_TEST_UNSET_TOKEN"]),
        (lambda d: d["filter"].update(feature="colour"), ["filter.feature"]),
        (lambda d: d["edges"][0].update(model="yolox-nano"), ["edges[0].model", "retraining"]),
        (lambda d: d["edges"][2].update(device="gpu"), ["edges[2].device", "'gpu'", "cuda:N"]),
    ],
    ids=["unknown-key", "bad-value", "unknown-policy", "accmpeg-without-checkpoint", "unknown-scheme", "unknown-edge", "unknown-failover",
         "duplicate-ids", "missing-cert", "unset-token-env", "unknown-feature", "retraining-needs-fastestdet", "bad-device"],
)
def test_malformed_config_names_the_key(tmp_path, mutate, names):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, mutate))
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("edges: [\n  - {id: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    path = _write(tmp_path, lambda d: d["cameras"][0]["encoding"].update(scheme="vp8-magic"))
    proc = subprocess.run([sys.executable, "-m", "edgeva.cli", "cluster", "--config", path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cameras[0].encoding.scheme" in lines[0] and "Traceback" not in proc.stderr


def _with_devices(tmp_path, cloud: str | None = None, **edges: str):
    def mutate(data):
        if cloud is not None:
            data["cloud"]["device"] = cloud
        for index, device in edges.items():
            data["edges"][int(index.removeprefix("e"))]["device"] = device
    return load_config(_write(tmp_path, mutate))


def test_node_device_defaults_to_cpu_and_auto_takes_a_visible_gpu(tmp_path):
    config = _with_devices(tmp_path, cloud="auto", e1="CUDA")
    assert config.edges[0].device == "cpu" and config.cloud.device == "auto" and config.edges[1].device == "cuda"
    assert config.device("edge-1", cuda_count=2) == "cpu"  # never a GPU unless asked
    assert config.device(CLOUD, cuda_count=0) == "cpu"
    assert config.device(CLOUD, cuda_count=1) == "cuda:0"
    assert config.device("edge-2", cuda_count=1) == "cuda:0"
    with pytest.raises(ConfigError) as info:
        config.device("edge-2", cuda_count=0)
    assert str(info.value) == "edges[1].device cuda: torch sees no CUDA device (CPU-only torch build or no GPU)"
    config = _with_devices(tmp_path, cloud="cuda:1")
    with pytest.raises(ConfigError, match=r"^cloud.device cuda:1: torch sees 1 CUDA device\(s\)$"):
        config.device(CLOUD, cuda_count=1)


def test_apps_worker_runs_on_the_cpu_only(tmp_path):
    from edgeva.runtime.config import EdgeConfig

    with pytest.raises(ValueError, match="worker apps runs on the CPU"):
        EdgeConfig(id=1, worker="apps", apps_dir=tmp_path, apps_budget_ms=10, device="cuda")


def test_node_on_auto_runs_on_the_cpu_here_with_the_same_detections(tmp_path, fastestdet):
    """The CPU path of ``device:``: ``auto`` on this GPU-less machine builds the edge's model on
    the CPU, and it finds exactly what the default worker finds on a real frame."""
    import torch

    from edgeva.runtime.worker import DetectorWorker, create_worker

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto would take it")
    config = _with_devices(tmp_path, e0="auto")
    edge = config.edge(1)
    worker = create_worker(edge.worker, edge, 0.3, device=config.device(edge.name))
    assert isinstance(worker, DetectorWorker) and worker.detector.device.type == "cpu"
    frame = frames_of("bottle-detection", 1)[0]
    got, want = worker.infer([frame])[0], DetectorWorker("fastestdet", detector=fastestdet).infer([frame])[0]
    assert len(got) == 3 and np.array_equal(got.boxes, want.boxes) and np.array_equal(got.class_ids, want.class_ids)


def test_cluster_refuses_an_unseen_gpu_before_starting_anything(tmp_path):
    import torch

    from edgeva.runtime.cluster import run_cluster

    config = _with_devices(tmp_path, e2="cuda:64")
    assert torch.cuda.device_count() < 65
    with pytest.raises(ConfigError, match=r"^edges\[2\].device cuda:64: torch sees"):
        run_cluster(config, run_id="t", log_dir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
