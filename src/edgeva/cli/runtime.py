"""``edgeva cloud | edge | camera | cluster | results`` and ``edgeva bench policies | learning | faults``:
the distributed runtime (EdgeCam)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgeva.cli.app import app, bench_app, console, track, write_json
from edgeva.cli.bench import format_value, print_rows
from edgeva.errors import EdgevaError

__all__ = ["print_summary"]

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="Cluster YAML file, or the name of a shipped one (cluster).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run id the results are stored under (default: the config's `run`, else 'default').")]
IdOpt = Annotated[int, typer.Option("--id", help="Which edge / camera of the config this is.")]


def _logging(verbose: bool = True) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def _load(config: str, **overrides):
    from edgeva.runtime.config import load_config

    return load_config(config, **overrides)


def _run_id(cfg, run: str | None) -> str:
    return run or cfg.run or "default"


@app.command()
def cloud(config: ConfigOpt, run: RunOpt = None) -> None:
    """Serve the cloud: golden model, region inference, labelling and retraining."""
    from edgeva.runtime.cluster import serve_node

    _logging()
    cfg = _load(config)
    serve_node(cfg, "cloud", run_id=_run_id(cfg, run))


@app.command()
def edge(config: ConfigOpt, node_id: IdOpt, run: RunOpt = None) -> None:
    """Serve one edge node: local worker, offloading policy, info updater, drift collector."""
    from edgeva.runtime.cluster import serve_node

    _logging()
    cfg = _load(config)
    cfg.edge(node_id)
    serve_node(cfg, "edge", edge_id=node_id, run_id=_run_id(cfg, run))


@app.command()
def camera(
    config: ConfigOpt,
    node_id: IdOpt,
    run: RunOpt = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for the first node to answer.")] = 10.0,
) -> None:
    """Run one camera: read, filter, encode, send to its edge; record every frame."""
    from edgeva.runtime.cluster import run_camera

    _logging()
    cfg = _load(config)
    cfg.camera(node_id)
    stats = run_camera(cfg, node_id, run_id=_run_id(cfg, run), connect_timeout=connect_timeout)
    logging.getLogger("edgeva.camera").info(
        "camera %d: %d frames read, %s, %.1f KB sent, last node %s", node_id, stats.frames_read,
        dict(stats.states), stats.bytes_sent / 1000, stats.node)
    if stats.adaptation is not None:
        a = stats.adaptation
        logging.getLogger("edgeva.camera").info(
            "camera %d: selector adapted %d times (%d skipped, %d failed): %.1f KB of frames up, %.1f KB of weights down",
            node_id, a.rounds, a.skipped, a.failed, a.up_bytes / 1000, a.down_bytes / 1000)


def print_summary(summary: dict, title: str | None = None) -> None:
    """The per-camera table of :func:`edgeva.runtime.summary.summarize`."""
    columns = ["camera", "source", "read", "inferred", "reused", "dropped", "at_home", "at_other_edge", "at_cloud",
               "at_assisted", "fps", "latency_ms", "p95_ms", "f1"]
    table = Table(title=title or f"run {summary['run']}  policy {summary['policy']}  ({summary['status']})")
    for column in columns:
        table.add_column(column.removeprefix("at_") if column.startswith("at_") else column)
    for row in [*summary["cameras"], summary["total"]]:
        source = Path(str(row.get("source", ""))).stem
        table.add_row(*(format_value(source if c == "source" else row.get(c, 0 if c.startswith("at_") else None)) for c in columns))
    console.print(table)
    for u in summary.get("model_updates", []):
        gate = (f"validation F1 {format_value(u.get('f1_before'))} -> {format_value(u.get('f1_after'))} on "
                f"{u.get('validation_frames', 0)} frames: {'swapped in' if u.get('accepted', True) else 'REFUSED'}")
        console.print(f"{u['node']} retrained -> model v{u['version']}: {u['frames']} drift frames, {u['objects']} golden labels, "
                      f"{u['epochs']} epochs, loss {u['loss_before']:.3f} -> {u['loss_after']:.3f}, {u['train_s']:.1f} s; {gate}")


def _progress(items, description: str, total: int | None):
    return track(items, description, total=total)


@app.command()
def cluster(
    config: ConfigOpt = "cluster",
    policy: Annotated[str | None, typer.Option(help="Override the config's offloading policy.")] = None,
    db: Annotated[str | None, typer.Option(help="Override the results database URL or SQLite file.")] = None,
    run: RunOpt = None,
    logs: Annotated[Path, typer.Option(help="Folder for each service's log and the resolved config.")] = Path("runs/logs"),
    evaluate: Annotated[bool, typer.Option(help="Compute F1 against the golden model on the original frames.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
) -> None:
    """Start cloud, edges and cameras as local processes, run the videos to the end, print the summary."""
    from edgeva.runtime.cluster import new_run_id, run_cluster
    from edgeva.runtime.config import redact_url

    _logging(verbose=False)
    cfg = _load(config)
    if policy is not None:
        cfg = cfg.model_copy(update={"policy": cfg.policy.model_validate({**cfg.policy.model_dump(), "name": policy})})
    if db is not None:
        cfg = cfg.model_copy(update={"database": cfg.database.model_copy(update={"url": db})})
    run_id = run or new_run_id(config)
    console.print(f"run {run_id}: 1 cloud, {len(cfg.edges)} edges, {len(cfg.cameras)} cameras, policy {cfg.policy.name}; "
                  f"logs in {logs / run_id}")
    summary = run_cluster(cfg, run_id=run_id, log_dir=logs / run_id, evaluate=evaluate, progress=_progress)
    print_summary(summary)
    url = redact_url(cfg.database.url)
    console.print(f"results database: {url}  (edgeva results --db {url} --run {run_id})")
    write_json(json_out, summary)
    if summary["status"] == "interrupted":
        raise typer.Exit(130)


@app.command()
def results(
    db: Annotated[str, typer.Option(help="Results database URL or SQLite file.")],
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest run).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the summary as JSON.")] = None,
) -> None:
    """Print the summary of a stored run."""
    from edgeva.runtime.store import open_store, replay_pending
    from edgeva.runtime.summary import latest_run, summarize

    if "://" not in db and not Path(db).is_file():
        raise EdgevaError(f"{db}: no such results database")
    sessions = open_store(db)
    written = replay_pending(sessions)  # records that waited in a journal while the database was away
    if written:
        console.print(f"wrote {written} journalled frame records into the database first")
    summary = summarize(sessions, run or latest_run(sessions))
    print_summary(summary)
    write_json(json_out, summary)


@bench_app.command("policies")
def bench_policies_cmd(
    config: ConfigOpt = "cluster",
    policies: Annotated[list[str] | None, typer.Option("--policy", help="Policies to compare (repeat; default: all four).")] = None,
    logs: Annotated[Path, typer.Option(help="Folder for logs and the benchmark's database.")] = Path("runs/bench-policies"),
    keep_filter: Annotated[bool, typer.Option(help="Keep the config's frame filter (default: every frame is sent).")] = False,
    keep_retraining: Annotated[bool, typer.Option(help="Keep the config's retraining (default: off).")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")] = None,
) -> None:
    """Run the cluster once per offloading policy; print throughput, latency and F1 of each."""
    from edgeva.bench.policies import bench_policies

    _logging(verbose=False)
    rows = bench_policies(_load(config), policies=policies, out_dir=logs, progress=_progress,
                          keep_filter=keep_filter, keep_retraining=keep_retraining)
    print_rows("offloading policies (all cameras together)", rows, json_out)


@bench_app.command("learning")
def bench_learning_cmd(
    videos: Annotated[list[str] | None, typer.Option("--video", help="Sample videos or files (repeat; default: bottle-detection and one-by-one-person-detection).")] = None,
    epochs: Annotated[list[int] | None, typer.Option("--epochs", help="Fine-tuning epochs (repeat for one round per value; default 10).")] = None,
    window: Annotated[int, typer.Option(help="Frames the edge infers in the first half (validation + drift collector).")] = 100,
    keep: Annotated[int, typer.Option(help="Lowest-confidence frames kept for retraining.")] = 20,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON.")] = None,
) -> None:
    """One continuous-learning round per video: FastestDet's F1 vs YOLOX-Nano on held-out
    frames before, of the update, and after the validation gate decided."""
    from edgeva.bench.learning import LEARNING_VIDEOS, bench_learning

    rows = [row for video in videos or LEARNING_VIDEOS
            for row in bench_learning(video, epochs=epochs or [10], window=window, keep=keep)]
    print_rows("one retraining round (F1 vs golden on held-out frames; the update is swapped in only if validation F1 does not drop)",
               rows, json_out)
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("f1_before", "f1_update", "f1_after")}
    console.print(f"{len(rows)} rounds: the gate agrees with the held-out frames in {sum(r['gate_agrees'] for r in rows)}; "
                  f"mean held-out F1: no retraining {mean['f1_before']:.3f}, always swap {mean['f1_update']:.3f}, "
                  f"gated {mean['f1_after']:.3f}")


@bench_app.command("faults")
def bench_faults_cmd(
    faults: Annotated[list[str] | None, typer.Option("--fault", help="edge-kill, rtsp-restart, db-outage, flood (repeat; default: all).")] = None,
    frames: Annotated[int, typer.Option(help="Frames the camera reads in each run.")] = 60,
    outage: Annotated[float, typer.Option(help="Seconds the RTSP server is down and the database is locked.")] = 6.0,
    video: Annotated[str, typer.Option(help="Sample video (or file) the camera and the RTSP server play.")] = "one-by-one-person-detection",
    together: Annotated[bool, typer.Option(help="Inject every fault in one cluster run (one camera and edge each).")] = False,
    logs: Annotated[Path, typer.Option(help="Folder for each run's logs and database.")] = Path("runs/bench-faults"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write one object per fault as JSON.")] = None,
) -> None:
    """Kill an edge, restart the RTSP server, lock the database, flood an edge: every frame read
    must be inferred, reused or dropped with a reason (exit 1 otherwise)."""
    from edgeva.bench.faults import bench_faults

    _logging(verbose=False)
    rows = bench_faults(faults, out_dir=logs, frames=frames, outage_s=outage, video=video, together=together)
    columns = ("fault", "read", "inferred", "reused", "dropped", "unaccounted", "seconds", "detail")
    print_rows("faults: frames read = inferred + reused + dropped (with a reason)", [{c: r[c] for c in columns} for r in rows])
    for row in rows:
        console.print(f"{row['fault']}: drop reasons {row['drop_reasons'] or '-'}; {row['journalled']} records went through "
                      f"the journal; camera {row['camera_status']}; logs {logs / row['run']}")
    write_json(json_out, rows)
    broken = [r["fault"] for r in rows if r["unaccounted"] or not r["injected"]]
    if broken:
        raise EdgevaError(f"bench faults: frames unaccounted for, or fault not injected, in {', '.join(broken)}")


@bench_app.command("balancers")
def bench_balancers_cmd(
    config: ConfigOpt = "balancers",
    balancers: Annotated[list[str] | None, typer.Option("--balancer", help="Balancers to compare, or offloading policies run without one (repeat; default: none, distream, neuromesh, edge-shortest).")] = None,
    logs: Annotated[Path, typer.Option(help="Folder for logs, the benchmark's database and the plot.")] = Path("runs/bench-balancers"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write one object per balancer as JSON.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per balancer, interleaved; rates and latencies averaged.")] = 1,
) -> None:
    """Run one scenario (heterogeneous edges, busy/idle/late cameras) under each balancer; print
    throughput, latency, F1 and the mean imbalance; plot imbalance and latency over time (PNG)."""
    from edgeva.bench.balancers import bench_balancers, plot_balancers
    from edgeva.runtime.balance.optimizer import BALANCERS
    from edgeva.runtime.policy import OFFLOAD_POLICIES

    _logging(verbose=False)
    for name in balancers or []:
        if name not in OFFLOAD_POLICIES.names():
            try:
                BALANCERS.check(name)
            except ValueError as exc:
                raise EdgevaError(f"--balancer: {exc} (or an offloading policy: {', '.join(OFFLOAD_POLICIES.names())})") from None
    rows = bench_balancers(_load(config), balancers=balancers, repeat=repeat, out_dir=logs, progress=_progress)
    columns = ("balancer", "policy", "throughput_fps", "latency_mean_ms", "latency_p95_ms", "f1", "frames_read", "frames_accounted",
               "dropped", "imbalance_mean")
    print_rows("balancers (all cameras together)", [{c: r[c] for c in columns} for r in rows])
    console.print(f"imbalance and latency over time: {plot_balancers(rows, logs / 'balancers.png')}")
    write_json(json_out, rows)


@bench_app.command("multiview")
def bench_multiview_cmd(
    video: Annotated[str, typer.Option(help="Sample video (or file) the two emulated views are cropped from.")] = "car-detection",
    frames: Annotated[int, typer.Option(min=1, help="Frames of the video.")] = 20,
    overlap: Annotated[int, typer.Option(min=2, help="Columns the two views share.")] = 192,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the row as JSON.")] = None,
) -> None:
    """Multi-view propagation on two EMULATED overlapping views (crops of one video): bytes and
    pixels inferred saved, and each view's F1 against YOLOX-Nano on its original frames."""
    import torch

    from edgeva.bench.multiview import bench_multiview

    _logging(verbose=False)
    torch.set_num_threads(1)
    row = bench_multiview(video, frames, overlap)
    print_rows("multi-view propagation (emulated views: crops of one video)", [row], json_out)
