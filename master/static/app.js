/* gridless dashboard: a small hash-routed page over the master's JSON API.
 * Every number shown is read from the API and formatted by fmt*(); cells keep the raw
 * value in data-value so tests can compare them with the API. */
"use strict";

const API = "/api/v1";
const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");
const COLORS = ["#2f6fde", "#12b76a", "#f79009", "#9e77ed", "#f04438", "#0ba5ec"];
let timer = null;
let plots = [];

const fmtScore = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(4));
const fmtTick = (v) => (v === 0 ? "0" : Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4 ? v.toExponential(0) : String(Number(v.toPrecision(3))));
const tickValues = (u, splits) => splits.map((v) => (v === null ? "" : fmtTick(v)));
const fmtNum = (v) =>
  v === null || v === undefined ? "-" : typeof v === "number" ? Number(v.toPrecision(3)).toString() : String(v);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function get(path) {
  const response = await fetch(API + path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.json()).detail}`);
  return response.json();
}

function cell(value, format, cls) {
  return el("td", { class: cls, "data-value": value === null || value === undefined ? "" : String(value), text: format(value) });
}

function table(columns, rows, { onclick, sortable = false, id } = {}) {
  const head = el("tr", {}, ...columns.map((c, i) => el("th", { class: (c.left ? "l " : "") + (sortable ? "sortable" : ""), "data-col": i, text: c.name })));
  const body = el("tbody");
  const render = (list) => {
    body.replaceChildren(...list.map((row) => {
      const tr = el("tr", { class: onclick ? "click" : "" }, ...columns.map((c) => cell(c.get(row), c.fmt || fmtNum, c.left ? "l" : "")));
      if (onclick) tr.addEventListener("click", () => onclick(row));
      return tr;
    }));
  };
  const node = el("table", { id }, el("thead", {}, head), body);
  if (sortable) {
    let state = { col: -1, dir: 1 };
    head.addEventListener("click", (event) => {
      const th = event.target.closest("th");
      if (!th) return;
      const col = Number(th.dataset.col);
      state = { col, dir: state.col === col ? -state.dir : 1 };
      const key = columns[col].get;
      const sorted = [...rows].sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * state.dir;
      });
      head.querySelectorAll("th").forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(state.dir > 0 ? "sorted-asc" : "sorted-desc");
      render(sorted);
    });
  }
  render(rows);
  return node;
}

function plot(title, opts, data, parent) {
  const box = el("div", { class: "plot", "data-plot": title }, el("h3", { text: title }));
  parent.append(box);
  const width = Math.max(380, box.clientWidth - 16);
  // The x series is named after its axis in the legend (uPlot's default is "Value").
  const [x, ...ys] = opts.series || [{}];
  const series = [{ label: opts.axes?.[0]?.label || "x", ...x }, ...ys];
  // The width follows the box: a grid column changes once the page's scrollbar appears.
  const fit = new ResizeObserver(() => {
    const w = Math.max(300, box.clientWidth - 16);
    if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height: u.height });
  });
  const hooks = { ...opts.hooks, destroy: [...(opts.hooks?.destroy || []), () => fit.disconnect()] };
  const u = new uPlot({ width, height: 240, legend: { show: true }, ...opts, series, hooks }, data, box);
  fit.observe(box);
  plots.push(u);
  return u;
}

function stop() {
  if (timer) clearTimeout(timer);
  timer = null;
  plots.forEach((u) => u.destroy());
  plots = [];
}

function refreshWhile(running, fn) {
  if (running && live.checked) timer = setTimeout(fn, 2000);
}

async function studiesView() {
  crumbs.replaceChildren();
  const studies = await get("/studies?limit=1000");
  view.replaceChildren(
    el("h1", { text: studies.count > studies.data.length ? `Studies (the first ${studies.data.length} of ${studies.count})` : `Studies (${studies.count})` }),
    table([
      { name: "id", get: (s) => s.id },
      { name: "name", get: (s) => s.name, left: true },
      { name: "state", get: (s) => s.state, left: true },
      { name: "metric", get: (s) => s.metric, left: true },
      { name: "created", get: (s) => s.created_at, left: true },
    ], studies.data, { onclick: (s) => (location.hash = `#/studies/${s.id}`), id: "studies" }),
  );
}

// studyView (the study page) lives in analysis.js.

