// The HTTP API, with the token from localStorage as `Authorization: Bearer`.
// A 401 asks for a token (app.js listens for `fleetlake:auth`).

const TOKEN_KEY = 'fleetlake.token';

export function token() { return localStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) {
  if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra) {
  const hd = Object.assign({}, extra || {});
  const t = token();
  if (t) hd.Authorization = `Bearer ${t}`;
  return hd;
}

/** fetch with the token; throws ApiError with the server's message. */
export async function request(path, { method = 'GET', body, signal, raw = false, contentType } = {}) {
  const init = { method, signal, headers: headers() };
  if (body !== undefined) {
    if (typeof body === 'string') {
      init.body = body;
      init.headers['Content-Type'] = contentType || 'text/plain';
    } else {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
  }
  const r = await fetch(path, init);
  if (!r.ok) {
    const text = await r.text();
    let msg = text;
    try {
      const j = JSON.parse(text);
      msg = j.error || j.message || text;
    } catch (_) { /* not JSON */ }
    if (r.status === 401) window.dispatchEvent(new CustomEvent('fleetlake:auth', { detail: msg }));
    throw new ApiError(r.status, msg || r.statusText);
  }
  if (raw) return r;
  const ct = r.headers.get('content-type') || '';
  return ct.includes('json') ? r.json() : r.text();
}

export const get = (path, opts) => request(path, opts);
export const post = (path, body, opts) => request(path, Object.assign({ method: 'POST', body }, opts));

/** SQL, as an array of row objects. */
export async function sql(query, db, signal) {
  return request('/api/v1/sql', { method: 'POST', body: { sql: query, db, format: 'json' }, signal });
}

/**
 * SQL streamed as JSON lines: calls onRows(batch) as rows arrive, stops
 * (and aborts the request, which stops the server's query) after maxRows.
 * Returns {rows, truncated}.
 */
export async function sqlStream(query, db, { signal, maxRows = 100000, onRows } = {}) {
  const ctl = new AbortController();
  const abort = () => ctl.abort();
  if (signal) signal.addEventListener('abort', abort);
  const r = await request('/api/v1/sql', {
    method: 'POST', body: { sql: query, db, format: 'jsonl' }, signal: ctl.signal, raw: true,
  });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const rows = [];
  let truncated = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      const lines = buf.split('\n');
      buf = lines.pop();
      const batch = [];
      for (const l of lines) if (l.trim()) batch.push(JSON.parse(l));
      for (const b of batch) {
        if (rows.length >= maxRows) { truncated = true; break; }
        rows.push(b);
      }
      if (onRows && batch.length) onRows(rows);
      if (truncated) { ctl.abort(); break; }
    }
    if (!truncated && buf.trim()) rows.push(JSON.parse(buf));
  } catch (e) {
    if (!truncated) throw e;
  } finally {
    if (signal) signal.removeEventListener('abort', abort);
  }
  return { rows, truncated };
}

let me = null;
/** GET /api/v1/whoami, cached until the token changes. */
export async function whoami(db) {
  if (me && (!db || me.db === db)) return me;
  me = await get('/api/v1/whoami' + (db ? `?db=${encodeURIComponent(db)}` : ''));
  return me;
}
export function forgetWhoami() { me = null; }
export function cached() { return me; }
