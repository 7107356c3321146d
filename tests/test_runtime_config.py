"""The cluster config: the shipped sample validates; a malformed file names the bad key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

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
    ],
    ids=["unknown-key", "bad-value", "unknown-policy", "accmpeg-without-checkpoint", "unknown-scheme", "unknown-edge", "unknown-failover",
         "duplicate-ids", "missing-cert", "unset-token-env", "unknown-feature", "retraining-needs-fastestdet"],
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
