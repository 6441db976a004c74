// Small DOM helpers: build elements without innerHTML (every text from the API goes in as text).

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

// Show an error (an ApiError, or any Error) in a role=alert paragraph; nothing hides it but clearError.
export function showError(element, error) {
  element.textContent = error.words || error.message || String(error);
  element.hidden = false;
}

export function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

export function percent(value, digits = 1) {
  return `${(value * 100).toFixed(digits)} %`;
}

export function milliseconds(value) {
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(1)} ms`;
}

export function bytes(value) {
  const units = ["bytes", "KB", "MB", "GB"];
  let index = 0;
  while (value >= 1000 && index < units.length - 1) {
    value /= 1000;
    index += 1;
  }
  return index === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[index]}`;
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// Replace a <select>'s options; keep the current value when it is still offered.
export function fillSelect(select, options, preferred = null) {
  const previous = preferred ?? select.value;
  select.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
  if (options.some(([value]) => value === previous)) select.value = previous;
}
