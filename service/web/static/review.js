// Review: the inputs the server kept, one at a time, with the model's top 3; a key or a click records the
// right label (POST /v1/feedback). Keys: 1-9 and 0 pick the model's labels in order, Enter confirms the
// top-1, ArrowRight skips, ArrowLeft goes back.

import { api, apiBlob } from "./api.js";
import { $, clearError, fillSelect, h, percent, showError, when } from "./dom.js";

const LISTED = 100;
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

export class ReviewView {
  constructor(root) {
    this.root = root;
    this.model = $("#review-model", root);
    this.error = $("#review-error", root);
    this.status = $("#review-status", root);
    this.item = $("#review-item", root);
    this.predictions = [];
    this.labels = [];
    this.position = 0;
    this.imageUrl = null;
    this.sending = false;

    $("#review-options", root).addEventListener("submit", (event) => event.preventDefault());
    $("#review-refresh", root).addEventListener("click", () => this.load());
    this.model.addEventListener("change", () => this.load());
    document.addEventListener("keydown", (event) => this.key(event));
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
      fillSelect(this.model, models.length ? models.map((m) => [m.name, m.name]) : [["", "no models published"]]);
      await this.load();
    } catch (error) {
      showError(this.error, error);
    }
  }

  async load() {
    const name = this.model.value;
    if (!name) return;
    clearError(this.error);
    try {
      const review = await api(`/v1/models/${encodeURIComponent(name)}/review?limit=${LISTED}`);
      this.labels = review.labels;
      this.predictions = review.predictions;
      this.position = 0;
      this.status.textContent = `${review.waiting} prediction${review.waiting === 1 ? "" : "s"} of ${name} waiting`;
      await this.render();
    } catch (error) {
      this.predictions = [];
      await this.render();
      showError(this.error, error);
    }
  }

  current() {
    return this.predictions[this.position] || null;
  }

  async render() {
    if (this.imageUrl) URL.revokeObjectURL(this.imageUrl);
    this.imageUrl = null;
    const prediction = this.current();
    if (!prediction) {
      this.item.hidden = false;
      this.item.replaceChildren(h("p", { class: "muted review-empty" },
        this.predictions.length ? "You went past the last one: press ← to go back, or Refresh."
          : "Nothing waits for review. The server keeps inputs with IMGCLS_KEEP_PREDICTIONS on (docs/feedback.md)."));
      return;
    }
    const image = h("img", { class: "thumb pixelated", alt: `input kept for prediction ${prediction.id}` });
    const [best] = prediction.top;
    const guesses = prediction.top.map((guess, rank) => h("li", { class: rank === 0 ? "label top" : "label" },
      h("span", { class: "label-name" }, guess.label), h("span", { class: "probability" }, percent(guess.probability))));
    const buttons = this.labels.map((label, index) => h("button", {
      type: "button", class: label === best.label ? "pick" : "pick secondary", "data-label": label,
      onclick: () => this.record(label),
    }, index < KEYS.length ? h("kbd", {}, KEYS[index]) : null, ` ${label}`));
    this.item.hidden = false;
    this.item.replaceChildren(
      h("div", { class: "thumb-box review-image" }, image),
      h("div", { class: "labels" },
        h("p", { class: "muted small" }, `${this.position + 1} of ${this.predictions.length} · v${prediction.version} · ` +
          `${prediction.low_confidence ? "low confidence" : "sampled"} · ${when(prediction.created_at)}`),
        h("h3", {}, "The model's top 3"),
        h("ol", { class: "top-k" }, guesses),
        h("div", { class: "buttons review-actions" },
          h("button", { type: "button", id: "review-confirm", onclick: () => this.record(best.label) },
            `Confirm ${best.label} `, h("kbd", {}, "Enter")),
          h("button", { type: "button", class: "secondary", onclick: () => this.move(-1) }, h("kbd", {}, "←"), " Back"),
          h("button", { type: "button", class: "secondary", onclick: () => this.move(1) }, "Skip ", h("kbd", {}, "→"))),
        h("h3", {}, "Or the right label"),
        h("div", { class: "buttons review-labels" }, buttons)));
    try {
      const blob = await apiBlob(`/v1/models/${encodeURIComponent(prediction.model)}/review/${prediction.id}/image`);
      if (this.current() !== prediction) return; // moved on while it loaded
      this.imageUrl = URL.createObjectURL(blob);
      image.src = this.imageUrl;
    } catch (error) {
      showError(this.error, error);
    }
  }

  move(step) {
    this.position = Math.min(Math.max(this.position + step, 0), this.predictions.length);
    this.render();
  }

  async record(label) {
    const prediction = this.current();
    if (!prediction || this.sending) return;
    this.sending = true;
    clearError(this.error);
    try {
      const feedback = await api("/v1/feedback", {
        method: "POST", json: { model: prediction.model, prediction_id: prediction.id, label },
      });
      this.predictions.splice(this.position, 1);
      this.status.textContent = `recorded ${feedback.label} (${feedback.kind}); ${this.predictions.length} left here`;
      await this.render();
    } catch (error) {
      showError(this.error, error);
    } finally {
      this.sending = false;
    }
  }

  key(event) {
    if (this.root.hidden || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
    if (document.querySelector("dialog[open]")) return;
    const prediction = this.current();
    const index = KEYS.indexOf(event.key);
    if (index >= 0 && prediction && index < this.labels.length) this.record(this.labels[index]);
    else if (event.key === "Enter" && prediction && !(target instanceof HTMLButtonElement)) this.record(prediction.top[0].label);
    else if (event.key === "ArrowRight") this.move(1);
    else if (event.key === "ArrowLeft") this.move(-1);
    else return;
    event.preventDefault();
  }
}
