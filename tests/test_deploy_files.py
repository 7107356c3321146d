"""The multi-host deployment files agree with each other and with edgeva: the compose file
starts one service per node of deploy/cluster.yaml, that config validates, and, where a
compose tool is installed, ``docker compose config`` accepts the file (no Docker engine is
needed for that; none runs on the development machines)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from edgeva.runtime.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _cluster(tmp_path: Path, monkeypatch):
    data = yaml.safe_load((DEPLOY / "cluster.yaml").read_text())
    for name in ("tls_cert", "tls_key"):  # the container paths, made real here
        (tmp_path / name).write_text("placeholder")
        data["security"][name] = str(tmp_path / name)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("EDGEVA_TOKEN", "test-token")
    return load_config(path), data


def test_every_node_has_a_service(tmp_path, monkeypatch):
    config, data = _cluster(tmp_path, monkeypatch)
    services = _compose()["services"]
    expected = {"cloud": ["cloud"]} | {e.name: ["edge", "--id", str(e.id)] for e in config.edges}
    expected |= {c.name: ["camera", "--id", str(c.id)] for c in config.cameras}
    for name, words in expected.items():
        command = services[name]["command"]
        assert command[0] == words[0] and "/config/cluster.yaml" in command, name
        if len(words) > 1:
            assert command[command.index("--id") + 1] == words[2], name
    assert {n for n in services if n.startswith(("edge-", "camera-"))} == set(expected) - {"cloud"}
    for node in [config.cloud, *config.edges]:  # nodes reach each other by service name
        assert node.host in services and node.listen == "0.0.0.0"
    assert config.database.url.split("@")[1].split(":")[0] in services  # postgres
    assert config.mqtt.host in services and config.mqtt.enabled and config.metrics.enabled
    assert f"{config.dashboard.port}:{config.dashboard.port}" in services["cloud"]["ports"]
    assert config.security.token_env == "EDGEVA_TOKEN" and data["security"]["tls_cert"]


def test_the_image_installs_edgeva_and_runs_it():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and "pip install ." in dockerfile and 'ENTRYPOINT ["edgeva"]' in dockerfile
    assert _compose()["x-edgeva"]["build"]["dockerfile"] == "Dockerfile"


def _compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_accepts_the_file(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (only needed to validate the file)")
    folder = tmp_path / "deploy"
    shutil.copytree(DEPLOY, folder)
    (folder / ".env").write_text("EDGEVA_TOKEN=test-token\n")
    (folder / "certs").mkdir(exist_ok=True)
    proc = subprocess.run([*command, "-f", str(folder / "compose.yaml"), "config", "--services"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "EDGEVA_ASSETS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert {"cloud", "edge-1", "edge-2", "camera-1", "postgres", "mosquitto"} <= set(proc.stdout.split())
