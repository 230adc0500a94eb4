// DOM helpers. Every string from the server or the user goes in as text
// (textContent, attribute values), never as markup: table names, labels and
// error messages are attacker-controlled.

/** h('div', {class: 'x', onclick: f}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** An error box with the server's message. */
export function errorBox(err) {
  const status = err && err.status ? `HTTP ${err.status}: ` : '';
  return h('div', { class: 'error', role: 'alert' }, status + (err && err.message ? err.message : String(err)));
}

/** RFC 3339 (any number of fraction digits) or ms → ms; NaN if neither. */
export function parseTime(v) {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return NaN;
  const m = v.match(/^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/i);
  if (!m) return Date.parse(v);
  const base = Date.parse(`${m[1].replace(' ', 'T')}${m[3] && m[3] !== 'z' ? m[3] : 'Z'}`);
  return base + (m[2] ? Number(`0.${m[2]}`) * 1000 : 0);
}

/** A source of a rule ({type: api} or {type: file, path}) as text. */
export function sourceText(src) {
  if (!src) return '';
  if (typeof src === 'string') return src;
  return src.path ? `${src.type}: ${src.path}` : String(src.type);
}

export function fmtTime(v) {
  if (v === null || v === undefined || v === '') return '';
  const d = new Date(parseTime(v));
  if (isNaN(d)) return String(v);
  return d.toISOString().replace('T', ' ').replace(/\.000Z$/, 'Z');
}

export function fmtNum(v) {
  if (typeof v !== 'number') return v === null || v === undefined ? '' : String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e9)) return v.toExponential(3);
  return (Math.round(v * 1000) / 1000).toLocaleString('en-US', { maximumFractionDigits: 3 });
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function fmtDur(ns) {
  if (typeof ns !== 'number') return '';
  const s = ns / 1e9;
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** SQL string literal. */
export function sqlStr(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

/** SQL identifier. */
export function sqlIdent(s) {
  return `"${String(s).replace(/"/g, '""')}"`;
}

/** Tabs: [{id, label}], calls onpick(id); returns the bar element. */
export function tabs(items, active, onpick) {
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  for (const it of items) {
    bar.appendChild(h('button', {
      role: 'tab', class: it.id === active ? 'tab active' : 'tab',
      'aria-selected': it.id === active ? 'true' : 'false',
      'data-tab': it.id,
      onclick: () => onpick(it.id),
    }, it.label));
  }
  return bar;
}
