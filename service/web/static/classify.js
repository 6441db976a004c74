// Classify: pick, drop or paste images; one request per batch of images; top-k labels as bars; under each
// answer, "wrong? pick the right label" records a correction (POST /v1/feedback, with the image), and
// "Show heat map" swaps the picture for the top label's class activation map drawn over what the model
// saw (POST /v1/models/{name}/explain?format=png, asked once, on the first press).

import { api, apiBlob } from "./api.js";
import { $, clearError, fillSelect, h, milliseconds, percent, showError } from "./dom.js";

const RUNS_KEPT = 12;
const ACCEPTED = new Set(["image/png", "image/jpeg", "image/webp"]);

async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(text);
}

export class ClassifyView {
  constructor(root) {
    this.root = root;
    this.model = $("#classify-model", root);
    this.version = $("#classify-version", root);
    this.topK = $("#classify-top-k", root);
    this.files = $("#classify-files", root);
    this.zone = $("#drop-zone", root);
    this.error = $("#classify-error", root);
    this.busy = $("#classify-busy", root);
    this.results = $("#classify-results", root);
    this.details = new Map(); // model name -> GET /v1/models/{name}

    $("#classify-options", root).addEventListener("submit", (event) => event.preventDefault());
    this.model.addEventListener("change", () => this.loadVersions());
    this.files.addEventListener("change", () => {
      this.classify([...this.files.files]);
      this.files.value = ""; // choosing the same file again classifies it again
    });
    this.zone.addEventListener("dragenter", (event) => this.dragging(event, true));
    this.zone.addEventListener("dragover", (event) => this.dragging(event, true));
    this.zone.addEventListener("dragleave", (event) => this.dragging(event, false));
    this.zone.addEventListener("drop", (event) => {
      this.dragging(event, false);
      this.classify([...event.dataTransfer.files]);
    });
    document.addEventListener("paste", (event) => {
      if (this.root.hidden) return;
      const pasted = [...(event.clipboardData?.files || [])];
      if (pasted.length) {
        event.preventDefault();
        this.classify(pasted);
      }
    });
  }

  dragging(event, on) {
    event.preventDefault();
    this.zone.classList.toggle("over", on);
  }

  show() {
    this.loadModels(); // again each time: a job may have published a model since
  }

  keyChanged() {
    if (!this.root.hidden) this.loadModels();
  }

  async loadModels() {
    clearError(this.error);
    try {
      const models = await api("/v1/models");
      if (!models.length) {
        fillSelect(this.model, [["", "no models published"]]);
        fillSelect(this.version, []);
        return;
      }
      fillSelect(this.model, models.map((m) => [m.name, m.name]));
      this.summaries = new Map(models.map((m) => [m.name, m]));
      await this.loadVersions();
    } catch (error) {
      showError(this.error, error);
    }
  }

  async loadVersions() {
    const name = this.model.value;
    if (!name) return;
    clearError(this.error);
    try {
      const detail = await api(`/v1/models/${encodeURIComponent(name)}`);
      this.details.set(name, detail);
      const loaded = new Set(detail.loaded.map((v) => v.version));
      const options = [["", `serving (v${detail.serving_version ?? "?"})`]];
      for (const [alias, version] of Object.entries(detail.aliases)) options.push([`alias:${alias}`, `${alias} (v${version})`]);
      for (const v of [...detail.versions].reverse()) {
        options.push([`version:${v.version}`, `v${v.version}${loaded.has(v.version) ? "" : " (not loaded here)"}`]);
      }
      fillSelect(this.version, options);
      // top-k cannot exceed the model's labels (the API answers 400): a 3-label model shows at most 3
      const labels = detail.labels.length || 100;
      this.topK.max = String(labels);
      if (Number.parseInt(this.topK.value, 10) > labels) this.topK.value = String(labels);
    } catch (error) {
      showError(this.error, error);
    }
  }

  async classify(files) {
    clearError(this.error);
    const images = files.filter((file) => ACCEPTED.has(file.type) || !file.type);
    const refused = files.length - images.length;
    if (!images.length) {
      showError(this.error, new Error(files.length ? "those files are not images (JPEG, PNG or WebP)" : "no files"));
      return;
    }
    const name = this.model.value;
    if (!name) {
      showError(this.error, new Error("no model to classify with: load one first (see the Models view)"));
      return;
    }
    const query = new URLSearchParams();
    const topK = Number.parseInt(this.topK.value, 10);
    if (topK > 0) query.set("top_k", String(topK));
    const [kind, value] = this.version.value.split(":");
    if (kind === "alias") query.set("alias", value);
    if (kind === "version") query.set("version", value);
    const form = new FormData();
    for (const file of images) form.append("images", file, file.name || "pasted image");

    this.busy.textContent = `classifying ${images.length} image${images.length > 1 ? "s" : ""}…`;
    const started = performance.now();
    try {
      const answer = await api(`/v1/models/${encodeURIComponent(name)}/classify?${query}`, { method: "POST", body: form });
      const roundTrip = performance.now() - started;
      this.busy.textContent = refused ? `${refused} file(s) left out: not JPEG, PNG or WebP` : "";
      this.results.prepend(this.run(answer, images, roundTrip));
      while (this.results.children.length > RUNS_KEPT) {
        const oldest = this.results.lastElementChild;
        for (const image of oldest.querySelectorAll("img")) {
          for (const url of [image.src, image.dataset.original, image.dataset.overlay]) if (url) URL.revokeObjectURL(url);
        }
        oldest.remove();
      }
    } catch (error) {
      this.busy.textContent = "";
      showError(this.error, error);
    }
  }

