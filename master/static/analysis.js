/* gridless dashboard: the study page. Parallel coordinates with brushing,
 * parameter importance, the optimization history, the per-parameter scatter plots and
 * the server-side trial table, all from the JSON API: `points` for the plots (one
 * columnar answer, never a trial page), `importance`, and `trials` pages for the table.
 *
 * Loaded before app.js; it uses app.js's helpers (API, el, get, plot, plots, COLORS,
 * fmtScore, table, refreshWhile, ensemblesPanel) only when called, after both
 * have loaded. What a person chose (filters, brushes, page, sort, columns, selection)
 * lives in a per-study state that the 2 s live refresh updates around, never resets. */
"use strict";

const FAILED_COLOR = "#d92d20";
const TRIAL_STATES = ["pending", "running", "completed", "stopped", "diverged", "failed", "lost"];
const PAGE_SIZES = [25, 50, 100, 250, 500, 1000];
// Score colours, worse to better (viridis, reversed so that the best is the darkest).
const SCORE_COLORS = ["#fde725", "#a0da39", "#4ac16d", "#1fa187", "#277f8e", "#365c8d", "#46327e", "#440154"];
// uPlot instances by view, for the browser tests: `studyPlots.history.data`.
const studyPlots = {};
// What the person chose on each study's page, kept while the page lives in this tab.
const studyPageStates = new Map();

// -- numbers -------------------------------------------------------------------------

/** A number as a person writes it: 3 significant digits, powers of ten far from 1
 *  ("1e-6", "2.5e-5", "0.03", "16", "512"). Anything else as text. */
function fmtValue(v) {
  if (typeof v !== "number" || v === 0 || !Number.isFinite(v)) return v === null || v === undefined ? "-" : String(v);
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) {
    const [m, e] = v.toExponential(2).split("e");
    return `${Number(m)}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(3)));
}

/** A table cell: integers in full (trial 1234 is not "1230"), other numbers by fmtValue. */
const fmtCell = (v) => (Number.isInteger(v) ? String(v) : fmtValue(v));

/** A stage's range of a parameter, readably: `[1e-6, 10]`, `[16, 512]`, `[adam, sgd]`. */
function fmtRange(dist) {
  const values = Object.values(dist)[0];
  return `[${values.map(fmtValue).join(", ")}]`;
}

/** 3 significant digits (what a brush or an axis reads off a pixel). */
const round3 = (v) => Number(v.toPrecision(3));

/** Evenly spaced round ticks (steps of 1, 2 or 5 times a power of ten), at most `maxTicks`. */
function linearTicks(lo, hi, maxTicks, integer = false) {
  if (!(hi > lo)) return Number.isFinite(lo) ? [lo] : [];
  const raw = (hi - lo) / Math.max(1, maxTicks - 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9));
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

/** Ticks for a log axis: the densest of 1-9, 1-2-5, 1-3 and 1 times the powers of ten
 *  between lo and hi that has at most `maxTicks` (every k-th decade for very wide ranges;
 *  linear ticks for a range inside one decade). [16, 512] gives 20, 50, 100, 200, 500. */
function logTicks(lo, hi, maxTicks) {
  if (!(lo > 0) || !(hi > lo)) return linearTicks(lo, hi, maxTicks);
  const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
  const at = (m, e) => {
    const v = Number((m * 10 ** e).toPrecision(12));
    return v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) ? v : null;
  };
  let ticks = null;
  for (const set of [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 5], [1, 3], [1]]) {
    const found = [];
    for (let e = e0; e <= e1; e++) for (const m of set) { const v = at(m, e); if (v !== null) found.push(v); }
    if (found.length <= maxTicks) { ticks = found; break; }
  }
  if (ticks === null) {
    const k = Math.ceil((e1 - e0 + 1) / Math.max(1, maxTicks));
    ticks = [];
    for (let e = Math.ceil(e0 / k) * k; e <= e1; e += k) { const v = at(1, e); if (v !== null) ticks.push(v); }
  }
  return ticks.length >= 2 ? ticks : linearTicks(lo, hi, maxTicks);
}

/** uPlot axis options for a log axis: 1-2-5 ticks, readable labels. */
function logAxis(width) {
  const most = Math.max(3, Math.floor(width / 64));
  // uPlot's own filter blanks every label but the powers of ten on a log axis: keep ours
  return { splits: (u, axis, min, max) => logTicks(min, max, most), filter: (u, splits) => splits, values: (u, splits) => splits.map(fmtValue) };
}

function scaleOf(dist) {
  const kind = Object.keys(dist)[0];
  return { kind, log: kind === "log_uniform" || kind === "int_log_uniform", integer: kind === "int" || kind === "int_log_uniform", range: dist[kind] };
}

/** Run `fn` as a named entry of the browser's performance timeline (the benchmark's
 *  breakdown of the page's drawing: benchmarks/dashboard_load.py). */
function timed(name, fn) {
  const start = performance.now();
  const out = fn();
  performance.measure(name, { start, end: performance.now() });
  return out;
}

async function timedAsync(name, fn) {
  const start = performance.now();
  const out = await fn();
  performance.measure(name, { start, end: performance.now() });
  return out;
}

// -- state ---------------------------------------------------------------------------

function pageState(id) {
  if (!studyPageStates.has(id)) {
    studyPageStates.set(id, {
      stage: "", state: "", ranges: {}, sort: null, limit: 100, offset: 0,
      columns: null,  // chosen on first render: every parameter, no metric
      selected: new Set(), colorBy: "stage",
    });
  }
  return studyPageStates.get(id);
}

/** The trials query of the table's filters (and its page, unless `page` is false). */
function trialQuery(st, { page = true } = {}) {
  const q = new URLSearchParams();
  if (page) { q.set("limit", st.limit); q.set("offset", st.offset); }
  if (st.stage) q.set("stage", st.stage);
  if (st.state) q.set("state", st.state);
  for (const [name, [lo, hi]] of Object.entries(st.ranges)) {
    if (lo !== null || hi !== null) q.append("param", `${name}:${lo ?? ""}:${hi ?? ""}`);
  }
  if (st.sort) q.set("sort", st.sort);
  return q.toString();
}

const inRange = (v, [lo, hi]) => typeof v === "number" && (lo === null || v >= lo) && (hi === null || v <= hi);
const isBad = (state) => state === "failed" || state === "diverged";

// -- the page ------------------------------------------------------------------------

/** The study and its points, fetched together; an unknown study is the study's 404. */
async function studyAndPoints(id) {
  const pending = get(`/studies/${id}/points`);
  pending.catch(() => {});  // awaited below, after the study (whose error names it)
  const study = await get(`/studies/${id}`);
  return [study, await pending];
}

async function studyView(id) {
  const start = performance.now();
  const [study, points] = await studyAndPoints(id);
  performance.measure("study-fetch", { start, end: performance.now() });
  const st = pageState(id);
  const params = Object.keys(study.spec.space).filter((p) => p in points.values);
  if (st.columns === null) st.columns = new Set(params.map((p) => `params.${p}`));
  crumbs.replaceChildren(el("a", { href: `#/studies/${id}`, text: study.name }), el("a", { href: `#/checkpoints/${id}`, text: "checkpoints" }), el("a", { href: `#/compare/${id}`, text: "compare stages" }));

  const page = { id, st, params, study, points, uplots: [], dragging: false, importanceKey: null };
  page.head = el("div", { id: "study-head" });
  page.parallelBox = el("div", { class: "plot parallel", "data-plot": "parallel coordinates", id: "parallel" });
  page.importanceBox = el("div", { id: "importance" });
  page.paretoBox = (study.objectives || []).length > 1 ? el("div", { id: "pareto-box" }) : null;
  page.historyBox = el("div", { class: "history", id: "history" });
  page.scatterBox = el("div", { class: "plots", id: "scatter" });
  page.trialsHeading = el("h2");
  page.table = trialTable(page);
  const colorBy = el("select", { id: "pc-color", title: "colour the lines by" },
    el("option", { value: "stage", text: "colour by stage" }), el("option", { value: "score", text: `colour by ${study.metric}` }));
  colorBy.value = st.colorBy;
  colorBy.addEventListener("change", () => { st.colorBy = colorBy.value; drawParallel(page); });
  const clear = el("button", { id: "pc-clear", text: "clear brushes", onclick: () => { st.ranges = {}; rangesChanged(page); } });
  page.root = el("div", { class: "study-page" },
    el("h1", { text: study.name }), page.head,
    ...(page.paretoBox ? [el("h2", { text: `Pareto front: ${study.objectives.map((o) => o.name).join(" vs ")}` }), page.paretoBox] : []),
    el("h2", { text: "Parallel coordinates" }),
    el("p", { class: "muted controls" }, colorBy, " ", clear, " drag along a parameter's axis to filter the trial table; click the axis to clear it"),
    page.parallelBox,
    el("h2", { text: "Parameter importance" }), page.importanceBox,
    el("h2", { text: "Optimization history" }), page.historyBox,
    el("h2", { text: "Hyperparameters vs " + study.metric + " (shaded: border bands of the first stage's range)" }), page.scatterBox,
    page.trialsHeading, page.table.root,
    el("h2", { text: "Ensembles (validation chooses, test reports)" }), el("div", { id: "ensembles" }),
  );
  view.replaceChildren(page.root);
  ensemblesPanel(id, study.ensembles_built);
  page.ensemblesBuilt = study.ensembles_built;
  renderStudy(page, study, points);
  await timedAsync("table", () => page.table.load());
  performance.mark("study-drawn");
  // Asked after the table's page: the server's model fit would hold that page back. The
  // bars come when it is done; the page counts as drawn without them.
  importancePanel(page).then(() => performance.mark("importance-drawn"));
  refreshWhile(study.state === "running" || study.state === "paused", () => refreshStudy(page));
}

