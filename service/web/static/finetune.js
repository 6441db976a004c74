// Fine-tuning: upload a dataset zip (its validation report shown before anything trains), start a job,
// watch it live over server-sent events (status line, loss and accuracy curves, event log), cancel it.

import { ApiError, api, eventStream } from "./api.js";
import { LineChart } from "./chart.js";
import { $, bytes, clearError, fillSelect, h, percent, showError, when } from "./dom.js";

// The job form's number fields; their bounds and defaults come from GET /v1/fine-tuning/hyperparameters
const NUMBER_FIELDS = { epochs: "#job-epochs", learning_rate: "#job-lr", batch_size: "#job-batch" };
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const LOG_KEPT = 500;
const RECONNECT_MS = 2000;

function seconds(value) {
  if (value < 90) return `${Math.max(0, Math.round(value))} s`;
  return `${Math.round(value / 60)} min`;
}

export class FineTuningView {
  constructor(root) {
    this.root = root;
    this.error = $("#ft-error", root);
    this.workers = $("#ft-workers", root);
    this.noWorker = false; // readiness counted no live fine-tuning worker
    this.datasetForm = $("#dataset-form", root);
    this.datasetFile = $("#dataset-file", root);
    this.datasetName = $("#dataset-name", root);
    this.datasetChoice = $("#dataset-choice", root);
    this.report = $("#dataset-report", root);
    this.jobForm = $("#job-form", root);
    this.base = $("#job-base", root);
    this.baseVersion = $("#job-base-version", root);
    this.autoPromote = $("#job-auto-promote", root);
    this.minAccuracy = $("#job-min-accuracy", root);
    this.status = $("#job-status", root);
    this.log = $("#job-log", root);
    this.cancel = $("#job-cancel", root);
    this.recent = $("#recent-jobs", root);
    this.datasets = new Map();
    this.job = null;
    this.watching = null; // AbortController of the stream being read
    this.hyperparameters = null; // the API's answer, once read
    this.lossChart = new LineChart($("#chart-loss .plot", root), { yLabel: "Loss", format: (v) => v.toFixed(2) });
    this.accuracyChart = new LineChart($("#chart-accuracy .plot", root), {
      yLabel: "Accuracy", yMin: 0, yMax: 1, format: (v) => `${Math.round(v * 100)} %`,
    });

    this.datasetForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.upload();
    });
    this.datasetChoice.addEventListener("change", () => this.showReport(this.datasets.get(this.datasetChoice.value)));
    this.base.addEventListener("change", () => this.loadBaseVersions());
    this.autoPromote.addEventListener("change", () => {
      this.minAccuracy.disabled = !this.autoPromote.checked;
    });
    this.jobForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.cancel.addEventListener("click", () => this.cancelJob());
    $("#jobs-refresh", root).addEventListener("click", () => this.loadRecent());
  }

  show() {
    this.loadAll(); // again each time: models and datasets may have changed since
  }

  keyChanged() {
    if (!this.root.hidden) this.loadAll();
  }

  async loadAll() {
    clearError(this.error);
    try {
      const [models, datasets] = await Promise.all([
        api("/v1/models"), api("/v1/datasets"), this.loadHyperparameters(),
      ]);
      fillSelect(this.base, models.map((m) => [m.name, m.name]));
      this.setDatasets(datasets);
      await Promise.all([this.loadBaseVersions(), this.loadRecent(), this.loadWorkers()]);
    } catch (error) {
      showError(this.error, error);
    }
  }

  // The optimizer names, defaults and bounds the API accepts (read once; the code fixes them).
  async loadHyperparameters() {
    if (this.hyperparameters) return;
    const schema = await api("/v1/fine-tuning/hyperparameters");
    const byName = new Map(schema.hyperparameters.map((p) => [p.name, p]));
    const optimizers = schema.optimizers.map((name) => [name, name]);
    fillSelect($("#job-optimizer", this.root), optimizers, byName.get("optimizer").default);
    for (const [name, selector] of Object.entries(NUMBER_FIELDS)) {
      const input = $(selector, this.root);
      const field = byName.get(name);
      if (field.minimum != null) input.min = field.minimum;
      if (field.maximum != null) input.max = field.maximum;
      if (input.value === "") input.value = field.default; // not over what the user typed meanwhile
    }
    this.hyperparameters = schema;
  }

  // Whether a worker will take a job: readiness counts the live fine-tuning workers (job_workers; absent
  // without Redis, when the job routes say so themselves). 503 (models still loading) has the same body.
  async loadWorkers() {
    let ready;
    try {
      const response = await fetch("/healthz/ready", { cache: "no-store" });
      ready = await response.json();
    } catch {
      return; // the API's own errors show where they happen
    }
    this.noWorker = ready.job_workers === 0;
    this.workers.hidden = !this.noWorker;
    this.workers.textContent = this.noWorker
      ? "No fine-tuning worker is running: a job you start waits in the queue until one starts "
        + "(imgcls up starts them; or run imgcls worker with the same IMGCLS_REDIS_URL)."
      : "";
    if (this.job && this.job.status === "queued") this.showJob(this.job);
  }

  setDatasets(datasets, chosen = null) {
    this.datasets = new Map(datasets.map((d) => [d.id, d]));
    const options = [["", datasets.length ? "choose a dataset…" : "none yet: upload a zip above"]];
    for (const d of datasets) options.push([d.id, `${d.name} (${d.files} images, ${Object.keys(d.classes).length} classes)`]);
    fillSelect(this.datasetChoice, options, chosen);
    this.showReport(this.datasets.get(this.datasetChoice.value));
  }

  async loadBaseVersions() {
    const name = this.base.value;
    if (!name) return;
    try {
      const detail = await api(`/v1/models/${encodeURIComponent(name)}`);
      const options = [["", "production, else the latest"]];
      for (const v of [...detail.versions].reverse()) {
        const tags = v.aliases.length ? ` (${v.aliases.join(", ")})` : "";
        options.push([String(v.version), `v${v.version}${tags}`]);
      }
      fillSelect(this.baseVersion, options);
    } catch (error) {
      showError(this.error, error);
    }
  }

  // ---------------------------------------------------------------- dataset

  async upload() {
    clearError(this.error);
    const file = this.datasetFile.files[0];
    if (!file) {
      showError(this.error, new Error("choose a zip file first"));
      this.datasetFile.focus();
      return;
    }
    const form = new FormData();
    form.append("file", file, file.name);
    const query = this.datasetName.value.trim() ? `?${new URLSearchParams({ name: this.datasetName.value.trim() })}` : "";
    const button = $("#dataset-upload", this.root);
    button.disabled = true;
    this.report.replaceChildren(h("p", { class: "muted" }, `uploading and checking ${file.name} (${bytes(file.size)})…`));
    try {
      const record = await api(`/v1/datasets${query}`, { method: "POST", body: form });
      const all = await api("/v1/datasets");
      this.setDatasets(all, record.id);
    } catch (error) {
      this.report.replaceChildren();
      showError(this.error, error);
    } finally {
      button.disabled = false;
    }
  }

  showReport(record) {
    if (!record) {
      this.report.replaceChildren();
      return;
    }
    const counts = Object.values(record.classes);
    const most = Math.max(...counts, 1);
    const rows = Object.entries(record.classes).map(([name, count]) => {
      const fill = h("span", { class: "bar-fill" });
      fill.style.width = `${((count / most) * 100).toFixed(1)}%`;
      return h("tr", {}, h("th", { scope: "row" }, name), h("td", { class: "number" }, count),
        h("td", { class: "bar-cell", "aria-hidden": "true" }, h("span", { class: "bar" }, fill)));
    });
    const skipped = record.skipped_count
      ? h("details", { class: "skipped" },
        h("summary", {}, `${record.skipped_count} file${record.skipped_count > 1 ? "s" : ""} skipped`),
        h("ul", {}, record.skipped.map((s) => h("li", {}, h("code", {}, s.path), ` — ${s.reason}`)),
          record.skipped_count > record.skipped.length
            ? h("li", { class: "muted" }, `and ${record.skipped_count - record.skipped.length} more`) : null))
      : h("p", { class: "muted" }, "No file was skipped.");
    this.report.replaceChildren(
      h("p", { class: "report-title" }, h("strong", {}, record.name), ` · ${record.id}`),
      h("p", {}, `${record.files} images in ${counts.length} classes, ${bytes(record.bytes)}; uploaded ${when(record.created_at)}`),
      h("table", { class: "classes" },
        h("caption", { class: "visually-hidden" }, "Images per class"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Class"), h("th", { scope: "col" }, "Images"),
          h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Share")))),
        h("tbody", {}, rows)),
      skipped);
  }

  // ---------------------------------------------------------------- job

  number(selector) {
    return Number($(selector, this.root).value);
  }

  async submit() {
    clearError(this.error);
    const dataset = this.datasetChoice.value;
    if (!dataset) {
      showError(this.error, new Error("choose a dataset first: upload a zip, or pick an uploaded one"));
      this.datasetChoice.focus();
      return;
    }
    const body = {
      base_model: this.base.value,
      dataset,
      hyperparameters: {
        epochs: this.number("#job-epochs"),
        learning_rate: this.number("#job-lr"),
        optimizer: $("#job-optimizer", this.root).value,
        batch_size: this.number("#job-batch"),
      },
      auto_promote: this.autoPromote.checked,
    };
    if (this.baseVersion.value) body.base_version = Number(this.baseVersion.value);
    if (this.autoPromote.checked && this.minAccuracy.value !== "") body.min_accuracy = Number(this.minAccuracy.value);
    const suffix = $("#job-suffix", this.root).value.trim();
    if (suffix) body.suffix = suffix;
    const button = $("#job-start", this.root);
    button.disabled = true;
    try {
      const job = await api("/v1/fine-tuning/jobs", { method: "POST", json: body });
      await this.loadWorkers();
      this.watch(job);
      this.loadRecent();
      $("#watch-title", this.root).scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showError(this.error, error);
    } finally {
      button.disabled = false;
    }
  }

  async loadRecent() {
    try {
      const page = await api("/v1/fine-tuning/jobs?limit=10");
      this.recent.replaceChildren(...(page.data.length ? page.data.map((job) => h("li", {},
        h("span", { class: `badge status-${job.status}` }, job.status),
        h("span", { class: "job-name" }, `${job.id} · ${job.base_model} v${job.base_version} on ${job.dataset}`),
        h("span", { class: "muted" }, when(job.created_at)),
        h("button", { type: "button", class: "secondary", onclick: () => this.watch(job) }, "Watch")))
        : [h("li", { class: "muted" }, "No jobs yet.")]));
    } catch (error) {
      showError(this.error, error);
    }
  }

  // Follow a job: read its event stream from the start (so the curves and log are whole), reconnect with
  // Last-Event-ID when the stream breaks before the job finished.
  async watch(job) {
    if (this.watching) this.watching.abort();
    const controller = new AbortController();
    this.watching = controller;
    this.job = job;
    this.lastEventId = null;
    this.log.replaceChildren();
    const epochs = Math.max(...[job.hyperparameters.epochs].flat().map(Number), 1);
    this.lossChart.clear(epochs);
    this.accuracyChart.clear(epochs);
    this.showJob(job);
    const path = `/v1/fine-tuning/jobs/${encodeURIComponent(job.id)}/events`;
    while (!controller.signal.aborted) {
      try {
        for await (const event of eventStream(path, { lastEventId: this.lastEventId, signal: controller.signal })) {
          if (controller.signal.aborted) return;
          this.onEvent(event);
        }
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          showError(this.error, error);
          return;
        }
        this.addLog({ type: "unavailable", message: `${error.words || error.message}; reconnecting…` });
        this.troubled = true;
      }
      if (controller.signal.aborted) return;
      await this.refresh(controller);
      if (FINISHED.has(this.job.status)) return;
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  }

  onEvent(event) {
    if (event.id) this.lastEventId = event.id;
    const data = event.data && typeof event.data === "object" ? event.data : {};
    if (event.type === "unavailable") {
      this.addLog({ type: "unavailable", message: `${data.message || "the job store does not answer"}; reconnecting…` });
      this.troubled = true;
      return;
    }
    if (this.troubled) {
      this.troubled = false; // the stream is back: the error of the outage is over
      clearError(this.error);
    }
    this.addLog(data);
    if (event.type === "epoch") {
      const row = data.data || {};
      const trials = (this.job?.trials || []).length;
      const prefix = trials > 1 ? `trial ${row.trial} ` : "";
      this.lossChart.add(`${prefix}training`, row.epoch, row.train_loss);
      this.lossChart.add(`${prefix}validation`, row.epoch, row.val_loss);
      this.accuracyChart.add(`${prefix}training`, row.epoch, row.train_accuracy);
      this.accuracyChart.add(`${prefix}validation`, row.epoch, row.val_accuracy);
    }
    if (["status", "trial", "epoch"].includes(event.type)) this.refreshSoon();
  }

  // The job record after a burst of events (once, not once per event).
  refreshSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh(this.watching);
    }, 150);
  }

  async refresh(controller) {
    const id = this.job?.id;
    if (!id) return;
    try {
      const job = await api(`/v1/fine-tuning/jobs/${encodeURIComponent(id)}`);
      if (controller !== this.watching || this.job?.id !== id) return;
      this.showJob(job);
    } catch (error) {
      if (controller === this.watching) showError(this.error, error);
    }
  }

  showJob(job) {
    this.job = job;
    const finished = FINISHED.has(job.status);
    this.cancel.disabled = finished || job.status === "cancelling";
    const parts = [h("span", { class: `badge status-${job.status}` }, job.status), ` ${job.id}`];
    const total = Math.max(...[job.hyperparameters.epochs].flat().map(Number), 1);
    if (job.status === "running" || job.status === "cancelling") {
      const done = job.trials.reduce((sum, t) => sum + (t.epochs_completed || 0), 0);
      const trials = job.trials.length > 1 ? ` across ${job.trials.length} trials` : "";
      parts.push(` · epoch ${done} of ${total * job.trials.length} done${trials}`);
      if (job.finishing || done >= total * job.trials.length) {
        parts.push(" · testing and publishing the result");
      } else if (job.estimated_finish_at) {
        const left = (new Date(job.estimated_finish_at).getTime() - Date.now()) / 1000;
        parts.push(left < 2 ? " · almost done" : ` · about ${seconds(left)} left`);
      }
    } else if (job.status === "succeeded" && job.result) {
      const r = job.result;
      const accuracy = typeof r.metrics?.test_accuracy === "number" ? `, test accuracy ${percent(r.metrics.test_accuracy)}` : "";
      parts.push(` · published ${r.model} v${r.version}${accuracy}${r.promoted ? ", promoted to production" : ""}`);
    } else if (job.status === "failed" && job.error) {
      parts.push(` · ${job.error.code}: ${job.error.message}`);
    } else if (job.status === "cancelled") {
      const done = job.trials.reduce((sum, t) => sum + (t.epochs_completed || 0), 0);
      parts.push(` · stopped after ${done} epoch${done === 1 ? "" : "s"}; nothing was published`);
    } else if (job.status === "queued") {
      parts.push(this.noWorker ? " · no worker is running to take it (see above)" : " · waiting for a worker");
    }
    this.status.replaceChildren(...parts);
    this.status.dataset.status = job.status;
  }

  addLog(event) {
    const time = event.created_at ? new Date(event.created_at).toLocaleTimeString() : new Date().toLocaleTimeString();
    const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
    this.log.append(h("li", { class: `log-${event.type}` },
      h("time", { datetime: event.created_at || "" }, time),
      h("span", { class: "log-type" }, event.type),
      h("span", { class: "log-message" }, event.message || "")));
    while (this.log.children.length > LOG_KEPT) this.log.firstElementChild.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  async cancelJob() {
    if (!this.job) return;
    clearError(this.error);
    this.cancel.disabled = true;
    try {
      this.showJob(await api(`/v1/fine-tuning/jobs/${encodeURIComponent(this.job.id)}/cancel`, { method: "POST" }));
    } catch (error) {
      showError(this.error, error);
      this.cancel.disabled = false;
    }
  }
}
