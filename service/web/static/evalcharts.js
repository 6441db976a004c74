// The pictures of an evaluation report (GET /v1/models/{name}/versions/{version}/report): the confusion matrix
// as a heatmap (canvas: a thousand classes stay fast; the cell under the pointer is read out in words), the
// reliability diagram and the threshold explorer's curves (inline SVG that scales to its container).

import { h, percent } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

function cssColor(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

const labelsOf = (report) => report.classes.map((row) => row.label);

// Rows are true classes, columns predicted ones; a cell's shade is its share of the true class's images.
export function confusionHeatmap(report, caption) {
  const labels = labelsOf(report);
  const count = labels.length;
  const cell = Math.max(2, Math.min(40, Math.floor(400 / count)));
  const side = cell * count;
  const ratio = window.devicePixelRatio || 1;
  const right = report.confusion_matrix.reduce((sum, row, index) => sum + row[index], 0);
  const canvas = h("canvas", {
    class: "heatmap", width: side * ratio, height: side * ratio, tabindex: "0", role: "img",
    "data-classes": count, "data-cell": cell,
    "aria-label": `${caption}: ${right} of ${report.images} test images on the ` +
      "diagonal (predicted right). Point at a cell to read it.",
  });
  canvas.style.width = `${side}px`;
  const readout = h("p", { class: "readout muted small", "aria-live": "polite" },
    count <= 12 ? "Each cell: images of the row's class predicted as the column's." : "Point at a cell to read it.");
  const context = canvas.getContext("2d");
  context.scale(ratio, ratio);
  const fill = cssColor("--bar") || "#2f74d9";
  const text = cssColor("--text") || "#1b1f24";
  context.fillStyle = cssColor("--bg") || "#f6f7f9";
  context.fillRect(0, 0, side, side);
  report.confusion_matrix.forEach((row, trueIndex) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((value, predictedIndex) => {
      if (!value) return;
      context.globalAlpha = 0.12 + 0.88 * (value / total);
      context.fillStyle = fill;
      context.fillRect(predictedIndex * cell, trueIndex * cell, cell, cell);
      if (cell >= 24) {
        context.globalAlpha = 1;
        context.fillStyle = value / total > 0.5 ? "#ffffff" : text;
        context.font = `${Math.min(13, cell / 2.2)}px system-ui, sans-serif`;
        context.textAlign = "center";
        context.textBaseline = "middle";
        context.fillText(String(value), (predictedIndex + 0.5) * cell, (trueIndex + 0.5) * cell);
      }
    });
  });
  context.globalAlpha = 1;
  const say = (trueIndex, predictedIndex) => {
    const row = report.confusion_matrix[trueIndex];
    const value = row[predictedIndex];
    const total = row.reduce((a, b) => a + b, 0);
    readout.textContent = `true ${labels[trueIndex]}, predicted ${labels[predictedIndex]}: ${value} ` +
      `image${value === 1 ? "" : "s"}` + (total ? ` (${percent(value / total)} of ${labels[trueIndex]})` : "");
  };
  canvas.addEventListener("mousemove", (event) => {
    const scale = side / canvas.getBoundingClientRect().width; // the canvas may be shown smaller than drawn
    const column = Math.floor((event.offsetX * scale) / cell);
    const row = Math.floor((event.offsetY * scale) / cell);
    if (row >= 0 && row < count && column >= 0 && column < count) say(row, column);
  });
  let focused = [0, 0]; // the keyboard moves a cursor with the arrow keys
  canvas.addEventListener("keydown", (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const [dr, dc] = moves[event.key];
    focused = [Math.min(count - 1, Math.max(0, focused[0] + dr)), Math.min(count - 1, Math.max(0, focused[1] + dc))];
    say(...focused);
  });
  const axes = count <= 12
    ? h("p", { class: "muted small" }, `Rows (true) and columns (predicted), in order: ${labels.join(", ")}.`)
    : null;
  return h("figure", { class: "chart" }, h("figcaption", {}, caption),
    h("div", { class: "heatmap-scroll" }, canvas), readout, axes);
}

