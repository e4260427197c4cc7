/* gridless dashboard: a multi-objective study's Pareto front. A scatter of the first
 * objective against the second, one dot a finished trial (its values at its best epoch),
 * the front's trials highlighted and joined by the front's staircase; a click on a dot
 * opens the trial. Loaded after analysis.js (svg, fmtValue, linearTicks, get, el). */
"use strict";

const PARETO = { width: 640, height: 380, left: 70, right: 20, top: 20, bottom: 50 };
const FRONT_COLOR = "#d92d20";

/** The study page's Pareto panel: fills `box` from GET /studies/{id}/pareto. */
async function paretoPanel(page, box) {
  const front = await get(`/studies/${page.id}/pareto`);
  box.replaceChildren(paretoScatter(page.id, front));
  return front;
}

function paretoScatter(id, front) {
  const [ox, oy] = front.objectives;
  const { width, height, left, right, top, bottom } = PARETO;
  const xs = front.compared.values.map((v) => v[0]), ys = front.compared.values.map((v) => v[1]);
  const span = (vs) => {
    if (!vs.length) return [0, 1];
    let lo = Math.min(...vs), hi = Math.max(...vs);
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    const pad = (hi - lo) * 0.05;
    return [lo - pad, hi + pad];
  };
  const [x0, x1] = span(xs), [y0, y1] = span(ys);
  const px = (v) => left + ((v - x0) / (x1 - x0)) * (width - left - right);
  const py = (v) => top + (1 - (v - y0) / (y1 - y0)) * (height - top - bottom);
  const root = svg("svg", { width, height, class: "pareto-plot" });
  root.append(svg("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis-line" }));
  root.append(svg("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis-line" }));
  for (const t of linearTicks(x0, x1, 6)) {
    root.append(svg("text", { x: px(t), y: height - bottom + 16, class: "tick-label", "text-anchor": "middle" }, fmtValue(t)));
  }
  for (const t of linearTicks(y0, y1, 6)) {
    root.append(svg("text", { x: left - 6, y: py(t) + 4, class: "tick-label", "text-anchor": "end" }, fmtValue(t)));
  }
  const better = (o) => (o.mode === "max" ? "higher is better" : "lower is better");
  root.append(svg("text", { x: (left + width - right) / 2, y: height - 12, class: "axis-title", "text-anchor": "middle", "data-axis": "x" }, `${ox.name} (${better(ox)})`));
  root.append(svg("text", { x: 14, y: (top + height - bottom) / 2, class: "axis-title", "text-anchor": "middle", "data-axis": "y", transform: `rotate(-90 14 ${(top + height - bottom) / 2})` }, `${oy.name} (${better(oy)})`));
  const onFront = new Set(front.data.map((t) => t.number));
  // the front's staircase, in the first objective's order: the boundary no trial passes
  const stairs = [...front.data].sort((a, b) => a.values[0] - b.values[0]);
  if (stairs.length > 1) {
    const pts = [];
    stairs.forEach((t, k) => {
      if (k > 0) pts.push(`${px(t.values[0])},${py(stairs[k - 1].values[1])}`);
      pts.push(`${px(t.values[0])},${py(t.values[1])}`);
    });
    root.append(svg("polyline", { points: pts.join(" "), class: "pareto-line", fill: "none", stroke: FRONT_COLOR }));
  }
  front.compared.number.forEach((number, i) => {
    const [vx, vy] = front.compared.values[i];
    const mine = onFront.has(number);
    const dot = svg("circle", {
      cx: px(vx), cy: py(vy), r: mine ? 5 : 3.5,
      class: mine ? "pareto-point pareto-front" : "pareto-point",
      "data-number": String(number), fill: mine ? FRONT_COLOR : "#98a2b3",
    });
    dot.append(svg("title", {}, `trial ${number}: ${ox.name} ${fmtValue(vx)}, ${oy.name} ${fmtValue(vy)}${mine ? " (on the front)" : ""}`));
    dot.addEventListener("click", () => (location.hash = `#/studies/${id}/trials/${number}`));
    root.append(dot);
  });
  const legend = el("p", { class: "muted", id: "pareto-legend", text: `${front.count} of ${front.compared.number.length} finished trials on the Pareto front (red): no other trial is as good on every objective and better on one` + (front.objectives.length > 2 ? `; ${front.objectives.length - 2} more objective(s) not drawn` : "") });
  const wrap = el("div", { class: "pareto", id: "pareto" }, root, legend);
  wrap.dataset.front = String(front.count);
  wrap.dataset.points = String(front.compared.number.length);
  return wrap;
}
