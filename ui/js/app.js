// The portal's shell: a router on location.hash, the database picker, who
// is signed in, and the token prompt.
import { h, replace, errorBox } from './dom.js';
import * as api from './api.js';
import * as query from './query.js';
import * as ops from './ops.js';
import * as editor from './editor.js';
import * as fleet from './fleet.js';

const DB_KEY = 'fleetlake.db';
const view = () => document.getElementById('view');
let cleanup = null;

/** What every page receives. */
export const ctx = {
  db: localStorage.getItem(DB_KEY) || '',
  me: null,
  get canRules() { return !!(this.me && this.me.can.rules); },
  get canAdmin() { return !!(this.me && this.me.can.admin); },
};

const routes = [
  [/^\/?$/, () => { location.hash = '#/query'; }],
  [/^\/query$/, (m, q) => query.render(view(), ctx, q)],
  [/^\/ops(?:\/(alerts|actions|approvals|rules))?$/, (m, q) => ops.render(view(), ctx, m[1] || 'alerts', q)],
  [/^\/rule(?:\/([^/]+))?$/, (m) => editor.render(view(), ctx, m[1] ? decodeURIComponent(m[1]) : null)],
  [/^\/fleet$/, () => fleet.renderOverview(view(), ctx)],
  [/^\/host\/(.+)$/, (m) => fleet.renderHost(view(), ctx, decodeURIComponent(m[1]))],
  [/^\/job\/(.+)$/, (m) => fleet.renderJob(view(), ctx, decodeURIComponent(m[1]))],
];

async function route() {
  if (cleanup) { try { cleanup(); } catch (_) { /* page gone */ } cleanup = null; }
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  const params = new URLSearchParams(qs || '');
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = path.startsWith('/' + a.dataset.nav) ||
      (a.dataset.nav === 'ops' && path.startsWith('/rule')) ||
      (a.dataset.nav === 'fleet' && /^\/(host|job)\//.test(path));
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!(await ensureMe())) return;
  for (const [re, fn] of routes) {
    const m = path.match(re);
    if (m) {
      try {
        const c = await fn(m, params);
        if (typeof c === 'function') cleanup = c;
      } catch (e) {
        replace(view(), errorBox(e));
      }
      return;
    }
  }
  replace(view(), h('p', {}, 'No such page. '), h('a', { href: '#/query' }, 'Go to the query console'));
}

/** Fetches whoami; on 401 the token prompt is already open. */
async function ensureMe() {
  try {
    ctx.me = await api.whoami(ctx.db || undefined);
  } catch (e) {
    if (e.status !== 401) replace(view(), errorBox(e));
    else replace(view(), h('p', { class: 'muted' }, 'A token is needed to read this server.'));
    return false;
  }
  if (!ctx.db) ctx.db = ctx.me.db;
  const sel = document.getElementById('db');
  const dbs = ctx.me.databases.includes(ctx.db) ? ctx.me.databases : [ctx.db, ...ctx.me.databases];
  replace(sel, dbs.map((d) => h('option', { value: d, selected: d === ctx.db }, d)));
  const who = document.getElementById('who');
  const mode = ctx.canAdmin ? 'admin' : ctx.canRules ? 'rules' : 'read-only';
  replace(who, h('span', { class: 'badge' }, ctx.me.name), ' ', h('span', { class: `badge mode-${mode}` }, mode));
  document.body.classList.toggle('readonly', !ctx.canRules);
  return true;
}

function tokenPrompt(why) {
  const d = document.getElementById('token-dialog');
  if (d.open) return;
  document.getElementById('token-why').textContent = why
    ? `The server answered: ${why}. Enter a token; it is kept in this browser's local storage and sent as Authorization: Bearer.`
    : 'Enter a token; it is kept in this browser\'s local storage and sent as Authorization: Bearer.';
  document.getElementById('token-input').value = '';
  d.showModal();
  document.getElementById('token-input').focus();
}

function start() {
  window.addEventListener('hashchange', route);
  window.addEventListener('fleetlake:auth', (e) => tokenPrompt(e.detail));
  document.getElementById('token-btn').addEventListener('click', () => tokenPrompt(''));
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    api.setToken(document.getElementById('token-input').value.trim());
    api.forgetWhoami();
    document.getElementById('token-dialog').close();
    route();
  });
  document.getElementById('token-clear').addEventListener('click', () => {
    api.setToken('');
    api.forgetWhoami();
    document.getElementById('token-dialog').close();
    route();
  });
  document.getElementById('token-cancel').addEventListener('click', () => document.getElementById('token-dialog').close());
  document.getElementById('db').addEventListener('change', (e) => {
    ctx.db = e.target.value;
    localStorage.setItem(DB_KEY, ctx.db);
    api.forgetWhoami();
    route();
  });
  // g then q/o/f: go to a page (keyboard).
  let g = false;
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT')) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (g) {
      g = false;
      const to = { q: '#/query', o: '#/ops', f: '#/fleet', r: '#/ops/rules', a: '#/ops/approvals' }[e.key];
      if (to) { location.hash = to; e.preventDefault(); }
    } else if (e.key === 'g') { g = true; setTimeout(() => { g = false; }, 1500); }
  });
  route();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
