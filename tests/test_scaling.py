"""Scaling the evaluation out (issue 14): executors, a cache safe under concurrency, devices.

One local Ray runtime serves the whole module (its start-up is the slow part); the videos
are two sample clips cut to a few frames and the schemes are the cheap ones.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeva.device import gpus_for, resolve_device
from edgeva.errors import CodecError, ConfigError
from edgeva.eval.cache import cache_file, load_entry, outcomes_from_json, store_entry
from edgeva.eval.harness import EvalConfig, _check_checkpoints, evaluate
from edgeva.eval.worker import EvalWorker
from edgeva.executor import (
    SerialExecutor,
    TaskFailure,
    check_ray_address,
    create_executor,
    init_ray,
)

ray = pytest.importorskip("ray")

VIDEOS = ["people-detection", "bottle-detection"]
SCHEMES = ["uniform", "eaar"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """One Ray runtime for the module; workers inherit this process's environment (its cache)."""
    cache = tmp_path_factory.mktemp("ray-cache")
    previous = os.environ.get("EDGEVA_CACHE")
    os.environ["EDGEVA_CACHE"] = str(cache)
    init_ray({"num_cpus": 2, "include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"})
    yield cache
    ray.shutdown()
    if previous is None:
        os.environ.pop("EDGEVA_CACHE", None)
    else:
        os.environ["EDGEVA_CACHE"] = previous


# -- cache ----------------------------------------------------------------------------------
def _write_many(path: str, value: int, rounds: int) -> None:
    payload = {"value": value, "pad": [value] * 20000}
    for _ in range(rounds):
        store_entry(Path(path), payload)


def test_two_writers_of_one_key_never_publish_a_partial_entry(tmp_path):
    path = tmp_path / "eval" / "replay" / "k.json"
    ctx = multiprocessing.get_context("fork")  # the writers only write JSON: no re-import of torch
    writers = [ctx.Process(target=_write_many, args=(str(path), v, 40)) for v in (1, 2)]
    for w in writers:
        w.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        entry = load_entry(path)
        if entry is not None:  # every entry read is whole: one writer's payload, never a mix
            assert entry["pad"] == [entry["value"]] * 20000
            seen.add(entry["value"])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    final = load_entry(path)
    assert final is not None and final["value"] in (1, 2) and seen <= {1, 2}
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # no temporary file left behind


