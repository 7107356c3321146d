"""Write an evaluation: results.json, results.csv, report.md and accuracy_delay.png."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from edgeva.eval.goals import (  # noqa: E402
    ORACLE,
    bytes_at_f1,
    encoder_saving,
    equal_f1,
    fewest_bytes,
    full_rate,
    goals,
    is_bound,
    reasons,
    versus_uniform,
)
from edgeva.eval.harness import EvalResult  # noqa: E402

__all__ = ["write_outputs", "RECORD_FIELDS", "comparison", "encoder_comparison", "markdown_report", "plot_accuracy_delay"]

RECORD_FIELDS = [
    "video", "scheme", "config", "f1", "precision", "recall", "bytes", "kbps", "frames", "sent_frames",
    "delay_mean_s", "delay_p95_s", "camera_ms_per_frame", "server_ms_per_frame",
]
COLORS = {"accmpeg": "tab:red", "uniform": "tab:blue", "dds": "tab:green", "eaar": "tab:orange", "reducto": "tab:purple", "vigil": "tab:brown",
          ORACLE: "tab:pink", "reducto-hindsight": "tab:gray", "tileclipper": "tab:cyan", "crucio": "tab:olive",
          "neuromesh": "black", "neuromesh-zero": "tab:gray"}


def _config_label(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def comparison(result: EvalResult) -> list[dict]:
    """Per video: AccMPEG's best against the best baseline (lowest delay among those
    reaching the target F1), with the relative delay and byte savings."""
    rows = []
    by_video: dict[str, list[dict]] = {}
    for b in result.best:
        by_video.setdefault(b["video"], []).append(b)
    for video, best in by_video.items():
        ours = next((b for b in best if b["scheme"] == "accmpeg"), None)
        baselines = [b for b in best if b["scheme"] != "accmpeg" and not is_bound(b["scheme"]) and b["reaches_target"]]
        rival = min(baselines, key=lambda b: b["delay_mean_s"]) if baselines else None
        row = {"video": video, "accmpeg": ours, "best_baseline": rival}
        if ours and rival and ours["reaches_target"]:
            row["delay_saving_pct"] = 100 * (1 - ours["delay_mean_s"] / rival["delay_mean_s"])
            row["bytes_saving_pct"] = 100 * (1 - ours["bytes"] / rival["bytes"])
        rows.append(row)
    return rows


def encoder_comparison(result: EvalResult) -> list[dict]:
    """AccMPEG against uniform CRF at the same resolution and frame rate (encoder against
    encoder, as in the AccMPEG paper's bytes-vs-accuracy comparison): for each full-rate AccMPEG
    configuration on its bytes/F1 frontier, the cheapest full-rate uniform CRF reaching at
    least its F1."""
    rows = []
    for video in dict.fromkeys(r["video"] for r in result.records):
        uniform = [r for r in result.records if r["video"] == video and r["scheme"] == "uniform" and full_rate(r)]
        ours = [r for r in result.records if r["video"] == video and r["scheme"] == "accmpeg" and full_rate(r)]
        if not uniform or not ours:
            continue
        best_f1 = -1.0
        for a in sorted(ours, key=lambda r: (r["bytes"], -r["f1"])):
            if a["f1"] <= best_f1:
                continue  # a cheaper AccMPEG configuration is at least as accurate
            best_f1 = a["f1"]
            rival = min((u for u in uniform if u["f1"] >= a["f1"]), key=lambda u: u["bytes"], default=None)
            matched = bytes_at_f1(uniform, a["f1"])
            saving = 100 * (1 - a["bytes"] / matched) if matched else None
            rows.append({"video": video, "accmpeg": a, "uniform": rival, "uniform_bytes_at_f1": matched, "bytes_saving_pct": saving})
    return rows


def markdown_report(result: EvalResult) -> str:
    cfg = result.config
    lines = [
        "# edgeva evaluation",
        "",
        f"Final DNN `{cfg.model}`; F1 against its output on the original frames (IoU >= {cfg.iou_threshold}, "
        f"score >= {cfg.score_threshold}); target F1 {cfg.target_f1}. {cfg.chunk}-frame chunks, {cfg.codec} {cfg.preset}. "
        f"Link: {cfg.link.streams} streams share {cfg.link.bandwidth_mbps} Mbit/s ({cfg.link.discipline}), RTT {cfg.link.rtt_ms:g} ms. "
        f"Delay = camera compute + queueing + transmission + one-way latency (+ feedback rounds); server inference reported separately.",
        "",
        "## Cheapest configuration reaching the target, per video and scheme",
        "",
        "| video | scheme | config | F1 | KB | kbps | delay mean (s) | delay p95 (s) | camera ms/frame | server ms/frame | sent/frames |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in sorted(result.best, key=lambda b: (b["video"], b["scheme"])):
        flag = "" if b["reaches_target"] else " (below target: most accurate shown)"
        lines.append(
            f"| {b['video']} | {b['scheme']} | {_config_label(b['config'])}{flag} | {b['f1']:.3f} | {b['bytes'] / 1000:.1f} | {b['kbps']:.0f} | "
            f"{b['delay_mean_s']:.3f} | {b['delay_p95_s']:.3f} | {b['camera_ms_per_frame']:.1f} | {b['server_ms_per_frame']:.1f} | {b['sent_frames']}/{b['frames']} |"
        )
    rows = comparison(result)
    if any(r["accmpeg"] for r in rows):
        lines += ["", "## AccMPEG against the best baseline at the target F1", "",
                  "| video | AccMPEG delay (s) | AccMPEG KB | best baseline | its delay (s) | its KB | delay saving | byte saving |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            a, b = r["accmpeg"], r["best_baseline"]
            if a is None:
                continue
            if not a["reaches_target"]:
                lines.append(f"| {r['video']} | AccMPEG misses the target (best F1 {a['f1']:.3f}) | | {b['scheme'] if b else '-'} | | | | |")
                continue
            if b is None:
                lines.append(f"| {r['video']} | {a['delay_mean_s']:.3f} | {a['bytes'] / 1000:.1f} | no baseline reaches the target | | | | |")
                continue
            lines.append(
                f"| {r['video']} | {a['delay_mean_s']:.3f} | {a['bytes'] / 1000:.1f} | {b['scheme']} ({_config_label(b['config'])}) | "
                f"{b['delay_mean_s']:.3f} | {b['bytes'] / 1000:.1f} | {r['delay_saving_pct']:+.1f}% | {r['bytes_saving_pct']:+.1f}% |"
            )
    same_rate = encoder_comparison(result)
    if same_rate:
        lines += ["", "## AccMPEG against uniform CRF at full resolution and frame rate", "",
                  "Each full-rate AccMPEG configuration on its bytes/F1 frontier against full-rate uniform CRF: the cheapest CRF "
                  "with at least its F1, and the uniform bytes interpolated to exactly its F1 (the saving is against the latter).", "",
                  "| video | AccMPEG config | F1 | KB | uniform CRF | its F1 | its KB | uniform KB at this F1 | byte saving |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in same_rate:
            a, u = r["accmpeg"], r["uniform"]
            rival = (f"{u['config']['crf']} | {u['f1']:.3f} | {u['bytes'] / 1000:.1f} | {r['uniform_bytes_at_f1'] / 1000:.1f} | {r['bytes_saving_pct']:+.1f}%"
                     if u else "none reaches it | | | |")
            lines.append(f"| {r['video']} | {_config_label(a['config'])} | {a['f1']:.3f} | {a['bytes'] / 1000:.1f} | {rival} |")
    lines += _goal_sections(result)
    lines += _versus_uniform_section(result, "neuromesh")
    lines += ["", f"{len(result.records)} configurations replayed in {result.seconds:.0f} s. All rows: results.csv / results.json.", ""]
    if result.failures:
        lines += ["## Failed tasks", "", "| video | scheme | config | error |", "| --- | --- | --- | --- |"]
        lines += [f"| {f['video']} | {f['scheme']} | {_config_label(f['config'])} | {f['error'].replace('|', '/')} |" for f in result.failures]
        lines.append("")
    return "\n".join(lines)


def _goal_sections(result: EvalResult) -> list[str]:
    lines: list[str] = []
    rows = equal_f1(result)
    if rows:
        lines += ["", "## Learned selector, oracle map and uniform quality at equal F1 (full resolution and frame rate)", "",
                  "Bytes each curve needs at one F1 (the target where all three reach it, else the highest all reach), "
                  "interpolated along each scheme's bytes/F1 frontier.", "",
                  "| video | F1 | uniform KB | AccMPEG KB | its saving | oracle KB | its saving |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            cells = [f"{r['bytes'][n] / 1000:.1f} | {r['saving_pct'][n]:+.1f}%" if n in r["saving_pct"] else "- | -" for n in ("accmpeg", ORACLE)]
            lines.append(f"| {r['video']} | {r['f1']:.3f} | {r['bytes']['uniform'] / 1000:.1f} | {cells[0]} | {cells[1]} |")
    wins = fewest_bytes(result)
    if any(w["ours"] for w in wins):
        g = goals(result)
        lines += ["", "## Goals", "", "| video | AccMPEG at the target | cheapest other deployable scheme | oracle | AccMPEG cheapest? |",
                  "| --- | --- | --- | --- | --- |"]
        for w in wins:
            ours, rival, oracle = w["ours"], w["rival"], w["oracle"]
            mine = f"{ours['bytes'] / 1000:.1f} KB ({_config_label(ours['config'])})" if ours and ours["reaches_target"] else "misses the target"
            other = f"{rival['scheme']} {rival['bytes'] / 1000:.1f} KB" if rival else "none reaches it"
            best_oracle = (f"{oracle['bytes'] / 1000:.1f} KB" if oracle["reaches_target"] else f"misses (F1 {oracle['f1']:.3f})") if oracle else "-"
            lines.append(f"| {w['video']} | {mine} | {other} | {best_oracle} | {'yes' if w['wins'] else 'no'} |")
        points = encoder_saving(result)
        mean = g["encoder_saving_mean_pct"]
        lines += ["", f"- Fewest bytes of all deployable schemes at F1 >= {result.config.target_f1}: {g['videos_won']} of {g['videos']} videos "
                  f"(goal: at least 3 of 4) -> {'met' if g['fewest_bytes_met'] else 'missed'}.",
                  "- Encoder against encoder (cheapest full-rate AccMPEG configuration reaching the target, else its most accurate, "
                  "against uniform CRF at the same F1): " + ", ".join(
                      f"{p['video']} {p['saving_pct']:+.1f}% at F1 {p['point']['f1']:.3f}" for p in points if p["saving_pct"] is not None)
                  + (f"; mean {mean:+.1f}% (goal: at least 35% fewer) -> {'met' if g['encoder_saving_met'] else 'missed'}." if mean is not None else "; no point.")]
        lines += [f"- {why}" for why in reasons(result)]
    return lines


def _versus_uniform_section(result: EvalResult, scheme: str) -> list[str]:
    """``scheme`` against uniform quality at full resolution and frame rate: F1 at equal bytes, bytes at equal F1."""
    rows = versus_uniform(result, scheme)
    if not rows:
        return []
    lines = ["", f"## {scheme} against uniform quality (full resolution and frame rate)", "",
             f"Equal bytes: uniform's F1 with the bytes of {scheme}'s cheapest configuration reaching the target (else its most "
             "accurate); equal F1: the bytes each needs at the target where both reach it, else at the highest both reach "
             "(interpolated along each bytes/F1 frontier).", "",
             f"| video | {scheme} config | KB | F1 | uniform F1 at these bytes | equal F1 | uniform KB | {scheme} KB | saving |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        uniform_f1 = "below its cheapest" if r["uniform_f1"] is None else f"{r['uniform_f1']:.3f}"
        f = r["at_f1"]
        at_f1 = f"{f['f1']:.3f} | {f['uniform_bytes'] / 1000:.1f} | {f['bytes'] / 1000:.1f} | {f['saving_pct']:+.1f}%" if f else "- | - | - | -"
        lines.append(f"| {r['video']} | {_config_label(r['point']['config'])} | {r['bytes'] / 1000:.1f} | {r['f1']:.3f} | {uniform_f1} | {at_f1} |")
    return lines


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not beaten by another with lower delay and higher F1, by delay."""
    out, best = [], -1.0
    for d, f in sorted(points):
        if f > best:
            out.append((d, f))
            best = f
    return out


def plot_accuracy_delay(result: EvalResult, path: Path) -> None:
    """F1 against mean delay, one panel per video, one colour per scheme (Figure 6.1 style)."""
    videos = sorted({r["video"] for r in result.records})
    cols = min(2, len(videos))
    rows = (len(videos) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False)
    for ax, video in zip(axes.flat, videos, strict=False):
        for scheme in dict.fromkeys(r["scheme"] for r in result.records):
            pts = [(r["delay_mean_s"], r["f1"]) for r in result.records if r["video"] == video and r["scheme"] == scheme]
            if not pts:
                continue
            color = COLORS.get(scheme)
            ax.scatter(*zip(*pts, strict=True), s=12, alpha=0.3, color=color)
            front = _frontier(pts)
            ax.plot(*zip(*front, strict=True), marker="o", ms=4, lw=1.4, color=color, label=scheme)
        ax.axhline(result.config.target_f1, color="grey", ls=":", lw=1)
        ax.set_title(video)
        ax.set_xlabel("mean delay per chunk (s)")
        ax.set_ylabel("F1 vs final DNN on original")
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(videos):]:
        ax.axis("off")
    fig.suptitle(f"Accuracy vs delay ({result.config.link.streams} streams share {result.config.link.bandwidth_mbps} Mbit/s); lines: each scheme's best trade-offs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: EvalResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "report": out / "report.md", "plot": out / "accuracy_delay.png"}
    payload = {"records": result.records, "best": result.best} | ({"failures": result.failures} if result.failures else {})
    paths["json"].write_text(json.dumps(payload, indent=1))
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RECORD_FIELDS + ["high_fraction"], extrasaction="ignore")
        writer.writeheader()
        for r in result.records:
            writer.writerow({**r, "config": _config_label(r["config"])})
    paths["report"].write_text(markdown_report(result))
    plot_accuracy_delay(result, paths["plot"])
    return paths