/** Live refresh: new numbers in every view, the person's choices untouched (never while
 *  a brush is being dragged; a failed refresh is tried again at the next tick). */
async function refreshStudy(page) {
  if (!view.contains(page.root)) return;
  let going = true;
  try {
    const [study, points] = page.dragging ? [null, null] : await studyAndPoints(page.id);
    if (!view.contains(page.root)) return;
    if (study && !page.dragging) {
      renderStudy(page, study, points);
      if (study.ensembles_built && !page.ensemblesBuilt) {
        document.getElementById("ensembles").replaceChildren();
        ensemblesPanel(page.id, true);
        page.ensemblesBuilt = true;
      }
      await page.table.load();
      await importancePanel(page);
      going = study.state === "running" || study.state === "paused";
    }
  } catch (error) {
    console.warn(`refresh of study ${page.id}: ${error.message || error}`);
  }
  if (view.contains(page.root)) refreshWhile(going, () => refreshStudy(page));
}

function renderStudy(page, study, points) {
  page.study = study;
  page.points = points;
  timed("study-head", () => renderHead(page));
  timed("parallel", () => drawParallel(page));
  if (page.paretoBox) paretoPanel(page, page.paretoBox).catch((e) => console.warn(`pareto front: ${e.message || e}`));
  for (const u of page.uplots) { u.destroy(); const i = plots.indexOf(u); if (i >= 0) plots.splice(i, 1); }
  page.uplots = [];
  page.historyBox.replaceChildren();
  page.scatterBox.replaceChildren();
  page.uplots.push(timed("history", () => historyPlot(page)));
  const firstSpace = study.stages[0].space;
  timed("scatter", () => {
    for (const p of page.params) {
      const dist = firstSpace[p] || study.spec.space[p];
      if (dist && !("choice" in dist)) page.uplots.push(scatter(p, dist, points, study, page.scatterBox));
    }
  });
  page.trialsHeading.textContent = `Trials (${points.count})`;
  page.table.syncColumns();
}

