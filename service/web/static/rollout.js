// A running rollout in the Models view: its live figures (from every server) and the promote / abort buttons.

import { ApiError, api } from "./api.js";
import { h, milliseconds, percent } from "./dom.js";

// The rollout of a model, or null when none runs (the API answers 404).
export async function fetchRollout(name) {
  try {
    return await api(`/v1/models/${encodeURIComponent(name)}/rollout`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

const show = (value, format) => (value === null || value === undefined ? "—" : format(value));

function plan(rollout) {
  const parts = [];
  const until = rollout.until;
  if (until) {
    parts.push("until " + [until.requests && `${until.requests} requests`, until.minutes && `${until.minutes} min`]
      .filter(Boolean).join(" or "));
  }
  const gate = rollout.gate;
  if (gate) {
    parts.push("gate: " + [gate.min_agreement !== null && gate.min_agreement !== undefined &&
      `agreement ≥ ${gate.min_agreement}`, gate.max_p99_ratio && `p99 ratio ≤ ${gate.max_p99_ratio}`]
      .filter(Boolean).join(", "));
  } else {
    parts.push("no gate: ends by hand");
  }
  return parts.join("; ");
}

// The panel; onEnd(outcome) is called by the buttons with "promote" or "abort".
export function rolloutPanel(rollout, onEnd) {
  const f = rollout.figures;
  const role = (name, r) => h("tr", {},
    h("th", { scope: "row" }, `${name} v${r.version}`),
    h("td", { "data-label": "Mean confidence" }, show(r.mean_confidence, (x) => percent(x))),
    h("td", { "data-label": "p50" }, show(r.p50_ms, milliseconds)),
    h("td", { "data-label": "p99" }, show(r.p99_ms, milliseconds)),
    h("td", { "data-label": "Failures" }, String(r.failures)),
    h("td", { "data-label": "Accuracy (feedback)" },
      r.labelled ? `${percent(r.accuracy)} of ${r.labelled}` : "no feedback yet"));
  const weakest = [...f.per_class].sort((a, b) => a.agreement - b.agreement).slice(0, 3)
    .map((c) => `${c.label} ${percent(c.agreement)} (${c.images})`).join(", ");
  return h("section", { class: "rollout", "aria-label": `Rollout of v${rollout.version}`, "data-rollout": rollout.id },
    h("h4", {}, `Rollout: v${rollout.version} beside v${rollout.serving_version}, ${rollout.mode} at ${rollout.percent} %`),
    h("p", { class: "muted small" }, `started by ${rollout.started_by} at ${rollout.started_at}; ${plan(rollout)}` +
      (rollout.reason ? ` — ${rollout.reason}` : "")),
    h("dl", { class: "facts" },
      h("dt", {}, "Requests"), h("dd", { class: "rollout-requests" },
        `${f.requests} seen, ${f.sampled} sampled, ${f.compared} compared, ${f.dropped} dropped under load`),
      h("dt", {}, "Top-1 agreement"), h("dd", { class: "rollout-agreement" },
        show(f.agreement, (x) => `${percent(x, 2)} of ${f.images} images`)),
      h("dt", {}, "p99 ratio"), h("dd", {}, show(f.p99_ratio, (x) => `${x.toFixed(2)} × the serving version's`)),
      h("dt", {}, "Least agreement"), h("dd", {}, weakest || "—")),
    h("div", { class: "table-scroll" }, h("table", { class: "versions" },
      h("thead", {}, h("tr", {}, ["", "Mean confidence", "p50", "p99", "Failures", "Accuracy (feedback)"]
        .map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, role("serving", f.serving), role("candidate", f.candidate)))),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "rollout-promote", onclick: () => onEnd("promote") },
        `Promote v${rollout.version}`),
      h("button", { type: "button", class: "secondary rollout-abort", onclick: () => onEnd("abort") }, "Abort")));
}
