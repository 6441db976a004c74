// Models: every model with its versions, aliases, metrics, provider and lineage; promote or roll back;
// a running rollout with its live figures (refreshed every 2 s while the view shows one), promote or abort it.

import { api } from "./api.js";
import { $, clearError, h, percent, showError, when } from "./dom.js";
import { fetchRollout, rolloutPanel } from "./rollout.js";

const ROLLOUT_REFRESH_MS = 2000;

function metric(value, format) {
  return typeof value === "number" ? format(value) : "—";
}

// Where a version came from: a line for people, then the dataset and job ids in small print.
function lineage(version) {
  const from = version.lineage;
  if (!from) return ["—"];
  const ids = (...lines) => lines.filter(Boolean).map((line) => h("div", { class: "muted small ids" }, line));
  if (from.base_model) {
    return [`fine-tuned from ${from.base_model} v${from.base_version ?? "?"}`,
      ...ids(`dataset: ${from.dataset.replace(/^dataset:/, "")}`, from.job_id && `job: ${from.job_id}`)];
  }
  if (from.imported) {
    return [`imported from ${from.imported}`,
      ...ids(from.dataset.startsWith("folder:") && `evaluated on ${from.dataset.replace(/^folder:/, "")}`)];
  }
  return [`trained on ${from.dataset}`];
}

export class ModelsView {
  constructor(root) {
    this.root = root;
    this.list = $("#models-list", root);
    this.error = $("#models-error", root);
    this.notice = $("#models-notice", root);
    this.dialog = $("#confirm");
    $("#models-refresh", root).addEventListener("click", () => this.load());
    $("#confirm-cancel").addEventListener("click", () => this.dialog.close("cancel"));
  }

  show() {
    this.load();
  }

  // While a rollout shows, its figures are fetched again every few seconds (only while the view is visible).
  watchRollouts(names) {
    clearTimeout(this.timer);
    if (!names.length) return;
    this.timer = setTimeout(async () => {
      if (this.root.hidden) return;
      for (const name of names) {
        const card = this.list.querySelector(`article[data-model="${CSS.escape(name)}"]`);
        const shown = card && card.querySelector("section.rollout");
        if (!shown) continue;
        try {
          const rollout = await fetchRollout(name);
          if (!rollout) {
            await this.load();
            return;
          }
          shown.replaceWith(rolloutPanel(rollout, (outcome) => this.endRollout(name, outcome)));
        } catch (error) {
          showError(this.error, error);
        }
      }
      this.watchRollouts(names);
    }, ROLLOUT_REFRESH_MS);
  }

  async endRollout(name, outcome) {
    clearError(this.error);
    this.notice.hidden = true;
    try {
      const event = await api(`/v1/models/${encodeURIComponent(name)}/rollout/${outcome}`, {
        method: "POST", json: { reason: `${outcome} from the web page` },
      });
      this.notice.textContent = `${name}: rollout of v${event.version} ${outcome === "promote" ? "promoted" :
        "aborted"}; ${outcome === "promote" ? `v${event.version} serves now` : `v${event.previous} still serves`}.`;
      this.notice.hidden = false;
      await this.load();
      this.notice.focus();
    } catch (error) {
      showError(this.error, error);
      this.error.focus();
    }
  }

  keyChanged() {
    if (!this.root.hidden) this.load();
  }

  async load() {
    clearError(this.error);
    this.list.setAttribute("aria-busy", "true");
    try {
      const models = await api("/v1/models");
      const details = await Promise.all(models.map((m) => api(`/v1/models/${encodeURIComponent(m.name)}`)));
      const rollouts = await Promise.all(details.map((d) => (d.rollout ? fetchRollout(d.name) : null)));
      this.list.replaceChildren(...(details.length ? details.map((d, i) => this.model(d, rollouts[i]))
        : [h("p", { class: "muted" },
          "No model is published yet: imgcls train publishes one, imgcls models import brings one.")]));
      this.watchRollouts(models.filter((m, i) => rollouts[i]).map((m) => m.name));
    } catch (error) {
      showError(this.error, error);
    } finally {
      this.list.removeAttribute("aria-busy");
    }
  }

