// Fleet: the health overview (hosts reporting, stale hosts, hosts with
// firing alerts by datacenter and rack), a host page (hardware series,
// alerts, actions, jobs) and a job page (the diagnosis report).
// Every aggregate is computed by the server; the browser gets summaries.
import { h, replace, errorBox, fmtNum, fmtTime, fmtDur, sqlStr, sqlIdent } from './dom.js';
import * as api from './api.js';
import { table } from './table.js';
import { lineChart, timeline } from './chart.js';
import { hostLink } from './ops.js';
import { consoleLink } from './query.js';


const ms = (t) => `to_timestamp_millis(${Math.round(t)})`;

/** A section whose content loads on its own: the page shows at once. */
function section(title, id) {
  const body = h('div', { class: 'loading' }, h('span', { class: 'muted' }, 'Loading…'));
  const el = h('section', { class: 'card', id }, h('h2', {}, title), body);
  el.fill = (...c) => { body.classList.remove('loading'); replace(body, ...c); };
  el.fail = (e) => { body.classList.remove('loading'); replace(body, errorBox(e)); };
  return el;
}

/**
 * The newest heartbeat of every host, from the last-value cache (a
 * `DISTINCT ON` over the table's tags is answered from memory, not a scan),
 * and the newest of them all: the time the fleet's data reaches. A live
 * fleet's is now; a simulated or replayed fleet lives in the past.
 */
const LAST_SEEN = 'WITH h AS (SELECT DISTINCT ON (hostname) hostname, datacenter, rack, time AS last FROM heartbeat ORDER BY hostname, time DESC), ' +
  'n AS (SELECT max(last) AS newest FROM h)';

function searchBox() {
  const input = h('input', { type: 'search', id: 'host-search', placeholder: 'hostname, e.g. host_42', 'aria-label': 'Open a host' });
  const job = h('input', { type: 'search', id: 'job-search', placeholder: 'job id, e.g. job_000123', 'aria-label': 'Open a job' });
  return h('div', { class: 'row' },
    h('form', { onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) location.hash = `#/host/${encodeURIComponent(input.value.trim())}`; } }, input, h('button', { type: 'submit' }, 'Open host')),
    h('form', { onsubmit: (e) => { e.preventDefault(); if (job.value.trim()) location.hash = `#/job/${encodeURIComponent(job.value.trim())}`; } }, job, h('button', { type: 'submit' }, 'Open job')));
}

