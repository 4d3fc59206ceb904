'use strict';
// The HomeSpot admin panel: login, then live state by Server-Sent Events (/api/live), and
// changes posted as JSON with the session's CSRF token. No framework, no build step.

const $ = (s) => document.querySelector(s);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k ?? ''));
  return e;
};
const SVG = 'http://www.w3.org/2000/svg';
const PAGES = ['overview', 'devices', 'timeline', 'settings'];
const HISTORY = 60;          // graph points (one a second)
const TIMELINE_MAX = 200;    // timeline entries kept
const ATTACK = /malformed|rate_limited|refused|replayed|bad_|stale|cookie_demanded|unknown_relay|denied|too_many/;

let csrf = null;
let source = null;
let last = null;            // the previous snapshot
const rates = {};           // link -> [{rx, tx}] bits per second
let devicesShown = '';
let settings = null;

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf || '' },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  let v = {};
  try { v = await r.json(); } catch (_) { /* not JSON */ }
  return { status: r.status, ok: r.ok, v };
}

function showOnly(ids) {
  for (const id of ['setup', 'login', ...PAGES]) $('#' + id).hidden = !ids.includes(id);
}

async function boot() {
  const { v } = await api('/api/state');
  if (source) { source.close(); source = null; }
  $('#nav').hidden = true;
  if (!v.password_set) { showOnly(['setup']); return; }
  if (!v.logged_in) { showOnly(['login']); return; }
  csrf = v.csrf;
  start();
}

async function start() {
  $('#nav').hidden = false;
  $('#auth-error').textContent = '';
  route();
  // The state at once; then the stream, a snapshot a second and each event as it happens.
  const first = await api('/api/status');
  if (first.ok) render(first.v);
  source = new EventSource('/api/live');
  source.addEventListener('status', (e) => render(JSON.parse(e.data)));
  source.addEventListener('event', (e) => { addEvent(JSON.parse(e.data)); refresh(); });
  source.onerror = () => {
    // The server ended the stream (logged out, restarted): ask again what to show.
    if (source && source.readyState === EventSource.CLOSED) boot();
    else setTimeout(() => { if (source && source.readyState !== EventSource.OPEN) boot(); }, 3000);
  };
  loadSettings();
}

// After an event the tables follow at once rather than at the next second's snapshot.
let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const r = await api('/api/status');
    if (r.ok) render(r.v);
  } finally {
    refreshing = false;
  }
}

function route() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'overview';
  showOnly([page]);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.hash === '#' + page);
}

// ---- overview -----------------------------------------------------------------------------

const ago = (ms, now) => {
  if (!ms) return '';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min ago';
};
const duration = (s) => {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + ' d ' : '') + (d || h ? h + ' h ' : '') + m + ' min';
};
const rate = (bps) => bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mbit/s' : (bps / 1e3).toFixed(0) + ' kbit/s';

function render(s) {
  const up = duration((s.now_ms - s.started_ms) / 1000);
  $('#about').textContent = `homespotd ${s.version}, up ${up}. Identity fingerprint (what laptops pin): ` +
    (s.identity || 'none (P-Handoff is off)') + '. Config: ' + s.config;
  const dt = last ? (s.now_ms - last.now_ms) / 1000 : 0;
  for (const l of s.links) {
    const prev = last && last.links.find((p) => p.name === l.name);
    const h = rates[l.name] || (rates[l.name] = []);
    if (prev && dt > 0) {
      h.push({ rx: Math.max(0, (l.rx_bytes - prev.rx_bytes) * 8 / dt), tx: Math.max(0, (l.tx_bytes - prev.tx_bytes) * 8 / dt) });
      if (h.length > HISTORY) h.shift();
    }
  }
  if (!last) performance.mark('hs-first-data');
  renderLinks(s);
  renderCounters(s);
  renderDevices(s);
  if (last) counterEvents(last, s);
  last = s;
}

