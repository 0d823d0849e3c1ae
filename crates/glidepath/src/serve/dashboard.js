// glidepath serve: the dashboard. Every text from the journal (reasons,
// node names) goes through textContent, never innerHTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const main = document.getElementById("main");
const live = document.getElementById("live");

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

async function get(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function badge(status) {
  return el("span", { class: "badge s-" + status }, status);
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

// ---- runs list ----

async function runsPage() {
  document.title = "glidepath: runs";
  const draw = async () => {
    let d;
    try { d = await get("/api/v1/runs?limit=200"); } catch (e) { live.textContent = String(e); return; }
    const rows = d.runs.map((r) => el("tr", { "data-run": r.run_id },
      el("td", {}, el("a", { href: "/runs/" + encodeURIComponent(r.run_id) }, r.run_id)),
      el("td", {}, badge(r.status)),
      el("td", {}, r.fleet), el("td", {}, r.version),
      el("td", {}, when(r.started_at)),
      el("td", { class: "last" }, r.reason)));
    const t = el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, ...["run", "status", "fleet", "release", "started", "reason"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
    main.replaceChildren(el("h1", {}, "Runs"), rows.length ? t : el("p", { class: "muted" }, "The journal has no runs yet."));
    live.textContent = "updated " + new Date().toLocaleTimeString();
  };
  await draw();
  setInterval(draw, 3000);
}

// ---- one run ----

const run = {
  id: null,
  summary: null,
  steps: null,
  lastSeq: 0,
  // the SLI window being drawn: its start (ms) and each check's points
  window: null,
  series: new Map(),
};

function onEvent(ev) {
  run.lastSeq = ev.seq;
  main.dataset.seq = String(ev.seq);
  if (ev.event === "intent" && ev.step.kind === "start_window") {
    run.window = ev.at;
    run.series = new Map();
  }
  if (ev.event === "outcome" && ev.step.kind === "start_window" && ev.outcome.ok) {
    run.window = ev.at;
  }
  if (ev.event === "outcome" && ev.step.kind === "probe" && run.window !== null) {
    for (const o of ev.outcome.observations || []) {
      const pts = run.series.get(o.check) || [];
      pts.push({
        t: (ev.at - run.window) / 1000,
        v: typeof o.value === "number" ? o.value : null,
        b: o.baseline && typeof o.baseline.value === "number" ? o.baseline.value : null,
      });
      run.series.set(o.check, pts);
    }
  }
}

function chart(check, limit, pts, windowS) {
  const W = 360, H = 160, L = 44, R = 8, T = 8, B = 22;
  const vals = pts.flatMap((p) => [p.v, p.b]).filter((v) => v !== null);
  const lim = limit ? (limit.max ?? limit.min) : null;
  if (lim !== null && lim !== undefined) vals.push(lim);
  let hi = Math.max(0, ...vals), lo = Math.min(0, ...vals);
  if (hi === lo) hi = lo + 1;
  hi += (hi - lo) * 0.1;
  const tMax = Math.max(windowS || 1, ...pts.map((p) => p.t));
  const x = (t) => L + (t / tMax) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "data-check": check });
  s.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  s.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  s.append(svg("text", { x: L - 4, y: y(hi) + 8, "text-anchor": "end" }, +hi.toPrecision(3)));
  s.append(svg("text", { x: L - 4, y: y(lo), "text-anchor": "end" }, +lo.toPrecision(3)));
  s.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end" }, tMax.toFixed(0) + "s"));
  s.append(svg("text", { x: L, y: H - 6 }, "0s"));
  if (lim !== null && lim !== undefined) {
    s.append(svg("line", { class: "limit", x1: L, y1: y(lim), x2: W - R, y2: y(lim), stroke: "#cf222e", "stroke-dasharray": "5 3" }));
    s.append(svg("text", { x: W - R, y: y(lim) - 3, "text-anchor": "end" }, (limit.max !== null && limit.max !== undefined ? "max " : "min ") + lim));
  }
  const line = (key, color, cls) => {
    const p = pts.filter((q) => q[key] !== null).map((q) => `${x(q.t).toFixed(1)},${y(q[key]).toFixed(1)}`);
    if (p.length) s.append(svg("polyline", { class: cls, points: p.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const q of pts.filter((q) => q[key] !== null)) s.append(svg("circle", { class: cls, cx: x(q.t).toFixed(1), cy: y(q[key]).toFixed(1), r: 2.5, fill: color }));
  };
  line("b", "#8c959f", "baseline");
  line("v", "#0969da", "canary");
  const last = pts.length ? pts[pts.length - 1] : null;
  const cap = el("figcaption", {}, check + (last && last.v !== null ? " = " + (+last.v.toPrecision(4)) : ""),
    el("span", { class: "muted" }, last && last.b !== null ? "  (baseline " + (+last.b.toPrecision(4)) + ")" : ""));
  return el("figure", { class: "chart" }, cap, s);
}

function drawRun() {
  const s = run.summary, st = run.steps;
  if (!s || !st) return;
  document.title = "glidepath: " + s.run_id + " " + s.status;
  const head = el("div", {},
    el("h1", {}, "run " + s.run_id + " ", badge(s.status)),
    el("div", { class: "meta" },
      el("span", {}, "fleet " + s.fleet), el("span", {}, "release " + s.version),
      el("span", {}, "started " + when(s.started_at)), el("span", {}, (s.duration_ms / 1000).toFixed(1) + "s"),
      el("span", {}, s.holder ? "pid " + s.holder.pid + " on " + s.holder.host + (s.holder.alive ? "" : " (gone)") : "no process holds it")));
  if (s.reason) head.append(el("p", { id: "reason" }, s.reason));
  if (s.waiting) head.append(el("div", { class: "waiting", id: "waiting" }, "waiting: " + s.waiting));
  const steps = el("ol", { class: "steps", id: "steps" },
    ...st.steps.map((x) => el("li", { class: x.status }, x.label)));
  const nodes = el("table", { id: "nodes" },
    el("thead", {}, el("tr", {}, ...["node", "status", "before", "now", "rotation", "steps", "last"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...s.nodes.map((n) => el("tr", { "data-node": n.node },
      el("td", {}, n.node), el("td", {}, badge(n.status)), el("td", {}, n.before ?? "—"),
      el("td", {}, n.now ?? "—"), el("td", {}, n.rotation + (n.down ? " (down: " + n.down + ")" : "")),
      el("td", {}, n.steps), el("td", { class: "last" }, n.last)))));
  const decisions = el("ul", { class: "decisions", id: "decisions" },
    ...(s.decisions.length ? s.decisions.map((d) => el("li", {}, d)) : [el("li", { class: "muted" }, "none yet")]));
  const charts = el("div", { class: "charts", id: "charts" });
  const limits = new Map(st.checks.map((c) => [c.check, c]));
  const names = new Set([...st.checks.map((c) => c.check), ...run.series.keys()]);
  for (const c of names) {
    charts.append(chart(c, limits.get(c), run.series.get(c) || [], (st.window_ms || 0) / 1000));
  }
  const sli = s.sli.map((j) => el("li", {}, j.reason || (j.check + ": " + j.verdict)));
  main.replaceChildren(head,
    el("h2", {}, "Steps"), steps,
    el("h2", {}, "Nodes"), nodes,
    el("h2", {}, "Decisions"), decisions,
    el("h2", {}, "SLI checks"), names.size ? charts : el("p", { class: "muted" }, "This plan watches no SLI."),
    ...(sli.length ? [el("ul", { class: "decisions", id: "verdicts" }, ...sli)] : []));
  main.dataset.seq = String(run.lastSeq);
  main.dataset.status = s.status;
}

let pending = null;
// Redraw from the API, at most every 150 ms while events pour in (the
// first one at once).
function refresh(delay = 150) {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    try {
      const id = encodeURIComponent(run.id);
      [run.summary, run.steps] = await Promise.all([get("/api/v1/runs/" + id), get("/api/v1/runs/" + id + "/steps")]);
      drawRun();
    } catch (e) {
      live.textContent = String(e);
    }
  }, delay);
}

function runPage(id) {
  run.id = id;
  refresh(0);
  // what the run waits for (paused, waiting on the infrastructure) is kept
  // on its record, not journaled as an event: look again every 2 s too
  const tick = setInterval(() => refresh(0), 2000);
  const es = new EventSource("/api/v1/runs/" + encodeURIComponent(id) + "/events");
  es.onopen = () => { live.textContent = "live"; };
  es.onmessage = (m) => {
    try { onEvent(JSON.parse(m.data)); } catch (e) { return; }
    live.textContent = "live · event " + run.lastSeq;
    refresh();
  };
  es.addEventListener("end", () => {
    es.close();
    clearInterval(tick);
    live.textContent = "the run has ended · " + run.lastSeq + " events";
    refresh();
  });
  es.onerror = () => { if (es.readyState !== EventSource.CLOSED) live.textContent = "reconnecting…"; };
}

const m = location.pathname.match(/^\/runs\/([^/]+)$/);
if (m) runPage(decodeURIComponent(m[1])); else runsPage();