function renderHead(page) {
  const { study, params, id } = page;
  const card = (k, v, attrs = {}) => el("div", { class: "card" }, el("div", { class: "k", text: k }), el("div", { class: "v", ...attrs, text: v }));
  const cards = el("div", { class: "cards" },
    card("state", study.state, { id: "study-state" }),
    card("trials finished", `${study.finished_trials}/${study.total_trials}`, { id: "study-progress", "data-value": `${study.finished_trials}/${study.total_trials}` }),
    card(`best ${study.metric}`, fmtScore(study.best_score), { id: "study-best", "data-value": study.best_score ?? "" }),
  );
  const ended = study.stop_reason ? el("p", { id: "study-stop-reason", class: "flag final", text: `ended by its stop rule: ${study.stop_reason}` }) : null;
  const paused = study.state_reason ? el("pre", { id: "study-reason", class: "error", text: `paused by gridless: ${study.state_reason}\nfix the code, then POST /api/v1/studies/${id}/resume` }) : null;
  const flags = el("div", { id: "flags" }, ...study.border_flags.map((f) => el("div", { class: "flag" + (f.final ? " final" : "") + (f.beyond_range ? " beyond" : ""), text: (f.final ? "At the end: " : `After stage ${f.stage}: `) + (f.beyond_range ? "past your range: " : "") + f.message })));
  const warnings = Object.entries(study.warning_counts);
  const warnBox = el("p", { id: "warnings", class: warnings.length ? "warn" : "muted", text: warnings.length ? "warnings (trials): " + warnings.map(([k, v]) => `${k} (${v})`).join(", ") : "no warnings" });
  const stagesTable = table([
    { name: "stage", get: (s) => s.index + 1, fmt: fmtCell },
    { name: "state", get: (s) => s.state, left: true },
    { name: "trials", get: (s) => s.trials, fmt: fmtCell },
    { name: "epochs", get: (s) => s.epochs, fmt: fmtCell },
    ...params.map((p) => ({ name: p, left: true, get: (s) => (s.space[p] ? fmtRange(s.space[p]) : "") })),
  ], study.stages, { id: "stages" });
  const decisions = el("ul", { id: "decisions" }, ...study.stages.flatMap((s) => (s.decisions.decisions || []).map((d) => el("li", { text: `stage ${s.index + 1} -> ${s.index + 2}: ${d.param}: ${d.why}` }))));
  page.head.replaceChildren(cards, ...(ended ? [ended] : []), ...(paused ? [paused] : []), flags, warnBox,
    el("h2", { text: "Stages and ranges" }), stagesTable, decisions);
}

// -- parallel coordinates ------------------------------------------------------------

const PC = { height: 400, top: 40, bottom: 62, side: 74, slot: 30 };

/** One axis per searched parameter (its scale from the space; the domain covers every
 *  stage's range and every value), then the metric. */
function parallelAxes(study, points, params) {
  const axes = params.map((name) => {
    const dist = study.stages[0].space[name] || study.spec.space[name];
    const kind = Object.keys(dist)[0];
    const values = points.values[name];
    const conditional = conditionOf(dist);  // null, or "optimizer is sgd"
    if (kind === "choice") {
      const cats = [...new Set([...dist.choice, ...values.filter((v) => v !== null)].map(String))];
      return { name, kind: "choice", cats, label: name, conditional };
    }
    const { log, integer } = scaleOf(dist);
    let lo = Infinity, hi = -Infinity;
    for (const s of study.stages) {
      const d = s.space[name];
      if (d && !("choice" in d)) { const [a, b] = Object.values(d)[0]; lo = Math.min(lo, a); hi = Math.max(hi, b); }
    }
    for (const v of values) if (typeof v === "number" && (!log || v > 0)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!Number.isFinite(lo)) [lo, hi] = log ? [1, 10] : [0, 1];
    return { name, kind: log ? "log" : "linear", integer, lo, hi, label: name + (log ? " (log)" : ""), conditional };
  });
  let lo = Infinity, hi = -Infinity;
  for (const s of points.score) if (s !== null) { lo = Math.min(lo, s); hi = Math.max(hi, s); }
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  axes.push({ name: study.metric, kind: "score", lo, hi, label: `${study.metric} (${study.maximize ? "max" : "min"})` });
  return axes;
}

function axisFraction(axis, v) {
  if (axis.kind === "choice") {
    const i = axis.cats.indexOf(String(v));
    return axis.cats.length > 1 ? i / (axis.cats.length - 1) : 0.5;
  }
  const f = axis.kind === "log" ? Math.log10 : (x) => x;
  const a = f(axis.lo), b = f(axis.hi);
  return b > a ? (f(v) - a) / (b - a) : 0.5;
}

function axisValue(axis, frac) {
  if (axis.kind === "log") {
    const a = Math.log10(axis.lo), b = Math.log10(axis.hi);
    return 10 ** (a + frac * (b - a));
  }
  return axis.lo + frac * (axis.hi - axis.lo);
}

