// Query: the SQL console (schema browser, results as a virtualised table
// and, with a time column, as a chart downsampled by the server), EXPLAIN,
// cancel, history in local storage; and a PromQL tab.
import { h, replace, clear, errorBox, fmtBytes, fmtNum, sqlStr, sqlIdent, tabs } from './dom.js';
import * as api from './api.js';
import { table, columnsOf } from './table.js';
import { lineChart } from './chart.js';

const HISTORY_KEY = 'fleetlake.history';
const MAX_ROWS = 100000;
const MAX_POINTS = 1000;
const MAX_SERIES = 20;

export function history() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]'); } catch (_) { return []; }
}
function remember(kind, text, db) {
  const list = history().filter((x) => !(x.text === text && x.kind === kind));
  list.unshift({ kind, text, db, at: new Date().toISOString() });
  localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, 50)));
}

/** A query for the console to open with (other pages link here). */
export function consoleLink(text, kind = 'sql') {
  return `#/query?${kind}=${encodeURIComponent(text)}`;
}

export function render(root, ctx, params) {
  const mode = params.get('promql') !== null ? 'promql' : 'sql';
  const page = h('div', { class: 'page query' });
  replace(root, page);
  const body = h('div');
  const pick = (id) => { location.hash = id === 'sql' ? '#/query' : '#/query?promql='; };
  page.append(h('h1', {}, 'Query'), tabs([{ id: 'sql', label: 'SQL' }, { id: 'promql', label: 'PromQL' }], mode, pick), body);
  return mode === 'sql' ? sqlConsole(body, ctx, params.get('sql')) : promConsole(body, ctx, params.get('promql'));
}

function sqlConsole(root, ctx, initial) {
  const db = ctx.db;
  const last = history().find((x) => x.kind === 'sql');
  const editor = h('textarea', {
    id: 'sql', class: 'code', rows: '7', spellcheck: 'false', 'aria-label': 'SQL',
    placeholder: 'SELECT * FROM system.tables   (Ctrl+Enter runs, Esc cancels)',
  });
  editor.value = initial || (last ? last.text : 'SELECT * FROM system.tables');
  const status = h('span', { id: 'status', class: 'muted', 'aria-live': 'polite' });
  const out = h('div', { id: 'results', class: 'results' });
  const runBtn = h('button', { id: 'run', type: 'button', class: 'primary', title: 'Ctrl+Enter' }, 'Run');
  const explainBtn = h('button', { id: 'explain', type: 'button' }, 'Explain');
  const cancelBtn = h('button', { id: 'cancel', type: 'button', disabled: true, title: 'Esc' }, 'Cancel');
  const histSel = h('select', { id: 'history', 'aria-label': 'History' });
  fillHistory();
  const schema = h('aside', { class: 'schema', 'aria-label': 'Schema' }, h('p', { class: 'muted' }, 'Loading tables…'));
  root.append(h('div', { class: 'split' }, schema, h('section', { class: 'main' },
    editor,
    h('div', { class: 'row' }, runBtn, explainBtn, cancelBtn, histSel, status),
    out)));

  function fillHistory() {
    replace(histSel, h('option', { value: '' }, 'History…'),
      history().filter((x) => x.kind === 'sql').map((x, i) => h('option', { value: String(i) }, x.text.replace(/\s+/g, ' ').slice(0, 90))));
  }
  histSel.addEventListener('change', () => {
    const x = history().filter((y) => y.kind === 'sql')[Number(histSel.value)];
    if (x) editor.value = x.text;
    histSel.value = '';
    editor.focus();
  });

  let ctl = null;
  function busy(on) {
    runBtn.disabled = on; explainBtn.disabled = on; cancelBtn.disabled = !on;
  }
  async function run(explain) {
    const text = editor.value.trim().replace(/;\s*$/, '');
    if (!text) return;
    if (ctl) ctl.abort();
    ctl = new AbortController();
    const mine = ctl;
    busy(true);
    clear(out);
    const t0 = performance.now();
    status.textContent = 'Running…';
    remember('sql', text, db);
    fillHistory();
    try {
      if (explain) {
        const rows = await api.sql(`EXPLAIN ${text}`, db, mine.signal);
        status.textContent = `Plan in ${Math.round(performance.now() - t0)} ms`;
        out.append(h('div', { id: 'plan' }, rows.map((r) => h('section', { class: 'plan' },
          h('h3', {}, r.plan_type || ''), h('pre', { class: 'code' }, r.plan || JSON.stringify(r))))));
      } else {
        const { rows, truncated } = await api.sqlStream(text, db, {
          signal: mine.signal, maxRows: MAX_ROWS,
          onRows: (r) => { status.textContent = `${r.length.toLocaleString('en-US')} rows so far…`; },
        });
        const ms = Math.round(performance.now() - t0);
        status.textContent = `${rows.length.toLocaleString('en-US')} rows in ${ms} ms${truncated ? ` (stopped at ${MAX_ROWS.toLocaleString('en-US')}: add a LIMIT or aggregate)` : ''}`;
        showRows(out, rows, text, db);
      }
    } catch (e) {
      if (e.name === 'AbortError') status.textContent = 'Cancelled.';
      else { status.textContent = 'Failed.'; out.append(errorBox(e)); }
    } finally {
      if (ctl === mine) { ctl = null; busy(false); }
    }
  }
  runBtn.addEventListener('click', () => run(false));
  explainBtn.addEventListener('click', () => run(true));
  cancelBtn.addEventListener('click', () => { if (ctl) ctl.abort(); });
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(e.shiftKey); }
    if (e.key === 'Escape' && ctl) { e.preventDefault(); ctl.abort(); }
  });
  loadSchema(schema, db, editor);
  if (initial) run(false);
  editor.focus();
  return () => { if (ctl) ctl.abort(); };
}