async function ensemblesPanel(id, built) {
  const box = document.getElementById("ensembles");
  if (!built) {
    box.append(el("p", { class: "muted", text: `not built yet: gridless ensemble ${id} (or POST /api/v1/studies/${id}/ensembles) once the study is completed` }));
    return;
  }
  const body = await get(`/studies/${id}/ensembles`);
  const metric = body.metric || "accuracy";  // a function's study names its own
  const gain = metric === "accuracy" ? (v) => `${v >= 0 ? "+" : ""}${(100 * v).toFixed(2)} pt` : (v) => `${v >= 0 ? "+" : ""}${v.toFixed(4)}`;
  box.append(table([
    { name: "kind", get: (r) => r.kind, left: true },
    { name: "model or ensemble", get: (r) => r.name, left: true },
    { name: "members", get: (r) => r.members },
    { name: `val ${metric}`, get: (r) => r.val_score, fmt: fmtScore },
    { name: `test ${metric}`, get: (r) => r.test_score, fmt: fmtScore },
    { name: body.maximize === false ? "test change" : "test gain", get: (r) => r.test_gain, fmt: gain },
  ], body.rows, { id: "ensemble-table" }), el("p", { class: "muted", text: `test split: ${body.test_examples} examples, never used to choose` }),
  ...(body.notes || []).slice(1).map((n) => el("p", { class: "muted", text: n })));
}

// Legends: each series by name, with its value under the cursor; at rest, its
// last value (a trial's last epoch), so a glance at the legend reads the final numbers.
const fmtLegend = (v) => (v === null || v === undefined ? "-" : Number(v.toPrecision(4)).toString());
function lastValue(column) {
  for (let i = column.length - 1; i >= 0; i--) if (column[i] !== null && column[i] !== undefined) return column[i];
  return null;
}

function series(label, color, extra = {}) {
  const value = (u, v, sidx, idx) => fmtLegend(idx === null || idx === undefined ? lastValue(u.data[sidx]) : v);
  return { label, stroke: color, width: 2, value, ...extra };
}

// The x series of every curve plot: epochs, "last" in the legend at rest.
function epochSeries() {
  return { label: "epoch", value: (u, v, sidx, idx) => (idx === null || idx === undefined ? "last" : fmtLegend(v)) };
}

// Whole epochs on the x axis: an iteration's fraction of an epoch needs no tick of its own.
const epochAxis = () => ({ label: "epoch", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] });

// One x range for every curve plot of a page (the loss plot ran 0-4 where the
// accuracy plot ran 1-5). x counts epochs of training done: a per-epoch value sits at the
// end of its epoch, iteration k of n in epoch e at e - 1 + (k + 1) / n.
function epochScale(epochs) {
  const lo = epochs.length ? Math.min(...epochs) - 1 : 0;
  const hi = epochs.length ? Math.max(...epochs) : 1;
  return { time: false, range: () => [lo, hi] };
}