function axisTicks(axis) {
  if (axis.kind === "choice") return axis.cats;
  if (axis.kind === "log") return logTicks(axis.lo, axis.hi, 7);
  return linearTicks(axis.lo, axis.hi, 6, axis.integer);
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Every trial with all its parameters is one line; failed and diverged trials are red
 *  dashed lines ending in the "failed" slot under the metric axis (where an infeasible
 *  region shows); unfinished ones stop at the last parameter. Brushes (the table's
 *  parameter ranges) highlight the lines inside all of them. */
function drawParallel(page) {
  const { study, points, params, st } = page;
  const box = page.parallelBox;
  const axes = parallelAxes(study, points, params);
  const width = Math.max(640, (box.clientWidth || 1200) - 18);
  const height = PC.height, plotH = height - PC.top - PC.bottom;
  const n = axes.length;
  const xs = axes.map((_, i) => PC.side + (n > 1 ? (i * (width - 2 * PC.side)) / (n - 1) : (width - 2 * PC.side) / 2));
  const failedY = PC.top + plotH + PC.slot;
  const yOf = (axis, v) => PC.top + (1 - axisFraction(axis, v)) * plotH;
  // A conditional parameter a trial does not have (its condition failed) is no value:
  // the line passes through the axis's "absent" slot below it, never a point on the scale.
  const hasParams = sampledTrials(axes.slice(0, n - 1), points);
  const absent = new Map(axes.filter((a) => a.conditional).map((a) => [a.name, 0]));

  // Geometry once: y per axis per trial (NaN: no line), and what kind of line it is.
  const lines = [];
  let failed = 0;
  for (let i = 0; i < points.count; i++) {
    const ys = [];
    let ok = true;
    for (let a = 0; a < n - 1; a++) {
      const v = points.values[axes[a].name][i];
      if ((v === null || v === undefined) && axes[a].conditional && hasParams[i]) {
        ys.push(failedY);
        absent.set(axes[a].name, absent.get(axes[a].name) + 1);
        continue;
      }
      if (v === null || v === undefined) { ok = false; break; }
      ys.push(yOf(axes[a], v));
    }
    if (!ok) continue;
    const score = points.score[i];
    const bad = score === null && isBad(points.state[i]);
    if (score !== null) ys.push(yOf(axes[n - 1], score));
    else if (bad) { ys.push(failedY); failed++; }
    lines.push({ i, ys, bad });
  }
  const numeric = new Set(axes.filter((a) => a.kind === "log" || a.kind === "linear").map((a) => a.name));
  const brushes = Object.entries(st.ranges).filter(([name, r]) => numeric.has(name) && (r[0] !== null || r[1] !== null));

  const dpr = window.devicePixelRatio || 1;
  const canvas = el("canvas", { width: Math.round(width * dpr), height: Math.round(height * dpr) });
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const overlay = svg("svg", { width, height, class: "pc-axes" });
  const legend = el("div", { class: "pc-legend" });
  box.replaceChildren(el("h3", { text: `parallel coordinates: ${lines.length} trials, ${n - 1} parameters and ${study.metric}` }), el("div", { class: "pc-stack" }, canvas, overlay), legend);

  const stages = study.stages.length;
  const goodness = (s) => {
    const a = axes[n - 1];
    const f = a.hi > a.lo ? (s - a.lo) / (a.hi - a.lo) : 1;
    return study.maximize ? f : 1 - f;
  };
  const paint = () => {
    const ranges = Object.entries(st.ranges).filter(([name, r]) => numeric.has(name) && (r[0] !== null || r[1] !== null));
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const alpha = Math.min(0.85, Math.max(0.06, 20 / Math.sqrt(Math.max(1, lines.length))));
    const groups = new Map();  // colour -> lines, drawn in insertion order
    const add = (key, line) => { if (!groups.has(key)) groups.set(key, []); groups.get(key).push(line); };
    let highlighted = 0;
    const dim = [], lit = [];
    for (const line of lines) {
      const inside = ranges.every(([name, r]) => inRange(points.values[name][line.i], r));
      if (ranges.length && !inside) dim.push(line);
      else { lit.push(line); if (ranges.length) highlighted++; }
    }
    if (st.colorBy === "score") {
      const scored = lit.filter((l) => !l.bad && points.score[l.i] !== null)
        .sort((a, b) => goodness(points.score[a.i]) - goodness(points.score[b.i]));
      for (const l of scored) add(SCORE_COLORS[Math.min(SCORE_COLORS.length - 1, Math.floor(goodness(points.score[l.i]) * SCORE_COLORS.length))], l);
      for (const l of lit) if (!l.bad && points.score[l.i] === null) add("#98a2b3", l);
    } else {
      for (let s = 1; s <= stages; s++) for (const l of lit) if (!l.bad && points.stage[l.i] === s) add(COLORS[(s - 1) % COLORS.length], l);
    }
    const stroke = (list, color, a, dash = []) => {
      if (!list.length) return;
      ctx.globalAlpha = a;
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.beginPath();
      for (const { ys } of list) {
        ctx.moveTo(xs[0], ys[0]);
        for (let k = 1; k < ys.length; k++) ctx.lineTo(xs[k], ys[k]);
      }
      ctx.stroke();
    };
    ctx.lineWidth = 1;
    stroke(dim, "#d0d5dd", Math.min(0.5, alpha));
    for (const [color, list] of groups) stroke(list, color, ranges.length ? Math.min(0.95, alpha * 2) : alpha);
    // 1 px, as the others: Skia strokes 1-px lines fast; at 1.4 px, 3,000 dashed failed
    // trials took 2.4 s to rasterize (benchmarks/dashboard_load.py).
    stroke(lit.filter((l) => l.bad), FAILED_COLOR, 0.85, [5, 3]);
    ctx.globalAlpha = 1;
    ctx.setLineDash([]);
    box.dataset.highlighted = ranges.length ? String(highlighted) : "";
  };

  // axes, ticks, titles; a hit area and a brush per numeric parameter
  axes.forEach((axis, a) => {
    const g = svg("g", { class: "axis", "data-param": axis.name, "data-kind": axis.kind });
    const x = xs[a];
    g.append(svg("line", { x1: x, x2: x, y1: PC.top, y2: PC.top + plotH, class: "axis-line" }));
    g.append(svg("text", { x, y: PC.top - 22, class: "axis-title", "text-anchor": "middle" }, axis.label));
    for (const t of axisTicks(axis)) {
      const y = yOf(axis, t);
      g.append(svg("line", { x1: x - 4, x2: x, y1: y, y2: y, class: "tick" }));
      g.append(svg("text", { x: x - 7, y: y + 4, class: "tick-label", "text-anchor": "end" }, axis.kind === "choice" ? t : fmtValue(t)));
    }
    if (axis.conditional) absentSlot(g, axis, x, failedY, absent.get(axis.name));
    if (axis.kind === "score" && failed) {
      g.append(svg("circle", { cx: x, cy: failedY, r: 4, class: "failed-slot" }));
      g.append(svg("text", { x: x - 8, y: failedY + 4, class: "failed-label", "text-anchor": "end" }, `failed or diverged (${failed})`));
    }
    if (numeric.has(axis.name)) {
      const brush = svg("rect", { x: x - 9, width: 18, y: 0, height: 0, class: "brush", "data-param": axis.name });
      const hit = svg("rect", { x: x - 14, width: 28, y: PC.top, height: plotH, class: "axis-hit", "data-param": axis.name });
      const place = () => {
        const r = st.ranges[axis.name];
        if (!r || (r[0] === null && r[1] === null)) { brush.setAttribute("visibility", "hidden"); return; }
        const y0 = r[1] === null ? PC.top : Math.max(PC.top, Math.min(PC.top + plotH, yOf(axis, r[1])));
        const y1 = r[0] === null ? PC.top + plotH : Math.max(PC.top, Math.min(PC.top + plotH, yOf(axis, r[0])));
        brush.setAttribute("visibility", "visible");
        brush.setAttribute("y", Math.min(y0, y1));
        brush.setAttribute("height", Math.max(1, Math.abs(y1 - y0)));
      };
      place();
      brushDrag(page, hit, axis, { top: PC.top, plotH, overlay, place, paint });
      g.append(brush, hit);
    }
    overlay.append(g);
  });

  if (st.colorBy === "score") {
    legend.append(el("span", { class: "muted", text: `${study.metric}: worse ` }), ...SCORE_COLORS.map((c) => swatch(c)), el("span", { class: "muted", text: " better" }));
  } else {
    for (let s = 1; s <= stages; s++) legend.append(swatch(COLORS[(s - 1) % COLORS.length]), el("span", { text: `stage ${s} ` }));
  }
  if (failed) legend.append(swatch(FAILED_COLOR, true), el("span", { text: `failed or diverged (${failed}), dashed` }));
  box.dataset.lines = String(lines.length);
  box.dataset.failed = String(failed);
  box.dataset.axes = String(n);
  box.dataset.absent = JSON.stringify(Object.fromEntries(absent));
  box.dataset.color = st.colorBy;
  paint();
  page.paintParallel = paint;
}

/** A conditional parameter's condition as a person reads it ("optimizer is sgd"), or null
 *  for a parameter every trial has. */
function conditionOf(dist) {
  if (!dist || !dist.when) return null;
  return Object.entries(dist.when).map(([parent, v]) => `${parent} is ${[].concat(v).join(" or ")}`).join(" and ");
}

/** Per trial, whether it has its parameters yet (some parameter without a condition has a
 *  value): an unsampled trial draws no line, a sampled one lacking a conditional
 *  parameter goes through that axis's absent slot. */
function sampledTrials(axes, points) {
  const roots = axes.filter((a) => !a.conditional).map((a) => points.values[a.name]);
  const out = new Array(points.count);
  for (let i = 0; i < points.count; i++) out[i] = roots.some((vs) => vs[i] !== null && vs[i] !== undefined);
  return out;
}

/** The slot under a conditional axis where the lines of the trials without it pass. */
function absentSlot(g, axis, x, y, count) {
  g.append(svg("title", {}, `${axis.name}: only when ${axis.conditional}`));
  g.append(svg("circle", { cx: x, cy: y, r: 4, class: "absent-slot" }));
  g.append(svg("text", { x: x - 8, y: y + 4, class: "absent-label", "text-anchor": "end" }, `absent (${count})`));
  g.append(svg("text", { x, y: y + 18, class: "absent-label", "text-anchor": "middle" }, `when ${axis.conditional}`));
}

function swatch(color, dashed = false) {
  const s = el("span", { class: "swatch" + (dashed ? " dashed" : "") });
  s.style.borderColor = color;
  if (!dashed) s.style.background = color;
  return s;
}

/** Drag along an axis to set its range (3 significant digits, the table's filter);
 *  a click without a drag clears it. */
function brushDrag(page, hit, axis, { top, plotH, overlay, place, paint }) {
  const st = page.st;
  const yAt = (event) => Math.max(top, Math.min(top + plotH, event.clientY - overlay.getBoundingClientRect().top));
  const valueAt = (y) => round3(axisValue(axis, 1 - (y - top) / plotH));
  hit.addEventListener("pointerdown", (down) => {
    down.preventDefault();
    hit.setPointerCapture(down.pointerId);
    page.dragging = true;
    const y0 = yAt(down);
    let y1 = y0, frame = 0;
    const set = () => {
      const a = valueAt(Math.max(y0, y1)), b = valueAt(Math.min(y0, y1));
      st.ranges[axis.name] = [Math.min(a, b), Math.max(a, b)];
    };
    const move = (event) => {
      y1 = yAt(event);
      if (Math.abs(y1 - y0) < 3) return;
      set();
      place();
      if (!frame) frame = requestAnimationFrame(() => { frame = 0; paint(); });
    };
    const up = (event) => {
      hit.removeEventListener("pointermove", move);
      hit.removeEventListener("pointerup", up);
      hit.removeEventListener("pointercancel", up);
      if (frame) cancelAnimationFrame(frame);
      y1 = yAt(event);
      page.dragging = false;
      if (Math.abs(y1 - y0) < 3) delete st.ranges[axis.name];
      else set();
      rangesChanged(page);
    };
    hit.addEventListener("pointermove", move);
    hit.addEventListener("pointerup", up);
    hit.addEventListener("pointercancel", up);
  });
}

/** The brushes or the range inputs changed: redraw, sync the other, re-query the table. */
function rangesChanged(page) {
  drawParallel(page);
  page.table.syncRanges();
  page.st.offset = 0;
  page.table.load();
}

// -- importance ----------------------------------------------------------------------

const IMPORTANCE_EVERY_MS = 15000;

async function importancePanel(page) {
  // Asked again only once more trials finished, and while the study runs at most every
  // 15 s: the server fits a model for each answer.
  const key = `${page.study.finished_trials}/${page.study.total_trials}/${page.study.state}`;
  const running = page.study.state === "running";
  if (page.importanceKey === key || (running && performance.now() - (page.importanceAt || -1e9) < IMPORTANCE_EVERY_MS)) return;
  page.importanceKey = key;
  page.importanceAt = performance.now();
  const box = page.importanceBox;
  let body;
  try {
    body = await get(`/studies/${page.id}/importance`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "err", text: String(error.message || error) }));
    return;
  }
  if (!view.contains(box)) return;
  const order = body.study.importances
    ? Object.entries(body.study.importances).sort((a, b) => b[1] - a[1]).map(([k]) => k)
    : page.params;
  const group = (scope, title, trials, importances) => {
    const rows = importances
      ? order.filter((p) => p in importances).map((p) => {
        const bar = el("span", { class: "bar" });
        bar.style.width = `${(100 * importances[p]).toFixed(1)}%`;
        return el("div", { class: "bar-row", "data-param": p },
          el("span", { class: "bar-name", text: p }), el("span", { class: "bar-track" }, bar),
          el("span", { class: "bar-value", "data-value": String(importances[p]), text: importances[p].toFixed(3) }));
      })
      : [el("p", { class: "muted", text: `not computed (${trials} trials)` })];
    return el("div", { class: "importance-group", "data-scope": scope }, el("h3", { text: `${title}: ${trials} trials` }), ...rows);
  };
  box.replaceChildren(
    el("p", { id: "importance-method", class: "muted", text: `method: ${body.method}` }),
    ...(body.note ? [el("p", { id: "importance-note", class: "warn", text: body.note })] : []),
    el("div", { class: "importance-groups" },
      group("study", "whole study", body.study.trials, body.study.importances),
      ...body.stages.map((s) => group(`stage-${s.stage}`, `stage ${s.stage}`, s.trials, s.importances))),
  );
}

