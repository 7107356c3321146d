"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) opens the page the cloud node of a running sample cluster serves, sees every
camera, sees the frame counters rise and a box drawn on a live view, and saves a screenshot
to ``out/dashboard.png``."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeva.runtime.cluster import run_cluster
from edgeva.viz import class_color
from runtime_support import cluster_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
OUT = Path(__file__).resolve().parents[1] / "out"

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="Debian's chromium is not installed (`make sysdeps` installs it)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _open(page, url: str, alive, timeout: float = 240.0) -> None:
    """Load the page once the cloud serves it (it starts with the cluster)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=5000)
            return
        except playwright.Error:
            if time.monotonic() > deadline or not alive():
                raise
            time.sleep(0.5)


def _box_pixels(png: bytes, color: tuple[int, int, int], tolerance: int = 45) -> int:
    """Pixels of a screenshot within ``tolerance`` of an RGB colour."""
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    return int((np.abs(image - np.array(color)).max(axis=2) <= tolerance).sum())


COUNTS = """() => [...document.querySelectorAll('[data-counter]')]
  .filter(e => ['inferred', 'reused', 'dropped'].includes(e.dataset.counter))
  .reduce((n, e) => n + Number(e.textContent), 0)"""


def test_dashboard_of_a_running_cluster(tmp_path):
    port = _free_port()
    cameras = [
        {"id": 1, "source": "store-aisle-detection", "edge": 1, "frames": 60, "fps": 6},
        {"id": 2, "source": "car-detection", "edge": 2, "frames": 60, "fps": 6},
        {"id": 3, "source": "bottle-detection", "edge": 2, "frames": 60, "fps": 6},
    ]
    config = cluster_config(tmp_path, edges=2, cameras=cameras, policy="edge-shortest",
                            filter={"enabled": True, "feature": "pixel", "threshold": 0.01},
                            dashboard={"enabled": True, "port": port, "refresh_s": 0.5})
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = run_cluster(config, run_id="browser", log_dir=tmp_path / "logs", evaluate=False)
        except BaseException as exc:  # reported by the test below
            result["error"] = exc

    cluster = threading.Thread(target=run, daemon=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            cluster.start()
            _open(page, f"http://127.0.0.1:{port}/", cluster.is_alive)
            for cam in (1, 2, 3):  # every camera of the config, before and while it runs
                page.wait_for_selector(f"#camera-{cam}", timeout=120_000)
            first = page.evaluate(COUNTS)
            page.wait_for_function(f"() => ({COUNTS})() > {first}", timeout=180_000)
            risen = page.evaluate(COUNTS)
            # a live view showing the latest inferred frame with at least one box the server found
            page.wait_for_function("() => [...document.querySelectorAll('[data-counter=boxes]')]"
                                   ".some(e => Number(e.textContent) > 0)", timeout=180_000)
            cam = page.evaluate("() => [...document.querySelectorAll('[data-counter=boxes]')]"
                                ".find(e => Number(e.textContent) > 0).id.split('-').slice(0, 2).join('-')")
            view = page.locator(f"#{cam}-view")
            page.wait_for_function(f"() => document.getElementById('{cam}-view').naturalWidth > 0", timeout=60_000)
            shot = view.screenshot()
            drawn = max(_box_pixels(shot, class_color(c)) for c in range(80))  # each class has its colour
            page.wait_for_function("() => [1, 2, 3].every(c => document.getElementById(`camera-${c}-view`)"
                                   ".naturalWidth > 0)", timeout=180_000)  # every live view shows a frame
            page.wait_for_function("() => document.querySelectorAll('#nodes tbody tr').length >= 3", timeout=60_000)
            try:  # a fuller picture for the README: most frames recorded (not a condition of the test)
                page.wait_for_function(f"() => ({COUNTS})() >= 150", timeout=60_000)
            except playwright.TimeoutError:
                pass
            OUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    cluster.join(600)
    assert "error" not in result, result.get("error")
    assert first < risen
    assert drawn >= 30, f"no box drawn on {cam}'s live view"
    summary = result["summary"]
    assert summary["status"] == "finished" and summary["total"]["recorded"] == 180
    assert (OUT / "dashboard.png").stat().st_size > 10_000
