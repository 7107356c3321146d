"""Streaming schemes and the evaluation harness, on a short real clip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import frames_of
from edgeva.eval import EvalConfig, evaluate
from edgeva.eval.report import RECORD_FIELDS, write_outputs
from edgeva.models import create_detector
from edgeva.net import Link
from edgeva.schemes import SchemeContext, Server, create_scheme, list_schemes, scheme_class
from edgeva.schemes.base import ProfileClip
from edgeva.store.evaluation import list_eval_runs, load_eval_run, save_eval
from edgeva.video import EncoderSettings

CLIP = "store-aisle-detection"


PROFILE = "people-detection"  # Reducto profiles on another video than the one it streams


@pytest.fixture(scope="module")
def ctx():
    frames = frames_of(CLIP, 30)
    server = Server(create_detector("yolox-nano", score_threshold=0.1))
    profile = frames_of(PROFILE, 23)
    clips = [ProfileClip(PROFILE, profile, server.detector.detect(profile))]
    return SchemeContext(
        server=server, settings=EncoderSettings(fps=16.7),
        frame_size=frames[0].shape[:2], fps=16.7, camera_detector=lambda: create_detector("fastestdet", score_threshold=0.1),
        profile_clips=lambda: clips,
    )


def _replay(ctx, name, **config):
    frames = frames_of(CLIP, 30)
    scheme = create_scheme(name, ctx, **config)
    scheme.reset()
    return [scheme.process(frames[i : i + 10], i) for i in range(0, 30, 10)]


# Schemes that need a trained checkpoint are tested beside their training (accmpeg: tests/test_selector.py,
# crucio: tests/test_crucio.py).
@pytest.mark.parametrize("name", [n for n in list_schemes() if not scheme_class(n).checkpoints])
def test_every_scheme_returns_a_result_for_every_frame(ctx, name):
    outcomes = _replay(ctx, name)
    assert [o.first_frame for o in outcomes] == [0, 10, 20]
    assert all(len(o.detections) == o.frames == 10 for o in outcomes)
    assert all(r.nbytes >= 0 and r.camera_s >= 0 and r.server_s >= 0 for o in outcomes for r in o.rounds)
    assert sum(o.nbytes for o in outcomes) > 0


def test_eval_names_a_missing_checkpoint_before_any_work(tmp_path):
    from edgeva.errors import ConfigError

    with pytest.raises(ConfigError, match="scheme accmpeg needs --selector PATH"):
        evaluate(EvalConfig(videos=["no-such-video"], schemes=["uniform", "accmpeg"]))
    with pytest.raises(ConfigError, match="gone.pt: no such selector checkpoint"):
        evaluate(EvalConfig(videos=["no-such-video"], schemes=["accmpeg"], checkpoints={"selector": str(tmp_path / "gone.pt")}))


@pytest.mark.parametrize(("name", "config"), [("reducto-hindsight", {"threshold": 0.05}), ("reducto", {"target": 0.9})])
def test_reducto_sends_fewer_frames_and_reuses_results(ctx, name, config):
    outcomes = _replay(ctx, name, feature="pixel", **config)
    sent = sum(o.sent_frames for o in outcomes)
    assert 1 <= sent < 30
    detections = [d for o in outcomes for d in o.detections]
    assert len(detections) == 30  # a dropped frame keeps (reuses) a result
    assert sum(len(d) > 0 for d in detections) > sent


def test_dds_second_round_is_in_its_delay(ctx):
    from edgeva.eval.harness import summarize

    outcomes = _replay(ctx, "dds")
    assert any(len(o.rounds) == 2 for o in outcomes), "people in store-aisle must trigger feedback"
    reference = ctx.server.detector.detect(frames_of(CLIP, 30))
    link = Link()
    with_feedback = summarize(outcomes, reference, fps=ctx.fps, link=link)
    first_round_only = [type(o)(o.first_frame, o.frames, o.rounds[:1], o.detections, o.sent_frames) for o in outcomes]
    alone = summarize(first_round_only, reference, fps=ctx.fps, link=link)
    second = [o.rounds[1] for o in outcomes if len(o.rounds) == 2]
    extra = min(r.camera_s + r.nbytes / link.rate_bytes_per_s() for r in second) + link.one_way_s * 2
    assert with_feedback["delay_mean_s"] > alone["delay_mean_s"] + extra / len(outcomes) * 0.99


def test_uniform_accuracy_rises_with_quality(ctx):
    from edgeva.eval.harness import summarize

    reference = ctx.server.detector.detect(frames_of(CLIP, 30))
    f1 = {crf: summarize(_replay(ctx, "uniform", crf=crf), reference, fps=ctx.fps, link=Link())["f1"] for crf in (24, 36, 46)}
    assert f1[24] >= f1[36] > f1[46]
    low_fps = summarize(_replay(ctx, "uniform", crf=24, fps_divisor=3), reference, fps=ctx.fps, link=Link())
    assert low_fps["sent_frames"] == 10 and low_fps["frames"] == 30


def test_eval_writes_the_documented_shapes(tmp_path):
    cfg = EvalConfig(videos=["people-detection"], schemes=["uniform", "eaar"], frames=20, sweep=False, target_f1=0.5)
    result = evaluate(cfg, log=lambda _m: None)
    paths = write_outputs(result, tmp_path)
    payload = json.loads(paths["json"].read_text())
    assert set(payload) == {"records", "best"}
    assert len(payload["records"]) == 2 and {r["scheme"] for r in payload["records"]} == {"uniform", "eaar"}
    for record in payload["records"]:
        assert set(RECORD_FIELDS) <= set(record)
        assert record["frames"] == 20 and 0 <= record["f1"] <= 1 and record["bytes"] > 0 and record["delay_p95_s"] >= record["delay_mean_s"] * 0.5
    assert all("reaches_target" in b for b in payload["best"])
    assert paths["plot"].stat().st_size > 10_000 and "| video | scheme |" in paths["report"].read_text()
    assert paths["csv"].read_text().splitlines()[0].startswith("video,scheme,config,f1")
    db = tmp_path / "runs.db"
    run_id = save_eval(str(db), model="yolox-nano", selector=None, target_f1=0.5, settings={"videos": ["people-detection"], "schemes": ["uniform", "eaar"]}, records=result.records, best=result.best)
    assert list_eval_runs(str(db))[0]["records"] == 2
    settings, best = load_eval_run(str(db), run_id)
    assert settings["videos"] == ["people-detection"] and len(best) == 2
    again = evaluate(cfg, log=lambda _m: None)  # cached: same numbers
    assert [r["f1"] for r in again.records] == [r["f1"] for r in result.records]
    assert np.isclose(again.records[0]["delay_mean_s"], result.records[0]["delay_mean_s"])


def test_encoder_comparison_interpolates_uniform_between_crfs():
    from edgeva.eval.harness import EvalResult
    from edgeva.eval.report import encoder_comparison

    def rec(scheme, f1, kb, **config):
        return {"video": "v", "scheme": scheme, "f1": f1, "bytes": kb * 1000, "config": config}

    records = [
        rec("uniform", 0.80, 40, crf=38, scale=1.0, fps_divisor=1), rec("uniform", 0.96, 80, crf=34, scale=1.0, fps_divisor=1),
        rec("uniform", 0.99, 10, crf=34, scale=0.5, fps_divisor=1),  # not full rate: ignored
        rec("accmpeg", 0.88, 45, alpha=0.5, fps_divisor=1), rec("accmpeg", 0.85, 50, alpha=0.2, fps_divisor=1),  # dominated
        rec("accmpeg", 0.99, 5, alpha=0.2, fps_divisor=3),  # not full rate: ignored
    ]
    rows = encoder_comparison(EvalResult(records, [], EvalConfig(videos=[], schemes=[]), 0.0))
    assert len(rows) == 1 and rows[0]["uniform"]["config"]["crf"] == 34
    assert rows[0]["uniform_bytes_at_f1"] == pytest.approx(60_000)  # halfway between 40 and 80 KB
    assert rows[0]["bytes_saving_pct"] == pytest.approx(25.0)


def test_versus_uniform_reads_both_frontiers_at_equal_bytes_and_equal_f1():
    from edgeva.eval.goals import f1_at_bytes, versus_uniform
    from edgeva.eval.harness import EvalResult

    def rec(scheme, f1, kb, **config):
        return {"video": "v", "scheme": scheme, "f1": f1, "bytes": kb * 1000, "config": config}

    uniform = [rec("uniform", 0.60, 20, crf=42, scale=1.0, fps_divisor=1), rec("uniform", 0.95, 60, crf=34, scale=1.0, fps_divisor=1),
               rec("uniform", 0.99, 5, crf=34, scale=0.5, fps_divisor=1)]  # not full rate: ignored
    assert f1_at_bytes(uniform[:2], 10_000) is None  # cheaper than any configuration
    assert f1_at_bytes(uniform[:2], 90_000) == pytest.approx(0.95)  # beyond the frontier: its best
    records = [*uniform, rec("neuromesh", 0.70, 30, mask_ratio=0.7, crf=30), rec("neuromesh", 0.92, 40, mask_ratio=0.5, crf=30)]
    [row] = versus_uniform(EvalResult(records, [], EvalConfig(videos=[], schemes=[], target_f1=0.9), 0.0), "neuromesh")
    assert row["point"]["config"]["mask_ratio"] == 0.5  # the cheapest reaching the target
    assert row["uniform_f1"] == pytest.approx(0.60 + 0.35 * 20 / 40)  # uniform with 40 KB: halfway up its 20 -> 60 KB segment
    assert row["at_f1"]["f1"] == pytest.approx(0.9)
    assert row["at_f1"]["uniform_bytes"] == pytest.approx(20_000 + 40_000 * 0.30 / 0.35)
    assert row["at_f1"]["bytes"] == pytest.approx(30_000 + 10_000 * 0.20 / 0.22)
    assert row["at_f1"]["saving_pct"] > 0


def test_eval_replays_the_configurations_given_instead_of_the_sweep():
    from edgeva.errors import ConfigError

    given = [{"crf": 30, "scale": 1.0, "fps_divisor": 1}, {"crf": 42, "scale": 0.5, "fps_divisor": 2}]
    cfg = EvalConfig(videos=["people-detection"], schemes=["uniform"], frames=10, configs={"uniform": given})
    result = evaluate(cfg, log=lambda _m: None)
    assert [r["config"] for r in result.records] == given
    assert result.records[0]["bytes"] > result.records[1]["bytes"]
    with pytest.raises(ConfigError, match="configurations given for eaar"):
        evaluate(EvalConfig(videos=["people-detection"], schemes=["uniform"], frames=10, configs={"eaar": [{}]}), log=lambda _m: None)