async function trialView(studyId, number) {
  // Trial N is trial N everywhere: the URL, the heading, the API path.
  const base = `/studies/${studyId}/trials/${number}`;
  const trial = await get(base);
  const study = await get(`/studies/${studyId}`);
  crumbs.replaceChildren(el("a", { href: `#/studies/${study.id}`, text: study.name }), el("a", { href: `#${base}`, text: `trial ${trial.number}` }));
  const metrics = trial.metrics;
  const epochs = metrics.map((m) => m.epoch);
  const info = el("div", { class: "cards" },
    ...[["state", trial.state], ["stage", trial.stage], ["attempt", trial.attempt], [`best ${study.metric}`, fmtScore(trial.best_score)], ["best epoch", trial.best_epoch]]
      .map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k", text: k }), el("div", { class: "v", text: String(v ?? "-") }))));
  const params = el("p", { id: "params", text: Object.entries(trial.params || {}).map(([k, v]) => `${k}=${fmtNum(v)}`).join("  ") });
  const warn = el("div", {}, ...(trial.warnings || []).map((w) => el("div", { class: "flag", text: `epoch ${w.epoch}: ${w.message}` })));
  const failure = el("div", {},
    ...(trial.state === "failed" && trial.error ? [el("pre", { id: "trial-error", class: "error", text: trial.error })] : []),
    el("p", {}, el("a", { id: "trial-log", href: `/api/v1${base}/log`, target: "_blank", text: "log: what the trial printed (stdout, stderr)" })));
  const logToggle = el("label", {}, el("input", { type: "checkbox", id: "logloss" }), " log-scale loss");
  const box = el("div", { class: "plots", id: "curves" });
  const weightsBox = el("div", { class: "weights", id: "first-layer" });
  const ckTable = table([
    { name: "file", get: (c) => c.path.split("/").pop(), left: true },
    { name: "epoch", get: (c) => c.epoch },
    { name: "score", get: (c) => c.score, fmt: fmtScore },
    { name: "bytes", get: (c) => c.size },
  ], trial.checkpoints, { id: "trial-checkpoints" });
  // Compare this trial with others: trial numbers, as the study's table shows them.
  const others = el("input", { type: "text", id: "compare-with", size: 14, placeholder: "e.g. 3, 7, 12", "aria-label": "trial numbers to compare with" });
  const compareForm = el("form", { id: "compare-form", class: "inline", onsubmit: (event) => {
    event.preventDefault();
    const numbers = [...new Set([trial.number, ...parseTrialNumbers(others.value)])];
    location.hash = `#/studies/${studyId}/compare-trials/${numbers.join(",")}`;
  } }, "compare with trials ", others, " ", el("button", { type: "submit", text: "compare" }));
  view.replaceChildren(el("h1", { text: `Trial ${trial.number}` }), info, failure, params, compareForm, warn, logToggle, box, el("h2", { text: "First-layer weights" }), weightsBox, el("h2", { text: "Checkpoints" }), ckTable);

  const draw = () => {
    plots.forEach((u) => u.destroy());
    plots = [];
    box.replaceChildren();
    const logScale = document.getElementById("logloss").checked;
    const positive = (v) => (v === null || v === undefined || !(v > 0) ? null : v);
    const x = epochScale(epochs);
    const curves = (title, yLabel, list, columns, y = {}) =>
      plot(title, { scales: { x, y }, axes: [epochAxis(), y.distr === 3 ? { label: yLabel, values: tickValues } : { label: yLabel }], series: [epochSeries(), ...list] }, [epochs, ...columns], box);
    // Every reported metric by name: the study's own first, the losses together,
    // the accuracies together, then one plot per other metric.
    const named = [...new Set(metrics.flatMap((m) => Object.keys(m.metrics || {})))];
    const curve = (name) => metrics.map((m) => m.metrics?.[name] ?? null);
    const lossNames = named.filter((n) => n.includes("loss"));
    // The training loss per iteration, with the validation loss per epoch on the same axes
    //: the gap between them is the seed's overfitting signal.
    const xs = [], losses = [];
    metrics.forEach((m) => {
      const history = m.stats.loss_history || [];
      history.forEach((v, k) => { xs.push(m.epoch - 1 + (k + 1) / history.length); losses.push(v); });
    });
    if (losses.length) {
      const val = new Map(metrics.map((m) => [m.epoch, m.metrics?.val_loss ?? m.val_loss ?? null]));
      const at = [...new Set([...xs, ...epochs])].sort((a, b) => a - b);
      const train = new Map(xs.map((v, i) => [v, losses[i]]));
      const list = [series("training loss (per iteration)", COLORS[0], { width: 1 })];
      const columns = [at.map((v) => (logScale ? positive(train.get(v)) : train.get(v) ?? null))];
      if ([...val.values()].some((v) => v !== null)) {
        list.push(series("val_loss (per epoch)", COLORS[4], { spanGaps: true, points: { show: true, size: 6 } }));
        columns.push(at.map((v) => (val.has(v) ? (logScale ? positive(val.get(v)) : val.get(v)) : null)));
      }
      plot("loss per iteration", { scales: { x, y: { distr: logScale ? 3 : 1 } }, axes: [epochAxis(), { label: "loss" }], series: [epochSeries(), ...list] }, [at, ...columns], box);
    }
    const own = study.metric;
    if (!/accuracy|loss/.test(own) && named.includes(own)) {
      curves(`${own} (the study's metric, ${study.maximize ? "max" : "min"})`, own, [series(own, COLORS[1])], [curve(own)]);
    }
    if (lossNames.length) {
      curves("train / validation loss (per epoch)", "loss", lossNames.map((n, i) => series(n, COLORS[i % COLORS.length])),
        lossNames.map((n) => curve(n).map((v) => (logScale ? positive(v) : v))), { distr: logScale ? 3 : 1 });
    }
    const ema = metrics.map((m) => m.stats.ema_val_accuracy ?? null);
    const accSeries = [series("train", COLORS[0]), series("validation", COLORS[1])];
    const accData = [metrics.map((m) => m.train_accuracy), metrics.map((m) => m.val_accuracy)];
    if (ema.some((v) => v !== null)) { accSeries.push(series("validation (EMA weights)", COLORS[2], { dash: [6, 4] })); accData.push(ema); }
    if (accData.some((col) => col.some((v) => v !== null))) curves("train / validation accuracy", "accuracy", accSeries, accData);
    named.filter((n) => n !== own && !n.includes("loss") && !n.includes("accuracy")).forEach((n, i) => {
      curves(n, n, [series(n, COLORS[(i + 2) % COLORS.length])], [curve(n)]);
    });
    const names = Object.keys(metrics[0]?.stats.update_ratio || {});
    if (names.length) {
      curves("update:weight ratio (want ~1e-3)", "", names.map((n, i) => series(n, COLORS[i % COLORS.length])),
        names.map((n) => metrics.map((m) => positive(m.stats.update_ratio?.[n]))), { distr: 3 });
    }
    const layers = (metrics[0]?.stats.layers || []).map((l) => l.layer);
    // a watched model of yours names its layers (trial.watch); the built-ins number them
    const layerName = Object.fromEntries((metrics[0]?.stats.layers || []).map((l) => [l.layer, l.name ? `${l.name}` : `layer ${l.layer}`]));
    if (layers.length) {
      const pick = (key) => layers.map((layer) => metrics.map((m) => { const l = (m.stats.layers || []).find((y) => y.layer === layer); return positive(l ? l[key] : null); }));
      const layerSeries = () => layers.map((l, i) => series(layerName[l], COLORS[i % COLORS.length]));
      curves("activation std per layer", "", layerSeries(), pick("act_std"), { distr: 3 });
      curves("gradient std per layer", "", layerSeries(), pick("grad_std"), { distr: 3 });
    }
  };
  draw();
  document.getElementById("logloss").addEventListener("change", draw);

  const last = [...metrics].reverse().find((m) => m.stats.first_layer);
  if (last) {
    const { shape, values } = last.stats.first_layer;
    const [n, c, h, w] = shape;
    for (let u = 0; u < n; u++) {
      const canvas = el("canvas", { width: w, height: h, title: `unit ${u}` });
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(w, h);
      const start = u * c * h * w;
      const unit = values.slice(start, start + c * h * w);
      const lo = Math.min(...unit), hi = Math.max(...unit), span = hi - lo || 1;
      for (let p = 0; p < h * w; p++) {
        const rgb = [0, 1, 2].map((ch) => (c === 3 ? unit[ch * h * w + p] : unit[p]));
        rgb.forEach((v, ch) => (img.data[4 * p + ch] = Math.round(((v - lo) / span) * 255)));
        img.data[4 * p + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      weightsBox.append(canvas);
    }
  } else {
    weightsBox.append(el("p", { class: "muted", text: "no image data" }));
  }
  // a running trial's page refreshes, but not under the fingers of someone typing numbers
  const again = () => (document.activeElement === others ? (timer = setTimeout(again, 2000)) : route());
  refreshWhile(!["completed", "stopped", "diverged", "failed"].includes(trial.state), again);
}

// The name a downloaded checkpoint gets, as master/routes/checkpoints.py names it:
// every trial's files share their score-first names, so the study and trial go in front.
const downloadName = (study, number, name) => `${study}-trial${String(number).padStart(6, "0")}-${name}`.replace(/[^A-Za-z0-9._-]/g, "_");

async function checkpointsView(id) {
  const study = await get(`/studies/${id}`);
  const page = await get(`/studies/${id}/checkpoints?limit=1000`);
  crumbs.replaceChildren(el("a", { href: `#/studies/${id}`, text: study.name }), el("a", { href: `#/checkpoints/${id}`, text: "checkpoints" }));
  // The detail sits beside the list and stays in view (opened below a long
  // table, nothing visibly happened); the selected row is highlighted.
  const detail = el("aside", { id: "checkpoint-detail", class: "side" }, el("p", { class: "muted", text: "click a checkpoint for its metadata, download and resume" }));
  let selected = null;
  let shown = 0;  // the latest click wins when answers arrive out of order
  const list = table([
    { name: "file", get: (c) => c.name, left: true },
    { name: "trial", get: (c) => c.trial_number },
    { name: "epoch", get: (c) => c.epoch },
    { name: "score", get: (c) => c.score, fmt: fmtScore },
    { name: "bytes", get: (c) => c.size },
  ], page.data, { onclick: (c) => show(c), sortable: true, id: "checkpoints" });
  const mark = () => {
    for (const tr of list.querySelectorAll("tbody tr")) {
      const cells = tr.querySelectorAll("td");
      const on = selected !== null && cells[0].dataset.value === selected.name && Number(cells[1].dataset.value) === selected.trial_number;
      tr.classList.toggle("selected", on);
      if (on) tr.setAttribute("aria-selected", "true"); else tr.removeAttribute("aria-selected");
    }
  };
  list.addEventListener("click", mark);  // after the row's own handler, and after a re-sort
  const show = async (c) => {
    selected = c;
    const mine = ++shown;
    const meta = await get(`/checkpoints/meta?path=${encodeURIComponent(c.path)}`);
    if (mine !== shown) return;
    const epochs = el("input", { type: "number", min: 1, max: 10000, value: 5, id: "resume-epochs" });
    const result = el("span", { id: "resume-result" });
    const resume = el("button", { id: "resume", text: "resume from this checkpoint", onclick: async () => {
      const response = await fetch(`${API}/checkpoints/resume`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ path: c.path, epochs: Number(epochs.value) }) });
      const body = await response.json();
      result.textContent = response.ok ? ` created trial ${body.number}` : ` ${body.detail}`;
      result.className = response.ok ? "" : "err";
    } });
    detail.replaceChildren(
      el("h2", { text: c.name }),
      el("p", {}, el("a", { href: `#/studies/${id}/trials/${c.trial_number}`, text: `trial ${c.trial_number}` }), `, epoch ${c.epoch}, score ${fmtScore(c.score)}, ${c.size} bytes`),
      el("p", {}, el("a", { id: "download", href: `${API}/checkpoints/file?path=${encodeURIComponent(c.path)}`, download: downloadName(study.name, c.trial_number, c.name), text: "download" }), `  sha256 ${c.sha256.slice(0, 16)}...  `),
      el("p", {}, resume, " for ", epochs, " more epochs", result),
      el("pre", { id: "checkpoint-meta", text: JSON.stringify({ params: meta.params, epoch: meta.epoch, metrics: meta.metrics && meta.metrics.metrics, file_meta: meta.file_meta }, null, 2) }),
    );
  };
  view.replaceChildren(
    el("h1", { text: `Checkpoints of ${study.name} (${page.count}), best first` }),
    el("div", { class: "split" }, el("div", { class: "split-main" }, list), detail),
  );
}