async function loadSchema(root, db, editor) {
  try {
    const [tables, files] = await Promise.all([
      api.sql(`SELECT "table", columns, files, persisted_rows, buffered_rows, persisted_bytes FROM system.tables WHERE database = ${sqlStr(db)} ORDER BY "table"`, db),
      api.sql(`SELECT "table", count(DISTINCT day) AS partitions FROM system.files WHERE database = ${sqlStr(db)} GROUP BY "table"`, db),
    ]);
    const parts = new Map(files.map((f) => [f.table, f.partitions]));
    const list = h('ul', { class: 'tables' });
    for (const t of tables) {
      const cols = h('ul', { class: 'columns' });
      const det = h('details', {},
        h('summary', {}, h('span', { class: 'tname' }, t.table), h('span', { class: 'tcount muted' }, fmtNum((t.persisted_rows || 0) + (t.buffered_rows || 0)))),
        h('div', { class: 'tstats muted' },
          `${fmtNum((t.persisted_rows || 0) + (t.buffered_rows || 0))} rows · ${fmtNum(parts.get(t.table) || 0)} partitions · ${fmtNum(t.files)} files · ${fmtBytes(t.persisted_bytes || 0)}`),
        h('button', {
          type: 'button', class: 'small', onclick: () => {
            editor.value = `SELECT * FROM ${sqlIdent(t.table)} ORDER BY time DESC LIMIT 100`;
            editor.focus();
          },
        }, 'Query it'),
        cols);
      det.addEventListener('toggle', async () => {
        if (!det.open || cols.childElementCount) return;
        try {
          const cs = await api.sql(`SELECT "column", kind, data_type FROM system.columns WHERE database = ${sqlStr(db)} AND "table" = ${sqlStr(t.table)}`, db);
          replace(cols, cs.map((c) => h('li', {}, h('span', { class: 'cname' }, c.column), ' ', h('span', { class: `kind kind-${c.kind}` }, c.kind), ' ', h('span', { class: 'muted' }, c.data_type))));
        } catch (e) { replace(cols, errorBox(e)); }
      });
      list.appendChild(h('li', {}, det));
    }
    replace(root, h('h2', {}, `Tables in ${db}`), tables.length ? list : h('p', { class: 'muted' }, 'No tables yet.'),
      h('h2', {}, 'System'),
      h('ul', { class: 'tables' }, ['tables', 'columns', 'files', 'rules', 'alerts', 'actions', 'audit'].map((n) => h('li', {},
        h('button', { type: 'button', class: 'link', onclick: () => { editor.value = `SELECT * FROM system.${n} LIMIT 100`; editor.focus(); } }, `system.${n}`)))));
  } catch (e) {
    replace(root, errorBox(e));
  }
}

const TIME_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d/;

