"""The command line as a user meets it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

EDGEVA = [sys.executable, "-m", "edgeva.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*EDGEVA, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgeva {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_info_json_lists_codecs_models_and_videos():
    payload = json.loads(run("info", "--json").stdout)
    assert {"h264", "hevc", "vp9"} <= set(payload["roi_codecs"])
    assert payload["models"] == {"fastestdet": True, "yolox-nano": True}
    assert "store-aisle-detection" in payload["videos"]


def test_detect_writes_the_json_contract(tmp_path):
    out = tmp_path / "dets.json"
    run("detect", "people-detection", "--model", "yolox-nano", "--frames", "3", "--json", str(out), "--annotate", str(tmp_path / "a.mp4"))
    records = json.loads(out.read_text())
    assert [r["frame"] for r in records] == [0, 1, 2]
    det = records[2]["detections"][0]
    assert set(det) == {"box", "score", "class_id", "label"} and len(det["box"]) == 4
    assert (tmp_path / "a.mp4").stat().st_size > 0


def test_encode_stats_with_roi(tmp_path):
    stats_path = tmp_path / "s.json"
    run("encode", "store-aisle-detection", "--out", str(tmp_path / "o.mp4"), "--roi", "0,0,240,270", "--frames", "20", "--json", str(stats_path))
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == 20 and stats["bytes"] > 0 and stats["kbps"] > 0 and stats["encode_fps"] > 0
    assert stats["roi_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args,names",
    [
        (["detect", "/nonexistent/clip.mp4"], "/nonexistent/clip.mp4"),
        (["detect", "RANDOM"], "random.mp4"),
        (["detect", "people-detection", "--model", "nope"], "nope"),
        (["encode", "people-detection", "--out", "OUT", "--roi", "1,2,x"], "1,2,x"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, names):
    junk = tmp_path / "random.mp4"
    junk.write_bytes(os.urandom(5000))
    args = [str(junk) if a == "RANDOM" else str(tmp_path / "o.mp4") if a == "OUT" else a for a in args]
    proc = run(*args, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "━" not in line]
    assert len(lines) == 1, proc.stderr
    assert names in lines[0] and "Traceback" not in proc.stderr


def test_the_demo_reuses_a_checkpoint_trained_the_same_way_and_retrains_otherwise(tmp_path):
    import json as _json

    from edgeva.cli.app import reuse_or_train
    from edgeva.errors import ModelError

    path, trained = tmp_path / "model.json", []

    def train(_on_stage):
        trained.append(1)
        return {"videos": ["a.mp4"], "steps": len(trained)}

    def save(obj, p):
        p.write_text(_json.dumps(obj))

    def trained_with(p):
        try:
            obj = _json.loads(p.read_text())
        except ValueError as e:
            raise ModelError(f"{p}: damaged") from e
        return (obj["videos"], 300)

    def get(wanted, retrain=False):
        return reuse_or_train(path, "test model", wanted=wanted, trained_with=trained_with, train=train, save=save, retrain=retrain)

    assert get((["a.mp4"], 300)) == path and len(trained) == 1
    get((["a.mp4"], 300))
    assert len(trained) == 1  # same inputs: reused
    get((["a.mp4"], 500))
    assert len(trained) == 2  # another setting: trained again
    get((["a.mp4"], 300), retrain=True)
    assert len(trained) == 3
    path.write_text("{not json")
    get((["a.mp4"], 300))
    assert len(trained) == 4 and _json.loads(path.read_text())["steps"] == 4  # a damaged cache is replaced
