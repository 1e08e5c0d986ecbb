// The one door to herald's /v1 API: the key kept for this tab only (sessionStorage), sent
// in the Authorization header, never in a URL; errors in the API's own words.

const KEY = "herald.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** An answer that was not 2xx, or no answer: `status` 0 when herald could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Sends one request; resolves to the parsed JSON body (null when empty). */
export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  const key = getKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", `herald could not be reached (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `herald answered ${response.status} ${response.statusText}`,
    );
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const patch = (path, body) => api("PATCH", path, body);

/** `?a=1&b=2` of the parameters that have a value ("" when none). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** One path segment, escaped (delivery ids hold a `:`). */
export const seg = (id) => encodeURIComponent(id);
