// A small line chart in inline SVG: one polyline and one circle per point for each series, drawn again
// whenever a point arrives. Sized in real pixels from its container (so text stays readable on a phone).

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 200;
const PAD = { left: 46, right: 12, top: 10, bottom: 30 };

function s(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const residual = raw / magnitude;
  return magnitude * (residual > 5 ? 10 : residual > 2 ? 5 : residual > 1 ? 2 : 1);
}

export class LineChart {
  // options: yLabel, format (number -> text), yMin, yMax (fixed bounds, else from the data), xLabel
  constructor(container, options) {
    this.container = container;
    this.options = { xLabel: "epoch", format: (v) => v.toFixed(3), ...options };
    this.series = new Map(); // name -> {name, index, points: [[x, y]]}
    this.xMax = 1;
    this.legend = h("ul", { class: "legend" });
    this.svgHolder = h("div", { class: "svg-holder" });
    container.replaceChildren(this.svgHolder, this.legend);
    this.width = 0;
    new ResizeObserver(() => {
      if (Math.floor(container.clientWidth) !== this.width) this.draw();
    }).observe(container);
    this.draw();
  }

  clear(xMax = 1) {
    this.series.clear();
    this.xMax = xMax;
    this.draw();
  }

  setXMax(xMax) {
    this.xMax = Math.max(1, xMax);
    this.draw();
  }

  add(name, x, y) {
    if (y === null || y === undefined || Number.isNaN(y)) return;
    if (!this.series.has(name)) this.series.set(name, { name, index: this.series.size, points: [] });
    const points = this.series.get(name).points;
    const same = points.findIndex(([px]) => px === x); // a resumed trial repeats an epoch: keep the newest
    if (same >= 0) points[same] = [x, y];
    else points.push([x, y]);
    points.sort((a, b) => a[0] - b[0]);
    this.draw();
  }

  draw() {
    this.width = Math.floor(this.container.clientWidth);
    const width = Math.max(240, this.width || 480);
    const all = [...this.series.values()].flatMap((series) => series.points);
    const xs = all.map(([x]) => x);
    const ys = all.map(([, y]) => y);
    // A short job shows all its epochs from the start, so the curve grows across the chart; a long one
    // shows half as much again as has been seen, up to its last epoch.
    const seen = Math.max(...xs, 1);
    const xMax = this.xMax <= 20
      ? Math.max(this.xMax, seen)
      : Math.max(seen, Math.min(this.xMax, Math.max(20, Math.ceil(seen * 1.5))));
    const xMin = 1;
    const yMin = this.options.yMin ?? Math.min(0, ...ys);
    let yMax = this.options.yMax ?? Math.max(...ys, 0) * 1.1;
    if (!(yMax > yMin)) yMax = yMin + 1;
    const plotW = width - PAD.left - PAD.right;
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const inset = 8; // keeps the first and last points off the frame
    const px = (x) =>
      PAD.left + (xMax === xMin ? plotW / 2 : inset + ((x - xMin) / (xMax - xMin)) * (plotW - 2 * inset));
    const py = (y) => PAD.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

    const svg = s("svg", {
      width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-label": this.summary(),
      "data-points": all.length,
    });
    const yStep = niceStep(yMax - yMin, 4);
    for (let y = Math.ceil(yMin / yStep) * yStep; y <= yMax + 1e-9; y += yStep) {
      svg.append(s("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: py(y), y2: py(y) }));
      svg.append(s("text", { class: "tick", x: PAD.left - 6, y: py(y) + 4, "text-anchor": "end" },
        this.options.format(y)));
    }
    const xStep = Math.max(1, Math.ceil(niceStep(xMax - xMin || 1, Math.max(2, Math.floor(plotW / 60)))));
    const xTicks = [xMin];
    for (let x = xStep; x <= xMax; x += xStep) if (x > xMin && px(x) - px(xTicks[xTicks.length - 1]) > 24) xTicks.push(x);
    for (const x of xTicks) {
      svg.append(s("line", { class: "grid", x1: px(x), x2: px(x), y1: PAD.top, y2: PAD.top + plotH }));
      svg.append(s("text", { class: "tick", x: px(x), y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle" }, x));
    }
    svg.append(s("text", { class: "axis-label", x: width - PAD.right, y: HEIGHT - 2, "text-anchor": "end" },
      this.options.xLabel));
    svg.append(s("rect", { class: "frame", x: PAD.left, y: PAD.top, width: plotW, height: plotH }));

    for (const series of this.series.values()) {
      const color = `series-${series.index % 6}`;
      if (series.points.length > 1) {
        const coords = series.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
        svg.append(s("polyline", { class: `line ${color}`, points: coords }));
      }
      for (const [x, y] of series.points) {
        const dot = s("circle", { class: `point ${color}`, cx: px(x).toFixed(1), cy: py(y).toFixed(1), r: 3.5 });
        dot.append(s("title", {}, `${series.name}, ${this.options.xLabel} ${x}: ${this.options.format(y)}`));
        svg.append(dot);
      }
    }
    if (!all.length) {
      svg.append(s("text", { class: "empty", x: PAD.left + plotW / 2, y: PAD.top + plotH / 2, "text-anchor": "middle" },
        "points appear here after each epoch"));
    }
    this.svgHolder.replaceChildren(svg);
    this.legend.replaceChildren(...[...this.series.values()].map((series) =>
      h("li", {}, h("span", { class: `swatch series-${series.index % 6}`, "aria-hidden": "true" }), series.name)));
  }

  summary() {
    const parts = [...this.series.values()].map((series) => {
      const [x, y] = series.points[series.points.length - 1];
      return `${series.name} ${this.options.format(y)} at ${this.options.xLabel} ${x}`;
    });
    return parts.length ? `${this.options.yLabel}: ${parts.join("; ")}` : `${this.options.yLabel}: no points yet`;
  }
}