export async function renderOverview(root, ctx) {
  const db = ctx.db;
  const head = h('p', { class: 'muted', id: 'asof' }, 'Finding the newest heartbeat…');
  const tiles = h('div', { class: 'tiles', id: 'tiles' });
  const byDc = section('Hosts by datacenter', 'by-dc');
  const stale = section('Stale hosts', 'stale');
  const alerting = section('Hosts with firing alerts', 'alerting');
  const impact = section('Hosts that hurt the most jobs', 'impact');
  const jobs = section('Recent jobs', 'jobs');
  replace(root, h('div', { class: 'page fleet' }, h('h1', {}, 'Fleet'), searchBox(), head, tiles,
    h('div', { class: 'grid2' }, byDc, alerting), stale, h('div', { class: 'grid2' }, impact, jobs)));

  const tile = (label, value, cls) => h('div', { class: `tile ${cls || ''}` }, h('div', { class: 'tile-v' }, value), h('div', { class: 'tile-l' }, label));

  // Alerts: independent of the heartbeat time.
  const alertsP = api.get('/api/v1/alerts').then((r) => ((r.data && r.data.alerts) || []).filter((a) => a.state === 'firing'))
    .catch((e) => { alerting.fail(e); return null; });

  const stalePred = "last < n.newest - INTERVAL '5 minutes'";
  const dcP = api.sql(`${LAST_SEEN} SELECT datacenter, count(*) AS hosts, sum(CASE WHEN ${stalePred} THEN 0 ELSE 1 END) AS reporting, count(DISTINCT rack) AS racks, CAST(max(n.newest) AS BIGINT) AS newest FROM h CROSS JOIN n GROUP BY datacenter ORDER BY datacenter`, db);
  api.sql(`${LAST_SEEN} SELECT hostname, datacenter, rack, last FROM h CROSS JOIN n WHERE ${stalePred} ORDER BY last LIMIT 500`, db)
    .then((rows) => stale.fill(
      h('p', { class: 'muted' }, `Hosts whose last heartbeat is more than 5 minutes older than the newest${rows.length === 500 ? ' (first 500)' : ''}.`),
      table([{ name: 'hostname', render: (r) => hostLink(r.hostname) }, 'datacenter', 'rack', { name: 'last', label: 'last heartbeat', render: (r) => fmtTime(r.last) }], rows, { caption: 'Stale hosts', height: 300, empty: 'Every host reports.' })))
    .catch((e) => stale.fail(e));
  let T = null;
  try {
    const rows = await dcP;
    for (const r of rows) r.stale = r.hosts - r.reporting;
    T = rows.length ? rows[0].newest / 1e6 : null;
    const total = rows.reduce((a, r) => a + r.hosts, 0);
    const rep = rows.reduce((a, r) => a + r.reporting, 0);
    tiles.prepend(tile('hosts reporting', fmtNum(rep), 'ok'), tile('stale hosts', fmtNum(total - rep), total - rep ? 'warn' : ''), tile('datacenters', fmtNum(rows.length)));
    byDc.fill(table(['datacenter', 'hosts', 'reporting', 'stale', 'racks'], rows.map((r) => { const x = Object.assign({}, r); delete x.newest; return x; }), { caption: 'Hosts by datacenter', height: 300 }));
  } catch (e) {
    byDc.fail(e);
  }
  if (!T) {
    head.textContent = `No heartbeats in ${db}: the fleet view reads the heartbeat table (see "fleetlake gen fleet").`;
    impact.fill(h('p', { class: 'muted' }, 'No heartbeats.'));
  } else {
    const live = Date.now() - T < 10 * 60000;
    head.textContent = live ? `Live: heartbeats up to ${fmtTime(T)}.` : `As of the newest heartbeat, ${fmtTime(T)} (the fleet's data ends there).`;
    hostImpact(impact, db, T);
  }
  api.sql('SELECT job_id, "user", queue, status, duration_ms, time AS ended FROM job_runs ORDER BY time DESC LIMIT 50', db)
    .then((rows) => jobs.fill(table([{ name: 'job_id', render: (r) => jobLink(r.job_id) }, 'user', 'queue', 'status',
      { name: 'duration', render: (r) => fmtDur(r.duration_ms * 1e6) }, { name: 'ended', render: (r) => fmtTime(r.ended) }], rows, { caption: 'Recent jobs', height: 300 })))
    .catch((e) => jobs.fail(e));

  const firing = await alertsP;
  if (firing) {
    const hosts = new Map();
    for (const a of firing) {
      const l = a.labels || {};
      if (!l.hostname) continue;
      if (!hosts.has(l.hostname)) hosts.set(l.hostname, { hostname: l.hostname, datacenter: l.datacenter || '', rack: l.rack || '', alerts: [] });
      hosts.get(l.hostname).alerts.push(l.alertname || a.rule);
    }
    const groups = new Map();
    for (const x of hosts.values()) {
      const k = `${x.datacenter}\u0000${x.rack}`;
      if (!groups.has(k)) groups.set(k, { datacenter: x.datacenter || '(no label)', rack: x.rack || '(no label)', hosts: 0, names: [] });
      const g = groups.get(k); g.hosts++; if (g.names.length < 5) g.names.push(x.hostname);
    }
    tiles.append(tile('hosts with firing alerts', fmtNum(hosts.size), hosts.size ? 'bad' : 'ok'), tile('firing alerts', fmtNum(firing.length), firing.length ? 'bad' : 'ok'));
    const rows = [...groups.values()].sort((a, b) => b.hosts - a.hosts);
    alerting.fill(table(['datacenter', 'rack', 'hosts', { name: 'examples', width: 300, render: (g) => h('span', {}, g.names.map((n, i) => [i ? ', ' : '', hostLink(n)])) }],
      rows, { caption: 'Hosts with firing alerts', height: 300, empty: 'No host has a firing alert.' }));
  }
}

/** Hours the host-impact section can look back; the first is the default. */
const IMPACT_HOURS = [1, 6, 24];
const IMPACT_KEY = 'fleetlake.impactHours';

/**
 * The hosts that hurt the most jobs that ended in the chosen hours before
 * `T`. The server answers from its diagnosis journal (jobs diagnosed as
 * they end) where it covers the range, and diagnoses every job of the
 * range otherwise (seconds per thousand host-hours), so the section looks
 * back one hour unless asked for more; the choice is remembered.
 */