// Studies (or one study's stages) side by side: #/compare/1,2
async function compareView(ids) {
  const body = await get(`/studies/compare?ids=${ids}`);
  crumbs.replaceChildren(...body.data.map((st) => el("a", { href: `#/studies/${st.id}`, text: st.name })), el("a", { href: `#/compare/${ids}`, text: "compare" }));
  const num = (v) => (v === undefined || v === null ? "-" : fmtScore(v));
  const ranges = (space) => Object.entries(space).map(([k, v]) => `${k} ${JSON.stringify(Object.values(v)[0])}`).join("; ") || "(after the previous stage)";
  view.replaceChildren(
    el("h1", { text: `Compare ${body.data.map((st) => st.name).join(" / ")}` }),
    ...body.data.flatMap((st) => [
      el("h2", { text: `${st.name} (study ${st.id}, ${st.state}): ${st.metric}, ${st.maximize ? "max" : "min"}` }),
      table([
        { name: "stage", get: (g) => g.stage },
        { name: "state", get: (g) => g.state, left: true },
        { name: "trials", get: (g) => g.trials },
        { name: "epochs", get: (g) => g.epochs },
        { name: "scored", get: (g) => g.scored },
        { name: "best", get: (g) => g.best, fmt: num },
        { name: "p25", get: (g) => g.scores?.p25, fmt: num },
        { name: "median", get: (g) => g.scores?.median, fmt: num },
        { name: "p75", get: (g) => g.scores?.p75, fmt: num },
        { name: "ranges", get: (g) => ranges(g.space), left: true },
      ], st.stages, { id: `compare-${st.id}` }),
    ]),
  );
}

