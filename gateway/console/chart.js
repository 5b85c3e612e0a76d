// Day-by-day charts for the console, drawn as SVG by this script alone: no library, no
// inline style (every look is a class in console.css), so the page's Content-Security-
// Policy holds. Each bar carries its numbers in data-* attributes and a <title>, which is
// what a person hovers and what the browser tests read.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 960;
const HEIGHT = 240;
const MARGIN = { top: 14, right: 16, bottom: 28, left: 64 };

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(key, String(value));
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

// Round a maximum up to 1, 2 or 5 times a power of ten, so the axis reads well.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function axis(scaleY, top, format) {
  const ticks = [0, 0.2, 0.4, 0.6, 0.8, 1].map((f) => f * top);
  return s("g", { class: "axis" }, ...ticks.map((t) => s("g", {},
    s("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: scaleY(t), y2: scaleY(t),
      class: "grid" }),
    s("text", { x: MARGIN.left - 6, y: scaleY(t) + 4, "text-anchor": "end" }, format(t)))));
}

function dayLabels(days, x, band) {
  return s("g", { class: "axis" }, ...days.map((day, i) => (i % 2 === 0 || days.length < 16
    ? s("text", { x: x(i) + band / 2, y: HEIGHT - 8, "text-anchor": "middle" },
      String(Number(day.slice(8))))
    : null)));
}

// A bar chart of one value per day. `spec`: { name, label, days, values, format, last,
// cumulative, budget, projected }: days after `last` (today) have no bar yet; with
// `cumulative`, each bar stands at the running total and its top segment is that day's own
// amount; `budget` draws a line across, `projected` a dashed line from `last` to the
// month's end.
export function dayChart(spec) {
  const { days, format } = spec;
  const values = spec.values.map((v, i) => (i <= spec.last ? v : 0));
  const totals = [];
  values.reduce((sum, v, i) => (totals[i] = sum + v), 0);
  const heights = spec.cumulative ? totals : values;
  const top = niceMax(Math.max(...heights, spec.budget || 0, spec.projected || 0));
  const band = (WIDTH - MARGIN.left - MARGIN.right) / days.length;
  const x = (i) => MARGIN.left + i * band;
  const y = (v) => HEIGHT - MARGIN.bottom - (v / top) * (HEIGHT - MARGIN.top - MARGIN.bottom);
  const bars = days.slice(0, spec.last + 1).map((day, i) => {
    const base = spec.cumulative ? totals[i] - values[i] : 0;
    const title = `${day}: ${format(values[i])}` +
      (spec.cumulative ? `, ${format(totals[i])} so far` : "");
    return s("g", { class: "day", "data-day": day, "data-value": values[i],
      "data-total": spec.cumulative ? totals[i] : null },
    s("title", {}, title),
    spec.cumulative ? s("rect", { class: "before", x: x(i) + 1, width: band - 2, y: y(base),
      height: y(0) - y(base) }) : null,
    s("rect", { class: "bar", x: x(i) + 1, width: band - 2, y: y(heights[i]),
      height: y(base) - y(heights[i]) }));
  });
  const lines = [];
  if (spec.budget != null) {
    lines.push(s("line", { class: "budget", x1: MARGIN.left, x2: WIDTH - MARGIN.right,
      y1: y(spec.budget), y2: y(spec.budget), "data-value": spec.budget },
    s("title", {}, `budget ${format(spec.budget)}`)));
  }
  if (spec.projected != null && spec.last >= 0) {
    lines.push(s("line", { class: "projection", x1: x(spec.last) + band / 2,
      x2: WIDTH - MARGIN.right, y1: y(totals[spec.last]), y2: y(spec.projected),
      "data-value": spec.projected }, s("title", {}, `projected ${format(spec.projected)}`)));
  }
  return s("svg", { class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
    "aria-label": spec.label, "data-chart": spec.name },
  s("title", {}, spec.label), axis(y, top, format), ...bars, ...lines,
  dayLabels(days, x, band));
}