function hostImpact(sec, db, T) {
  const stored = Number(localStorage.getItem(IMPACT_KEY));
  const hours = IMPACT_HOURS.includes(stored) ? stored : IMPACT_HOURS[0];
  const picker = h('div', { class: 'row', role: 'group', 'aria-label': 'Range' }, ...IMPACT_HOURS.map((n) => h('button', {
    type: 'button', class: n === hours ? 'small primary' : 'small', 'aria-pressed': String(n === hours), 'data-hours': String(n),
    onclick: () => { localStorage.setItem(IMPACT_KEY, String(n)); sec.fill(h('span', { class: 'muted' }, 'Diagnosing…')); hostImpact(sec, db, T); },
  }, `${n} h`)));
  const start = new Date(T - hours * 3600000).toISOString();
  const end = new Date(T).toISOString();
  api.get(`/api/v1/diagnosis/hosts?db=${encodeURIComponent(db)}&limit=20&start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`)
    .then((r) => sec.fill(picker,
      h('p', { class: 'muted', id: 'impact-summary' }, `The ${hours} h before ${fmtTime(T)}: ${r.jobs} jobs diagnosed${r.diagnosed_until_ns < r.end_ns ? ` (those that ended by ${fmtTime(r.diagnosed_until_ns / 1e6)})` : ''}; ${r.hosts_total} hosts named by a reported cause.`),
      table([{ name: 'hostname', render: (x) => hostLink(x.hostname) }, 'jobs',
        { name: 'cost', render: (x) => fmtDur(x.cost_ns) },
        { name: 'causes', width: 260, render: (x) => Object.entries(x.causes || {}).map(([k, v]) => `${k}: ${v}`).join(', ') },
        { name: 'worst_job', label: 'worst job', render: (x) => jobLink(x.worst_job) }], r.hosts || [], { caption: 'Host impact', height: 300, empty: 'No host hurt a job.' })))
    .catch((e) => sec.fail(e));
}

function jobLink(id) {
  return id ? h('a', { href: `#/job/${encodeURIComponent(id)}` }, id) : '';
}

/** (title, table, field, group-by tag or null, aggregate) */
const HOST_SERIES = [
  ['Load (1 min)', 'heartbeat', 'load1', null, 'avg'],
  ['CPU temperature (°C)', 'cpu_thermal', 'temp_c', null, 'max'],
  ['CPU utilisation (%)', 'cpu_thermal', 'util_pct', null, 'avg'],
  ['Disk utilisation (%)', 'diskio_hw', 'util_pct', 'disk', 'avg'],
  ['Disk latency (ms)', 'diskio_hw', 'latency_ms', 'disk', 'avg'],
  ['NIC carrier changes (cumulative)', 'nic', 'carrier_changes', 'interface', 'max'],
  ['Corrected memory errors (cumulative)', 'edac', 'ce_count', 'dimm', 'max'],
  ['Reallocated sectors', 'smart', 'reallocated_sector_ct', 'disk', 'max'],
];