// -- markers -------------------------------------------------------------------------

/** A series drawn as markers by markersPlugin, not by uPlot: uPlot strokes each of its
 *  points, and 20,000 of them took a second to paint. */
function markerSeries(label, color, { size, hollow = false }) {
  return { label, stroke: color, fill: hollow ? "#ffffff" : color, paths: () => null, points: { show: false }, marker: { size, hollow, color } };
}

/** Filled dots (one path a series, filled once) and hollow red circles (1 px strokes). */
function markersPlugin() {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        const dpr = devicePixelRatio || 1;
        ctx.save();
        ctx.beginPath();
        ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
        ctx.clip();
        u.series.forEach((series, i) => {
          if (i === 0 || !series.show || !series.marker) return;
          const { size, hollow, color } = series.marker;
          const r = (size / 2) * dpr;
          const xs = u.data[0], ys = u.data[i];
          const path = new Path2D();
          // past a few thousand dots, squares: they rasterize about twice as fast as discs
          const square = !hollow && ys.length > 2000;
          for (let j = 0; j < ys.length; j++) {
            if (ys[j] === null || ys[j] === undefined) continue;
            const x = u.valToPos(xs[j], "x", true), y = u.valToPos(ys[j], series.scale, true);
            if (square) path.rect(x - r * 0.8, y - r * 0.8, 1.6 * r, 1.6 * r);
            else { path.moveTo(x + r, y); path.arc(x, y, r, 0, 2 * Math.PI); }
          }
          if (hollow) {
            ctx.lineWidth = dpr;  // 1 px: thicker strokes are slow to rasterize
            ctx.strokeStyle = color;
            ctx.fillStyle = "#ffffff";
            ctx.fill(path);
            ctx.stroke(path);
          } else {
            ctx.fillStyle = color;
            ctx.fill(path);
          }
        });
        ctx.restore();
      }],
    },
  };
}

