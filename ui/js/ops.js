// Operations: live alerts, the action log (system.actions) with filters,
// the approval queue, rules with their health, mode, last error and cost,
// and breakers with reset, and deleting a rule. Approve, deny, reset, delete
// and the rule editor are shown only to tokens that may use them (the
// server checks regardless).
import { h, replace, errorBox, fmtNum, fmtTime, sourceText, sqlStr, tabs } from './dom.js';
import * as api from './api.js';
import { table, pager } from './table.js';

const POLL_MS = 5000;

export function render(root, ctx, tab, params) {
  const body = h('div', { id: `ops-${tab}` });
  replace(root, h('div', { class: 'page ops' },
    h('h1', {}, 'Operations'),
    tabs([
      { id: 'alerts', label: 'Alerts' }, { id: 'actions', label: 'Action log' },
      { id: 'approvals', label: 'Approvals' }, { id: 'rules', label: 'Rules' },
    ], tab, (id) => { location.hash = `#/ops/${id}`; }),
    body));
  return { alerts, actions, approvals, rules }[tab](body, ctx, params);
}

/** Re-runs `load` every POLL_MS while the page is shown; returns the stop. */
function poll(load) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    await load();
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function labelsText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(' ');
}

export function hostLink(name) {
  return name ? h('a', { href: `#/host/${encodeURIComponent(name)}` }, name) : '';
}

function badge(text, kind) {
  return h('span', { class: `badge ${kind || text}` }, text);
}

function alerts(root) {
  const filter = h('input', { type: 'search', id: 'alert-filter', placeholder: 'Filter (label, rule, text)', 'aria-label': 'Filter alerts' });
  const counts = h('span', { class: 'muted', 'aria-live': 'polite' });
  const out = h('div');
  root.append(h('div', { class: 'row' }, filter, counts, h('span', { class: 'live' }, 'live')), out);
  let last = [];
  const show = () => {
    const f = filter.value.trim().toLowerCase();
    const rows = last.filter((a) => !f || JSON.stringify(a).toLowerCase().includes(f));
    const firing = last.filter((a) => a.state === 'firing').length;
    counts.textContent = `${firing} firing, ${last.length - firing} pending`;
    replace(out, table([
      { name: 'state', render: (a) => badge(a.state) },
      { name: 'alertname', label: 'alert', render: (a) => (a.labels && a.labels.alertname) || a.rule },
      { name: 'host', render: (a) => hostLink(a.labels && a.labels.hostname) },
      { name: 'labels', width: 320, render: (a) => labelsText(a.labels) },
      { name: 'value' },
      { name: 'activeAt', label: 'active since', render: (a) => fmtTime(a.activeAt) },
      { name: 'summary', width: 320, render: (a) => (a.annotations && a.annotations.summary) || '' },
    ], rows, { caption: 'Alerts', empty: 'No pending or firing alerts.' }));
  };
  filter.addEventListener('input', show);
  return poll(async () => {
    try {
      const r = await api.get('/api/v1/alerts');
      last = (r.data && r.data.alerts) || [];
      last.sort((a, b) => (a.state === b.state ? 0 : a.state === 'firing' ? -1 : 1));
      show();
    } catch (e) { replace(out, errorBox(e)); }
  });
}

const DECISIONS = ['', 'executed', 'dry_run', 'shadow', 'awaiting_approval', 'approved', 'denied', 'expired', 'skipped'];

function actions(root, ctx, params) {
  const rule = h('input', { type: 'text', id: 'f-rule', placeholder: 'rule', size: '16', 'aria-label': 'Rule' });
  const entity = h('input', { type: 'text', id: 'f-entity', placeholder: 'entity (host)', size: '16', 'aria-label': 'Entity' });
  const decision = h('select', { id: 'f-decision', 'aria-label': 'Decision' }, DECISIONS.map((d) => h('option', { value: d }, d || 'any decision')));
  const outcome = h('select', { id: 'f-outcome', 'aria-label': 'Outcome' }, ['', 'success', 'failure'].map((d) => h('option', { value: d }, d || 'any outcome')));
  const go = h('button', { type: 'submit', id: 'f-go', class: 'primary' }, 'Filter');
  const out = h('div');
  root.append(h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); load(0); } }, rule, entity, decision, outcome, go), out);
  const PAGE = 100;
  async function load(page) {
    const where = [];
    if (rule.value.trim()) where.push(`rule = ${sqlStr(rule.value.trim())}`);
    if (entity.value.trim()) where.push(`entity = ${sqlStr(entity.value.trim())}`);
    if (decision.value === 'skipped') where.push("decision = 'skipped'");
    else if (decision.value) where.push(`decision = ${sqlStr(decision.value)}`);
    if (outcome.value) where.push(`outcome = ${sqlStr(outcome.value)}`);
    const sql = `SELECT evaluation_time, rule, entity, decision, reason, mode, status, outcome, message, detail, id FROM system.actions${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY evaluation_time DESC LIMIT ${PAGE + 1} OFFSET ${page * PAGE}`;
    try {
      const rows = await api.sql(sql, ctx.db);
      const more = rows.length > PAGE;
      replace(out, table([
        { name: 'evaluation_time', label: 'time', render: (r) => fmtTime(r.evaluation_time) },
        'rule', { name: 'entity', render: (r) => hostLink(r.entity) },
        { name: 'decision', render: (r) => badge(r.decision) }, 'reason', 'mode', 'status', 'outcome',
        { name: 'message', width: 260 }, { name: 'detail', width: 260 },
      ], rows.slice(0, PAGE), { caption: 'Action log', empty: 'No actions match.' }), pager(page, more, load));
    } catch (e) { replace(out, errorBox(e)); }
  }
  if (params && params.get && params.get('rule')) rule.value = params.get('rule');
  load(0);
}