export async function renderHost(root, ctx, host) {
  const db = ctx.db;
  const H = sqlStr(host);
  const info = h('p', { class: 'muted', id: 'host-info' }, 'Loading…');
  const charts = h('div', { class: 'charts', id: 'host-charts' });
  const alerts = section('Alerts', 'host-alerts');
  const actions = section('Actions', 'host-actions');
  const jobs = section('Jobs that ran here', 'host-jobs');
  replace(root, h('div', { class: 'page host' }, h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')), h('h1', {}, host), info,
    h('section', { class: 'card' }, h('h2', {}, 'Hardware'), charts), h('div', { class: 'grid2' }, alerts, actions), jobs));

  api.get('/api/v1/alerts').then((r) => {
    const mine = ((r.data && r.data.alerts) || []).filter((a) => a.labels && a.labels.hostname === host);
    alerts.fill(table([{ name: 'state', render: (a) => h('span', { class: `badge ${a.state}` }, a.state) },
      { name: 'alert', render: (a) => (a.labels && a.labels.alertname) || a.rule }, 'value',
      { name: 'since', render: (a) => fmtTime(a.activeAt) }, { name: 'summary', width: 280, render: (a) => (a.annotations && a.annotations.summary) || '' }],
    mine, { caption: 'Alerts', height: 240, empty: 'No pending or firing alert.' }));
  }).catch((e) => alerts.fail(e));
  api.sql(`SELECT evaluation_time, rule, decision, reason, outcome, message FROM system.actions WHERE entity = ${H} ORDER BY evaluation_time DESC LIMIT 100`, db)
    .then((rows) => actions.fill(table([{ name: 'evaluation_time', label: 'time', render: (r) => fmtTime(r.evaluation_time) }, 'rule',
      { name: 'decision', render: (r) => h('span', { class: `badge ${r.decision}` }, r.decision) }, 'reason', 'outcome', { name: 'message', width: 240 }],
    rows, { caption: 'Actions', height: 240, empty: 'No action on this host.' })))
    .catch((e) => actions.fail(e));
  api.sql(`SELECT job_id, count(*) AS attempts, sum(CASE WHEN status = 'FAILED' THEN 1 ELSE 0 END) AS failed, to_timestamp_nanos(min(start_ns)) AS started, to_timestamp_nanos(max(end_ns)) AS ended, sum(duration_ms) AS task_ms FROM job_tasks WHERE hostname = ${H} GROUP BY job_id ORDER BY ended DESC LIMIT 200`, db)
    .then((rows) => jobs.fill(table([{ name: 'job_id', render: (r) => jobLink(r.job_id) }, 'attempts', 'failed',
      { name: 'started', render: (r) => fmtTime(r.started) }, { name: 'ended', render: (r) => fmtTime(r.ended) },
      { name: 'task time', render: (r) => fmtDur(r.task_ms * 1e6) }], rows, { caption: 'Jobs', height: 300, empty: 'No job ran here.' })))
    .catch((e) => jobs.fail(e));

  let last;
  try {
    const r = await api.sql(`SELECT datacenter, rack, sku, CAST(time AS BIGINT) AS t, uptime_s, cores FROM heartbeat WHERE hostname = ${H} ORDER BY time DESC LIMIT 1`, db);
    last = r[0];
  } catch (e) { replace(info, errorBox(e)); return; }
  if (!last) { info.textContent = `No heartbeat from ${host} in ${db}.`; return; }
  const T = last.t / 1e6;
  const S = T - 6 * 3600000;
  replace(info, `datacenter ${last.datacenter} · rack ${last.rack} · sku ${last.sku} · ${last.cores} cores · up ${fmtDur(last.uptime_s * 1e9)} · last heartbeat ${fmtTime(T)} · showing the 6 hours before it`);
  const bin = Math.max(10, Math.ceil((T - S) / 1000 / 500));
  for (const [title, tbl, field, by, agg] of HOST_SERIES) {
    const box = h('div', { class: 'host-chart' }, h('h3', {}, title));
    charts.append(box);
    const sel = `SELECT CAST(date_bin(INTERVAL '${bin} seconds', time) AS BIGINT) AS t, ${by ? `${sqlIdent(by)} AS s, ` : ''}${agg}(${sqlIdent(field)}) AS v FROM ${sqlIdent(tbl)} WHERE hostname = ${H} AND time >= ${ms(S)} AND time <= ${ms(T)} GROUP BY 1${by ? ', 2' : ''} ORDER BY 1`;
    api.sql(sel, db).then((rows) => {
      const m = new Map();
      for (const r of rows) { const k = r.s === undefined ? field : String(r.s); if (!m.has(k)) m.set(k, []); m.get(k).push([r.t / 1e6, r.v]); }
      const series = [...m.entries()].map(([name, points]) => ({ name, points }));
      box.append(series.length ? lineChart(series, { title, height: 180 }) : h('p', { class: 'muted' }, 'No data.'));
    }).catch((e) => box.append(e.status === 400 || e.status === 404 ? h('p', { class: 'muted' }, `No ${tbl} data.`) : errorBox(e)));
  }
}