function graph(h) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'graph');
  svg.setAttribute('viewBox', `0 0 ${HISTORY} 100`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const max = Math.max(1000, ...h.map((p) => Math.max(p.rx, p.tx)));
  for (const [k, cls] of [['rx', 'in'], ['tx', 'out']]) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', cls);
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    line.setAttribute('points', h.map((p, i) => `${HISTORY - h.length + i},${100 - (p[k] / max) * 95}`).join(' '));
    svg.append(line);
  }
  return svg;
}

function renderLinks(s) {
  const box = $('#links');
  box.replaceChildren(...s.links.map((l) => {
    const h = rates[l.name] || [];
    const now = h[h.length - 1] || { rx: 0, tx: 0 };
    const clients = s.devices.filter((d) => d.radio === l.name).length;
    const dl = el('dl', {},
      el('dt', {}, 'Kind'), el('dd', {}, l.kind),
      el('dt', {}, 'Interface'), el('dd', {}, l.interface),
      el('dt', {}, 'Address'), el('dd', {}, l.address),
      el('dt', {}, 'L2 identity'), el('dd', {}, l.l2_id || '(none)'),
      el('dt', {}, 'Clients on it'), el('dd', { class: 'clients' }, clients),
      el('dt', {}, 'Pool'), el('dd', {}, `${l.pool_used} of ${l.pool_size} used` + (l.exhausted ? `, ran out ${l.exhausted}×` : '')));
    return el('div', { class: 'card', 'data-link': l.name },
      el('h3', {}, l.name + ' ', el('span', { class: l.present ? 'up' : 'down' }, l.present ? 'up' : 'down')),
      dl, graph(h),
      el('div', {}, el('span', { class: 'in' }, 'in ' + rate(now.rx)), ' · ', el('span', { class: 'out' }, 'out ' + rate(now.tx))));
  }));
}

function renderCounters(s) {
  $('#counters').replaceChildren(...Object.entries(s.counters || {}).map(([sys, c]) =>
    el('table', {}, el('caption', {}, sys),
      ...Object.entries(c).map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v))))));
}

// ---- devices ------------------------------------------------------------------------------

function renderDevices(s) {
  const key = JSON.stringify(s.devices);
  if (key === devicesShown) return;
  devicesShown = key;
  const now = s.now_ms;
  const rows = s.devices.map((d) => {
    const cur = d.leases.filter((l) => l.state === 'bound');
    const onRadio = d.leases.find((l) => l.link === d.radio) || d.leases[0];
    const reserved = onRadio && onRadio.reserved;
    const actions = el('td', {});
    if (onRadio && d.mac && !reserved) {
      actions.append(el('button', { type: 'button', class: 'reserve', onclick: () => change('/api/reserve', { mac: d.mac, address: onRadio.address }) }, 'Make this a reservation'));
    }
    for (const l of cur) {
      actions.append(el('button', { type: 'button', class: 'forget', onclick: () => change('/api/forget', { address: l.address }) }, 'Forget ' + l.address));
    }
    const row = el('tr', { 'data-mac': d.mac || '', 'data-host': d.hostname || '' },
      el('td', {}, d.hostname || '(no name)'),
      el('td', {}, d.mac || ''),
      el('td', { class: 'addresses' }, d.leases.map((l) => `${l.address} (${l.link}${l.state === 'bound' ? '' : ', ' + l.state})`).join(', ')),
      el('td', { class: 'radio' }, d.radio || ''),
      el('td', { class: 'kind' }, reserved ? 'reserved' : 'dynamic'),
      el('td', {}, onRadio ? new Date(onRadio.expires * 1000).toLocaleString() : ''),
      el('td', {}, d.last_seen_ms ? new Date(d.last_seen_ms).toLocaleTimeString() : ''),
      el('td', {}, d.global || ''),
      el('td', {}, d.last_switch_ms ? `${new Date(d.last_switch_ms).toLocaleTimeString()}${d.last_switch_why ? ' (' + d.last_switch_why + ')' : ''}, ${d.switches} in all` : ''),
      actions);
    if (d.global) row.dataset.global = d.global;
    return row;
  });
  $('#device-rows').replaceChildren(...rows);
  $('#device-note').textContent = `${s.devices.length} device(s); agents show their global address and switches.`;
}