// -- history -------------------------------------------------------------------------

function stageLinesPlugin(bounds) {
  // a dashed vertical line where each later stage's first trial finished
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#667085";
        ctx.fillStyle = "#667085";
        ctx.setLineDash([4, 4]);
        ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
        ctx.textAlign = "left";
        ctx.textBaseline = "top";
        for (const [x, label] of bounds) {
          const px = u.valToPos(x, "x", true);
          ctx.beginPath();
          ctx.moveTo(px, u.bbox.top);
          ctx.lineTo(px, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(label, px + 4 * devicePixelRatio, u.bbox.top + 2 * devicePixelRatio);
        }
        ctx.restore();
      }],
    },
  };
}

/** Every finished trial's score by finish order (points coloured by stage), the best so
 *  far, failed and diverged trials in red at the bottom, a line at each stage's start. */
function historyPlot(page) {
  const { study, points } = page;
  const idx = [];
  for (let i = 0; i < points.count; i++) if (points.order[i] !== null) idx.push(i);
  idx.sort((a, b) => points.order[a] - points.order[b]);
  const xs = idx.map((i) => points.order[i]);
  let lo = Infinity, hi = -Infinity;
  for (const i of idx) { const s = points.score[i]; if (s !== null) { lo = Math.min(lo, s); hi = Math.max(hi, s); } }
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.08 || 0.1;
  const bottom = lo - pad * 0.6;
  const better = study.maximize ? (a, b) => a > b : (a, b) => a < b;
  let best = null;
  const bestSoFar = idx.map((i) => { const s = points.score[i]; if (s !== null && (best === null || better(s, best))) best = s; return best; });
  const stages = study.stages.length;
  const series = [{}];
  const data = [xs];
  for (let s = 1; s <= stages; s++) {
    const col = idx.map((i) => (points.stage[i] === s && points.score[i] !== null ? points.score[i] : null));
    if (!col.some((v) => v !== null)) continue;
    const c = COLORS[(s - 1) % COLORS.length];
    series.push(markerSeries(`stage ${s}`, c, { size: 5 }));
    data.push(col);
  }
  series.push({ label: "best so far", stroke: "#1d2330", width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } });
  data.push(bestSoFar);
  const bad = idx.map((i) => (points.score[i] === null && isBad(points.state[i]) ? bottom : null));
  const failed = bad.filter((v) => v !== null).length;
  if (failed) {
    series.push(markerSeries(`failed or diverged (${failed})`, FAILED_COLOR, { size: 8, hollow: true }));
    data.push(bad);
  }
  const bounds = [];
  for (let s = 2; s <= stages; s++) {
    const first = idx.find((i) => points.stage[i] === s);
    if (first !== undefined) bounds.push([points.order[first] - 0.5, `stage ${s}`]);
  }
  const u = plot("optimization history", {
    scales: { x: { time: false, range: (u, min, max) => { const m = Math.max(0.5, (max - min) * 0.01); return [min - m, max + m]; } }, y: { range: () => [lo - pad, hi + pad] } },
    axes: [{ label: "trial, in finish order" }, { label: study.metric }],
    series,
    legend: { show: true, live: false },  // the series' names; no "--" values
    plugins: [stageLinesPlugin(bounds), markersPlugin()],
  }, data, page.historyBox);
  studyPlots.history = u;
  return u;
}

// -- scatter -------------------------------------------------------------------------

function bandsPlugin(bands) {
  // shaded border bands: values in them are "on the border" of the range
  return {
    hooks: {
      drawClear: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = "rgba(247, 144, 9, 0.16)";
        for (const [a, b] of bands) {
          const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
          ctx.fillRect(Math.min(x0, x1), u.bbox.top, Math.abs(x1 - x0), u.bbox.height);
        }
        ctx.restore();
      }],
    },
  };
}

function borderBands(range, log, fraction = 0.1) {
  const [lo, hi] = range;
  if (log) {
    const a = Math.log10(lo), b = Math.log10(hi), w = (b - a) * fraction;
    return [[lo, 10 ** (a + w)], [10 ** (b - w), hi]];
  }
  const w = (hi - lo) * fraction;
  return [[lo, lo + w], [hi - w, hi]];
}

/** One parameter against the metric, from `points`: a point per scored trial coloured by
 *  stage; failed and diverged trials hollow and red at the worst score. */
