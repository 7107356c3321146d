"""Mainstream end to end on real clips: train a tiny apps folder through the CLI, then run,
evaluate, plug it into an edge node, and feed it bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeva.errors import ModelError
from edgeva.mainstream.apps import load_apps
from edgeva.mainstream.base import load_base
from edgeva.mainstream.runner import AdaptiveRunner, SharedRunner
from edgeva.mainstream.scheduler import Choice
from edgeva.mainstream.train import load_stream

VIDEOS = ["bottle-detection", "fruit-and-vegetable-detection"]
APPS = "bottle>=3,orange>=1"
FRAMES, FPS = 40, 5


def edgeva(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeva.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=600)


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeva: error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("apps") / "apps"
    proc = edgeva("apps", "train", "--videos", ",".join(VIDEOS), "--apps", APPS, "--out", str(out),
                  "--fps", str(FPS), "--frames", str(FRAMES), "--epochs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_train_writes_a_valid_folder(folder: Path) -> None:
    apps = load_apps(folder)
    assert apps.names == ["bottle>=3", "orange>=1"]
    assert apps.freeze_points == [1, 2, 3, 4, 5, 6]
    assert len(apps.layer_latencies) == 7 and all(v > 0 for v in apps.layer_latencies)
    for profile in apps.profiles():
        assert all(0 <= v <= 1 for v in [*profile.recall.values(), *profile.false_positive.values()])
        assert profile.stats.event_length_s > 0 and 0 < profile.stats.event_frequency < 1
    held = apps.heldout()
    assert held["scores"].shape == (2, 6, held["labels"].shape[1])
    assert held["labels"][0].any() and held["labels"][1].any()  # both apps have held-out events


def test_runner_reproduces_the_trained_scores(folder: Path) -> None:
    """The runner, sharing the prefix, gives each app the scores its branch gave alone in training."""
    torch.set_num_threads(1)
    apps = load_apps(folder)
    stream = load_stream(VIDEOS, FPS, limit=FRAMES)  # labels cached by training
    held = ~stream.split(apps.manifest["train_fraction"])
    images = stream.images[held][:12]
    base = load_base()
    for freeze in (2, 5):
        branches = [apps.load_branch(a, freeze, base) for a in range(2)]
        runner = SharedRunner(base, branches, [FPS, FPS], FPS)
        got = np.array([[runner.step(im, i)[a] for a in range(2)] for i, im in enumerate(images)]).T
        want = apps.heldout()["scores"][:, apps.freeze_points.index(freeze), :12]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_eval_writes_tables(folder: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "eval"
    cheapest = load_apps(folder).problem().cost([Choice(6, 1.0)] * 2)  # latencies are measured, so budgets are relative
    budgets = [round(cheapest * f, 3) for f in (0.5, 2, 8)]
    proc = edgeva("apps", "eval", "--apps", str(folder), "--budgets", ",".join(map(str, budgets)), "--app-counts", "2",
                  "--out", str(prefix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(prefix.with_suffix(".json").read_text())
    assert prefix.with_suffix(".png").stat().st_size > 0
    rows = {(r["budget"], r["scheduler"]): r for r in result["budgets"]}
    assert len(rows) == 12  # 3 budgets x mainstream, f1-per-cost, nosharing, maxsharing
    for (budget, _), row in rows.items():
        if "infeasible" not in row:
            assert row["cost"] <= budget + 1e-6
            assert 0 <= row["measured_f1"] <= 1
    assert all("infeasible" not in r for (b, _), r in rows.items() if b == budgets[2])
    assert "below the cheapest" in rows[(budgets[0], "mainstream")]["infeasible"]
    assert [r["apps_count"] for r in result["app_counts"]] == [2, 2, 2, 2]
    # on a whole other video: labelled and scored there, p and q still from training
    proc = edgeva("apps", "eval", "--apps", str(folder), "--budgets", str(budgets[2]), "--videos", "store-aisle-detection",
                  "--app-counts", "2", "--out", str(prefix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    other = json.loads(prefix.with_suffix(".json").read_text())
    assert other["measured_on"] == "store-aisle-detection"
    assert all(0 <= r["measured_f1"] <= 1 and r["measured_cost"] > 0 for r in other["budgets"])


def test_run_command_and_feedback(folder: Path, tmp_path: Path) -> None:
    stats = tmp_path / "run.json"
    budget = load_apps(folder).problem().cost([Choice(6, 1.0)] * 2) * 3
    proc = edgeva("apps", "run", "fruit-and-vegetable-detection", "--apps", str(folder), "--budget", str(budget),
                  "--json", str(stats))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(stats.read_text())
    assert run["measured_cost"] > 0 and len(run["achieved_fps"]) == 2
    # A cost model 50x too pessimistic: the measured cost is far below the budget, so the
    # runner re-schedules with a larger scheduler budget (Mainstream's feedback loop).
    skewed = tmp_path / "skewed"
    shutil.copytree(folder, skewed)
    manifest = json.loads((skewed / "manifest.json").read_text())
    manifest["base"]["layer_latencies_ms"] = [50 * v for v in manifest["base"]["layer_latencies_ms"]]
    (skewed / "manifest.json").write_text(json.dumps(manifest))
    apps = load_apps(skewed)
    budget = apps.problem().cost([Choice(6, 1.0)] * 2) * 1.5
    runner = AdaptiveRunner(apps, budget)
    stream = load_stream(VIDEOS, FPS, limit=FRAMES)
    for image in stream.images[: runner.window_frames * 2]:
        runner.step(image)
    assert [w["rescheduled"] for w in runner.history] == [False, True]  # the first window is warm-up
    assert runner.schedule_budget > budget


def test_apps_worker_in_an_edge_node(folder: Path) -> None:
    from edgeva.models.detections import Detections
    from edgeva.runtime.config import EdgeConfig
    from edgeva.runtime.worker import create_worker

    budget = load_apps(folder).problem().cost([Choice(6, 1.0)] * 2) * 3
    node = EdgeConfig(id=1, worker="apps", apps_dir=folder, apps_budget_ms=budget)
    worker = create_worker("apps", node, 0.3)
    stream = load_stream(VIDEOS, FPS, limit=FRAMES)
    out = worker.infer(list(stream.images[:3]))
    assert len(out) == 3 and all(isinstance(d, Detections) for d in out)
    assert all(set(d.names) == {"bottle>=3", "orange>=1"} for d in out)
    with pytest.raises(ValueError, match="apps_dir"):
        EdgeConfig(id=1, worker="apps")


def test_bad_input_gives_one_line(folder: Path, tmp_path: Path) -> None:
    one_line_error(edgeva("apps", "train", "--videos", "bottle-detection", "--apps", "persn>=1", "--out", str(tmp_path / "x")),
                   "unknown COCO class 'persn'")
    one_line_error(edgeva("apps", "run", "store-aisle-detection", "--apps", str(folder), "--budget", "0.01"),
                   "below the cheapest")
    one_line_error(edgeva("apps", "train", "--videos", "people-detection", "--apps", "car>=5", "--out", str(tmp_path / "y")),
                   "car>=5: no event")
    one_line_error(edgeva("apps", "run", "nosuch.mp4", "--apps", str(folder), "--budget", "10"), "nosuch.mp4")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    next((broken / "weights").rglob("freeze-3.pt")).unlink()
    one_line_error(edgeva("apps", "eval", "--apps", str(broken), "--budgets", "10"), "corrupt apps folder", "freeze-3.pt")
    (broken / "manifest.json").write_text("{not json")
    one_line_error(edgeva("apps", "run", "store-aisle-detection", "--apps", str(broken), "--budget", "10"), "corrupt manifest")
    one_line_error(edgeva("apps", "eval", "--apps", str(tmp_path / "nowhere"), "--budgets", "10"), "no such apps folder")
    with pytest.raises(ModelError):
        load_apps(broken)
