// The API client: the key lives in sessionStorage (never a cookie or a URL) and is
// sent as a Bearer token. Paths resolve against the server root, the folder above
// /ui/, so the dashboard also works behind a reverse proxy under a path prefix.

const KEY = 'genq.key';
export const ROOT = new URL('../', document.baseURI);

export const auth = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export const apiUrl = (path) => new URL(path.replace(/^\//, ''), ROOT);

/** Output URLs name the server's public URL; serve them from this origin instead. */
export function fileUrl(url) {
  const m = /\/files\/(.+)$/.exec(new URL(url, ROOT).pathname);
  return m ? new URL(`files/${m[1]}`, ROOT).href : url;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code;
    this.errors = problem.errors || [];
  }
}

export async function problemOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body === 'object') return body;
  } catch { /* not JSON */ }
  return { title: res.statusText, status: res.status };
}

export function unauthorized() {
  window.dispatchEvent(new CustomEvent('genq:unauthorized'));
}

/** fetch + JSON + problem+json errors. `key` overrides the stored key (sign-in). */
export async function api(path, { method = 'GET', json, form, signal, key } = {}) {
  const headers = { Accept: 'application/json' };
  const token = key ?? auth.get();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const res = await fetch(apiUrl(path), { method, headers, body, signal, cache: 'no-store' });
  if (!res.ok) {
    const err = new ApiError(res.status, await problemOf(res));
    if (res.status === 401 && key === undefined) unauthorized();
    throw err;
  }
  return res.status === 204 ? null : res.json();
}

export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