function scatter(name, dist, points, study, parent) {
  const { log, range } = scaleOf(dist);
  const values = points.values[name];
  const entries = [];
  let worst = null;
  for (let i = 0; i < points.count; i++) {
    if (typeof values[i] !== "number") continue;
    const s = points.score[i];
    if (s !== null) {
      entries.push(i);
      if (worst === null || (study.maximize ? s < worst : s > worst)) worst = s;
    } else if (isBad(points.state[i])) entries.push(i);
  }
  entries.sort((a, b) => values[a] - values[b]);
  const xs = entries.map((i) => values[i]);
  let lo = range[0], hi = range[1];
  if (xs.length) { lo = Math.min(lo, xs[0]); hi = Math.max(hi, xs[xs.length - 1]); }
  const series = [{}];
  const data = [xs];
  for (let s = 1; s <= study.stages.length; s++) {
    const col = entries.map((i) => (points.stage[i] === s && points.score[i] !== null ? points.score[i] : null));
    if (!col.some((v) => v !== null)) continue;
    const c = COLORS[(s - 1) % COLORS.length];
    data.push(col);
    series.push(markerSeries(`stage ${s}`, c, { size: 7 }));
  }
  const bad = entries.filter((i) => points.score[i] === null).length;
  if (bad) {
    data.push(entries.map((i) => (points.score[i] === null ? worst ?? 0 : null)));
    series.push(markerSeries(`failed or diverged (${bad}, at the worst score)`, FAILED_COLOR, { size: 10, hollow: true }));
  }
  const width = 440;
  // a margin above and below, so that the markers at the best and the worst score show whole
  const yRange = (u, min, max) => { const pad = (max - min) * 0.06 || Math.abs(max) * 0.06 || 0.05; return [min - pad, max + pad]; };
  return plot(`${name} vs ${study.metric}`, {
    scales: { x: { time: false, distr: log ? 3 : 1, range: () => [lo, hi] }, y: { range: yRange } },
    axes: [{ label: name + (log ? " (log)" : ""), ...(log ? logAxis(width) : { values: (u, splits) => splits.map(fmtValue) }) }, { label: study.metric }],
    series,
    legend: { show: true, live: false },  // the series' names; no "--" values
    plugins: [bandsPlugin(borderBands(range, log)), markersPlugin()],
  }, data, parent);
}

// -- the trial table -----------------------------------------------------------------

/** Filters (stage, state, parameter ranges synced with the brushes), column choice,
 *  server-side pages and sort, CSV and JSON export of everything the filters match,
 *  and row selection for the compare-trials page. */