const BOX = { width: 320, height: 260, left: 40, right: 10, top: 10, bottom: 34 };

function frame(svg, xLabel, yLabel) {
  const { width, height, left, right, top, bottom } = BOX;
  const x = (value) => left + value * (width - left - right);
  const y = (value) => top + (1 - value) * (height - top - bottom);
  for (const value of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s("line", { class: "grid", x1: x(0), x2: x(1), y1: y(value), y2: y(value) }));
    svg.append(s("text", { class: "tick", x: left - 5, y: y(value) + 4, "text-anchor": "end" }, value));
    svg.append(s("text", { class: "tick", x: x(value), y: height - bottom + 14, "text-anchor": "middle" }, value));
  }
  svg.append(s("rect", { class: "frame", x: x(0), y: y(1), width: x(1) - x(0), height: y(0) - y(1) }));
  svg.append(s("text", { class: "axis-label", x: x(1), y: height - 2, "text-anchor": "end" }, xLabel));
  svg.append(s("text", { class: "axis-label", x: left + 4, y: top + 12 }, yLabel));
  return { x, y };
}

function plotSvg(label) {
  return s("svg", { viewBox: `0 0 ${BOX.width} ${BOX.height}`, role: "img", "aria-label": label, class: "eval-plot" });
}

// Bars: the accuracy of each confidence bin; the dashed diagonal: where a calibrated model's bars end.
export function reliabilityDiagram(report, caption) {
  const filled = report.reliability.filter((bin) => bin.count);
  const svg = plotSvg(`${caption}: expected calibration error ${report.ece.toFixed(3)} over ${filled.length} ` +
    "filled confidence bins");
  const { x, y } = frame(svg, "confidence", "accuracy");
  svg.append(s("line", { class: "diagonal", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
  for (const bin of filled) {
    const bar = s("rect", { class: "bin", x: x(bin.low) + 0.5, y: y(bin.accuracy),
      width: Math.max(1, x(bin.high) - x(bin.low) - 1), height: y(0) - y(bin.accuracy) });
    bar.append(s("title", {}, `confidence ${bin.low.toFixed(2)}–${bin.high.toFixed(2)}: ${bin.count} images, ` +
      `mean confidence ${bin.confidence.toFixed(3)}, accuracy ${bin.accuracy.toFixed(3)}`));
    svg.append(bar);
    svg.append(s("circle", { class: "bin-point", cx: x(bin.confidence), cy: y(bin.accuracy), r: 2.5 }));
  }
  return h("figure", { class: "chart" }, h("figcaption", {}, caption),
    h("div", { class: "plot" }, svg),
    h("p", { class: "muted small" }, `ECE ${report.ece.toFixed(3)}. Bars under the diagonal: more sure than right.`));
}

// Coverage and accuracy of the covered images for every threshold, one pair of lines per report; a
// vertical line at ``threshold``. ``series``: [{name, report, index}].
export function thresholdChart(series, threshold) {
  const svg = plotSvg(`Coverage and accuracy against the confidence threshold, at ${threshold.toFixed(2)}`);
  const { x, y } = frame(svg, "confidence threshold", "share");
  for (const { name, report, index } of series) {
    const line = (key, dashed) => {
      const points = report.thresholds.filter((p) => p[key] !== null)
        .map((p) => `${x(p.threshold).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
      const path = s("polyline", { class: `line series-${index}${dashed ? " dashed" : ""}`, points });
      path.append(s("title", {}, `${name} ${key}`));
      svg.append(path);
    };
    line("coverage", false);
    line("accuracy", true);
  }
  svg.append(s("line", { class: "threshold", x1: x(threshold), x2: x(threshold), y1: y(0), y2: y(1) }));
  const legend = h("ul", { class: "legend" }, series.flatMap(({ name, index }) => [
    h("li", {}, h("span", { class: `swatch series-${index}`, "aria-hidden": "true" }), `${name} coverage`),
    h("li", {}, h("span", { class: `swatch dashed series-${index}`, "aria-hidden": "true" }),
      `${name} accuracy of the covered`),
  ]));
  return h("div", {}, h("div", { class: "plot" }, svg), legend);
}