  run(answer, images, roundTrip) {
    const t = answer.timings;
    const count = `${images.length} image${images.length > 1 ? "s" : ""}`;
    const heading = h("h3", { class: "run-title" },
      h("span", { class: "answered" }, `${answer.model} `, h("span", { class: "version" }, `v${answer.version}`),
        ` · ${answer.variant}`),
      h("span", { class: "latency" }, `${count} in ${milliseconds(t.total_ms)}`));
    const timing = h("p", { class: "muted timings" },
      `server ${milliseconds(t.total_ms)} (decode ${milliseconds(t.decode_ms)}, queue ${milliseconds(t.queue_ms)}, ` +
      `compute ${milliseconds(t.compute_ms)} in a batch of ${t.batch_size}); round trip ${milliseconds(roundTrip)}`);
    const cards = answer.results.map((result, index) => this.card(images[index], result, answer));
    return h("section", { class: "run", "aria-label": `${answer.model} v${answer.version}, ${count}` },
      heading, timing, h("div", { class: "cards" }, cards));
  }

  card(file, result, answer) {
    const url = URL.createObjectURL(file);
    const image = h("img", { src: url, alt: file.name || "pasted image", class: "thumb" });
    image.addEventListener("load", () => {
      if (image.naturalWidth <= 64) image.classList.add("pixelated");
    });
    const [best] = result.top;
    const rows = result.top.map((p, rank) => {
      const bar = h("span", { class: "bar-fill" });
      bar.style.width = `${Math.max(0.5, p.probability * 100).toFixed(1)}%`;
      return h("li", { class: rank === 0 ? "label top" : "label" },
        h("span", { class: "label-name" }, p.label),
        h("span", { class: "bar", "aria-hidden": "true" }, bar),
        h("span", { class: "probability" }, percent(p.probability)));
    });
    return h("article", { class: "card result", "aria-label": `${file.name || "pasted image"}: ${best.label}` },
      h("div", { class: "thumb-box" }, image),
      h("div", { class: "labels" },
        h("p", { class: "file-name", title: file.name }, file.name || "pasted image"),
        result.low_confidence ? h("p", { class: "badge warn" }, "low confidence") : null,
        h("ol", { class: "top-k" }, rows),
        this.heatMap(file, image, best, answer),
        this.correction(file, result, answer)));
  }

  // "Show heat map": where in the picture the top label came from; a model without explanations says why (409).
  heatMap(file, image, best, answer) {
    const note = h("span", { class: "muted small heat-note", role: "status" });
    const button = h("button", { type: "button", class: "heat-toggle secondary", "aria-pressed": "false" }, "Show heat map");
    image.dataset.original = image.src;
    button.addEventListener("click", async () => {
      const on = button.getAttribute("aria-pressed") !== "true";
      if (on && !image.dataset.overlay) {
        button.disabled = true;
        note.textContent = "explaining…";
        try {
          const query = new URLSearchParams({ format: "png", version: String(answer.version), class: best.label });
          const form = new FormData();
          form.append("images", file, file.name || "pasted image");
          const path = `/v1/models/${encodeURIComponent(answer.model)}/explain?${query}`;
          image.dataset.overlay = URL.createObjectURL(await apiBlob(path, { method: "POST", body: form }));
          note.textContent = "";
        } catch (error) {
          note.textContent = error.words || error.message;
          return;
        } finally {
          button.disabled = false;
        }
      }
      image.src = on ? image.dataset.overlay : image.dataset.original;
      image.alt = on ? `where ${answer.model} saw ${best.label}` : file.name || "pasted image";
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "Hide heat map" : "Show heat map";
    });
    return h("div", { class: "heat" }, button, note);
  }

  // "Wrong? pick the right label": choosing one sends it with the image (the server may not have kept it).
  correction(file, result, answer) {
    const labels = this.details.get(answer.model)?.labels || result.top.map((p) => p.label);
    const id = `fix-${result.prediction_id}`;
    const note = h("span", { class: "muted small fix-note", role: "status" });
    const select = h("select", { id, class: "fix-label" }, h("option", { value: "" }, "—"),
      labels.map((label) => h("option", { value: label }, label)));
    select.addEventListener("change", async () => {
      if (!select.value) return;
      select.disabled = true;
      note.textContent = "sending…";
      try {
        const feedback = await api("/v1/feedback", {
          method: "POST",
          json: {
            model: answer.model, version: answer.version, prediction_id: result.prediction_id, label: select.value,
            image: await base64(file), predicted: result.top.slice(0, 3).map(({ label, probability }) => ({ label, probability })),
          },
        });
        note.textContent = `recorded as a ${feedback.kind}, thank you`;
      } catch (error) {
        select.disabled = false;
        note.textContent = error.words || error.message;
      }
    });
    return h("div", { class: "fix" }, h("label", { for: id }, "Wrong? Pick the right label"), select, note);
  }
}
