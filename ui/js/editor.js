// The rule editor: a rule as JSON (the API's body), validated and
// backtested before it is saved. The backtest is drawn as an alert timeline
// (pending and firing per instance, decisions as dots) and as the data the
// rule reads, with firing spans shaded and decisions marked.
import { h, replace, clear, errorBox, fmtTime, parseTime, sourceText, sqlStr, sqlIdent } from './dom.js';
import * as api from './api.js';
import { table } from './table.js';
import { lineChart, timeline } from './chart.js';

const TEMPLATE = {
  name: 'hot_cpu',
  kind: 'alert',
  every: '1m',
  for: '5m',
  sql: "SELECT hostname, rack, avg(temp_c) AS value FROM cpu_thermal\nWHERE time > now() - INTERVAL '10 minutes' AND time <= now()\nGROUP BY hostname, rack HAVING avg(temp_c) > 85",
  labels: { severity: 'warning' },
  annotations: { summary: '{{ hostname }} runs hot ({{ value }} C)' },
};

const DECISION_COLORS = { executed: '#16a34a', dry_run: '#2563eb', shadow: '#6b7280', awaiting_approval: '#9333ea', expired: '#9ca3af' };

function isoMinute(ms) { return new Date(Math.floor(ms / 60000) * 60000).toISOString().replace('.000Z', 'Z'); }

export async function render(root, ctx, name) {
  const page = h('div', { class: 'page editor' });
  replace(root, page);
  let existing = null;
  if (name) {
    try { existing = await api.get(`/api/v1/rules/${encodeURIComponent(name)}`); } catch (e) { page.append(errorBox(e)); return; }
  }
  const def = existing ? existing.definition : Object.assign({}, TEMPLATE, { db: ctx.db });
  const text = h('textarea', { id: 'rule-json', class: 'code', rows: '18', spellcheck: 'false', 'aria-label': 'Rule definition (JSON)' });
  text.value = JSON.stringify(def, null, 2);
  const now = Date.now();
  const start = h('input', { id: 'bt-start', type: 'text', size: '22', value: isoMinute(now - 6 * 3600000), 'aria-label': 'Backtest start' });
  const end = h('input', { id: 'bt-end', type: 'text', size: '22', value: isoMinute(now), 'aria-label': 'Backtest end' });
  const step = h('input', { id: 'bt-step', type: 'text', size: '6', placeholder: 'every', 'aria-label': 'Backtest step' });
  const validateBtn = h('button', { id: 'validate', type: 'button' }, 'Validate');
  const backtestBtn = h('button', { id: 'backtest', type: 'button', class: 'primary' }, 'Backtest');
  const saveBtn = h('button', { id: 'save', type: 'button' }, existing ? 'Save changes' : 'Create rule');
  const deleteBtn = existing && existing.source && existing.source.type === 'api' ? h('button', { id: 'delete', type: 'button', class: 'deny' }, 'Delete') : null;
  const note = h('div', { id: 'rule-note', 'aria-live': 'polite' });
  const result = h('div', { id: 'backtest-result' });
  const canWrite = ctx.canRules;
  page.append(
    h('h1', {}, existing ? `Rule ${existing.name}` : 'New rule'),
    existing ? h('p', { class: 'muted' }, `version ${existing.version} · ${existing.health} · source ${sourceText(existing.source)}`) : null,
    h('p', { class: 'muted' }, 'The body of POST /api/v1/rules, as JSON (README "Rules"). Validate and backtest before saving; Ctrl+Enter backtests.'),
    text,
    h('div', { class: 'row' },
      h('label', {}, 'from ', start), h('label', {}, 'to ', end), h('label', {}, 'step ', step),
      canWrite ? [validateBtn, backtestBtn, saveBtn, deleteBtn] : h('span', { class: 'muted' }, 'Read-only: validating, backtesting and saving need the rules scope.')),
    note, result);

  const parse = () => {
    try { return JSON.parse(text.value); } catch (e) { throw new Error(`The rule is not valid JSON: ${e.message}`); }
  };
  const busy = (on) => { for (const b of [validateBtn, backtestBtn, saveBtn]) b.disabled = on; };

  validateBtn.addEventListener('click', async () => {
    busy(true); clear(note);
    try {
      const v = await api.post('/api/v1/rules/validate', parse());
      replace(note, h('div', { class: 'ok' }, `Valid. Reads ${(v.tables || []).join(', ') || 'no table'}.`),
        (v.warnings || []).map((w) => h('div', { class: 'warn' }, w)));
    } catch (e) { replace(note, errorBox(e)); } finally { busy(false); }
  });

  backtestBtn.addEventListener('click', () => runBacktest());
  text.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runBacktest(); } });

  async function runBacktest() {
    busy(true); clear(note); clear(result);
    note.append(h('span', { class: 'muted' }, 'Backtesting…'));
    try {
      const rule = parse();
      const body = { rule, start: start.value.trim(), end: end.value.trim() };
      if (step.value.trim()) body.step = step.value.trim();
      const bt = await api.post('/api/v1/rules/backtest', body);
      clear(note);
      showBacktest(result, bt, rule, ctx);
    } catch (e) { replace(note, errorBox(e)); } finally { busy(false); }
  }

  saveBtn.addEventListener('click', async () => {
    busy(true); clear(note);
    try {
      const rule = parse();
      const saved = existing
        ? await api.request(`/api/v1/rules/${encodeURIComponent(existing.name)}`, { method: 'PUT', body: rule })
        : await api.post('/api/v1/rules', rule);
      replace(note, h('div', { class: 'ok', id: 'saved' }, `Saved ${saved.name} (version ${saved.version}). `, h('a', { href: '#/ops/rules' }, 'All rules')));
    } catch (e) { replace(note, errorBox(e)); } finally { busy(false); }
  });
  if (deleteBtn) {
    deleteBtn.addEventListener('click', async () => {
      if (!window.confirm(`Delete rule ${existing.name}?`)) return;
      try { await api.request(`/api/v1/rules/${encodeURIComponent(existing.name)}`, { method: 'DELETE' }); location.hash = '#/ops/rules'; } catch (e) { replace(note, errorBox(e)); }
    });
  }
  text.focus();
}