function trialTable(page) {
  const { id, st, study, params } = page;
  const numeric = params.filter((p) => !("choice" in (study.stages[0].space[p] || study.spec.space[p])));
  let last = null, seq = 0;

  const stage = el("select", { id: "f-stage" }, el("option", { value: "", text: "all stages" }),
    ...study.stages.map((s) => el("option", { value: String(s.index + 1), text: `stage ${s.index + 1}` })));
  const state = el("select", { id: "f-state" }, el("option", { value: "", text: "all states" }),
    ...TRIAL_STATES.map((s) => el("option", { value: s, text: s })));
  stage.value = st.stage;
  state.value = st.state;
  const refilter = () => { st.offset = 0; load(); };
  stage.addEventListener("change", () => { st.stage = stage.value; refilter(); });
  state.addEventListener("change", () => { st.state = state.value; refilter(); });
  const rangeInputs = numeric.map((p) => {
    const lo = el("input", { class: "range-lo", "data-param": p, placeholder: "min", size: 7 });
    const hi = el("input", { class: "range-hi", "data-param": p, placeholder: "max", size: 7 });
    const apply = () => {
      const parse = (input) => {
        const text = input.value.trim();
        if (text === "") { input.classList.remove("bad"); return null; }
        const v = Number(text);
        input.classList.toggle("bad", !Number.isFinite(v));
        return Number.isFinite(v) ? v : undefined;
      };
      const a = parse(lo), b = parse(hi);
      if (a === undefined || b === undefined) return;
      if (a === null && b === null) delete st.ranges[p];
      else st.ranges[p] = [a, b];
      rangesChanged(page);
    };
    lo.addEventListener("change", apply);
    hi.addEventListener("change", apply);
    return { p, lo, hi };
  });
  const syncRanges = () => {
    for (const { p, lo, hi } of rangeInputs) {
      const r = st.ranges[p] || [null, null];
      lo.value = r[0] === null ? "" : String(r[0]);
      hi.value = r[1] === null ? "" : String(r[1]);
      lo.classList.remove("bad");
      hi.classList.remove("bad");
    }
  };
  syncRanges();
  const clear = el("button", { id: "f-clear", text: "clear filters", onclick: () => {
    st.stage = ""; st.state = ""; st.ranges = {}; stage.value = ""; state.value = "";
    rangesChanged(page);
  } });

  const columnsBox = el("div", { class: "column-choices" });
  const chooser = el("details", { id: "trial-columns" }, el("summary", { text: "columns" }), columnsBox);
  const syncColumns = () => {
    const names = [...params.map((p) => `params.${p}`), ...(page.study.metric_names || []).map((m) => `metrics.${m}`)];
    if (columnsBox.dataset.names === names.join(",")) return;
    columnsBox.dataset.names = names.join(",");
    columnsBox.replaceChildren(...names.map((key) => {
      const box = el("input", { type: "checkbox", "data-key": key });
      box.checked = st.columns.has(key);
      box.addEventListener("change", () => { if (box.checked) st.columns.add(key); else st.columns.delete(key); render(); });
      return el("label", {}, box, ` ${key.replace(/^params\./, "").replace(/^metrics\./, "metric ")}`);
    }));
  };

  const limit = el("select", { id: "trials-limit" }, ...PAGE_SIZES.map((n) => el("option", { value: String(n), text: `${n} a page` })));
  limit.value = String(st.limit);
  limit.addEventListener("change", () => { st.limit = Number(limit.value); refilter(); });
  const prev = el("button", { id: "trials-prev", text: "prev", onclick: () => { st.offset = Math.max(0, st.offset - st.limit); load(); } });
  const next = el("button", { id: "trials-next", text: "next", onclick: () => { if (last && st.offset + st.limit < last.count) { st.offset += st.limit; load(); } } });
  const range = el("span", { id: "trials-range", class: "muted" });
  const csv = el("a", { id: "export-csv", class: "button", download: "", text: "export CSV" });
  const json = el("a", { id: "export-json", class: "button", download: "", text: "export JSON" });
  const compare = el("button", { id: "compare-selected", onclick: () => {
    const numbers = [...st.selected].sort((a, b) => a - b);
    if (numbers.length >= 2) location.hash = `#/studies/${id}/compare-trials/${numbers.join(",")}`;
  } });
  const unselect = el("button", { id: "clear-selection", text: "clear selection", onclick: () => { st.selected.clear(); render(); } });
  const error = el("p", { id: "trials-error", class: "err" });
  const tableNode = el("table", { id: "trials" });

  const columns = () => [
    { key: "select" },
    { key: "rank", name: "rank", get: (t) => t.rank },
    { key: "number", name: "trial", sort: "number", get: (t) => t.number },
    { key: "stage", name: "stage", get: (t) => t.stage },
    { key: "best_score", name: study.metric, sort: "best_score", get: (t) => t.best_score, fmt: fmtScore },
    { key: "best_epoch", name: "epoch", sort: "best_epoch", get: (t) => t.best_epoch },
    { key: "state", name: "state", left: true, get: (t) => (t.origin ? `${t.state} (${t.origin})` : t.state) },
    ...params.filter((p) => st.columns.has(`params.${p}`)).map((p) => ({ key: `params.${p}`, name: p, sort: `params.${p}`, get: (t) => (t.params ? (p in t.params ? t.params[p] : "") : null) })),
    ...(page.study.metric_names || []).filter((m) => st.columns.has(`metrics.${m}`)).map((m) => ({ key: `metrics.${m}`, name: m, sort: `metrics.${m}`, title: "the last reported epoch's value; the server sorts by the value at the best epoch", get: (t) => (t.metrics ? t.metrics[m] ?? null : null) })),
    { key: "warnings", name: "warnings", left: true, get: (t) => (t.warnings || []).map((w) => w.code).join(", ") },
  ];

  function render() {
    const cols = columns();
    const rows = last ? last.data : [];
    const all = el("input", { type: "checkbox", id: "select-page", title: "select this page" });
    all.checked = rows.length > 0 && rows.every((t) => st.selected.has(t.number));
    all.addEventListener("change", () => { for (const t of rows) { if (all.checked) st.selected.add(t.number); else st.selected.delete(t.number); } render(); });
    const head = el("tr", {}, ...cols.map((c) => {
      if (c.key === "select") return el("th", { "data-col": "select" }, all);
      const sorted = st.sort === c.sort ? "sorted-asc" : st.sort === `-${c.sort}` ? "sorted-desc" : "";
      const th = el("th", { "data-col": c.key, title: c.title, class: [c.left ? "l" : "", c.sort ? "sortable" : "", sorted].filter(Boolean).join(" "), text: c.name });
      if (c.sort) th.addEventListener("click", () => {
        // ascending, descending, then the default order (best first)
        st.sort = st.sort === c.sort ? `-${c.sort}` : st.sort === `-${c.sort}` ? null : c.sort;
        st.offset = 0;
        load();
      });
      return th;
    }));
    const body = el("tbody", {}, ...rows.map((t) => {
      const tr = el("tr", { class: "click", "data-number": String(t.number) }, ...cols.map((c) => {
        if (c.key === "select") {
          const box = el("input", { type: "checkbox", class: "select-trial", "data-number": String(t.number) });
          box.checked = st.selected.has(t.number);
          box.addEventListener("click", (event) => event.stopPropagation());
          box.addEventListener("change", () => { if (box.checked) st.selected.add(t.number); else st.selected.delete(t.number); updateSelection(); });
          return el("td", { "data-col": "select" }, box);
        }
        const v = c.get(t);
        return el("td", { "data-col": c.key, class: c.left ? "l" : "", "data-value": v === null || v === undefined ? "" : String(v), text: (c.fmt || fmtCell)(v) });
      }));
      tr.addEventListener("click", () => (location.hash = `#/studies/${id}/trials/${t.number}`));
      return tr;
    }));
    tableNode.replaceChildren(el("thead", {}, head), body);
    const count = last ? last.count : 0;
    range.textContent = count ? `rows ${st.offset + 1}-${st.offset + rows.length} of ${count}` : "no trials match";
    range.dataset.count = String(count);
    prev.disabled = st.offset === 0;
    next.disabled = st.offset + st.limit >= count;
    const exportQuery = trialQuery(st, { page: false });
    csv.href = `${API}/studies/${id}/trials?format=csv${exportQuery ? "&" + exportQuery : ""}`;
    json.href = `${API}/studies/${id}/trials?format=json${exportQuery ? "&" + exportQuery : ""}`;
    updateSelection();
  }

  function updateSelection() {
    const k = st.selected.size;
    compare.textContent = `compare selected (${k})`;
    compare.disabled = k < 2;
    unselect.disabled = k === 0;
  }

  async function load() {
    const mine = ++seq;
    const query = trialQuery(st);
    tableNode.dataset.loading = "1";
    let body;
    try {
      body = await get(`/studies/${id}/trials?${query}`);
    } catch (failure) {
      if (mine !== seq) return;
      error.textContent = String(failure.message || failure);
      tableNode.dataset.loading = "";
      return;
    }
    if (mine !== seq) return;  // a newer query is on its way
    if (body.count && st.offset >= body.count) {  // fewer trials match now: the last page
      st.offset = Math.floor((body.count - 1) / st.limit) * st.limit;
      return load();
    }
    error.textContent = "";
    last = body;
    render();
    tableNode.dataset.loading = "";
    tableNode.dataset.query = query;
    performance.mark("trials-page");
    tableNode.dispatchEvent(new Event("rendered"));
  }

  const filters = el("div", { class: "table-controls", id: "trial-filters" }, stage, state,
    ...rangeInputs.map(({ p, lo, hi }) => el("label", { class: "range" }, `${p} `, lo, " to ", hi)), clear);
  const pager = el("div", { class: "table-controls", id: "trial-pager" }, chooser, limit, prev, range, next, csv, json, compare, unselect);
  syncColumns();
  updateSelection();
  return { root: el("div", { class: "trial-table" }, filters, pager, error, tableNode), load, syncRanges, syncColumns };
}