async function route() {
  stop();
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    if (parts[0] === "studies" && parts[2] === "trials" && parts[3]) await trialView(Number(parts[1]), Number(parts[3]));
    else if (parts[0] === "studies" && parts[2] === "compare-trials" && parts[3] !== undefined) await compareTrialsView(Number(parts[1]), decodeURIComponent(parts[3]));
    else if (parts[0] === "studies" && parts[1]) await studyView(Number(parts[1]));
    else if (parts[0] === "trials" && parts[1]) {  // an id from an older link: show it by its number
      const t = await get(`/trials/${Number(parts[1])}`);
      history.replaceState(null, "", `#/studies/${t.study_id}/trials/${t.number}`);
      await trialView(t.study_id, t.number);
    }
    else if (parts[0] === "checkpoints" && parts[1]) await checkpointsView(Number(parts[1]));
    else if (parts[0] === "compare" && parts[1]) await compareView(parts[1]);
    else await studiesView();
    document.body.dataset.ready = "1";
  } catch (error) {
    view.replaceChildren(el("p", { class: "err", text: String(error.message || error) }));
    document.body.dataset.ready = "1";
  }
}

window.addEventListener("hashchange", () => { document.body.dataset.ready = ""; route(); });
live.addEventListener("change", () => route());
route();
