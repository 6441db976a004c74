// Report: judge a version before promoting it. Two versions of a model side by side, each measured on its test
// set (GET /v1/models/{name}/versions/{version}/report): summary, per-class table with the changes marked,
// confusion matrices, reliability diagrams, and a threshold slider that shows where low_confidence would start.

import { api } from "./api.js";
import { $, clearError, fillSelect, h, percent, showError } from "./dom.js";
import { confusionHeatmap, reliabilityDiagram, thresholdChart } from "./evalcharts.js";

const NOTABLE = 0.01; // a change at least this large is marked better or worse

function signed(value, format) {
  return `${value > 0 ? "+" : value < 0 ? "−" : "±"}${format(Math.abs(value))}`;
}

// A cell with the change from the other version; ``lowerIsBetter`` for errors such as the ECE.
function change(mine, theirs, format, lowerIsBetter = false) {
  if (typeof mine !== "number" || typeof theirs !== "number") return h("td", { class: "number" }, "—");
  const difference = mine - theirs;
  const better = lowerIsBetter ? difference < 0 : difference > 0;
  const marked = Math.abs(difference) >= NOTABLE ? (better ? "better" : "worse") : null;
  return h("td", { class: `number${marked ? ` ${marked}` : ""}`, "data-change": marked || "same" },
    signed(difference, format), marked ? h("span", { class: "visually-hidden" }, ` (${marked})`) : null);
}

const points = (value) => `${(value * 100).toFixed(1)} pts`; // a change of a percentage
const decimal = (value) => value.toFixed(3);

export class ReportView {
  constructor(root) {
    this.root = root;
    this.model = $("#report-model", root);
    this.version = $("#report-version", root);
    this.against = $("#report-against", root);
    this.error = $("#report-error", root);
    this.body = $("#report-body", root);
    this.detail = null;
    $("#report-options", root).addEventListener("submit", (event) => event.preventDefault());
    this.model.addEventListener("change", () => this.loadVersions());
    this.version.addEventListener("change", () => this.loadReports());
    this.against.addEventListener("change", () => this.loadReports());
  }

  show() {
    this.loadModels();
  }

  keyChanged() {
    if (!this.root.hidden) this.loadModels();
  }

  async loadModels() {
    clearError(this.error);
    try {
      const models = await api("/v1/models");
      fillSelect(this.model, models.map((m) => [m.name, m.name]));
      if (!models.length) {
        this.body.replaceChildren(h("p", { class: "muted" }, "No model is published yet."));
        return;
      }
      await this.loadVersions();
    } catch (error) {
      showError(this.error, error);
    }
  }

  // The newest version, compared with production (or, when the newest is production, with the one before).
  async loadVersions() {
    clearError(this.error);
    try {
      const detail = await api(`/v1/models/${encodeURIComponent(this.model.value)}`);
      this.detail = detail;
      const newest = detail.versions.map((v) => v.version).reverse();
      const name = (v) => `v${v.version}${v.aliases.length ? ` (${v.aliases.join(", ")})` : ""}`;
      const options = [...detail.versions].reverse().map((v) => [String(v.version), name(v)]);
      const serving = detail.serving_version;
      const baseline = serving && serving !== newest[0] ? serving : newest[1];
      fillSelect(this.version, options, String(newest[0] ?? ""));
      fillSelect(this.against, [["", "nothing"], ...options], baseline === undefined ? "" : String(baseline));
      await this.loadReports();
    } catch (error) {
      showError(this.error, error);
    }
  }

  async fetchReport(version) {
    if (!version) return null;
    try {
      const path = `/v1/models/${encodeURIComponent(this.model.value)}/versions/${version}/report`;
      return { version: Number(version), ...(await api(path)) };
    } catch (error) {
      if (error.status === 404) return { version: Number(version), missing: error.detail };
      throw error;
    }
  }

  async loadReports() {
    clearError(this.error);
    this.body.setAttribute("aria-busy", "true");
    try {
      const [mine, theirs] = await Promise.all(
        [this.fetchReport(this.version.value), this.fetchReport(this.against.value)]);
      this.render(mine, theirs);
    } catch (error) {
      showError(this.error, error);
    } finally {
      this.body.removeAttribute("aria-busy");
    }
  }

  render(mine, theirs) {
    const shown = [mine, theirs].filter((side) => side && side.report);
    const missing = [mine, theirs].filter((side) => side && side.missing)
      .map((side) => h("p", { class: "notice missing" }, `v${side.version}: ${side.missing}`));
    if (!shown.length) {
      this.body.replaceChildren(...missing);
      return;
    }
    const pair = mine?.report && theirs?.report ? [mine, theirs] : null;
    this.body.replaceChildren(
      ...missing,
      this.summary(shown, pair),
      this.perClass(shown, pair),
      h("section", { class: "card", "aria-labelledby": "report-confusion-title" },
        h("h3", { id: "report-confusion-title" }, "Confusion matrix"),
        h("p", { class: "muted small" }, "Rows: the true class; columns: the predicted one. The diagonal is right; " +
          "a dark cell off it is a pair of classes the model mixes up."),
        h("div", { class: "pair" }, shown.map((side) => confusionHeatmap(side.report, `v${side.version}`)))),
      h("section", { class: "card", "aria-labelledby": "report-reliability-title" },
        h("h3", { id: "report-reliability-title" }, "Reliability"),
        h("p", { class: "muted small" }, "Test images grouped by how sure the model was (its top probability): a " +
          "calibrated model is right that often, so its bars end on the diagonal."),
        h("div", { class: "pair" }, shown.map((side) => reliabilityDiagram(side.report, `v${side.version}`)))),
      this.thresholds(shown));
  }