async function change(path, body) {
  const r = await api(path, body);
  $('#device-note').textContent = r.ok ? 'Done: ' + ([...(r.v.applied || [])].join(', ') || 'no change') : 'Refused: ' + (r.v.error || r.status);
  if (r.status === 401) boot();
  if (r.ok) loadSettings();
}

// ---- timeline -----------------------------------------------------------------------------

function describe(e) {
  switch (e.event) {
    case 'lease': return [`${e.hostname || e.mac || 'a device'} got ${e.address} on ${e.link}`];
    case 'released': return [`${e.address} released on ${e.link}`];
    case 'associated': return [`${e.global} completed the P-Handoff handshake`];
    case 'switch': return [e.from ? `${e.global} moved ${e.from} → ${e.to} (${e.why || 'the laptop moved'})` : `${e.global} is on ${e.to}`];
    case 'left': return [`${e.global} left`];
    case 'pool_exhausted': return [`the pool of ${e.link} is full`, 'warn'];
    case 'link_down': return [`${e.link} is down`, 'warn'];
    case 'link_up': return [`${e.link} is up`];
    case 'reloaded': return [`settings applied: ${(e.changes || []).join(', ')}`];
    case 'reload_refused': return [`settings refused: ${e.reason}`, 'warn'];
    default: return [JSON.stringify(e)];
  }
}

function addEvent(e) {
  const [text, cls] = describe(e);
  entry(e.at_ms, text, cls, e.event);
}

function entry(at, text, cls, kind) {
  const list = $('#timeline-list');
  list.prepend(el('li', { class: cls || '', 'data-event': kind }, el('time', {}, new Date(at).toLocaleTimeString()), text));
  while (list.children.length > TIMELINE_MAX) list.lastChild.remove();
}

function counterEvents(a, b) {
  for (const [sys, c] of Object.entries(b.counters || {})) {
    for (const [k, v] of Object.entries(c)) {
      const was = ((a.counters || {})[sys] || {})[k];
      if (ATTACK.test(k) && was !== undefined && v > was) entry(b.now_ms, `${sys}.${k} rose by ${v - was} (now ${v})`, 'warn', 'counter');
    }
  }
}

// ---- settings -----------------------------------------------------------------------------

const LINK_FIELDS = [
  ['pools', 'Pool ranges (first-last, comma-separated)', 'list'],
  ['lease_time', 'Lease time (e.g. 12h)', 'text'],
  ['wpad_url', 'WPAD URL', 'text'],
  ['wpad_always', 'Send WPAD to every client', 'bool'],
  ['reservations', 'Reservations (one "MAC address" per line)', 'reservations'],
];
const SECTIONS = [
  ['proxy', 'Proxy', [['parent', 'Parent proxy (host:port)', 'text'], ['max_connections', 'Connections at most', 'number'],
    ['max_connections_per_client', 'Connections per client at most', 'number'], ['idle_timeout', 'Idle timeout', 'text'],
    ['connect_timeout', 'Connect timeout', 'text']]],
  ['handoff', 'P-Handoff (applied at restart)', [['advert_interval', 'Advert interval', 'text'],
    ['session_idle', 'Session idle', 'text'], ['expire_after', 'Unused global addresses expire after', 'text'],
    ['rto_min_ms', 'Minimum RTO on host routes (ms)', 'number']]],
];

function field(key, label, type, value) {
  let input;
  if (type === 'bool') {
    input = el('input', { type: 'checkbox', checked: !!value });
  } else if (type === 'reservations') {
    input = el('textarea', { rows: 3, value: (value || []).map((r) => `${r.mac || r.client_id} ${r.address}`).join('\n') });
  } else {
    input = el('input', { type: 'text', value: value === undefined ? '' : (Array.isArray(value) ? value.join(', ') : value) });
  }
  input.dataset.key = key;
  input.dataset.type = type;
  input.dataset.orig = JSON.stringify(read(input));
  return el('label', {}, label, input, el('span', { class: 'err', 'data-err': key }));
}

