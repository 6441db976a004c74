// The API client of the page: the key from sessionStorage, problem+json errors in words, and a
// server-sent-events reader over fetch() (EventSource cannot send an Authorization header).

const KEY_NAME = "imgcls.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

export class ApiError extends Error {
  constructor(status, title, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }

  // One sentence for people: the API's own detail, with a hint where the page can help.
  get words() {
    let text = this.status ? `${this.status} ${this.title}: ${this.detail}` : this.detail;
    if (this.status === 401) text += ". Type a valid key in the API key field at the top of the page.";
    if (this.status === 403) text += ". Use a key that has that scope.";
    if (this.retryAfter) text += ` Retry in ${this.retryAfter} s.`;
    return text;
  }
}

function headersWith(extra) {
  const headers = new Headers(extra || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

async function problem(response) {
  let title = response.statusText || "error";
  let detail = "";
  try {
    const body = await response.json();
    if (body && typeof body === "object") {
      detail = body.detail || body.error || "";
      title = body.title || title;
    }
  } catch {
    // not JSON: the status says enough
  }
  return new ApiError(response.status, title, detail || `the server answered ${response.status} ${title}`,
    response.headers.get("Retry-After"));
}

function networkError(error) {
  return new ApiError(0, "network", `the server did not answer (${error.message}); is it running?`);
}

// fetch() a /v1 path; the decoded JSON body, or an ApiError naming what went wrong.
export async function api(path, { method = "GET", json, body, headers, signal } = {}) {
  const sent = headersWith(headers);
  sent.set("Accept", "application/json");
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, body, headers: sent, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw networkError(error);
  }
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return null;
  return response.json();
}

// fetch() a keyed /v1 path that answers a file (a kept image, an explanation's overlay); its Blob, for
// URL.createObjectURL. An <img src> cannot send the key, so images that need one come through here.
export async function apiBlob(path, { method = "GET", body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, headers: headersWith(), signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw networkError(error);
  }
  if (!response.ok) throw await problem(response);
  return response.blob();
}

// Split a text/event-stream body into events: {id, type, data} with data parsed as JSON when it is.
// Yields as events arrive; returns when the server closes the stream.
export async function* eventStream(path, { lastEventId = null, signal } = {}) {
  const headers = headersWith({ Accept: "text/event-stream" });
  if (lastEventId) headers.set("Last-Event-ID", lastEventId);
  let response;
  try {
    response = await fetch(path, { headers, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw networkError(error);
  }
  if (!response.ok) throw await problem(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let event = { id: null, type: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      // A chunk may end between the \r and \n of one line break: keep a trailing \r for the next chunk.
      const cut = pending.endsWith("\r") ? pending.length - 1 : pending.length;
      const lines = pending.slice(0, cut).split(/\r\n|\r|\n/);
      pending = lines.pop() + pending.slice(cut);
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) yield finish(event);
          event = { id: null, type: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the server's keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") event.data.push(text);
        else if (field === "event") event.type = text;
        else if (field === "id") event.id = text;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function finish(event) {
  const text = event.data.join("\n");
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // leave it as text
  }
  return { id: event.id, type: event.type, data };
}