/** Table, and a chart when there is a time column. */
function showRows(out, rows, text, db) {
  const cols = columnsOf(rows);
  const first = rows[0] || {};
  const timeCols = cols.filter((c) => typeof first[c] === 'string' && TIME_RE.test(first[c]));
  const numCols = cols.filter((c) => rows.slice(0, 50).some((r) => typeof r[c] === 'number'));
  const strCols = cols.filter((c) => !timeCols.includes(c) && rows.slice(0, 50).every((r) => r[c] === null || typeof r[c] === 'string'));
  const tableView = h('div', { id: 'table-view' }, table(cols, rows, { caption: 'Query results', height: 460 }));
  if (!timeCols.length || !numCols.length) { out.append(tableView); return; }
  const chartView = h('div', { id: 'chart-view', hidden: true });
  let view = 'table';
  const bar = h('div');
  const setView = (v) => {
    view = v;
    tableView.hidden = v !== 'table';
    chartView.hidden = v !== 'chart';
    replace(bar, tabs([{ id: 'table', label: 'Table' }, { id: 'chart', label: 'Chart' }], view, setView));
    if (v === 'chart' && !chartView.childElementCount) buildChart();
  };
  setView('table');
  out.append(bar, tableView, chartView);

  function buildChart() {
    const tSel = h('select', { id: 'chart-time', 'aria-label': 'Time column' }, timeCols.map((c) => h('option', { value: c }, c)));
    const vSel = h('select', { id: 'chart-value', 'aria-label': 'Value column' }, numCols.map((c) => h('option', { value: c }, c)));
    const sSel = h('select', { id: 'chart-series', 'aria-label': 'Series column' }, h('option', { value: '' }, '(one series)'), strCols.map((c) => h('option', { value: c, selected: c === strCols[0] }, c)));
    const aSel = h('select', { id: 'chart-agg', 'aria-label': 'Aggregate' }, ['avg', 'max', 'min', 'sum', 'count'].map((a) => h('option', { value: a }, a)));
    const go = h('button', { type: 'button', id: 'chart-draw' }, 'Draw');
    const note = h('span', { class: 'muted' });
    const area = h('div', { class: 'chart-area' });
    chartView.append(h('div', { class: 'row' },
      h('label', {}, 'time ', tSel), h('label', {}, 'value ', vSel), h('label', {}, 'series ', sSel), h('label', {}, 'aggregate ', aSel), go, note), area);
    const draw = async () => {
      clear(area);
      note.textContent = 'Downsampling on the server…';
      try {
        const { series, bin } = await downsampled(text, db, tSel.value, vSel.value, sSel.value, aSel.value);
        note.textContent = `${series.length} series${series.length >= MAX_SERIES ? ` (first ${MAX_SERIES})` : ''}, ${aSel.value} per ${bin}s bin`;
        area.append(lineChart(series, { title: vSel.value, height: 340 }));
      } catch (e) { note.textContent = ''; area.append(errorBox(e)); }
    };
    go.addEventListener('click', draw);
    draw();
  }
}

/**
 * The user's query, binned by the server with date_bin so that at most
 * MAX_POINTS points per series (and MAX_SERIES series) come back.
 */
export async function downsampled(text, db, tcol, vcol, scol, agg) {
  const q = `(${text}) AS q`;
  const T = sqlIdent(tcol);
  const range = await api.sql(`SELECT CAST(min(${T}) AS BIGINT) AS lo, CAST(max(${T}) AS BIGINT) AS hi FROM ${q}`, db);
  const lo = range[0] && range[0].lo; const hi = range[0] && range[0].hi;
  if (lo === null || lo === undefined) return { series: [], bin: 1 };
  const bin = Math.max(1, Math.ceil((hi - lo) / 1e9 / MAX_POINTS));
  const S = scol ? sqlIdent(scol) : null;
  const keep = S ? ` WHERE ${S} IN (SELECT ${S} FROM ${q} GROUP BY ${S} ORDER BY ${S} LIMIT ${MAX_SERIES})` : '';
  const sel = `SELECT CAST(date_bin(INTERVAL '${bin} seconds', ${T}) AS BIGINT) AS t, ${S ? `${S} AS s, ` : ''}${agg}(${sqlIdent(vcol)}) AS v FROM ${q}${keep} GROUP BY 1${S ? ', 2' : ''} ORDER BY 1`;
  const rows = await api.sql(sel, db);
  return { series: toSeries(rows), bin };
}

