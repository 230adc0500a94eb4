// A virtualised table: only the rows in view are in the DOM, so 100,000
// rows scroll as smoothly as 10. Click a header to sort; the table is
// focusable and scrolls with the arrow keys, PageUp/PageDown, Home/End.
import { h, clear, fmtNum } from './dom.js';

const ROW = 26;

function cellText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * columns: [name] or [{name, label, render(row) -> Node|string, width}]
 * rows: array of objects. opts: {height, onRowClick(row), caption}
 */
export function table(columns, rows, opts = {}) {
  const cols = columns.map((c) => (typeof c === 'string' ? { name: c } : c));
  const widths = cols.map((c) => c.width || Math.max(90, Math.min(360, 24 + 9 * Math.max(String(c.label || c.name).length, sampleWidth(rows, c.name)))));
  const total = widths.reduce((a, b) => a + b, 0);
  const template = widths.map((w) => `${w}px`).join(' ');
  let data = rows;
  let sort = null;

  const head = h('div', { class: 'vt-head', role: 'row' });
  cols.forEach((c, i) => {
    head.appendChild(h('button', {
      class: 'vt-th', role: 'columnheader', type: 'button', title: `Sort by ${c.label || c.name}`,
      onclick: () => {
        const dir = sort && sort.i === i ? -sort.dir : 1;
        sort = { i, dir };
        const k = c.name;
        data = rows.slice().sort((a, b) => cmp(a[k], b[k]) * dir);
        for (const b of head.children) b.removeAttribute('aria-sort');
        head.children[i].setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
        paint(true);
      },
    }, c.label || c.name));
  });
  head.style.gridTemplateColumns = template;
  head.style.width = `${total}px`;
  const body = h('div', { class: 'vt-body', role: 'rowgroup' });
  body.style.width = `${total}px`;
  const scroller = h('div', {
    class: 'vt', role: 'grid', tabindex: '0', 'aria-rowcount': String(rows.length + 1),
    'aria-label': opts.caption || 'Results',
  }, head, body);
  scroller.style.maxHeight = `${opts.height || 480}px`;
  let first = -1;
  let last = -1;

  function paint(force) {
    body.style.height = `${data.length * ROW}px`;
    const top = Math.max(0, scroller.scrollTop - ROW);
    const view = scroller.clientHeight || (opts.height || 480);
    const a = Math.max(0, Math.floor(top / ROW) - 10);
    const b = Math.min(data.length, Math.ceil((top + view) / ROW) + 10);
    if (!force && a === first && b === last) return;
    first = a; last = b;
    clear(body);
    for (let i = a; i < b; i++) {
      const r = data[i];
      const tr = h('div', { class: i % 2 ? 'vt-tr odd' : 'vt-tr', role: 'row', 'aria-rowindex': String(i + 2) });
      tr.style.top = `${i * ROW}px`;
      tr.style.gridTemplateColumns = template;
      for (const c of cols) {
        const v = c.render ? c.render(r) : cellText(r[c.name]);
        const td = h('div', { class: typeof r[c.name] === 'number' ? 'vt-td num' : 'vt-td', role: 'gridcell' }, v);
        if (!c.render) td.title = cellText(r[c.name]);
        tr.appendChild(td);
      }
      if (opts.onRowClick) {
        tr.classList.add('clickable');
        tr.addEventListener('click', () => opts.onRowClick(r));
      }
      body.appendChild(tr);
    }
  }
  scroller.addEventListener('scroll', () => paint(false), { passive: true });
  scroller.addEventListener('keydown', (e) => {
    const page = scroller.clientHeight - ROW * 2;
    const moves = { ArrowDown: ROW, ArrowUp: -ROW, PageDown: page, PageUp: -page, Home: -1e12, End: 1e12 };
    if (e.target === scroller && e.key in moves) {
      scroller.scrollTop += moves[e.key];
      e.preventDefault();
    }
  });
  // Paint once attached (the height is known then), and now for tests.
  requestAnimationFrame(() => paint(true));
  paint(true);
  const wrap = h('div', { class: 'vt-wrap' }, scroller);
  if (!rows.length) wrap.appendChild(h('p', { class: 'muted' }, opts.empty || 'No rows.'));
  return wrap;
}

function sampleWidth(rows, k) {
  let w = 0;
  for (let i = 0; i < Math.min(rows.length, 50); i++) w = Math.max(w, cellText(rows[i][k]).length);
  return w;
}

function cmp(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : 1;
}

/** Column names of row objects, in first-seen order. */
export function columnsOf(rows) {
  const seen = new Set();
  for (let i = 0; i < Math.min(rows.length, 200); i++) for (const k of Object.keys(rows[i])) seen.add(k);
  return [...seen];
}

/** Prev/next pager for server-side paging (LIMIT/OFFSET). */
export function pager(page, hasMore, onpage, label) {
  return h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: page === 0, onclick: () => onpage(page - 1) }, '‹ Prev'),
    h('span', {}, ` ${label || 'page'} ${page + 1} `),
    h('button', { type: 'button', disabled: !hasMore, onclick: () => onpage(page + 1) }, 'Next ›'));
}