function read(input) {
  const t = input.dataset.type, v = input.type === 'checkbox' ? input.checked : input.value.trim();
  if (t === 'bool') return v;
  if (v === '') return null;
  if (t === 'number') return Number(v);
  if (t === 'list') return v.split(/[\s,]+/).filter(Boolean);
  if (t === 'reservations') return v.split('\n').map((l) => l.trim().split(/\s+/)).filter((p) => p[0])
    .map(([who, address]) => (/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(who) ? { mac: who, address } : { client_id: who, address }));
  return v;
}

async function loadSettings() {
  const r = await api('/api/settings');
  if (!r.ok) return;
  settings = r.v.settings;
  const box = $('#settings-fields');
  const sets = (settings.link || []).map((l, i) => el('fieldset', {}, el('legend', {}, `Link ${l.name} (${l.interface})`),
    ...LINK_FIELDS.map(([k, label, type]) => field(`link[${i}].${k}`, label, type, l[k]))));
  for (const [sec, title, fields] of SECTIONS) {
    if (sec === 'handoff' && !settings.handoff) continue;
    const s = settings[sec] || {};
    sets.push(el('fieldset', {}, el('legend', {}, title), ...fields.map(([k, label, type]) => field(`${sec}.${k}`, label, type, s[k]))));
  }
  box.replaceChildren(...sets);
}

async function saveSettings(ev) {
  ev.preventDefault();
  for (const e of document.querySelectorAll('[data-err]')) e.textContent = '';
  const edits = [];
  for (const input of document.querySelectorAll('#settings-fields [data-key]')) {
    const v = read(input);
    if (JSON.stringify(v) !== input.dataset.orig) edits.push({ key: input.dataset.key, value: v });
  }
  if (!edits.length) { $('#settings-result').textContent = 'Nothing changed.'; return; }
  const r = await api('/api/settings', { edits });
  if (r.ok) {
    $('#settings-result').textContent = 'Applied: ' + (r.v.applied.join(', ') || 'nothing at once') +
      (r.v.restart.length ? '. At the next restart: ' + r.v.restart.join(', ') : '') + '.';
    loadSettings();
    return;
  }
  $('#settings-result').textContent = 'Not saved: nothing changed.';
  // The error goes next to the field whose key is the longest prefix of the error's key.
  let best = null;
  for (const e of document.querySelectorAll('[data-err]')) {
    const k = e.dataset.err;
    if (r.v.key && (r.v.key === k || r.v.key.startsWith(k + '[') || r.v.key.startsWith(k + '.')) && (!best || k.length > best.dataset.err.length)) best = e;
  }
  const at = best || $('#settings-result');
  at.textContent = r.v.error || ('HTTP ' + r.status);
  at.scrollIntoView({ block: 'center' });
  if (r.status === 401) boot();
}

// ---- forms --------------------------------------------------------------------------------

async function authForm(ev, path, body) {
  ev.preventDefault();
  const r = await api(path, body);
  if (!r.ok) { $('#auth-error').textContent = r.v.error || ('HTTP ' + r.status); return; }
  csrf = r.v.csrf;
  $('#auth-error').textContent = '';
  start();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#setup-form').addEventListener('submit', (ev) => authForm(ev, '/api/setup', { code: $('#setup-code').value.trim(), password: $('#setup-password').value }));
  $('#login-form').addEventListener('submit', (ev) => authForm(ev, '/api/login', { password: $('#login-password').value }));
  $('#settings-form').addEventListener('submit', saveSettings);
  $('#password-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const r = await api('/api/password', { current: $('#pw-current').value, new: $('#pw-new').value });
    $('#password-result').textContent = r.ok ? 'Password changed; other sessions are logged out.' : (r.v.error || 'HTTP ' + r.status);
  });
  $('#logout').addEventListener('click', async () => {
    await api('/api/logout', {});
    csrf = null;
    boot();
  });
  window.addEventListener('hashchange', () => { if (csrf) route(); });
  boot();
});