  summary(shown, pair) {
    const rows = [
      ["Accuracy", (r) => r.accuracy, percent, points, false],
      ["Macro F1", (r) => r.macro.f1, decimal, decimal, false],
      ["Weighted F1", (r) => r.weighted.f1, decimal, decimal, false],
      ["Calibration error (ECE)", (r) => r.ece, decimal, decimal, true],
    ];
    const head = ["", ...shown.map((side) => `v${side.version}`),
      ...(pair ? [`v${pair[0].version} − v${pair[1].version}`] : [])];
    const body = rows.map(([label, read, format, formatChange, lowerIsBetter]) => h("tr", { "data-row": label },
      h("th", { scope: "row" }, label),
      shown.map((side) => h("td", { class: "number" }, format(read(side.report)))),
      pair ? change(read(pair[0].report), read(pair[1].report), formatChange, lowerIsBetter) : null));
    const facts = h("tr", {}, h("th", { scope: "row" }, "Measured on"),
      shown.map((side) => h("td", { class: "small" }, `${side.report.images} images of ${side.report.dataset}` +
        (side.attached ? " (attached later)" : ""))),
      pair ? h("td", {}) : null);
    return h("section", { class: "card", "aria-labelledby": "report-summary-title" },
      h("h3", { id: "report-summary-title" }, "Summary"),
      h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Summary" },
        h("table", { class: "report-summary" },
          h("thead", {}, h("tr", {}, head.map((text) => h("th", { scope: "col" }, text)))),
          h("tbody", {}, body, facts))));
  }

  perClass(shown, pair) {
    const [first] = shown;
    const other = pair ? pair[1].report : null;
    const rows = first.report.classes.map((row, index) => {
      const theirs = other?.classes.find((candidate) => candidate.label === row.label) ?? other?.classes[index];
      return h("tr", { "data-label": row.label },
        h("th", { scope: "row" }, row.label),
        h("td", { class: "number" }, decimal(row.precision)),
        h("td", { class: "number" }, decimal(row.recall)),
        h("td", { class: "number" }, decimal(row.f1)),
        h("td", { class: "number" }, row.support),
        pair ? h("td", { class: "number" }, theirs ? decimal(theirs.f1) : "—") : null,
        pair ? change(row.f1, theirs?.f1, decimal) : null);
    });
    const head = ["Class", "Precision", "Recall", "F1", "Images",
      ...(pair ? [`F1 v${pair[1].version}`, "F1 change"] : [])];
    return h("section", { class: "card", "aria-labelledby": "report-classes-title" },
      h("h3", { id: "report-classes-title" }, `Per class, v${first.version}`),
      h("p", { class: "muted small" }, "Precision: of the images it called this class, the share that were. " +
        "Recall: of this class's images, the share it found." +
        (pair ? ` Changes of ${NOTABLE} or more against v${pair[1].version} are marked.` : "")),
      h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": "Per-class metrics" },
        h("table", { class: "report-classes" },
          h("thead", {}, h("tr", {}, head.map((text) => h("th", { scope: "col" }, text)))),
          h("tbody", {}, rows))));
  }

  thresholds(shown) {
    const configured = this.detail?.confidence_threshold;
    const slider = h("input", { id: "report-threshold", type: "range", min: "0", max: "1", step: "0.01",
      value: String(configured ?? 0.5) });
    const chart = h("div", { class: "threshold-chart" });
    const readout = h("tbody", {});
    const setting = h("p", { class: "small" });
    const shownValue = h("output", { id: "report-threshold-value", for: "report-threshold" });
    const series = shown.map((side, index) => ({ name: `v${side.version}`, report: side.report, index }));
    const update = () => {
      const threshold = Number(slider.value);
      const step = Math.round(threshold * 100);
      chart.replaceChildren(thresholdChart(series, threshold));
      readout.replaceChildren(...series.map(({ name, report }) => {
        const point = report.thresholds[step];
        return h("tr", { "data-version": name },
          h("th", { scope: "row" }, name),
          h("td", { class: "number coverage" }, percent(point.coverage)),
          h("td", { class: "number accuracy" }, point.accuracy === null ? "—" : percent(point.accuracy)),
          h("td", { class: "number" }, report.images - point.covered));
      }));
      setting.replaceChildren("To mark answers under this confidence low_confidence, set ",
        h("code", {}, `IMGCLS_CONFIDENCE_THRESHOLDS='{"${this.model.value}": ${threshold.toFixed(2)}}'`),
        configured === null || configured === undefined ? " (none is set now)." : ` (${configured} is set now).`);
      shownValue.textContent = threshold.toFixed(2);
    };
    slider.addEventListener("input", update);
    const section = h("section", { class: "card", "aria-labelledby": "report-thresholds-title" },
      h("h3", { id: "report-thresholds-title" }, "Confidence threshold"),
      h("p", { class: "muted small" }, "Answers whose top probability is under the threshold are marked " +
        "low_confidence. Raising it covers fewer test images, and those it covers are right more often."),
      h("div", { class: "field threshold-field" },
        h("label", { for: "report-threshold" }, "Threshold ", shownValue),
        slider),
      chart,
      h("div", { class: "table-scroll" },
        h("table", { class: "report-thresholds" },
          h("thead", {}, h("tr", {}, ["Version", "Covered", "Accuracy of the covered", "Marked low_confidence"]
            .map((text) => h("th", { scope: "col" }, text)))),
          readout)),
      setting);
    update();
    return section;
  }
}