/** Transitions → spans per instance. */
function lanesOf(bt, endMs) {
  const decisionsBy = new Map();
  for (const a of bt.actions || []) {
    if (!decisionsBy.has(a.instance)) decisionsBy.set(a.instance, []);
    decisionsBy.get(a.instance).push({ t: parseTime(a.evaluation_time), color: DECISION_COLORS[a.decision] || '#111827', label: a.decision });
  }
  return (bt.timeline || []).map((inst) => {
    const spans = [];
    let cur = null;
    for (const tr of inst.transitions || []) {
      const t = parseTime(tr.at);
      if (cur) { cur.to = t; spans.push(cur); cur = null; }
      if (tr.to === 'pending' || tr.to === 'firing') cur = { from: t, to: endMs, state: tr.to };
    }
    if (cur) spans.push(cur);
    const labels = inst.labels || {};
    const name = labels.hostname || Object.values(labels).join(',') || inst.instance;
    return { name, instance: inst.instance, labels, spans, marks: decisionsBy.get(inst.instance) || [] };
  });
}

function showBacktest(root, bt, rule, ctx) {
  const s = parseTime(bt.start); const e = parseTime(bt.end);
  const lanes = lanesOf(bt, e);
  const summary = Object.entries(bt.summary || {}).map(([k, v]) => `${k}: ${v}`).join(' · ');
  root.append(
    h('h2', {}, 'Backtest'),
    h('p', { id: 'backtest-summary' }, `${bt.evaluations} evaluations every ${bt.step} from ${fmtTime(bt.start)} to ${fmtTime(bt.end)}: ${lanes.length} instances, ${(bt.actions || []).length} decisions${summary ? ` (${summary})` : ''}.`),
    (bt.errors || []).slice(0, 5).map((x) => h('div', { class: 'error' }, `${fmtTime(x.evaluation_time)}: ${x.error}`)),
    (bt.warnings || []).map((w) => h('div', { class: 'warn' }, w)),
    h('h3', {}, 'Alert timeline'),
    h('p', { class: 'muted' }, 'Amber: pending; red: firing; dots: decisions.'),
    lanes.length ? timeline(lanes, s, e) : h('p', { class: 'muted', id: 'no-instances' }, 'The rule would not have fired in this range.'));
  const dataBox = h('div', { id: 'backtest-data' });
  root.append(h('h3', {}, 'Against the data'), dataBox);
  plotData(dataBox, rule, lanes, s, e, ctx);
  if ((bt.actions || []).length) {
    root.append(h('h3', {}, 'Decisions'), table([
      { name: 'evaluation_time', label: 'time', render: (a) => fmtTime(a.evaluation_time) },
      'entity', 'decision', 'reason', { name: 'detail', width: 320 },
    ], bt.actions, { caption: 'Backtest decisions', height: 300 }));
  }
}