function approvals(root, ctx) {
  const note = h('div', { id: 'approval-note', 'aria-live': 'polite' });
  const out = h('div');
  root.append(note, out);
  let stop = null;
  const decide = async (a, verb) => {
    note.textContent = '';
    try {
      await api.post(`/api/v1/actions/${encodeURIComponent(a.id)}/${verb}`);
      replace(note, h('div', { class: 'ok' }, `${verb === 'approve' ? 'Approved' : 'Denied'} ${a.rule} on ${a.entity || a.instance}.`));
    } catch (e) { replace(note, errorBox(e)); }
    load();
  };
  const load = async () => {
    try {
      const r = await api.get('/api/v1/actions');
      const rows = r.approvals || [];
      replace(out, table([
        'rule', { name: 'entity', render: (a) => hostLink(a.entity) }, { name: 'instance', width: 280 },
        { name: 'evaluation_time', label: 'asked at', render: (a) => fmtTime(a.evaluation_time) },
        { name: 'expires_at', label: 'expires', render: (a) => fmtTime(a.expires_at) },
        {
          name: 'decide', width: 180, render: (a) => (ctx.canAdmin
            ? h('span', { class: 'btns' },
              h('button', { type: 'button', class: 'approve', 'data-id': a.id, onclick: () => decide(a, 'approve') }, 'Approve'),
              h('button', { type: 'button', class: 'deny', 'data-id': a.id, onclick: () => decide(a, 'deny') }, 'Deny'))
            : h('span', { class: 'muted' }, 'needs admin')),
        },
      ], rows, { caption: 'Approval queue', empty: 'Nothing awaits approval.' }));
    } catch (e) { replace(out, errorBox(e)); }
  };
  stop = poll(load);
  return stop;
}

function rules(root, ctx) {
  const note = h('div', { id: 'rules-note', 'aria-live': 'polite' });
  const out = h('div');
  const top = h('div', { class: 'row' });
  if (ctx.canRules) top.append(h('a', { class: 'button primary', href: '#/rule', id: 'new-rule' }, 'New rule'));
  root.append(top, note, out);
  const reset = async (name) => {
    try {
      await api.post(`/api/v1/rules/${encodeURIComponent(name)}/breaker/reset`);
      replace(note, h('div', { class: 'ok' }, `Breaker of ${name} reset.`));
    } catch (e) { replace(note, errorBox(e)); }
    load();
  };
  // Only rules made through the API can be deleted through it; a file's
  // rules leave with their file.
  const remove = async (name) => {
    if (!window.confirm(`Delete rule ${name}?`)) return;
    try {
      await api.request(`/api/v1/rules/${encodeURIComponent(name)}`, { method: 'DELETE' });
      replace(note, h('div', { class: 'ok' }, `Deleted rule ${name}.`));
    } catch (e) { replace(note, errorBox(e)); }
    load();
  };
  const load = async () => {
    try {
      const r = await api.get('/api/v1/rules');
      const rows = (r.rules || []).map((x) => ({
        name: x.name, kind: x.definition.kind, health: x.health,
        mode: (x.definition.safety && x.definition.safety.mode) || (x.definition.kind === 'self_heal' ? 'dry_run' : ''),
        evaluation: x.evaluation && x.evaluation.mode, last_error: x.last_error || '',
        cost_ms: x.evaluation_ms, firing: x.firing, pending: x.pending, awaiting: x.awaiting_approval,
        breaker: x.breaker, source: sourceText(x.source), fromApi: !!(x.source && x.source.type === 'api'),
        last_evaluation: x.last_evaluation,
      }));
      const parts = [];
      for (const fe of r.file_errors || []) parts.push(h('div', { class: 'error' }, `${fe.file}: ${fe.error}`));
      parts.push(table([
        { name: 'name', render: (x) => h('a', { href: `#/rule/${encodeURIComponent(x.name)}` }, x.name) },
        'kind', { name: 'health', render: (x) => badge(x.health, `health-${x.health}`) }, 'mode', 'evaluation',
        { name: 'cost_ms', label: 'cost (ms)', render: (x) => fmtNum(x.cost_ms) },
        'firing', 'pending', 'awaiting',
        {
          name: 'breaker', width: 130, render: (x) => (x.breaker && x.breaker.open
            ? h('span', {}, badge('open', 'firing'), ' ', ctx.canAdmin ? h('button', { type: 'button', class: 'small reset', 'data-name': x.name, onclick: () => reset(x.name) }, 'Reset') : '')
            : 'closed'),
        },
        { name: 'last_error', label: 'last error', width: 300 },
        { name: 'last_evaluation', label: 'last run', render: (x) => fmtTime(x.last_evaluation) },
        { name: 'log', render: (x) => h('a', { href: `#/ops/actions?rule=${encodeURIComponent(x.name)}` }, 'actions') },
        'source',
        {
          name: 'delete', label: '', width: 90, render: (x) => (ctx.canRules && x.fromApi
            ? h('button', { type: 'button', class: 'small deny delete-rule', 'data-name': x.name, onclick: () => remove(x.name) }, 'Delete')
            : ''),
        },
      ], rows, { caption: 'Rules', empty: 'No rules yet.' }));
      replace(out, ...parts);
    } catch (e) { replace(out, errorBox(e)); }
  };
  return poll(load);
}

