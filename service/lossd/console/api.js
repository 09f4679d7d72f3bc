// Talking to lossd from the page: the server's settings, the API key, fetch, tensors.
// Every request goes to this page's own origin (relative URLs only).

const meta = document.querySelector('meta[name="lossd-config"]');
export const config = JSON.parse(meta ? meta.content : "{}");

const KEY = "lossd-api-key";
let apiKey = sessionStorage.getItem(KEY) || "";

export function needsKey() {
  return Boolean(config.auth) && !apiKey;
}

export function getKey() {
  return apiKey;
}

export function setKey(key) {
  apiKey = key;
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error;
    super(error && error.message ? `${error.code}: ${error.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// GET (or POST a body: a string is sent as it is) and parse the JSON answer, or the text.
export async function api(path, { method = "GET", body = undefined, text = false } = {}) {
  if (needsKey()) throw new ApiError(401, null);
  const headers = {};
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store",
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const payload = text ? await response.text() : await response.json().catch(() => null);
  if (response.status === 401) {
    setKey("");
    window.dispatchEvent(new CustomEvent("lossd-unauthorized"));
  }
  if (!response.ok) throw new ApiError(response.status, text ? null : payload);
  return payload;
}

// Numbers as lossd writes them: non-finite ones are the strings "NaN", "Infinity", "-Infinity".
export function num(value) {
  if (typeof value === "number") return value;
  if (value === "NaN") return NaN;
  if (value === "Infinity") return Infinity;
  if (value === "-Infinity") return -Infinity;
  return Number(value);
}

// A tensor of an answer (nested list, {dtype, shape, data} or a number) as a flat array.
export function values(tensor) {
  if (Array.isArray(tensor)) return tensor.flat(Infinity).map(num);
  if (tensor && typeof tensor === "object" && Array.isArray(tensor.data)) {
    return tensor.data.map(num);
  }
  return [num(tensor)];
}

export const f64 = (shape, data) => ({ dtype: "float64", shape, data });
export const i64 = (shape, data) => ({ dtype: "int64", shape, data });

let losses = null;

// GET /v1/losses, once.
export async function listLosses() {
  if (!losses) losses = (await api("/v1/losses")).losses;
  return losses;
}

export function forgetLosses() {
  losses = null;
}

export function say(message) {
  const status = document.getElementById("status");
  if (status) status.textContent = message;
}

// A small element builder: h("p", {class: "x"}, "text", child, ...).
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "html") element.innerHTML = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export function format(x, digits = 6) {
  if (typeof x !== "number") x = num(x);
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-4)) return x.toExponential(digits - 1);
  return String(Number(x.toPrecision(digits)));
}