/**
 * The series the rule aggregates (`AGG(field) AS value … FROM table`), for
 * the instances' entities, binned by the server; firing spans shaded and
 * decisions marked.
 */
async function plotData(box, rule, lanes, s, e, ctx) {
  const sql = rule.sql || '';
  const agg = sql.match(/\b(avg|min|max|sum|count|last_value|stddev|zscore|robust_zscore|ewma_deviation|increase|rate|anomaly_score)\s*\(\s*"?([A-Za-z_][A-Za-z0-9_]*)"?[^)]*\)\s+AS\s+value/i);
  const from = sql.match(/\bFROM\s+"?([A-Za-z_][A-Za-z0-9_]*)"?/i);
  if (!agg || !from || agg[2] === 'time') {
    box.append(h('p', { class: 'muted' }, 'The data plot needs SQL of the shape AGG(field) AS value … FROM table.'));
    return;
  }
  const field = agg[2]; const tbl = from[1];
  const entity = (rule.safety && rule.safety.entity) || 'hostname';
  const entities = [...new Set(lanes.map((l) => l.labels[entity]).filter(Boolean))].slice(0, 10);
  const bin = Math.max(1, Math.ceil((e - s) / 1000 / 500));
  const inList = entities.map(sqlStr).join(', ');
  const hasEntity = new RegExp(`\\b${entity}\\b`).test(sql);
  const q = entities.length && hasEntity
    ? `SELECT CAST(date_bin(INTERVAL '${bin} seconds', time) AS BIGINT) AS t, ${sqlIdent(entity)} AS s, avg(${sqlIdent(field)}) AS v FROM ${sqlIdent(tbl)} WHERE ${sqlIdent(entity)} IN (${inList}) AND time >= to_timestamp_millis(${s}) AND time <= to_timestamp_millis(${e}) GROUP BY 1, 2 ORDER BY 1`
    : `SELECT CAST(date_bin(INTERVAL '${bin} seconds', time) AS BIGINT) AS t, avg(${sqlIdent(field)}) AS v FROM ${sqlIdent(tbl)} WHERE time >= to_timestamp_millis(${s}) AND time <= to_timestamp_millis(${e}) GROUP BY 1 ORDER BY 1`;
  box.append(h('p', { class: 'muted' }, entities.length && hasEntity
    ? `avg(${field}) of ${tbl} per ${bin}s for ${entities.length} firing ${entity}${entities.length === 10 ? ' (first 10)' : ''}; shaded: firing; lines: decisions.`
    : `avg(${field}) of ${tbl} across the fleet per ${bin}s.`));
  try {
    const rows = await api.sql(q, rule.db || ctx.db);
    const by = new Map();
    for (const r of rows) {
      const k = r.s === undefined ? field : String(r.s);
      if (!by.has(k)) by.set(k, []);
      by.get(k).push([r.t / 1e6, r.v]);
    }
    const series = [...by.entries()].map(([name, points]) => ({ name, points }));
    const bands = [];
    for (const l of lanes) for (const sp of l.spans) if (sp.state === 'firing') bands.push({ from: sp.from, to: sp.to });
    const markers = [];
    for (const l of lanes) for (const m of l.marks) markers.push({ t: m.t, color: m.color });
    box.append(lineChart(series, { title: `${tbl}.${field}`, height: 280, bands, markers: markers.slice(0, 200) }));
  } catch (err) { box.append(errorBox(err)); }
}