def test_a_truncated_or_foreign_entry_is_a_miss_not_a_result(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVA_CACHE", str(tmp_path))
    path = cache_file("replay", {"video": "v", "scheme": "uniform"})
    chunk = {"first_frame": 0, "frames": 1, "sent_frames": 1, "high_fraction": 0.0, "rounds": [[0.1, 100, 0.2]],
             "detections": [[{"box": [0, 0, 1, 1], "score": 0.9, "class_id": 0}]]}
    store_entry(path, {"chunks": [chunk]})
    whole = path.read_text()
    assert outcomes_from_json(load_entry(path))[0].nbytes == 100
    for cut in (1, len(whole) // 2, len(whole) - 1):  # a writer killed mid-write (without the rename)
        path.write_text(whole[:cut])
        assert load_entry(path) is None
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert load_entry(path) is None
    path.write_text(json.dumps({"chunks": [{"frames": 1}]}))  # whole JSON, not a replay
    assert outcomes_from_json(load_entry(path)) is None
    path.write_text("[1, 2]")
    assert load_entry(path) is None


def test_the_harness_recomputes_a_damaged_replay(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVA_CACHE", str(tmp_path))
    cfg = EvalConfig(videos=["people-detection"], schemes=["uniform"], frames=5, sweep=False)
    first = evaluate(cfg, log=lambda _m: None).records
    replays = list((tmp_path / "eval" / "replay").glob("*.json"))
    assert len(replays) == 1
    replays[0].write_text(replays[0].read_text()[:-40])  # truncated
    again = evaluate(cfg, log=lambda _m: None).records
    assert [(r["bytes"], r["f1"]) for r in again] == [(r["bytes"], r["f1"]) for r in first]
    assert load_entry(replays[0]) is not None  # rewritten whole


# -- devices --------------------------------------------------------------------------------
def test_device_selection():
    assert resolve_device("auto", cuda_count=0) == "cpu"
    assert resolve_device("auto", cuda_count=2) == "cuda:0"
    assert resolve_device("CPU", cuda_count=2) == "cpu"
    assert resolve_device("cuda", cuda_count=1) == "cuda:0"
    assert resolve_device("cuda:1", cuda_count=2) == "cuda:1"
    with pytest.raises(ConfigError, match="cuda:2.*sees 2 CUDA"):
        resolve_device("cuda:2", cuda_count=2)
    with pytest.raises(ConfigError, match="--device 'cuda'.*|--device cuda: torch sees no CUDA"):
        resolve_device("cuda", cuda_count=0)
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    assert resolve_device("auto") in ("cpu", "cuda:0")  # what this machine's torch sees
    assert gpus_for("cuda:1") == 1.0 and gpus_for("cpu") == 0.0


def test_the_cpu_device_runs_the_models(tmp_path, monkeypatch):
    from edgeva.models import create_detector
    from edgeva.video import read_frames

    frames = read_frames(str(Path(os.environ["EDGEVA_ASSETS"]) / "videos" / "people-detection.mp4"), 2)
    auto = create_detector("yolox-nano", device=resolve_device("auto", cuda_count=0))
    plain = create_detector("yolox-nano")
    assert str(auto.device) == "cpu"
    a, b = auto.detect(frames), plain.detect(frames)
    assert [len(d) for d in a] == [len(d) for d in b] and all((x.boxes == y.boxes).all() for x, y in zip(a, b))


def test_bad_device_and_executor_options_are_one_line():
    from edgeva.cli.evaluation import build_executor

    for options, message in (({"name": "serial", "device": "tpu"}, "--device 'tpu'"), ({"name": "dask"}, "--executor 'dask'"),
                             ({"name": "serial", "address": "127.0.0.1:1"}, "needs --executor ray"), ({"name": "ray", "workers": 0}, "--workers 0")):
        with pytest.raises(ConfigError, match=message):
            build_executor(**({"address": None, "workers": None, "device": "cpu"} | options))
    executor, device = build_executor("ray", address=None, workers=2, device="cuda:1")  # checked where the workers run
    assert device == "cuda" and executor.gpus_per_worker == 1.0 and executor.workers == 2


# -- executors ------------------------------------------------------------------------------
def test_an_unreachable_ray_address_is_one_line_and_quick():
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: no Ray cluster reachable there"):
        check_ray_address(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        check_ray_address("nowhere")
    proc = subprocess.run([sys.executable, "-m", "edgeva.cli", "eval", "--videos", "people-detection", "--out", "/tmp/x",
                           "--executor", "ray", "--ray-address", f"ray://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"edgeva: error: --ray-address ray://127.0.0.1:{port}: no Ray cluster reachable there (Connection refused)")
    assert time.monotonic() - start < 110  # not Ray's minute of retries (timeout above is the hang guard)


def _worker_calls(pool, cfg):
    """A reference task, then replays: one good, one failing (CRF 99), one good."""
    [video] = pool.map("reference", [("people-detection",)])
    handle = pool.share(video)
    return video, pool.map("replay", [(handle, "uniform", {"crf": 30}), (handle, "uniform", {"crf": 99}), (handle, "eaar", {})],
                           on_done=lambda i, r: done.append(i))


done: list[int] = []


@pytest.mark.parametrize("name", ["serial", "ray"])
def test_a_failing_task_is_recorded_and_the_others_go_on(name, request):
    if name == "ray":
        request.getfixturevalue("local_ray")
    cfg = EvalConfig(videos=["people-detection"], schemes=["uniform", "eaar"], frames=6, sweep=False, use_cache=False)
    done.clear()
    with create_executor(name, workers=2) as executor:
        pool = executor.pool(EvalWorker, cfg, _check_checkpoints(cfg, print))
        video, results = _worker_calls(pool, cfg)
    assert video.frames == 6 and video.plan == [("uniform", {}), ("eaar", {})] and sorted(done) == [0, 1, 2]
    good, bad, other = results
    assert good["bytes"] > 0 and other["bytes"] > 0
    assert isinstance(bad, TaskFailure) and bad.index == 1 and isinstance(bad.exception, CodecError)
    assert bad.error == "crf=99: out of range for h264 (0..51)"


def test_serial_and_ray_write_identical_results(local_ray, tmp_path):
    cfg = EvalConfig(videos=VIDEOS, schemes=SCHEMES, frames=10, sweep=False, use_cache=False)
    serial = evaluate(cfg, log=lambda _m: None, executor=SerialExecutor())
    steps: list[str] = []

    def progress(description: str, total: int):
        return lambda: steps.append(description)

    parallel = evaluate(cfg, log=lambda _m: None, executor=create_executor("ray", workers=2), on_progress=progress)
    keys = ("video", "scheme", "config", "bytes", "f1", "precision", "recall", "sent_frames", "frames")
    rows = [[{k: r[k] for k in keys} for r in result.records] for result in (serial, parallel)]
    assert len(rows[0]) == 4 and rows[0] == rows[1]
    assert [(b["video"], b["scheme"], b["bytes"]) for b in serial.best] == [(b["video"], b["scheme"], b["bytes"]) for b in parallel.best]
    assert sorted(steps) == sorted(["people-detection (10 frames)"] * 2 + ["bottle-detection (10 frames)"] * 2)
    assert serial.failures == parallel.failures == []


def test_a_worker_killed_mid_task_fails_only_that_task(local_ray, monkeypatch):
    """A Ray worker process that dies mid-task (here inside the cache write, after the data and
    before the rename: as an OOM kill would) fails that task alone: the task queued behind it
    on the same actor runs on the restarted actor, the other worker's tasks go on, the failure
    is recorded against (video, scheme, config), and the cache holds no entry for it."""

    class DiesInCacheWrite(EvalWorker):  # defined here: Ray ships it to the workers by value
        def replay(self, video, name, config):
            if (video.name, name) == ("people-detection", "uniform"):
                os.fsync = lambda fd: os._exit(1)  # the worker process exits inside store_entry
            return super().replay(video, name, config)

    monkeypatch.setattr("edgeva.eval.harness.EvalWorker", DiesInCacheWrite)
    cfg = EvalConfig(videos=VIDEOS, schemes=SCHEMES, frames=7, sweep=False)  # 7: keys no other test writes
    lines: list[str] = []
    result = evaluate(cfg, log=lines.append, executor=create_executor("ray", workers=2))
    assert [(f["video"], f["scheme"], f["config"]) for f in result.failures] == [("people-detection", "uniform", {"default": True})], result.failures
    assert "worker process died" in result.failures[0]["error"]
    assert [line.split(": ")[1] for line in lines] == ["people-detection / uniform / default"]
    assert [(r["video"], r["scheme"]) for r in result.records] == [
        ("people-detection", "eaar"), ("bottle-detection", "uniform"), ("bottle-detection", "eaar")]
    assert all(r["bytes"] > 0 and r["frames"] == 7 for r in result.records)
    probe = EvalWorker(cfg, _check_checkpoints(cfg, print))
    for spec in VIDEOS:
        video = probe.reference(spec)
        for name, config in video.plan:
            path = cache_file("replay", probe.replay_key(video, name, config))
            if (video.name, name) == ("people-detection", "uniform"):
                assert not path.exists() and list(path.parent.glob(f".{path.stem}.*.tmp"))  # died mid-write: never published
            else:
                assert outcomes_from_json(load_entry(path)) is not None


# -- AccGrad generation ---------------------------------------------------------------------
def test_accgrad_task_groups_are_whole_chunks_ending_on_a_batch():
    from edgeva.accmpeg.parallel import task_groups

    indices = list(range(0, 60, 3))  # 20 frames, 2 per chunk of 10 but for the chunks with 3 or 4
    groups = task_groups(indices, chunk=10, batch_size=2, tasks=4)
    assert [i for g in groups for i in g] == indices and 2 <= len(groups) <= 4
    for g in groups[:-1]:
        assert len(g) % 2 == 0
    for a, b in zip(groups, groups[1:]):
        assert a[-1] // 10 != b[0] // 10  # a chunk is never split between two tasks
    assert task_groups([], chunk=10, batch_size=2, tasks=3) == []
    assert task_groups([5, 1, 5], chunk=10, batch_size=2, tasks=3) == [[1, 5]]


def test_accgrad_on_ray_equals_the_serial_maps(local_ray, tmp_path, monkeypatch):
    from edgeva import assets
    from edgeva.accmpeg.accgrad import compute_accgrad
    from edgeva.accmpeg.parallel import AccGradWorker, task_groups
    from edgeva.models import create_detector

    video = assets.resolve_video("people-detection")
    indices = [0, 4, 12, 16]
    groups = task_groups(indices, chunk=10, batch_size=2, tasks=2)
    assert groups == [[0, 4], [12, 16]]
    with create_executor("ray", workers=2) as executor, executor.pool(AccGradWorker, "yolox-nano", 2) as pool:
        parts = pool.map("maps", [(video, g, 40, 2) for g in groups])  # workers fill the module's cache
    monkeypatch.setenv("EDGEVA_CACHE", str(tmp_path))  # the serial maps from scratch, elsewhere
    import torch

    torch.set_num_threads(2)
    serial = compute_accgrad(video, create_detector("yolox-nano"), indices, batch_size=2, use_cache=False)
    parallel = {i: m for part in parts for i, m in part.items()}
    assert sorted(parallel) == indices
    assert all(np.array_equal(parallel[i], serial[i]) for i in indices)


def test_a_local_ray_that_does_not_come_up_is_started_once_more(monkeypatch):
    import edgeva.executor as executor

    class FakeRay:
        def __init__(self, failures):
            self.failures, self.inits, self.shutdowns = failures, 0, 0

        def init(self, **_options):
            self.inits += 1
            if self.inits <= self.failures:
                raise Exception("The current node timed out during startup.")

        def shutdown(self):
            self.shutdowns += 1

    once = FakeRay(failures=1)
    monkeypatch.setattr(executor, "_ray", lambda: once)
    init_ray({"num_cpus": 2})
    assert (once.inits, once.shutdowns) == (2, 1)
    always = FakeRay(failures=5)
    monkeypatch.setattr(executor, "_ray", lambda: always)
    with pytest.raises(Exception, match="timed out"):
        init_ray({"num_cpus": 2})
    assert always.inits == 2  # once more, not forever
    remote = FakeRay(failures=1)
    monkeypatch.setattr(executor, "_ray", lambda: remote)
    with pytest.raises(Exception, match="timed out"):
        init_ray({"address": "10.0.0.1:6379"})
    assert remote.inits == 1  # a cluster that is not there is not retried