  model(detail, rollout) {
    const production = detail.aliases.production;
    const aliases = Object.entries(detail.aliases).map(([a, v]) => `${a} → v${v}`).join(", ") || "none";
    const loaded = detail.loaded.length
      ? detail.loaded.map((v) => `v${v.version} ${v.variant} on ${v.provider}` +
        (v.in_flight || v.queued_images ? ` (${v.in_flight} in flight, ${v.queued_images} queued)` : "")).join("; ")
      : "nothing loaded on this server";
    const rows = [...detail.versions].reverse().map((v) => {
      const m = v.metrics || {};
      const variants = Object.entries(v.variants || {}).map(([name, vm]) =>
        `${name}: ${metric(vm.test_accuracy, percent)}`).join(", ");
      const isLoaded = detail.loaded.filter((l) => l.version === v.version);
      let action;
      if (v.version === production) {
        action = null; // its Aliases cell says production
      } else {
        const verb = production !== undefined && v.version < production ? "Roll back to" : "Promote";
        action = h("button", {
          type: "button", class: verb === "Promote" ? "" : "secondary",
          onclick: (event) => this.confirm(detail.name, v.version, production, event.currentTarget),
        }, `${verb} v${v.version}`);
      }
      const cell = (label, ...content) => h("td", { "data-label": label }, h("div", {}, ...content));
      return h("tr", {},
        h("th", { scope: "row" }, `v${v.version}`, h("div", { class: "muted small" }, v.architecture)),
        cell("Aliases", v.aliases.join(", ") || "—"),
        cell("Test accuracy", metric(m.test_accuracy, percent),
          variants ? h("div", { class: "muted small" }, variants) : null),
        cell("Calibration error", metric(m.ece, (x) => x.toFixed(3)),
          typeof m.ece_uncalibrated === "number"
            ? h("div", { class: "muted small" }, `${m.ece_uncalibrated.toFixed(3)} uncalibrated`) : null),
        cell("Here", isLoaded.length
          ? isLoaded.map((l) => `${l.variant} on ${l.provider.replace("ExecutionProvider", "")}`).join(", ")
          : "not loaded"),
        cell("Lineage", ...lineage(v)),
        h("td", { "data-label": "Published", class: "wrap" }, h("div", {}, when(v.created_at))),
        h("td", { class: "action" }, action));
    });
    const table = h("table", { class: "versions" },
      h("caption", { class: "visually-hidden" }, `Versions of ${detail.name}`),
      h("thead", {}, h("tr", {}, ["Version", "Aliases", "Test accuracy", "Calibration error (ECE)", "Here",
        "Lineage", "Published"].map((text) => h("th", { scope: "col" }, text)),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, rows));
    return h("article", { class: "card model", "data-model": detail.name, "aria-labelledby": `model-${detail.name}` },
      h("h3", { id: `model-${detail.name}` }, detail.name),
      h("dl", { class: "facts" },
        h("dt", {}, "Serving"), h("dd", {}, detail.serving_version ? `v${detail.serving_version}` : "—"),
        h("dt", {}, "Aliases"), h("dd", {}, aliases),
        h("dt", {}, "Loaded here"), h("dd", {}, loaded),
        h("dt", {}, "Labels"), h("dd", { class: "labels-list" }, `${detail.labels.length}: ${detail.labels.join(", ")}`),
        h("dt", {}, "Input"), h("dd", {}, `${detail.input_size.join(" × ")} ${detail.color_mode}`)),
      rollout ? rolloutPanel(rollout, (outcome) => this.endRollout(detail.name, outcome)) : null,
      h("div", { class: "table-scroll", tabindex: "0", role: "region", "aria-label": `Versions of ${detail.name}` },
        table));
  }

  confirm(name, version, production, opener) {
    const alias = $("#confirm-alias");
    alias.value = "production";
    const rollback = production !== undefined && version < production;
    $("#confirm-title").textContent = rollback ? `Roll ${name} back to v${version}?` : `Promote ${name} v${version}?`;
    $("#confirm-text").textContent =
      `The alias below moves to v${version}` + (production !== undefined ? ` (production is v${production} now)` : "") +
      ". For production the server loads and warms it, then switches requests to it; no request fails. " +
      "Every server of this repository follows.";
    $("#confirm-ok").textContent = rollback ? "Roll back" : "Promote";
    this.dialog.returnValue = "";
    this.dialog.addEventListener("close", async () => {
      opener.focus();
      if (this.dialog.returnValue !== "confirm") return;
      await this.promote(name, version, alias.value.trim());
    }, { once: true });
    this.dialog.showModal();
    $("#confirm-ok").focus();
  }

  async promote(name, version, alias) {
    clearError(this.error);
    this.notice.hidden = true;
    try {
      const summary = await api(`/v1/models/${encodeURIComponent(name)}/promote`, {
        method: "POST", json: { version, alias },
      });
      this.notice.textContent = `${name}: ${alias} is v${summary.aliases[alias] ?? version} now; ` +
        `serving v${summary.serving_version}.`;
      this.notice.hidden = false;
      await this.load();
      this.notice.focus();
    } catch (error) {
      showError(this.error, error);
      this.error.focus();
    }
  }
}
