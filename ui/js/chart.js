// A small canvas line chart: time on x, series picked from a legend, pan by
// dragging (or the arrow keys), zoom with the wheel (or + and -), 0 resets.
// Bands (shaded time ranges) and markers (vertical lines) overlay the data:
// a rule's firing spans and decisions. Also a swimlane timeline.
// Text is drawn on the canvas or set with textContent.
import { h } from './dom.js';

export const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777', '#4b5563', '#65a30d'];
const PAD = { l: 62, r: 12, t: 10, b: 26 };

const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800].map((s) => s * 1000);

function timeTicks(x0, x1, px) {
  const want = Math.max(2, Math.floor(px / 110));
  const step = STEPS.find((s) => (x1 - x0) / s <= want) || Math.ceil((x1 - x0) / want / 86400000) * 86400000;
  const out = [];
  for (let t = Math.ceil(x0 / step) * step; t <= x1; t += step) out.push(t);
  return { ticks: out, step };
}

function timeLabel(t, step, span) {
  const iso = new Date(t).toISOString();
  if (step >= 86400000) return iso.slice(5, 10);
  if (span > 86400000) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  return step < 60000 ? iso.slice(11, 19) : iso.slice(11, 16);
}

function niceTicks(y0, y1, n) {
  const span = y1 - y0 || 1;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(y0 / step) * step; v <= y1 + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function yLabel(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v * 1000) / 1000);
}

