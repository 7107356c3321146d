"""AccMPEG's goals measured on an evaluation: who needs the fewest bytes at the target F1,
learned selector vs oracle vs uniform quality at equal F1, and the reasons where it loses.

Two goals (issue 10): AccMPEG (any configuration, all costs counted) needs the fewest bytes of
all deployable schemes at the target F1 on at least 3 of 4 videos; and encoder against encoder
(full resolution and frame rate, uniform CRF interpolated to the same F1) it needs at least
35% fewer bytes than uniform quality on average. Bounds (the oracle, Reducto in hindsight) are
reported beside the schemes, never counted as baselines.
"""

from __future__ import annotations

from edgeva.errors import ConfigError
from edgeva.eval.harness import EvalResult
from edgeva.schemes import scheme_class

__all__ = ["bytes_at_f1", "f1_at_bytes", "full_rate", "is_bound", "fewest_bytes", "equal_f1", "equal_bytes", "versus_uniform", "encoder_saving", "goals", "reasons",
           "GOAL_WIN_SHARE", "GOAL_ENCODER_SAVING_PCT", "ORACLE"]

ORACLE = "accmpeg-oracle"
GOAL_WIN_SHARE = 0.75  # of the videos (3 of 4)
GOAL_ENCODER_SAVING_PCT = 35.0


def is_bound(scheme: str) -> bool:
    try:
        return scheme_class(scheme).bound
    except ConfigError:
        return False


def full_rate(record: dict) -> bool:
    """Every frame sent, at full resolution (what the encoder comparison compares)."""
    c = record["config"]
    return c.get("fps_divisor", 1) == 1 and c.get("scale", 1.0) == 1.0 and not c.get("filter_feature")


def _frontier(records: list[dict]) -> list[tuple[float, float]]:
    """(bytes, F1) of the configurations no cheaper one matches in F1, cheapest first."""
    frontier, best = [], -1.0
    for r in sorted(records, key=lambda r: (r["bytes"], -r["f1"])):
        if r["f1"] > best:
            frontier.append((r["bytes"], r["f1"]))
            best = r["f1"]
    return frontier


def bytes_at_f1(records: list[dict], f1: float) -> float | None:
    """Bytes a scheme's bytes/F1 frontier needs for ``f1``: linear between the two frontier
    points that bracket it (configuration grids are coarse), or None if it never reaches it."""
    frontier = _frontier(records)
    for (b0, f0), (b1, f1_) in zip([(0.0, -1.0), *frontier], frontier, strict=False):
        if f1_ >= f1:
            return b1 if f0 < 0 else b0 + (b1 - b0) * (f1 - f0) / (f1_ - f0)
    return None


def f1_at_bytes(records: list[dict], nbytes: float) -> float | None:
    """F1 a scheme's frontier reaches with ``nbytes``: linear between the two frontier points
    that bracket it, its best F1 beyond the last, None below its cheapest configuration."""
    frontier = _frontier(records)
    if not frontier or nbytes < frontier[0][0]:
        return None
    for (b0, f0), (b1, f1_) in zip(frontier, frontier[1:], strict=False):
        if b0 <= nbytes < b1:
            return f0 + (f1_ - f0) * (nbytes - b0) / (b1 - b0)
    return frontier[-1][1]


def _videos(result: EvalResult) -> list[str]:
    return list(dict.fromkeys(r["video"] for r in result.records))


def fewest_bytes(result: EvalResult, scheme: str = "accmpeg") -> list[dict]:
    """Per video: ``scheme``'s cheapest configuration at the target against the cheapest
    deployable other scheme there (and the oracle's, for reference)."""
    rows = []
    for video in _videos(result):
        best = {b["scheme"]: b for b in result.best if b["video"] == video}
        ours = best.get(scheme)
        rivals = [b for name, b in best.items() if name != scheme and not is_bound(name) and b["reaches_target"]]
        rival = min(rivals, key=lambda b: (b["bytes"], b["delay_mean_s"])) if rivals else None
        oracle = best.get(ORACLE)
        wins = bool(ours and ours["reaches_target"] and (rival is None or ours["bytes"] < rival["bytes"]))
        saving = 100 * (1 - ours["bytes"] / rival["bytes"]) if ours and ours["reaches_target"] and rival else None
        rows.append({"video": video, "ours": ours, "rival": rival, "oracle": oracle, "wins": wins, "bytes_saving_pct": saving})
    return rows


def _curve(result: EvalResult, video: str, scheme: str) -> list[dict]:
    return [r for r in result.records if r["video"] == video and r["scheme"] == scheme and full_rate(r)]


def equal_f1(result: EvalResult, schemes: tuple[str, ...] = ("accmpeg", ORACLE)) -> list[dict]:
    """Per video, full resolution and frame rate: bytes of uniform quality and of each of
    ``schemes`` at one F1 (the target where all reach it, else the highest all reach)."""
    rows = []
    for video in _videos(result):
        curves = {name: _curve(result, video, name) for name in ("uniform", *schemes)}
        curves = {name: c for name, c in curves.items() if c}
        if "uniform" not in curves or len(curves) < 2:
            continue
        level = min(result.config.target_f1, *(max(r["f1"] for r in c) for c in curves.values()))
        if level <= 0:
            continue  # some curve never detects anything: no F1 to compare at
        kb = {name: bytes_at_f1(c, level) for name, c in curves.items()}
        saving = {name: 100 * (1 - kb[name] / kb["uniform"]) for name in curves if name != "uniform" and kb[name] and kb["uniform"]}
        rows.append({"video": video, "f1": level, "bytes": kb, "saving_pct": saving})
    return rows