/** Rows of {t (ns), s?, v} → series of [ms, v]. */
export function toSeries(rows) {
  const by = new Map();
  for (const r of rows) {
    const k = r.s === undefined ? '' : String(r.s);
    if (!by.has(k)) by.set(k, []);
    by.get(k).push([r.t / 1e6, typeof r.v === 'number' ? r.v : Number(r.v)]);
  }
  return [...by.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([name, points]) => ({ name, points }));
}

function promConsole(root, ctx, initial) {
  const last = history().find((x) => x.kind === 'promql');
  const input = h('textarea', { id: 'promql', class: 'code', rows: '3', spellcheck: 'false', 'aria-label': 'PromQL', placeholder: 'avg by (datacenter) (cpu_thermal_temp_c)   (Ctrl+Enter runs)' });
  input.value = initial || (last ? last.text : '');
  const rangeSel = h('select', { id: 'prom-range', 'aria-label': 'Range' },
    [['15m', 900], ['1h', 3600], ['6h', 21600], ['24h', 86400], ['7d', 604800]].map(([l, s]) => h('option', { value: String(s), selected: s === 3600 }, `last ${l}`)));
  const endIn = h('input', { id: 'prom-end', type: 'text', placeholder: 'end (RFC 3339; empty = now)', size: '26', 'aria-label': 'End time' });
  const runBtn = h('button', { id: 'prom-run', type: 'button', class: 'primary' }, 'Run');
  const cancelBtn = h('button', { id: 'prom-cancel', type: 'button', disabled: true }, 'Cancel');
  const status = h('span', { id: 'prom-status', class: 'muted', 'aria-live': 'polite' });
  const out = h('div', { id: 'prom-results', class: 'results' });
  root.append(input, h('div', { class: 'row' }, rangeSel, endIn, runBtn, cancelBtn, status), out);
  let ctl = null;
  async function run() {
    const expr = input.value.trim();
    if (!expr) return;
    if (ctl) ctl.abort();
    ctl = new AbortController();
    const mine = ctl;
    runBtn.disabled = true; cancelBtn.disabled = false;
    clear(out);
    remember('promql', expr, ctx.db);
    const end = endIn.value.trim() ? Date.parse(endIn.value.trim()) / 1000 : Date.now() / 1000;
    const span = Number(rangeSel.value);
    const step = Math.max(1, Math.ceil(span / MAX_POINTS));
    const qs = new URLSearchParams({ query: expr, start: String(end - span), end: String(end), step: `${step}s`, db: ctx.db });
    const t0 = performance.now();
    status.textContent = 'Running…';
    try {
      const r = await api.get(`/api/v1/query_range?${qs}`, { signal: mine.signal });
      const result = (r.data && r.data.result) || [];
      status.textContent = `${result.length} series in ${Math.round(performance.now() - t0)} ms (step ${step}s)`;
      if (result.length > 200) status.textContent += ` (the chart shows the first 200)`;
      const series = result.slice(0, 200).map((s) => ({
        name: labelText(s.metric),
        points: (s.values || []).map(([t, v]) => [t * 1000, Number(v)]),
      }));
      out.append(lineChart(series, { title: expr, height: 320 }),
        table(['series', 'last', 'points'], series.map((s) => ({ series: s.name, last: s.points.length ? s.points[s.points.length - 1][1] : null, points: s.points.length })), { caption: 'Series', height: 260 }));
    } catch (e) {
      if (e.name === 'AbortError') status.textContent = 'Cancelled.';
      else { status.textContent = 'Failed.'; out.append(errorBox(e)); }
    } finally {
      if (ctl === mine) { ctl = null; runBtn.disabled = false; cancelBtn.disabled = true; }
    }
  }
  runBtn.addEventListener('click', run);
  cancelBtn.addEventListener('click', () => { if (ctl) ctl.abort(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
    if (e.key === 'Escape' && ctl) ctl.abort();
  });
  if (initial) run();
  input.focus();
  return () => { if (ctl) ctl.abort(); };
}

function labelText(m) {
  const name = m.__name__ || '';
  const rest = Object.entries(m).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`).join(', ');
  return rest ? `${name}{${rest}}` : name || '{}';
}