function setupCanvas(canvas, w, hgt) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(hgt * dpr);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${hgt}px`;
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  return g;
}

/**
 * series: [{name, points: [[ms, value], ...]}] (sorted by time).
 * opts: {height, bands: [{from, to, color}], markers: [{t, color, label}], title}
 */
export function lineChart(series, opts = {}) {
  const height = opts.height || 300;
  const shown = series.map((_, i) => i < (opts.maxShown || 10));
  let all = [Infinity, -Infinity];
  for (const s of series) for (const p of s.points) { if (p[0] < all[0]) all[0] = p[0]; if (p[0] > all[1]) all[1] = p[0]; }
  for (const b of opts.bands || []) { all[0] = Math.min(all[0], b.from); all[1] = Math.max(all[1], b.to); }
  if (!isFinite(all[0])) all = [Date.now() - 3600000, Date.now()];
  if (all[0] === all[1]) all = [all[0] - 60000, all[1] + 60000];
  let [x0, x1] = all;
  let hover = null;

  const canvas = h('canvas', {
    class: 'chart', tabindex: '0', role: 'img',
    'aria-label': `${opts.title || 'Chart'}: ${series.length} series. Drag or arrow keys to pan, wheel or + and - to zoom, 0 to reset.`,
  });
  const legend = h('div', { class: 'legend', role: 'group', 'aria-label': 'Series' });
  const info = h('div', { class: 'chart-info muted' });
  const reset = h('button', { type: 'button', class: 'small', onclick: () => { [x0, x1] = all; draw(); } }, 'Reset zoom');
  const wrap = h('div', { class: 'chart-wrap' }, h('div', { class: 'chart-bar' }, reset, info), canvas, legend);

  series.forEach((s, i) => {
    const b = h('button', {
      type: 'button', class: 'legend-item', 'aria-pressed': shown[i] ? 'true' : 'false',
      onclick: () => { shown[i] = !shown[i]; b.setAttribute('aria-pressed', shown[i] ? 'true' : 'false'); draw(); },
    });
    const sw = h('span', { class: 'swatch' });
    sw.style.background = PALETTE[i % PALETTE.length];
    b.append(sw, s.name || '(value)');
    legend.appendChild(b);
  });
  if (series.length > 1) {
    legend.prepend(
      h('button', { type: 'button', class: 'small', onclick: () => { shown.fill(true); syncLegend(); draw(); } }, 'All'),
      h('button', { type: 'button', class: 'small', onclick: () => { shown.fill(false); syncLegend(); draw(); } }, 'None'));
  }
  function syncLegend() {
    let i = 0;
    for (const b of legend.querySelectorAll('.legend-item')) b.setAttribute('aria-pressed', shown[i++] ? 'true' : 'false');
  }

  let W = 800;
  function draw() {
    W = Math.max(300, wrap.clientWidth || opts.width || 800);
    const g = setupCanvas(canvas, W, height);
    const pw = W - PAD.l - PAD.r;
    const ph = height - PAD.t - PAD.b;
    let y0 = Infinity; let y1 = -Infinity;
    series.forEach((s, i) => {
      if (!shown[i]) return;
      for (const [t, v] of s.points) if (t >= x0 && t <= x1 && v !== null && isFinite(v)) { if (v < y0) y0 = v; if (v > y1) y1 = v; }
    });
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    if (y0 === y1) { y0 -= 1; y1 += 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const X = (t) => PAD.l + ((t - x0) / (x1 - x0)) * pw;
    const Y = (v) => PAD.t + ph - ((v - y0) / (y1 - y0)) * ph;
    g.clearRect(0, 0, W, height);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#fff'; g.fillRect(0, 0, W, height);
    for (const b of opts.bands || []) {
      const a = Math.max(PAD.l, X(b.from)); const z = Math.min(PAD.l + pw, X(b.to));
      if (z > a) { g.fillStyle = b.color || 'rgba(220,38,38,0.12)'; g.fillRect(a, PAD.t, z - a, ph); }
    }
    g.strokeStyle = '#e5e7eb'; g.fillStyle = '#4b5563'; g.lineWidth = 1;
    for (const v of niceTicks(y0, y1, 5)) {
      const y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(PAD.l, y); g.lineTo(PAD.l + pw, y); g.stroke();
      g.textAlign = 'right'; g.fillText(yLabel(v), PAD.l - 6, y + 4);
    }
    const { ticks, step } = timeTicks(x0, x1, pw);
    g.textAlign = 'center';
    for (const t of ticks) {
      const x = Math.round(X(t)) + 0.5;
      g.beginPath(); g.moveTo(x, PAD.t); g.lineTo(x, PAD.t + ph); g.stroke();
      g.fillText(timeLabel(t, step, x1 - x0), x, height - 8);
    }
    g.save();
    g.beginPath(); g.rect(PAD.l, PAD.t, pw, ph); g.clip();
    series.forEach((s, i) => {
      if (!shown[i]) return;
      g.strokeStyle = PALETTE[i % PALETTE.length]; g.lineWidth = 1.5;
      g.beginPath();
      let pen = false;
      let n = 0;
      for (const [t, v] of s.points) {
        if (v === null || !isFinite(v)) { pen = false; continue; }
        const x = X(t); const y = Y(v);
        if (pen) g.lineTo(x, y); else g.moveTo(x, y);
        pen = true; n++;
      }
      g.stroke();
      if (n === 1 || s.points.length < 40) {
        g.fillStyle = PALETTE[i % PALETTE.length];
        for (const [t, v] of s.points) if (v !== null && isFinite(v)) { g.beginPath(); g.arc(X(t), Y(v), 2, 0, 7); g.fill(); }
      }
    });
    for (const m of opts.markers || []) {
      const x = X(m.t);
      if (x < PAD.l || x > PAD.l + pw) continue;
      g.strokeStyle = m.color || '#111827'; g.setLineDash([4, 3]);
      g.beginPath(); g.moveTo(x, PAD.t); g.lineTo(x, PAD.t + ph); g.stroke();
      g.setLineDash([]);
      if (m.label) { g.fillStyle = m.color || '#111827'; g.textAlign = 'left'; g.fillText(m.label, x + 3, PAD.t + 10); }
    }
    g.restore();
    g.strokeStyle = '#9ca3af'; g.strokeRect(PAD.l + 0.5, PAD.t + 0.5, pw, ph);
    if (hover) {
      const t = x0 + ((hover - PAD.l) / pw) * (x1 - x0);
      let best = null;
      series.forEach((s, i) => {
        if (!shown[i]) return;
        const p = nearest(s.points, t);
        if (p && (!best || Math.abs(p[0] - t) < Math.abs(best.p[0] - t))) best = { p, s };
      });
      if (best) {
        const x = X(best.p[0]);
        g.strokeStyle = '#111827'; g.beginPath(); g.moveTo(x, PAD.t); g.lineTo(x, PAD.t + ph); g.stroke();
        info.textContent = `${new Date(best.p[0]).toISOString()}  ${best.s.name || 'value'} = ${best.p[1]}`;
      }
    } else {
      info.textContent = `${series.length} series · ${new Date(x0).toISOString().slice(0, 19)}Z → ${new Date(x1).toISOString().slice(0, 19)}Z`;
    }
  }

  function zoom(f, at) {
    const c = at === undefined ? (x0 + x1) / 2 : at;
    const nx0 = c - (c - x0) * f; const nx1 = c + (x1 - c) * f;
    if (nx1 - nx0 < 1000) return;
    x0 = nx0; x1 = nx1; draw();
  }
  function pan(frac) { const d = (x1 - x0) * frac; x0 += d; x1 += d; draw(); }
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    const pw = W - PAD.l - PAD.r;
    const at = x0 + ((e.clientX - r.left - PAD.l) / pw) * (x1 - x0);
    zoom(e.deltaY > 0 ? 1.25 : 0.8, at);
  }, { passive: false });
  let drag = null;
  canvas.addEventListener('mousedown', (e) => { drag = { x: e.clientX, x0, x1 }; canvas.focus(); });
  window.addEventListener('mouseup', () => { drag = null; });
  canvas.addEventListener('mousemove', (e) => {
    const r = canvas.getBoundingClientRect();
    if (drag) {
      const pw = W - PAD.l - PAD.r;
      const d = ((e.clientX - drag.x) / pw) * (drag.x1 - drag.x0);
      x0 = drag.x0 - d; x1 = drag.x1 - d;
    }
    hover = e.clientX - r.left;
    draw();
  });
  canvas.addEventListener('mouseleave', () => { hover = null; draw(); });
  canvas.addEventListener('keydown', (e) => {
    const k = e.key;
    if (k === '+' || k === '=') zoom(0.8);
    else if (k === '-' || k === '_') zoom(1.25);
    else if (k === 'ArrowLeft') pan(-0.1);
    else if (k === 'ArrowRight') pan(0.1);
    else if (k === '0') { [x0, x1] = all; draw(); }
    else return;
    e.preventDefault();
  });
  if (window.ResizeObserver) new ResizeObserver(() => draw()).observe(wrap);
  requestAnimationFrame(draw);
  wrap.chart = { draw, zoom, pan, range: () => [x0, x1] };
  return wrap;
}

function nearest(points, t) {
  let lo = 0; let hi = points.length - 1;
  if (hi < 0) return null;
  while (lo < hi) { const m = (lo + hi) >> 1; if (points[m][0] < t) lo = m + 1; else hi = m; }
  const a = points[Math.max(0, lo - 1)]; const b = points[lo];
  return Math.abs(a[0] - t) <= Math.abs(b[0] - t) ? a : b;
}

/**
 * Swimlanes: lanes [{name, spans: [{from, to, state}], marks: [{t, color, label}]}]
 * over [start, end] (ms). pending spans amber, firing red.
 */
export function timeline(lanes, start, end, opts = {}) {
  const laneH = 22;
  const shownLanes = lanes.slice(0, opts.maxLanes || 40);
  const labelW = 170;
  const height = PAD.t + PAD.b + Math.max(1, shownLanes.length) * laneH;
  const canvas = h('canvas', { class: 'chart timeline', role: 'img', tabindex: '0', 'aria-label': `Alert timeline: ${lanes.length} instances` });
  const wrap = h('div', { class: 'chart-wrap' }, canvas);
  if (lanes.length > shownLanes.length) wrap.appendChild(h('p', { class: 'muted' }, `${lanes.length - shownLanes.length} more instances not drawn.`));
  const colors = { pending: '#f59e0b', firing: '#dc2626', stage: '#60a5fa', critical: '#dc2626' };
  function draw() {
    const W = Math.max(400, wrap.clientWidth || 800);
    const g = setupCanvas(canvas, W, height);
    const pw = W - labelW - PAD.r;
    const X = (t) => labelW + ((t - start) / Math.max(1, end - start)) * pw;
    g.fillStyle = '#fff'; g.fillRect(0, 0, W, height);
    g.font = '11px system-ui, sans-serif';
    const { ticks, step } = timeTicks(start, end, pw);
    g.strokeStyle = '#e5e7eb'; g.fillStyle = '#4b5563'; g.textAlign = 'center';
    for (const t of ticks) {
      const x = Math.round(X(t)) + 0.5;
      g.beginPath(); g.moveTo(x, PAD.t); g.lineTo(x, height - PAD.b); g.stroke();
      g.fillText(timeLabel(t, step, end - start), x, height - 8);
    }
    shownLanes.forEach((l, i) => {
      const y = PAD.t + i * laneH;
      g.fillStyle = '#111827'; g.textAlign = 'right';
      const name = l.name.length > 26 ? `${l.name.slice(0, 25)}…` : l.name;
      g.fillText(name, labelW - 6, y + 15);
      for (const s of l.spans) {
        g.fillStyle = colors[s.state] || '#9ca3af';
        const a = X(s.from); const z = Math.max(a + 2, X(s.to));
        g.fillRect(a, y + 4, z - a, laneH - 8);
      }
      for (const m of l.marks || []) {
        g.fillStyle = m.color || '#111827';
        g.beginPath(); g.arc(X(m.t), y + laneH / 2, 4, 0, 7); g.fill();
      }
    });
  }
  if (window.ResizeObserver) new ResizeObserver(() => draw()).observe(wrap);
  requestAnimationFrame(draw);
  return wrap;
}