def _operating_point(records: list[dict], target_f1: float) -> dict:
    """The cheapest configuration reaching ``target_f1``, else the most accurate one."""
    reaching = [r for r in records if r["f1"] >= target_f1]
    return min(reaching, key=lambda r: r["bytes"]) if reaching else max(records, key=lambda r: (r["f1"], -r["bytes"]))


def _points(result: EvalResult, scheme: str):
    """Per video with both curves at full rate: (video, ``scheme``'s operating point, uniform's curve)."""
    for video in _videos(result):
        ours, uniform = _curve(result, video, scheme), _curve(result, video, "uniform")
        if ours and uniform:
            yield video, _operating_point(ours, result.config.target_f1), uniform


def equal_bytes(result: EvalResult, scheme: str) -> list[dict]:
    """Per video, full resolution and frame rate: uniform quality's F1 with the bytes of
    ``scheme``'s cheapest configuration reaching the target (else its most accurate one)."""
    return [{"video": video, "point": point, "bytes": point["bytes"], "f1": point["f1"], "uniform_f1": f1_at_bytes(uniform, point["bytes"])}
            for video, point, uniform in _points(result, scheme)]


def versus_uniform(result: EvalResult, scheme: str) -> list[dict]:
    """Per video, full resolution and frame rate: :func:`equal_bytes`' row plus, under
    ``at_f1``, the F1 and the bytes of uniform and of ``scheme`` there and the saving
    (None where the two curves share no F1 above 0)."""
    same_f1 = {row["video"]: row for row in equal_f1(result, (scheme,))}
    rows = []
    for row in equal_bytes(result, scheme):
        f = same_f1.get(row["video"])
        at_f1 = ({"f1": f["f1"], "uniform_bytes": f["bytes"]["uniform"], "bytes": f["bytes"][scheme], "saving_pct": f["saving_pct"][scheme]}
                 if f and scheme in f["saving_pct"] else None)
        rows.append({**row, "at_f1": at_f1})
    return rows


def encoder_saving(result: EvalResult, scheme: str = "accmpeg") -> list[dict]:
    """Per video: ``scheme``'s cheapest full-rate configuration reaching the target (else its most
    accurate) against uniform CRF interpolated to the same F1 (the 35% goal's points)."""
    rows = []
    for video, point, uniform in _points(result, scheme):
        matched = bytes_at_f1(uniform, point["f1"])
        saving = 100 * (1 - point["bytes"] / matched) if matched else None
        rows.append({"video": video, "point": point, "uniform_bytes": matched, "saving_pct": saving})
    return rows


def goals(result: EvalResult) -> dict:
    """Both goals, measured: videos won on bytes, and the mean encoder-against-encoder saving."""
    wins = fewest_bytes(result)
    savings = [r["saving_pct"] for r in encoder_saving(result) if r["saving_pct"] is not None]
    won = sum(r["wins"] for r in wins)
    mean = sum(savings) / len(savings) if savings else None
    return {
        "videos_won": won, "videos": len(wins), "fewest_bytes_met": bool(wins) and won >= GOAL_WIN_SHARE * len(wins),
        "encoder_saving_mean_pct": mean, "encoder_saving_met": mean is not None and mean >= GOAL_ENCODER_SAVING_PCT,
    }


def _kb(row: dict | None) -> str:
    return f"{row['bytes'] / 1000:.1f} KB" if row else "-"


def reasons(result: EvalResult) -> list[str]:
    """One measured sentence per video where AccMPEG is not the cheapest: whether the oracle
    map would have won (the selector is the limit) or loses too (the encoding is)."""
    out = []
    for row in fewest_bytes(result):
        if row["wins"]:
            continue
        ours, rival, oracle = row["ours"], row["rival"], row["oracle"]
        beaten = f"{rival['scheme']} ({', '.join(f'{k}={v}' for k, v in rival['config'].items())}) needs {_kb(rival)}" if rival else "no scheme reaches it"
        mine = _kb(ours) if ours and ours["reaches_target"] else f"misses it (best F1 {ours['f1']:.3f})" if ours else "was not run"
        if oracle is None:
            why = "no oracle run"
        elif oracle["reaches_target"] and (rival is None or oracle["bytes"] < rival["bytes"]):
            why = f"the oracle map needs {_kb(oracle)}: the selector is the limit"
        else:
            oracle_text = _kb(oracle) if oracle["reaches_target"] else f"misses it (best F1 {oracle['f1']:.3f})"
            why = f"the oracle map {oracle_text} too: the encoding, not the selector, is the limit"
        out.append(f"{row['video']}: at F1 >= {result.config.target_f1} AccMPEG {mine}; {beaten}; {why}")
    return out
