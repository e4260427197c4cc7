/* gridless dashboard: several trials of a study on one page.
 * #/studies/{id}/compare-trials/3,7,12 (trial numbers, as the study's table shows them)
 * overlays their per-epoch curves, one colour per trial, epochs aligned on x.
 * Loaded before app.js; uses its helpers (el, get, plot, series, ...) when called, and
 * hands it two names only (window.compareTrialsView, window.parseTrialNumbers). */
"use strict";

(() => {

// Tableau 10, then golden-angle hues: neighbours in the list stay far apart in colour.
const TRIAL_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const trialColor = (i) => (i < TRIAL_COLORS.length ? TRIAL_COLORS[i] : `hsl(${Math.round((i * 137.508) % 360)}, 65%, 45%)`);
const MAX_COMPARED = 30;
// What the built-in trainers report each epoch; a study's own metric comes on top.
const COMPARED_CURVES = [
  { title: "training loss", name: "train_loss" },
  { title: "validation loss", name: "val_loss" },
];

/** The distinct trial numbers in "3, 7,12 7": [3, 7, 12], in their order. */
function parseTrialNumbers(text) {
  return [...new Set((String(text).match(/\d+/g) || []).map(Number))];
}

/** A trial's value of `name` per epoch: the metrics dict (a user function's names) or the
 * built-in columns; a repeated epoch (a lost trial's next attempt) keeps the latest attempt. */
function perEpoch(trial, name) {
  const rows = new Map();
  for (const m of trial.metrics) {
    const old = rows.get(m.epoch);
    if (!old || m.attempt >= old.attempt) rows.set(m.epoch, m);
  }
  return new Map([...rows].map(([epoch, m]) => [epoch, m.metrics?.[name] ?? m[name] ?? null]));
}

async function fetchTrial(studyId, number) {
  const response = await fetch(`${API}/studies/${studyId}/trials/${number}`);
  const body = await response.json().catch(() => ({}));
  if (response.ok) return { number, trial: body };
  return { number, error: response.status === 404 ? `no trial ${number} in this study` : `trial ${number}: ${response.status} ${body.detail ?? ""}` };
}

async function compareTrialsView(studyId, list) {
  const study = await get(`/studies/${studyId}`);
  const asked = parseTrialNumbers(list);
  const numbers = asked.slice(0, MAX_COMPARED);
  const results = await Promise.all(numbers.map((n) => fetchTrial(studyId, n)));
  const found = results.filter((r) => r.trial).map((r) => r.trial);
  const here = `#/studies/${studyId}/compare-trials/${asked.join(",")}`;
  crumbs.replaceChildren(el("a", { href: `#/studies/${studyId}`, text: study.name }), el("a", { href: here, text: "compare trials" }));

  const missing = results.filter((r) => r.error);
  const notes = el("div", { id: "compare-missing" },
    ...missing.map((r) => el("p", { class: "err", "data-number": r.number, text: r.error })),
    ...(asked.length > numbers.length ? [el("p", { class: "warn", text: `showing the first ${MAX_COMPARED} of ${asked.length} trials` })] : []),
    ...(asked.length === 0 ? [el("p", { class: "err", text: `no trial numbers in "${list}": #/studies/${studyId}/compare-trials/3,7,12` })] : []));
  const input = el("input", { type: "text", id: "compare-numbers", size: 24, value: asked.join(", "), "aria-label": "trial numbers" });
  const form = el("form", { id: "compare-form", class: "inline", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/studies/${studyId}/compare-trials/${parseTrialNumbers(input.value).join(",")}`;
  } }, "trials ", input, " ", el("button", { type: "submit", text: "compare" }));

  // The curves: per epoch, the built-ins' losses and accuracies, and the study's metric
  // where it is none of them (a user function's val_r2, say).
  const own = study.metric;
  const curves = [...COMPARED_CURVES];
  if (![...curves.map((c) => c.name), "train_accuracy", "val_accuracy"].includes(own)) {
    curves.unshift({ title: `${own} (the study's metric, ${study.maximize ? "max" : "min"})`, name: own });
  }
  const epochs = [...new Set(found.flatMap((t) => t.metrics.map((m) => m.epoch)))].sort((a, b) => a - b);
  const x = epochScale(epochs);
  const column = (trial, name) => { const values = perEpoch(trial, name); return epochs.map((e) => values.get(e) ?? null); };
  const has = (name) => found.some((t) => column(t, name).some((v) => v !== null));
  const last = (trial, name) => lastValue(column(trial, name));

  const legend = table([
    { name: "trial", left: true, get: (t) => t.number },
    { name: "state", left: true, get: (t) => t.state },
    { name: "stage", get: (t) => t.stage },
    { name: "last epoch", get: (t) => t.last_epoch },
    { name: `best ${own}`, get: (t) => t.best_score, fmt: fmtScore },
    ...curves.filter((c) => has(c.name)).map((c) => ({ name: `last ${c.name}`, get: (t) => last(t, c.name) })),
    ...["train_accuracy", "val_accuracy"].filter(has).map((name) => ({ name: `last ${name}`, get: (t) => last(t, name) })),
    { name: "params", left: true, get: (t) => Object.entries(t.params || {}).map(([k, v]) => `${k}=${fmtNum(v)}`).join("  ") },
  ], found, { id: "compare-legend" });
  // The trial cell: the trial's colour and a link to its page.
  legend.querySelectorAll("tbody tr").forEach((tr, i) => {
    const trial = found[i];
    tr.dataset.number = trial.number;
    const swatch = el("span", { class: "swatch" });
    swatch.style.backgroundColor = trialColor(i);  // CSSOM: the page's CSP allows no style attributes
    tr.cells[0].replaceChildren(swatch, el("a", { href: `#/studies/${studyId}/trials/${trial.number}`, text: `trial ${trial.number}` }));
  });

  const box = el("div", { class: "plots", id: "compare-plots" });
  view.replaceChildren(el("h1", { text: `Compare trials of ${study.name}` }), notes, form, legend, box);
  // while any of them runs, the page follows (not while someone types numbers)
  const again = () => (document.activeElement === input ? (timer = setTimeout(again, 2000)) : route());
  refreshWhile(found.some((t) => !["completed", "stopped", "diverged", "failed"].includes(t.state)), again);
  if (!found.length) return;
  const trialSeries = () => found.map((t, i) => series(`trial ${t.number}`, trialColor(i), { spanGaps: true }));
  for (const c of curves.filter((c) => has(c.name))) {
    plot(c.title, { scales: { x }, axes: [epochAxis(), { label: c.name }], series: [epochSeries(), ...trialSeries()] },
      [epochs, ...found.map((t) => column(t, c.name))], box);
  }
  // Train and validation accuracy on one plot, dashed train: the gap is the seed's
  // overfitting signal, per trial.
  if (has("train_accuracy") || has("val_accuracy")) {
    const list = [], data = [epochs];
    found.forEach((t, i) => {
      list.push(series(`trial ${t.number} validation`, trialColor(i), { spanGaps: true }));
      data.push(column(t, "val_accuracy"));
      list.push(series(`trial ${t.number} train`, trialColor(i), { spanGaps: true, dash: [5, 4], width: 1.5 }));
      data.push(column(t, "train_accuracy"));
    });
    plot("train / validation accuracy (dashed: train)", { scales: { x }, axes: [epochAxis(), { label: "accuracy" }], series: [epochSeries(), ...list] }, data, box);
  }
}

window.compareTrialsView = compareTrialsView;
window.parseTrialNumbers = parseTrialNumbers;
})();
