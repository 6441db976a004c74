// The page's entry point: the API key (sessionStorage only), the five views chosen by the URL's #hash.

import { apiKey, setApiKey } from "./api.js";
import { ClassifyView } from "./classify.js";
import { $ } from "./dom.js";
import { FineTuningView } from "./finetune.js";
import { ModelsView } from "./models.js";
import { ReviewView } from "./review.js";
import { ReportView } from "./report.js";

const views = {
  classify: new ClassifyView($("#view-classify")),
  models: new ModelsView($("#view-models")),
  "fine-tuning": new FineTuningView($("#view-fine-tuning")),
  review: new ReviewView($("#view-review")),
  report: new ReportView($("#view-report")),
};
let current = null;

function route() {
  const name = location.hash.slice(1) in views ? location.hash.slice(1) : "classify";
  for (const [key, view] of Object.entries(views)) view.root.hidden = key !== name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const changed = current !== name;
  current = name;
  document.title = `${$("h2", views[name].root).textContent} · imgcls`;
  views[name].show();
  return changed;
}

function showKeyState() {
  $("#key-state").textContent = apiKey() ? "key in use for this browser tab" : "no key";
  $("#forget-key").disabled = !apiKey();
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#api-key");
  setApiKey(input.value.trim());
  input.value = "";
  showKeyState();
  for (const view of Object.values(views)) view.keyChanged();
});

$("#forget-key").addEventListener("click", () => {
  setApiKey("");
  showKeyState();
  for (const view of Object.values(views)) view.keyChanged();
  $("#api-key").focus();
});

window.addEventListener("hashchange", () => {
  if (route()) $("#main").focus({ preventScroll: true });
});
// Files dropped outside the drop zone would replace the page: refuse them.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

showKeyState();
route();
