// edgeva dashboard: polls /api/stats and per-camera series; no build step, no dependencies.
"use strict";
let refreshMs = 1000;
let runId = new URLSearchParams(location.search).get("run");
const q = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function runParam() { return runId ? `?run=${encodeURIComponent(runId)}` : ""; }

async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.json().catch(() => ({}))).detail || ""}`);
  return r.json();
}

function chart(svg, values, color) {
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null);
  svg.innerHTML = "";
  if (pts.length < 1) return;
  const max = Math.max(...pts.map(([, v]) => v), 1e-9), n = Math.max(values.length - 1, 1);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts.map(([i, v]) => `${(i / n) * 300},${68 - (v / max) * 64}`).join(" "));
  line.setAttribute("stroke", color);
  svg.setAttribute("viewBox", "0 0 300 70");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.appendChild(line);
  return max;
}

function cameraCard(key, cam) {
  const card = el("div", { class: "camera", id: key, "data-camera": cam.camera });
  card.appendChild(el("h3", {}, `${key} · ${cam.source.split("/").pop()} · home ${cam.home || "-"}`));
  const img = el("img", { alt: `${key} live view`, id: `${key}-view`,
                          src: `/api/cameras/${cam.camera}/mjpeg${runParam()}` });
  card.appendChild(img);
  const counters = el("div", { class: "counters" });
  for (const name of ["frames_read", "inferred", "reused", "dropped", "boxes"]) {
    const box = el("div");
    box.appendChild(el("b", { id: `${key}-${name}`, "data-counter": name }, "0"));
    box.appendChild(el("span", {}, name.replace("_", " ")));
    counters.appendChild(box);
  }
  card.appendChild(counters);
  card.appendChild(el("div", { class: "where", id: `${key}-where` }));
  card.appendChild(el("div", { class: "strip", id: `${key}-strip`, title: "last frames, oldest first" }));
  const charts = el("div", { class: "charts" });
  for (const [name, label] of [["kbps", "uplink kbps"], ["latency", "latency ms"]]) {
    const c = el("div", { class: "chart" });
    c.appendChild(el("span", { id: `${key}-${name}-label` }, label));
    c.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "svg")).id = `${key}-${name}`;
    charts.appendChild(c);
  }
  card.appendChild(charts);
  return card;
}

function cellClass(f, home) {
  if (f.state !== "inferred") return f.state;
  if (f.where && f.where.includes("+")) return "assisted";
  if (f.where === home) return "home";
  return f.where === "cloud" ? "cloud" : "other";
}

async function updateCamera(key, cam) {
  const [series, frames] = await Promise.all([
    getJSON(`/api/cameras/${cam.camera}/series${runParam()}`),
    getJSON(`/api/cameras/${cam.camera}/frames${runParam()}`),
  ]);
  const kmax = chart(q(`${key}-kbps`), series.kbps, "#1565c0");
  const lmax = chart(q(`${key}-latency`), series.latency_ms, "#c62828");
  q(`${key}-kbps-label`).textContent = `uplink kbps (max ${kmax ? kmax.toFixed(0) : "-"})`;
  q(`${key}-latency-label`).textContent = `latency ms (max ${lmax ? lmax.toFixed(0) : "-"})`;
  const strip = q(`${key}-strip`);
  strip.innerHTML = "";
  for (const f of frames) {
    strip.appendChild(el("span", { class: `cell ${cellClass(f, cam.home)}`,
                                   title: `frame ${f.frame}: ${f.state} ${f.where || f.reason || ""}` }));
  }
}

function updateNodes(nodes) {
  const body = q("nodes").querySelector("tbody");
  body.innerHTML = "";
  for (const [name, n] of Object.entries(nodes)) {
    const tr = el("tr", { id: `node-${name}` });
    const state = n.alive === null || n.alive === undefined ? "-" : (n.alive ? "up" : "down");
    const history = (n.retraining || []).map((r) =>
      `v${r.version}: ${r.frames} frames, loss ${r.loss_before.toFixed(3)}→${r.loss_after.toFixed(3)}`).join("; ");
    for (const [cls, text] of [["", name], [state, state], ["", n.queue_length ?? "-"], ["", n.recent_fps],
                               ["", n.fps], ["", n.inferred], ["", `v${n.model_version ?? 0}`], ["", history || "-"]]) {
      tr.appendChild(el("td", cls ? { class: cls } : {}, String(text)));
    }
    body.appendChild(tr);
  }
}

async function refreshRuns() {
  const runs = await getJSON("/api/runs");
  const select = q("runs");
  select.innerHTML = "";
  select.appendChild(el("option", { value: "" }, "latest"));
  for (const r of runs) {
    const o = el("option", { value: r.id }, `${r.id} (${r.status})`);
    if (r.id === runId) o.selected = true;
    select.appendChild(o);
  }
}

let tick = 0;
async function refresh() {
  try {
    const stats = await getJSON(`/api/stats${runParam()}`);
    refreshMs = (stats.service.refresh_s || 1) * 1000;
    q("run").textContent = `run ${stats.run.id} · policy ${stats.run.policy} · ${stats.run.status} · ` +
                           `${stats.detection_fps} detections/s`;
    q("service").textContent = `${stats.service.live ? "live" : "database only"} · read-only · ${stats.service.db}`;
    const grid = q("cameras");
    for (const [key, cam] of Object.entries(stats.cameras)) {
      if (!q(key)) grid.appendChild(cameraCard(key, cam));
      for (const name of ["frames_read", "inferred", "reused", "dropped", "boxes"]) {
        q(`${key}-${name}`).textContent = cam[name];
      }
      q(`${key}-where`).textContent = "inferred at: " +
        (Object.entries(cam.where).map(([w, n]) => `${w} ${n}`).join(", ") || "-");
      await updateCamera(key, cam);
    }
    updateNodes(stats.nodes);
    if (tick++ % 10 === 0) await refreshRuns();
    q("error").textContent = "";
  } catch (err) {
    q("error").textContent = String(err);
  }
  setTimeout(refresh, refreshMs);
}

q("runs").addEventListener("change", (e) => {
  runId = e.target.value || null;
  const url = new URL(location.href);
  if (runId) url.searchParams.set("run", runId); else url.searchParams.delete("run");
  history.replaceState(null, "", url);
  q("cameras").innerHTML = "";
});
refresh();