export async function renderJob(root, ctx, id) {
  const page = h('div', { class: 'page job' }, h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')), h('h1', {}, `Job ${id}`));
  replace(root, page);
  const loading = h('p', { class: 'muted' }, 'Diagnosing…');
  page.append(loading);
  let r;
  try {
    r = await api.get(`/api/v1/diagnosis/jobs/${encodeURIComponent(id)}?db=${encodeURIComponent(ctx.db)}`);
  } catch (e) { replace(loading, errorBox(e)); return; }
  loading.remove();
  const reported = r.causes.filter((c) => c.reported);
  page.append(
    h('p', { id: 'job-summary' }, `${r.status}${r.running ? ' (still running)' : ''} · user ${r.user || '?'} · queue ${r.queue || '?'} · wall ${fmtDur(r.wall_ns)}${r.queue_wait_ns ? ` · queued ${fmtDur(r.queue_wait_ns)}` : ''} · ${fmtTime(r.start_ns / 1e6)} → ${fmtTime(r.end_ns / 1e6)}`),
    h('section', { class: 'card', id: 'causes' }, h('h2', {}, reported.length ? `Causes (${reported.length} reported)` : 'No cause reported: a healthy job'),
      r.causes.map((c) => causeCard(c))),
  );
  const stageLanes = r.stages.map((s) => ({
    name: `stage ${s.stage_id}${s.on_critical_path ? ' *' : ''}`,
    spans: [{ from: s.start_ns / 1e6, to: (s.end_ns || r.end_ns) / 1e6, state: s.on_critical_path ? 'critical' : 'stage' }],
    marks: [],
  }));
  page.append(h('section', { class: 'card' }, h('h2', {}, 'Stages'), h('p', { class: 'muted' }, 'Red: on the critical path.'),
    timeline(stageLanes, (r.submit_ns || r.start_ns) / 1e6, r.end_ns / 1e6, { maxLanes: 60 }),
    table(['stage_id', 'status', 'tasks', 'attempts', 'failed_attempts', { name: 'duration', render: (s) => fmtDur(s.duration_ns) },
      { name: 'median task', render: (s) => fmtDur(s.median_task_ns) }, { name: 'critical', render: (s) => (s.on_critical_path ? 'yes' : '') }, { name: 'parents', render: (s) => s.parents.join(', ') }],
    r.stages, { caption: 'Stages', height: 260 })));
  page.append(h('section', { class: 'card' }, h('h2', {}, 'Critical path'),
    table([{ name: 'kind', render: (g) => (typeof g.kind === 'string' ? g.kind.replace(/_/g, ' ') : JSON.stringify(g.kind)) }, 'stage_id', 'task_id', 'attempt', { name: 'hostname', render: (g) => hostLink(g.hostname) },
      { name: 'duration', render: (g) => fmtDur(g.duration_ns) }], r.critical_path, { caption: 'Critical path', height: 260 })));
  if (r.attempts && r.attempts.length) {
    page.append(h('section', { class: 'card' }, h('h2', {}, `Attempts${r.attempts_omitted ? ` (${r.attempts_omitted} more not shown)` : ''}`),
      table(['stage_id', 'task_id', 'attempt', { name: 'hostname', render: (a) => hostLink(a.hostname) }, 'status',
        { name: 'duration', render: (a) => fmtDur(a.end_ns - a.start_ns) }, { name: 'critical', render: (a) => (a.critical ? 'yes' : '') },
        { name: 'error', width: 300 }], r.attempts, { caption: 'Attempts', height: 320 })));
  }
  if (r.notes && r.notes.length) page.append(h('section', { class: 'card' }, h('h2', {}, 'Notes'), h('ul', {}, r.notes.map((n) => h('li', {}, n)))));
}

function causeCard(c) {
  return h('article', { class: c.reported ? 'cause reported' : 'cause' },
    h('h3', {}, String(c.kind).replace(/_/g, ' '), ' ', h('span', { class: 'muted' }, `confidence ${Math.round(c.confidence * 100)}% · cost ${fmtDur(c.cost_ns)}${c.reported ? '' : ' · below the cut'}`)),
    h('p', {}, c.summary),
    c.hosts.length ? h('p', {}, 'Hosts: ', c.hosts.slice(0, 20).map((x, i) => [i ? ', ' : '', hostLink(x)])) : null,
    c.evidence.length ? h('ul', { class: 'evidence' }, c.evidence.map((e) => h('li', {}, e.description,
      e.rows && e.rows.length ? h('span', { class: 'muted' }, ` (${e.rows.slice(0, 5).join('; ')}${e.rows.length > 5 ? '; …' : ''})`) : null,
      e.sql ? [' ', h('a', { href: consoleLink(e.sql) }, 'open the SQL')] : null))) : null,
    c.action ? h('p', { class: 'action' }, 'Action: ', c.action) : null);
}

