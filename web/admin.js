// The box office: pages for an organizer's staff, behind an admin token (a staff token
// opens the ticket scanner only). Loaded by app.js on the first `#/admin` route, so fans
// never download it. Hash routes:
//
//   #/admin                       sign-in, then an overview: find an event, recent ones
//   #/admin/venues/new            a venue from sections and rows, with a preview
//   #/admin/events/new?venue=ve_N an event at a venue, priced per tier, published at once
//   #/admin/events/{id}           live dashboard (seats, holds/s, queue, revenue) and the
//                                 sale settings (onsale, start, waiting room, cancel)
//   #/admin/events/{id}/audit     the event's audit history, followed live, and its check
//   #/admin/scan                  the door: verify a pasted, typed or camera-read QR payload
//
// Everything goes through the existing API with the box office's token (api.js).

import { api, boxOffice, ApiError, money, dateTime, el, hasRoute } from './api.js';
import { tierColors } from './seatmap.js';

const VENUES_KEY = 'boxoffice.box-office.venues';
const EVENTS_KEY = 'boxoffice.box-office.events';
const STATS_EVERY_MS = 1000;
const AUDIT_EVERY_MS = 2000;
const AUDIT_ROWS_KEPT = 2000;
const SPARK_SAMPLES = 120;
const CURRENCIES = ['USD', 'EUR', 'GBP', 'CAD', 'AUD', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN', 'NZD'];

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const num = (n) => Number(n).toLocaleString();
const pad = (n) => String(n).padStart(2, '0');

/** An ISO time as the value of a `datetime-local` input (local time, minutes). */
function toLocalInput(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value (local time) as RFC 3339 UTC. */
function fromLocalInput(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ApiError(400, 'INVALID', `"${value}" is not a date and time.`);
  return d.toISOString();
}

function remember(key, item, max = 50) {
  let list = [];
  try {
    list = JSON.parse(localStorage.getItem(key) || '[]');
  } catch {
    list = [];
  }
  list = [item, ...list.filter((x) => x.id !== item.id)].slice(0, max);
  localStorage.setItem(key, JSON.stringify(list));
}

function recalled(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || '[]');
  } catch {
    return [];
  }
}

const field = (id, text, input, hint) =>
  el('div', { class: 'field' }, el('label', { for: id }, text), input, hint ? el('p', { class: 'muted small', id: `${id}-hint` }, hint) : null);

/** A message box (role=alert) with `say(text, kind)`; kinds: error, warn, info, success, none. */
function messageBox(id) {
  const box = el('div', { class: 'message none', role: 'alert', id });
  box.say = (text, kind = 'error') => {
    box.className = `message ${text ? kind : 'none'}`;
    box.replaceChildren(...(Array.isArray(text) ? text : [text || '']));
  };
  return box;
}

/** The API with the box office's token. */
const boApi = (method, path, options = {}) => api(method, path, { ...options, token: boxOffice.token, auth: false });

/** Event detail, fresh (the public copy is cached for 60 s). */
const freshEvent = (id, signal) => boApi('GET', `/v1/events/${encodeURIComponent(id)}`, { cache: 'no-store', signal });

/**
 * Renders a box-office page into `main`; returns `{destroy()}`.
 * @param {string[]} parts the hash path after `admin`
 * @param {URLSearchParams} params the hash query
 * @param {{main: HTMLElement, toast: (text: string) => void, hooks: object}} ctx
 */
export function adminPage(parts, params, ctx) {
  const { main, hooks } = ctx;
  const abort = new AbortController();
  const timers = new Set();
  const cleanups = [];
  const page = {
    signal: abort.signal,
    every(f, ms) {
      const t = setInterval(f, ms);
      timers.add(t);
      return t;
    },
    onDestroy: (f) => cleanups.push(f),
    ...ctx,
  };
  hooks.admin = { page: parts.join('/') || 'home' };

  const [first, second, third] = parts;
  let need = 'admin';
  let render;
  if (!first) render = homePage;
  else if (first === 'scan') {
    need = 'staff';
    render = scannerPage;
  } else if (first === 'venues' && second === 'new') render = venueForm;
  else if (first === 'events' && second === 'new') render = () => eventForm(page, params.get('venue'));
  else if (first === 'events' && second && third === 'audit') render = () => auditPage(page, decodeURIComponent(second));
  else if (first === 'events' && second && !third) render = () => dashboardPage(page, decodeURIComponent(second), params);
  else render = () => main.append(el('h1', {}, 'Not found'), el('p', {}, 'No such box-office page. ', el('a', { href: '#/admin' }, 'Box office home')));

  const session = boxOffice.current;
  main.append(adminNav(session, first === 'scan' ? 'scan' : first === 'venues' ? 'venue' : second === 'new' ? 'event' : first ? 'events' : 'home'));
  if (!session) signInPanel(page, need);
  else if (need === 'admin' && session.role !== 'admin') {
    main.append(el('h1', {}, 'Box office'),
      el('p', { class: 'message warn', role: 'alert' }, `This page needs an admin token; you are signed in as ${session.user} (${session.role}). Staff can use the `, el('a', { href: '#/admin/scan' }, 'ticket scanner'), '.'));
  } else render(page);

  return {
    destroy() {
      abort.abort();
      for (const t of timers) clearInterval(t);
      for (const f of cleanups) f();
    },
  };
}

// ---- chrome ------------------------------------------------------------------------------------

function adminNav(session, here) {
  const link = (key, href, text) => el('a', { href, 'aria-current': key === here ? 'page' : null }, text);
  const who = session
    ? el('span', { class: 'bo-who' }, 'Box office: ', el('strong', {}, session.user), ` (${session.role}${session.source === 'shared' ? ', from the header sign-in' : ''}) `,
      el('button', { type: 'button', class: 'link', id: 'bo-sign-out', onclick: () => boxOffice.signOut() }, 'Sign out of the box office'))
    : el('span', { class: 'bo-who muted' }, 'Not signed in');
  const links = session?.role === 'admin'
    ? [link('home', '#/admin', 'Overview'), link('venue', '#/admin/venues/new', 'New venue'), link('event', '#/admin/events/new', 'New event'), link('scan', '#/admin/scan', 'Scanner')]
    : [link('scan', '#/admin/scan', 'Scanner')];
  return el('nav', { class: 'bo-nav', 'aria-label': 'Box office' }, el('div', { class: 'bo-links' }, ...links), who);
}

function signInPanel(page, need) {
  const { main } = page;
  const token = el('input', { id: 'bo-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'eyJhbGciOiJIUzI1NiJ9…' });
  const tokenMsg = messageBox('bo-token-message');
  const tokenForm = el('form', { class: 'card stack', id: 'bo-token-form', 'aria-labelledby': 'bo-token-h' },
    el('h2', { id: 'bo-token-h' }, 'Sign in with a token'),
    field('bo-token', need === 'staff' ? 'Staff or admin token' : 'Admin token', token,
      'A JWT signed with the server\'s secret (HS256; claims sub, role "admin" or "staff", exp), e.g. from your identity provider. Staff tokens open the ticket scanner only.'),
    el('div', { class: 'row' }, el('button', { type: 'submit' }, 'Sign in with this token')), tokenMsg);
  tokenForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    tokenMsg.say('');
    try {
      const s = await boxOffice.useToken(token.value);
      page.toast(`Box office: signed in as ${s.user} (${s.role}).`);
    } catch (err) {
      tokenMsg.say(err.message);
    }
  });

  const user = el('input', { id: 'bo-user', name: 'user', autocomplete: 'username', required: true, maxlength: 64, value: 'box-office' });
  const devMsg = messageBox('bo-dev-message');
  const devForm = el('form', { class: 'card stack', id: 'bo-dev-form', 'aria-labelledby': 'bo-dev-h' },
    el('h2', { id: 'bo-dev-h' }, 'Demo server: dev login'),
    el('p', { class: 'small' }, 'A server started with ', el('code', {}, '--demo'), ' or ', el('code', {}, '--dev-auth'), ' mints an admin token for any name (never in production).'),
    field('bo-user', 'Name', user),
    el('div', { class: 'row' }, el('button', { type: 'submit', id: 'bo-dev-login' }, 'Sign in as admin (dev login)')), devMsg);
  devForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    devMsg.say('');
    try {
      const s = await boxOffice.devLogin(user.value.trim());
      page.toast(`Box office: signed in as ${s.user} (admin).`);
    } catch (err) {
      devMsg.say(err.status === 404 ? 'This server has no dev login (it runs without --dev-auth): sign in with a token.' : err.message);
    }
  });

  main.append(el('h1', {}, 'Box office'),
    el('p', {}, 'Venues, events, onsale and waiting-room settings, a live dashboard and audit history per event, and the ticket scanner. ',
      'The token stays in this browser (local storage) until you sign out or it expires; it is separate from the fan sign-in at the top.'),
    el('div', { class: 'bo-grid' }, tokenForm, devForm));
}

// ---- overview ----------------------------------------------------------------------------------

function homePage(page) {
  const { main, signal } = page;
  const q = el('input', { id: 'bo-find', type: 'search', name: 'q', placeholder: 'ev_1, or words from its name', required: true });
  const results = el('ul', { class: 'bo-list', id: 'bo-find-results', 'aria-live': 'polite' });
  const findMsg = messageBox('bo-find-message');
  const form = el('form', { class: 'card stack', role: 'search', 'aria-labelledby': 'bo-find-h' },
    el('h2', { id: 'bo-find-h' }, 'Find an event'),
    el('div', { class: 'row' }, el('label', { for: 'bo-find', class: 'sr-only' }, 'Event id or name'), q, el('button', { type: 'submit' }, 'Find')),
    findMsg, results);
  const eventItem = (e) => el('li', {},
    el('a', { href: `#/admin/events/${encodeURIComponent(e.id)}`, 'data-admin-event': e.id }, e.name),
    el('span', { class: 'muted small' }, ` ${e.id}${e.starts_at ? ' · ' + dateTime(e.starts_at) : ''}${e.city ? ' · ' + e.city : ''}`));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    findMsg.say('');
    results.replaceChildren();
    const text = q.value.trim();
    try {
      if (/^ev_\d+$/.test(text)) {
        results.append(eventItem(await freshEvent(text, signal)));
      } else if (await hasRoute('/v1/search')) {
        const r = await boApi('GET', `/v1/search?${new URLSearchParams({ q: text, limit: '10' })}`, { signal });
        results.append(...r.items.map(eventItem));
        if (!r.items.length) findMsg.say('Nothing matches.', 'info');
      } else findMsg.say('This server has no search: give the event id (ev_…).', 'info');
    } catch (err) {
      if (err.name !== 'AbortError') findMsg.say(err.status === 404 ? `No event ${text}.` : err.message);
    }
  });

  const mine = recalled(EVENTS_KEY);
  const venues = recalled(VENUES_KEY);
  const upcoming = el('ul', { class: 'bo-list', id: 'bo-upcoming', 'aria-busy': 'true' });
  main.append(el('h1', {}, 'Box office'),
    el('div', { class: 'bo-grid' },
      el('section', { class: 'card stack', 'aria-labelledby': 'bo-do-h' },
        el('h2', { id: 'bo-do-h' }, 'Set up a sale'),
        el('p', {}, el('a', { href: '#/admin/venues/new', class: 'button', id: 'bo-new-venue' }, 'New venue'), ' ',
          el('a', { href: '#/admin/events/new', class: 'button secondary', id: 'bo-new-event' }, 'New event')),
        el('p', { class: 'small muted' }, 'A venue is sections of rows of seats with price tiers; an event at it copies its seats, prices each tier and is published at once (on sale from its onsale time). ',
          'Each event\'s page has its live dashboard, onsale and waiting-room settings, and audit history.'),
        el('p', {}, el('a', { href: '#/admin/scan' }, 'Ticket scanner'), el('span', { class: 'muted small' }, ' · for the doors'))),
      form),
    el('div', { class: 'bo-grid' },
      el('section', { class: 'card', 'aria-labelledby': 'bo-mine-h' },
        el('h2', { id: 'bo-mine-h' }, 'Created in this browser'),
        mine.length ? el('ul', { class: 'bo-list' }, ...mine.map(eventItem)) : el('p', { class: 'muted small' }, 'No events yet.'),
        venues.length ? el('p', { class: 'small' }, 'Venues: ', ...venues.flatMap((v, k) => [k ? ', ' : '',
          el('a', { href: `#/admin/events/new?venue=${encodeURIComponent(v.id)}` }, `${v.name} (${v.id})`)])) : null),
      el('section', { class: 'card', 'aria-labelledby': 'bo-up-h' }, el('h2', { id: 'bo-up-h' }, 'Next events'), upcoming)));

  boApi('GET', '/v1/events?limit=10', { signal }).then((r) => {
    upcoming.replaceChildren(...r.items.map(eventItem));
    upcoming.setAttribute('aria-busy', 'false');
  }).catch(() => upcoming.replaceChildren(el('li', { class: 'muted' }, 'Could not load events.')));
}

// ---- new venue ----------------------------------------------------------------------------------

function venueForm(page) {
  const { main, hooks } = page;
  const name = el('input', { id: 'v-name', name: 'name', required: true, maxlength: 200 });
  const city = el('input', { id: 'v-city', name: 'city', required: true, maxlength: 200 });
  const address = el('input', { id: 'v-address', name: 'address', maxlength: 200 });
  const lat = el('input', { id: 'v-lat', name: 'lat', type: 'number', step: 'any', min: -90, max: 90, required: true, inputmode: 'decimal' });
  const lon = el('input', { id: 'v-lon', name: 'lon', type: 'number', step: 'any', min: -180, max: 180, required: true, inputmode: 'decimal' });
  const tiers = el('input', { id: 'v-tiers', name: 'tiers', value: 'premium, standard', required: true });
  const body = el('tbody', { id: 'v-sections' });
  const total = el('p', { class: 'total', id: 'v-total', role: 'status' });
  const preview = el('canvas', { class: 'venue-preview', id: 'v-preview', role: 'img', 'aria-label': 'Preview of the layout' });
  const msg = messageBox('v-message');
  const done = el('section', { class: 'card order', id: 'venue-created', hidden: true, 'aria-labelledby': 'vc-h' });
  const submit = el('button', { type: 'submit', id: 'v-create' }, 'Create venue');

  const tierList = () => [...new Set(tiers.value.split(',').map((t) => t.trim()).filter(Boolean))];
  let k = 0;
  const addSection = (s = {}) => {
    k++;
    const tier = el('select', { name: 'tier', 'aria-label': `Tier of section ${k}` });
    const row = el('tr', {},
      el('td', {}, el('input', { name: 'name', required: true, maxlength: 50, value: s.name ?? '', 'aria-label': `Name of section ${k}` })),
      el('td', {}, el('input', { name: 'rows', type: 'number', min: 1, max: 1000, required: true, value: s.rows ?? 10, 'aria-label': `Rows in section ${k}` })),
      el('td', {}, el('input', { name: 'seats', type: 'number', min: 1, max: 1000, required: true, value: s.seats ?? 20, 'aria-label': `Seats per row in section ${k}` })),
      el('td', {}, tier),
      el('td', {}, el('button', { type: 'button', class: 'icon small', 'aria-label': `Remove section ${k}`, onclick: () => { row.remove(); update(); } }, '×')));
    row.dataset.tier = s.tier ?? '';
    body.append(row);
    update();
    return row;
  };
  const sections = () => [...body.rows].map((r) => ({
    name: r.querySelector('[name=name]').value.trim(),
    rows: Number(r.querySelector('[name=rows]').value),
    seats_per_row: Number(r.querySelector('[name=seats]').value),
    tier: r.querySelector('[name=tier]').value,
  }));
  function update() {
    const list = tierList();
    for (const r of body.rows) {
      const select = r.querySelector('[name=tier]');
      const want = select.value || r.dataset.tier;
      select.replaceChildren(...list.map((t) => el('option', { value: t, selected: t === want }, t)));
    }
    const secs = sections();
    const seats = secs.reduce((n, s) => n + (s.rows > 0 && s.seats_per_row > 0 ? s.rows * s.seats_per_row : 0), 0);
    total.textContent = `${secs.length} section${secs.length === 1 ? '' : 's'} · ${num(seats)} seats`;
    drawPreview(preview, secs, tierColors(list));
  }
  body.addEventListener('input', update);
  tiers.addEventListener('input', update);
  const add = el('button', { type: 'button', class: 'secondary', id: 'v-add-section', onclick: () => addSection({ name: String.fromCharCode(65 + (body.rows.length % 26)) }).querySelector('input').focus() }, 'Add section');

  const form = el('form', { class: 'card stack', id: 'venue-form', 'aria-labelledby': 'v-h' },
    el('div', { class: 'form-grid' },
      field('v-name', 'Name', name), field('v-city', 'City', city), field('v-address', 'Address (optional)', address),
      field('v-lat', 'Latitude', lat), field('v-lon', 'Longitude', lon),
      field('v-tiers', 'Price tiers, best first', tiers, 'Comma-separated; each section sells at one tier.')),
    el('h2', { id: 'v-sec-h' }, 'Sections'),
    el('p', { class: 'small muted' }, 'Each section is a block of rows, numbered from 1, with seats numbered from 1 in each row (labels like A-3-12); blocks stand side by side.'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'bo-table', 'aria-labelledby': 'v-sec-h' },
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Section'), el('th', { scope: 'col' }, 'Rows'), el('th', { scope: 'col' }, 'Seats per row'), el('th', { scope: 'col' }, 'Tier'), el('th', { scope: 'col' }, el('span', { class: 'sr-only' }, 'Remove')))),
      body)),
    el('div', { class: 'row wrap' }, add, total),
    preview,
    el('div', { class: 'row' }, submit), msg);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.say('');
    const list = tierList();
    if (!body.rows.length) return msg.say('Add at least one section.');
    submit.disabled = true;
    try {
      const venue = await boApi('POST', '/v1/venues', {
        body: {
          name: name.value.trim(), city: city.value.trim(), lat: Number(lat.value), lon: Number(lon.value),
          address: address.value.trim() || undefined, tiers: list, sections: sections(),
        },
      });
      remember(VENUES_KEY, { id: venue.id, name: venue.name, city: venue.city, tiers: venue.tiers, seat_count: venue.seat_count });
      hooks.admin.venue = venue;
      done.replaceChildren(el('h2', { id: 'vc-h' }, 'Venue created'),
        el('p', {}, el('strong', {}, venue.name), `, ${venue.city}: `, el('code', { id: 'venue-id' }, venue.id), ` · ${num(venue.seat_count)} seats · tiers ${venue.tiers.join(', ')}`),
        el('p', {}, el('a', { href: `#/admin/events/new?venue=${encodeURIComponent(venue.id)}`, class: 'button', id: 'venue-new-event' }, 'Create an event here')));
      done.hidden = false;
      done.querySelector('a').focus();
    } catch (err) {
      msg.say(err.message);
    } finally {
      submit.disabled = false;
    }
  });

  main.append(el('h1', { id: 'v-h' }, 'New venue'), done, form);
  addSection({ name: 'A', rows: 10, seats: 20, tier: 'premium' });
  addSection({ name: 'B', rows: 15, seats: 24, tier: 'standard' });
  name.focus();
}

/** The layout of `sections` as the server lays them out: blocks side by side, 2 seats apart. */
function drawPreview(canvas, sections, colors) {
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 160;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const ok = sections.filter((s) => s.rows > 0 && s.seats_per_row > 0 && s.rows <= 1000 && s.seats_per_row <= 1000);
  if (!ok.length) return;
  const width = ok.reduce((x, s) => x + s.seats_per_row, 0) + 2 * (ok.length - 1);
  const height = Math.max(...ok.map((s) => s.rows));
  const scale = Math.min((w - 8) / width, (h - 22) / height);
  let x0 = 0;
  ctx.font = '12px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  for (const s of ok) {
    const px = 4 + x0 * scale, pw = s.seats_per_row * scale, ph = s.rows * scale;
    ctx.fillStyle = colors[s.tier] || '#5b21b6';
    if (scale >= 4 && s.rows * s.seats_per_row <= 20000) {
      const r = Math.max(1, scale * 0.35);
      for (let row = 0; row < s.rows; row++) {
        for (let n = 0; n < s.seats_per_row; n++) {
          ctx.beginPath();
          ctx.arc(px + (n + 0.5) * scale, 18 + (row + 0.5) * scale, r, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    } else ctx.fillRect(px, 18, Math.max(pw, 1), Math.max(ph, 1));
    ctx.fillStyle = '#15171c';
    ctx.fillText(s.name, px, 2);
    x0 += s.seats_per_row + 2;
  }
}

// ---- new event ----------------------------------------------------------------------------------

async function knownVenues(signal) {
  const venues = new Map();
  for (const v of recalled(VENUES_KEY)) venues.set(v.id, `${v.name}, ${v.city}`);
  let cursor = null;
  for (let i = 0; i < 5; i++) {
    const q = new URLSearchParams({ limit: '100' });
    if (cursor) q.set('cursor', cursor);
    const r = await boApi('GET', `/v1/events?${q}`, { signal });
    for (const e of r.items) if (!venues.has(e.venue_id)) venues.set(e.venue_id, `${e.venue_name}, ${e.city}`);
    cursor = r.next_cursor;
    if (!cursor) break;
  }
  return venues;
}

function eventForm(page, venueParam) {
  const { main, signal } = page;
  const venue = el('select', { id: 'e-venue', name: 'venue', required: true }, el('option', { value: '' }, 'Loading venues…'));
  const venueId = el('input', { id: 'e-venue-id', name: 'venue_id', placeholder: 've_12', pattern: 've_[0-9]+', hidden: true, 'aria-label': 'Venue id' });
  const venueInfo = el('p', { class: 'small muted', id: 'e-venue-info', role: 'status' });
  const name = el('input', { id: 'e-name', name: 'name', required: true, maxlength: 200 });
  const category = el('input', { id: 'e-category', name: 'category', required: true, maxlength: 200, value: 'concert', list: 'e-categories' });
  const categories = el('datalist', { id: 'e-categories' }, ...['concert', 'sports', 'theatre', 'comedy', 'festival', 'family', 'opera', 'dance', 'conference', 'film'].map((c) => el('option', { value: c })));
  const performer = el('input', { id: 'e-performer', name: 'performer', maxlength: 200 });
  const genre = el('input', { id: 'e-genre', name: 'genre', maxlength: 200 });
  const start = new Date(Date.now() + 30 * 86400_000);
  start.setHours(20, 0, 0, 0);
  const startsAt = el('input', { id: 'e-starts', name: 'starts_at', type: 'datetime-local', required: true, value: toLocalInput(start.toISOString()) });
  const onsaleAt = el('input', { id: 'e-onsale', name: 'onsale_at', type: 'datetime-local', required: true, value: toLocalInput(new Date().toISOString()) });
  const currency = el('select', { id: 'e-currency', name: 'currency' }, ...CURRENCIES.map((c) => el('option', { value: c }, c)));
  const prices = el('div', { class: 'form-grid', id: 'e-prices' }, el('p', { class: 'muted small' }, 'Pick a venue to price its tiers.'));
  const description = el('textarea', { id: 'e-description', name: 'description', rows: 3, maxlength: 10000 });
  const submit = el('button', { type: 'submit', id: 'e-publish' }, 'Publish event');
  const msg = messageBox('e-message');
  let tiers = [];

  const chosenVenue = () => (venue.value === '_other' ? venueId.value.trim() : venue.value);
  const loadTiers = async () => {
    const id = chosenVenue();
    tiers = [];
    prices.replaceChildren(el('p', { class: 'muted small' }, 'Pick a venue to price its tiers.'));
    venueInfo.textContent = '';
    if (!/^ve_\d+$/.test(id)) return;
    try {
      const v = await boApi('GET', `/v1/venues/${encodeURIComponent(id)}`, { signal });
      if (chosenVenue() !== id) return;
      tiers = v.tiers;
      venueInfo.textContent = `${v.name}, ${v.city} · ${num(v.seat_count)} seats · ${v.tiers.length} tier${v.tiers.length === 1 ? '' : 's'}`;
      prices.replaceChildren(...v.tiers.map((t, i) => field(`e-price-${i}`, `${cap(t)} price`,
        el('input', { id: `e-price-${i}`, name: `price-${t}`, 'data-tier': t, type: 'number', min: 0, max: 1000000, step: '0.01', required: true, inputmode: 'decimal', value: String(Math.max(10, 90 - 25 * i)) }))));
    } catch (err) {
      if (err.name !== 'AbortError') venueInfo.textContent = err.status === 404 ? `No venue ${id}.` : err.message;
    }
  };
  venue.addEventListener('change', () => {
    venueId.hidden = venue.value !== '_other';
    if (!venueId.hidden) venueId.focus();
    loadTiers();
  });
  venueId.addEventListener('change', loadTiers);

  const form = el('form', { class: 'card stack', id: 'event-form', 'aria-labelledby': 'e-h' },
    el('div', { class: 'form-grid' },
      el('div', { class: 'field' }, el('label', { for: 'e-venue' }, 'Venue'), venue, venueId, venueInfo),
      field('e-name', 'Name', name), field('e-category', 'Category', category), categories,
      field('e-performer', 'Performer (optional)', performer), field('e-genre', 'Performer\'s genre (optional)', genre),
      field('e-starts', 'Starts at', startsAt), field('e-onsale', 'On sale from', onsaleAt, 'Fans can hold seats from this time; before it the event is listed as coming soon.')),
    el('h2', {}, 'Prices'),
    el('div', { class: 'row wrap' }, el('label', { for: 'e-currency' }, 'Currency'), currency),
    prices,
    field('e-description', 'Description (optional)', description),
    el('p', { class: 'small muted' }, 'Publishing lists the event for fans at once (search picks it up within a second). The waiting room and the onsale time can be changed on its dashboard.'),
    el('div', { class: 'row' }, submit), msg);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.say('');
    const venue_id = chosenVenue();
    if (!tiers.length) return msg.say('Pick a venue first (its tiers are priced here).');
    submit.disabled = true;
    try {
      const body = {
        name: name.value.trim(), venue_id, category: category.value.trim(),
        starts_at: fromLocalInput(startsAt.value), onsale_at: fromLocalInput(onsaleAt.value),
        prices: Object.fromEntries([...prices.querySelectorAll('input[data-tier]')].map((i) => [i.dataset.tier, { amount: Math.round(Number(i.value) * 100), currency: currency.value }])),
      };
      if (description.value.trim()) body.description = description.value.trim();
      if (performer.value.trim()) {
        const p = await boApi('POST', '/v1/performers', { body: { name: performer.value.trim(), genre: genre.value.trim() || undefined } });
        body.performer_ids = [p.id];
      }
      const ev = await boApi('POST', '/v1/events', { body });
      remember(EVENTS_KEY, { id: ev.id, name: ev.name, starts_at: ev.starts_at, city: ev.city });
      page.toast(`Published ${ev.name}.`);
      location.hash = `#/admin/events/${encodeURIComponent(ev.id)}?created=1`;
    } catch (err) {
      msg.say(err.message);
    } finally {
      submit.disabled = false;
    }
  });

  main.append(el('h1', { id: 'e-h' }, 'New event'), form);
  name.focus();
  knownVenues(signal).then((venues) => {
    venue.replaceChildren(el('option', { value: '' }, 'Choose a venue…'),
      ...[...venues].map(([id, text]) => el('option', { value: id }, `${text} (${id})`)),
      el('option', { value: '_other' }, 'Another venue, by id…'));
    if (venueParam && !venues.has(venueParam)) venue.insertBefore(el('option', { value: venueParam }, venueParam), venue.lastChild);
    if (venueParam) {
      venue.value = venueParam;
      loadTiers();
    }
  }).catch((err) => {
    if (err.name !== 'AbortError') msg.say(`Could not list venues: ${err.message}`);
  });
}

// ---- dashboard ----------------------------------------------------------------------------------

function eventTabs(eventId, here) {
  const id = encodeURIComponent(eventId);
  const link = (key, href, text) => el('a', { href, 'aria-current': key === here ? 'page' : null, id: `tab-${key}` }, text);
  return el('nav', { class: 'tabs', 'aria-label': 'Event' },
    link('dashboard', `#/admin/events/${id}`, 'Dashboard and settings'),
    link('audit', `#/admin/events/${id}/audit`, 'Audit history'),
    link('fan', `#/event/${id}`, 'Fan page'));
}

function saleTag(e) {
  if (e.status === 'cancelled') return el('span', { class: 'tag bad' }, 'Cancelled');
  if (Date.parse(e.starts_at) <= Date.now()) return el('span', { class: 'tag muted' }, 'Started');
  if (Date.parse(e.onsale_at) > Date.now()) return el('span', { class: 'tag soon' }, `On sale ${dateTime(e.onsale_at)}`);
  return el('span', { class: 'tag good' }, 'Published · on sale now');
}

function dashboardPage(page, eventId, params) {
  const { main, signal, hooks } = page;
  const title = el('h1', {}, eventId);
  const meta = el('p', { class: 'event-meta' });
  const banner = messageBox('dash-banner');
  const tile = (id, label) => el('div', { class: `stat ${id}` }, el('dt', {}, label), el('dd', { id: `stat-${id}` }, '–'));
  const bar = el('div', { class: 'stock-bar', id: 'stock-bar', role: 'img', 'aria-label': 'Seats by state' },
    el('span', { class: 'sold' }), el('span', { class: 'held' }), el('span', { class: 'available' }));
  const spark = el('canvas', { class: 'spark', id: 'holds-spark', role: 'img', 'aria-label': 'Holds per second, last two minutes' });
  const updated = el('p', { class: 'live small', id: 'stats-updated' }, 'Connecting…');
  const statsBox = el('section', { class: 'card', 'aria-labelledby': 'stats-h', id: 'stats' },
    el('div', { class: 'row wrap between' }, el('h2', { id: 'stats-h' }, 'Live'), updated),
    el('dl', { class: 'stats' }, tile('sold', 'Sold'), tile('held', 'Held'), tile('available', 'Available'),
      tile('hps', 'Holds per second'), tile('queue', 'In the waiting room'), tile('revenue', 'Revenue')),
    bar,
    el('div', { class: 'legend-row small muted' }, el('span', { class: 'key sold' }, 'sold'), el('span', { class: 'key held' }, 'held'), el('span', { class: 'key available' }, 'available')),
    spark);

  // Sale settings.
  const nameIn = el('input', { id: 's-name', name: 'name', maxlength: 200, required: true });
  const onsaleIn = el('input', { id: 's-onsale', name: 'onsale_at', type: 'datetime-local', required: true });
  const startsIn = el('input', { id: 's-starts', name: 'starts_at', type: 'datetime-local', required: true });
  const saleMsg = messageBox('s-message');
  const saleBtn = el('button', { type: 'submit', id: 's-save' }, 'Save');
  const nowBtn = el('button', { type: 'button', class: 'secondary', id: 's-onsale-now' }, 'On sale now');
  const saleForm = el('form', { class: 'card stack', id: 'sale-form', 'aria-labelledby': 's-h' },
    el('h2', { id: 's-h' }, 'Onsale'),
    el('div', { class: 'form-grid' }, field('s-name', 'Name', nameIn), field('s-onsale', 'On sale from', onsaleIn), field('s-starts', 'Starts at', startsIn)),
    el('div', { class: 'row wrap' }, saleBtn, nowBtn), saleMsg);

  const qEnabled = el('input', { id: 'q-enabled', name: 'enabled', type: 'checkbox' });
  const qRate = el('input', { id: 'q-rate', name: 'admit_rate_per_second', type: 'number', min: 1, max: 1000000, required: true });
  const qTtl = el('input', { id: 'q-ttl', name: 'token_ttl_seconds', type: 'number', min: 1, max: 86400, required: true });
  const qMax = el('input', { id: 'q-max', name: 'max_length', type: 'number', min: 1, max: 100000000, required: true });
  const qPow = el('input', { id: 'q-pow', name: 'proof_of_work_bits', type: 'number', min: 0, max: 32, required: true });
  const queueMsg = messageBox('q-message');
  const queueForm = el('form', { class: 'card stack', id: 'queue-form', 'aria-labelledby': 'q-h' },
    el('h2', { id: 'q-h' }, 'Waiting room'),
    el('div', { class: 'check' }, qEnabled, el('label', { for: 'q-enabled' }, 'On: holds need an admission from the waiting room')),
    el('div', { class: 'form-grid' },
      field('q-rate', 'Fans let in per second', qRate), field('q-ttl', 'Admission valid for (seconds)', qTtl),
      field('q-max', 'Longest line', qMax), field('q-pow', 'Proof of work (bits, 0 = off)', qPow, 'Each join costs about 2^bits hashes in the browser; 16-20 slows bots, not fans.')),
    el('div', { class: 'row' }, el('button', { type: 'submit', id: 'q-save' }, 'Save waiting room')), queueMsg);

  const cancelMsg = messageBox('c-message');
  const cancelBtn = el('button', { type: 'button', class: 'danger', id: 'c-cancel' }, 'Cancel this event…');
  const cancelBox = el('section', { class: 'card stack danger-zone', 'aria-labelledby': 'c-h' },
    el('h2', { id: 'c-h' }, 'Cancel the event'),
    el('p', { class: 'small' }, 'Stops the sale and refunds every order (a background job, a few per second). It cannot be undone.'),
    el('div', { class: 'row wrap' }, cancelBtn), cancelMsg);

  main.append(eventTabs(eventId, 'dashboard'), title, meta, banner,
    el('div', { class: 'dash-grid' }, statsBox, el('div', { class: 'panel' }, saleForm, queueForm, cancelBox)));

  let event = null;
  const show = (e) => {
    event = e;
    hooks.admin.event = e;
    title.textContent = e.name;
    document.title = `${e.name} · box office`;
    meta.replaceChildren(el('code', {}, e.id), ` · ${dateTime(e.starts_at)} · ${e.venue.name}, ${e.city} · ${num(e.seat_count)} seats · `,
      saleTag(e), e.queue.enabled ? el('span', { class: 'tag soon' }, 'Waiting room on') : '');
    nameIn.value = e.name;
    onsaleIn.value = toLocalInput(e.onsale_at);
    startsIn.value = toLocalInput(e.starts_at);
    qEnabled.checked = e.queue.enabled;
    qRate.value = e.queue.admit_rate_per_second;
    qTtl.value = e.queue.token_ttl_seconds;
    qMax.value = e.queue.max_length;
    qPow.value = e.queue.proof_of_work_bits;
    const cancelled = e.status === 'cancelled';
    cancelBtn.disabled = cancelled;
    if (cancelled) cancelMsg.say('This event is cancelled; its orders are refunded.', 'info');
  };
  const patch = async (body, box) => {
    box.say('');
    try {
      const updated = await boApi('PATCH', `/v1/events/${encodeURIComponent(eventId)}`, { body, signal });
      show(updated);
      box.say(`Saved at ${new Date().toLocaleTimeString()}.`, 'success');
      return updated;
    } catch (err) {
      if (err.name !== 'AbortError') box.say(err.message);
      return null;
    }
  };
  saleForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = {};
    try {
      if (nameIn.value.trim() !== event.name) body.name = nameIn.value.trim();
      const onsale = fromLocalInput(onsaleIn.value), starts = fromLocalInput(startsIn.value);
      if (toLocalInput(onsale) !== toLocalInput(event.onsale_at)) body.onsale_at = onsale;
      if (toLocalInput(starts) !== toLocalInput(event.starts_at)) body.starts_at = starts;
    } catch (err) {
      return saleMsg.say(err.message);
    }
    if (!Object.keys(body).length) return saleMsg.say('Nothing changed.', 'info');
    patch(body, saleMsg);
  });
  nowBtn.addEventListener('click', () => patch({ onsale_at: new Date().toISOString() }, saleMsg));
  queueForm.addEventListener('submit', (e) => {
    e.preventDefault();
    patch({ queue: { enabled: qEnabled.checked, admit_rate_per_second: Number(qRate.value), token_ttl_seconds: Number(qTtl.value), max_length: Number(qMax.value), proof_of_work_bits: Number(qPow.value) } }, queueMsg);
  });
  cancelBtn.addEventListener('click', () => {
    const yes = el('button', { type: 'button', class: 'danger', id: 'c-confirm' }, 'Yes: cancel it and refund every order');
    const no = el('button', { type: 'button', class: 'secondary' }, 'Keep it');
    cancelMsg.say([el('p', {}, `Cancel ${event?.name || eventId} for good?`), el('div', { class: 'row wrap' }, yes, no)], 'warn');
    yes.focus();
    no.addEventListener('click', () => cancelMsg.say(''));
    yes.addEventListener('click', async () => {
      yes.disabled = no.disabled = true;
      if (await patch({ status: 'cancelled' }, cancelMsg)) cancelMsg.say('Cancelled. Every order is being refunded.', 'success');
    });
  });

  // Live numbers.
  const samples = [];
  let failures = 0;
  const setText = (id, text) => {
    const node = statsBox.querySelector(`#stat-${id}`);
    if (node.textContent !== text) node.textContent = text;
  };
  const showStats = (s) => {
    const total = s.seats.sold + s.seats.held + s.seats.available || 1;
    setText('sold', num(s.seats.sold));
    setText('held', num(s.seats.held));
    setText('available', num(s.seats.available));
    setText('hps', s.holds_per_second < 10 ? s.holds_per_second.toFixed(1) : num(Math.round(s.holds_per_second)));
    setText('queue', num(s.queue_length));
    setText('revenue', money(s.revenue));
    const [sold, held, avail] = bar.children;
    sold.style.width = `${(100 * s.seats.sold) / total}%`;
    held.style.width = `${(100 * s.seats.held) / total}%`;
    avail.style.width = `${(100 * s.seats.available) / total}%`;
    bar.setAttribute('aria-label', `${num(s.seats.sold)} sold, ${num(s.seats.held)} held, ${num(s.seats.available)} available`);
    samples.push(s.holds_per_second);
    if (samples.length > SPARK_SAMPLES) samples.shift();
    drawSpark(spark, samples);
  };
  const poll = async () => {
    if (document.hidden || signal.aborted) return;
    try {
      const s = await boApi('GET', `/v1/events/${encodeURIComponent(eventId)}/stats`, { signal, cache: 'no-store' });
      failures = 0;
      hooks.admin.stats = s;
      hooks.admin.statsUpdates = (hooks.admin.statsUpdates || 0) + 1;
      showStats(s);
      updated.textContent = `● Live · updated ${new Date().toLocaleTimeString()}`;
      updated.classList.add('ok');
    } catch (err) {
      if (err.name === 'AbortError') return;
      failures++;
      updated.textContent = `○ ${err.message}${failures > 1 ? ' (retrying)' : ''}`;
      updated.classList.remove('ok');
    }
  };

  (async () => {
    try {
      show(await freshEvent(eventId, signal));
      if (params.get('created')) {
        banner.say([`Published: fans can find ${event.name} in search and the events list now${Date.parse(event.onsale_at) > Date.now() ? `, and hold seats from ${dateTime(event.onsale_at)}` : ' and hold seats'}. `,
          el('a', { href: `#/event/${encodeURIComponent(eventId)}`, id: 'dash-fan-link' }, 'See the fan page')], 'success');
      }
      await poll();
      page.every(poll, STATS_EVERY_MS);
    } catch (err) {
      if (err.name === 'AbortError') return;
      title.textContent = 'Event not available';
      banner.say(err.status === 404 ? `No event ${eventId}.` : err.message);
    }
  })();
}

function drawSpark(canvas, samples) {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
  if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...samples);
  const step = w / (SPARK_SAMPLES - 1);
  const x0 = w - (samples.length - 1) * step;
  ctx.beginPath();
  samples.forEach((v, i) => {
    const x = x0 + i * step, y = h - 14 - (v / max) * (h - 20);
    if (i) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
  });
  ctx.strokeStyle = '#4c2a9e';
  ctx.lineWidth = 2;
  ctx.stroke();
  ctx.fillStyle = '#50566a';
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'bottom';
  ctx.fillText(`holds/s, last ${Math.round((samples.length * STATS_EVERY_MS) / 1000)} s (max ${max < 10 ? max.toFixed(1) : Math.round(max)})`, 2, h);
}

// ---- audit history ----------------------------------------------------------------------------

const AUDIT_KINDS = {
  SEAT_HELD: 'info', SEAT_RELEASED: 'muted', PAYMENT_INITIATED: 'soon', PAYMENT_FAILED: 'bad',
  SEAT_CONFIRMED: 'good', SEAT_REFUNDED: 'bad', TICKET_TRANSFERRED: 'info',
};

function auditPage(page, eventId) {
  const { main, signal, hooks } = page;
  const title = el('h1', {}, 'Audit history');
  const sub = el('p', { class: 'event-meta' }, el('code', {}, eventId));
  const kind = el('select', { id: 'a-kind', name: 'kind' }, el('option', { value: '' }, 'All changes'), ...Object.keys(AUDIT_KINDS).map((k) => el('option', { value: k }, k)));
  const from = el('input', { id: 'a-from', name: 'after', type: 'number', min: 0, value: 0, inputmode: 'numeric' });
  const follow = el('input', { id: 'a-follow', type: 'checkbox', checked: true });
  const status = el('p', { class: 'small muted', role: 'status', id: 'a-status' });
  const body = el('tbody', { id: 'audit-rows' });
  const more = el('button', { type: 'button', class: 'secondary', id: 'a-more', hidden: true }, 'Load more');
  const verifyBtn = el('button', { type: 'button', class: 'secondary', id: 'a-verify' }, 'Check the history');
  const verifyMsg = messageBox('a-verify-result');
  const table = el('table', { class: 'bo-table audit', 'aria-describedby': 'a-status' },
    el('caption', { class: 'sr-only' }, `Audit records of ${eventId}, oldest first`),
    el('thead', {}, el('tr', {}, ...['#', 'Time', 'Change', 'Seat', 'User', 'Hold / order', 'Reason'].map((h) => el('th', { scope: 'col' }, h)))),
    body);
  const controls = el('form', { class: 'filters', 'aria-label': 'Audit filters' },
    field('a-kind', 'Show', kind),
    field('a-from', 'After record #', from),
    el('div', { class: 'field' }, el('span', { class: 'label' }, 'Live'), el('div', { class: 'check' }, follow, el('label', { for: 'a-follow' }, 'Follow new records'))),
    el('div', { class: 'field actions' }, el('button', { type: 'submit' }, 'Show')));
  main.append(eventTabs(eventId, 'audit'), title, sub,
    el('p', { class: 'small muted' }, 'Every change of every seat, in order: held, released (with why), payment started or failed, confirmed, refunded, transferred. Gap-free numbers per event.'),
    controls, el('div', { class: 'row wrap' }, verifyBtn, status), verifyMsg, el('div', { class: 'table-wrap' }, table), more);

  let after = 0;
  let loading = false;
  let atEnd = false;
  let labels = null;
  let count = 0;
  hooks.admin.audit = { rows: 0, kinds: {} };
  const seatCell = (seat) => el('td', { 'data-seat': seat }, labels?.[seat] ?? `#${seat}`);
  const shortId = (id) => (id ? el('code', { title: id }, id.length > 14 ? `${id.slice(0, 12)}…` : id) : '');
  const applyFilter = (row) => (row.hidden = Boolean(kind.value) && row.dataset.kind !== kind.value);
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      const r = await boApi('GET', `/v1/events/${encodeURIComponent(eventId)}/audit?${new URLSearchParams({ after: String(after), limit: '100' })}`, { signal, cache: 'no-store' });
      for (const a of r.items) {
        const row = el('tr', { 'data-kind': a.type, 'data-seq': a.seq },
          el('td', { class: 'num' }, String(a.seq)),
          el('td', {}, el('time', { datetime: a.at }, new Date(a.at).toLocaleTimeString(undefined, { hour12: false }) + `.${String(new Date(a.at).getMilliseconds()).padStart(3, '0')}`)),
          el('td', {}, el('span', { class: `tag ${AUDIT_KINDS[a.type] || ''}` }, a.type)),
          seatCell(a.seat), el('td', {}, a.user), el('td', {}, shortId(a.order_id || a.hold_id)), el('td', {}, a.reason || ''));
        applyFilter(row);
        body.append(row);
        hooks.admin.audit.kinds[a.type] = (hooks.admin.audit.kinds[a.type] || 0) + 1;
        after = a.seq;
        count++;
      }
      while (body.rows.length > AUDIT_ROWS_KEPT) body.rows[0].remove();
      hooks.admin.audit.rows = count;
      atEnd = !r.next_cursor;
      more.hidden = atEnd;
      status.textContent = count
        ? `${num(count)} record${count === 1 ? '' : 's'} shown, up to #${after}${body.rows.length < count ? ` (the latest ${num(body.rows.length)} kept on screen)` : ''}${atEnd ? (follow.checked ? ' · following new records' : ' · the end') : ''}.`
        : atEnd ? `No records yet${follow.checked ? ' · following new records' : ''}.` : '';
    } catch (err) {
      if (err.name !== 'AbortError') status.textContent = err.status === 404 ? `No event ${eventId}.` : `Could not load the history: ${err.message}`;
    } finally {
      loading = false;
    }
  };
  more.addEventListener('click', load);
  kind.addEventListener('change', () => [...body.rows].forEach(applyFilter));
  controls.addEventListener('submit', (e) => {
    e.preventDefault();
    after = Math.max(0, Math.floor(Number(from.value) || 0));
    body.replaceChildren();
    count = 0;
    hooks.admin.audit = { rows: 0, kinds: {} };
    load();
  });
  follow.addEventListener('change', () => follow.checked && atEnd && load());
  page.every(() => {
    if (follow.checked && atEnd && !document.hidden) load();
  }, AUDIT_EVERY_MS);
  verifyBtn.addEventListener('click', async () => {
    verifyBtn.disabled = true;
    verifyMsg.say('Replaying the history…', 'info');
    try {
      const v = await boApi('GET', `/v1/events/${encodeURIComponent(eventId)}/audit/verify`, { signal });
      if (!v.mismatches.length) {
        verifyMsg.say(`The history is true: ${num(v.records)} records replay to the current seats (${num(v.sold)} sold, ${num(v.held)} held, ${num(v.available)} available) and orders.`, 'success');
      } else {
        verifyMsg.say([el('p', {}, `${num(v.mismatches.length)} mismatch${v.mismatches.length === 1 ? '' : 'es'} after replaying ${num(v.records)} records (a change during the check can show as one: check again at a quiet moment):`),
          el('ul', { class: 'small' }, ...v.mismatches.slice(0, 20).map((m) => el('li', {}, m)))], 'warn');
      }
    } catch (err) {
      if (err.name !== 'AbortError') verifyMsg.say(err.message);
    } finally {
      verifyBtn.disabled = false;
    }
  });

  freshEvent(eventId, signal).then((e) => {
    title.textContent = `Audit history: ${e.name}`;
    sub.replaceChildren(el('code', {}, e.id), ` · ${dateTime(e.starts_at)} · ${e.venue.name}, ${e.city}`);
  }).catch(() => {});
  // Seat labels for the Seat column (the geometry is cached for good by the browser).
  fetch(`/v1/events/${encodeURIComponent(eventId)}/seats`, { signal }).then((r) => (r.ok ? r.json() : null)).then((doc) => {
    if (!doc) return;
    labels = [];
    for (const s of doc.seats) labels[s.index] = s.label;
    for (const td of body.querySelectorAll('td[data-seat]')) td.textContent = labels[Number(td.dataset.seat)] ?? td.textContent;
  }).catch(() => {});
  load();
}

// ---- ticket scanner ---------------------------------------------------------------------------

const SCAN_RESULTS = {
  valid: ['good', 'Valid: let them in', 'The ticket is now marked scanned.'],
  already_scanned: ['warn', 'Already scanned: do not let in', 'This ticket was scanned before: a copy, or the same person twice.'],
  voided: ['bad', 'Voided: do not let in', 'The ticket was refunded or transferred; its owner has a newer one, or none.'],
  invalid: ['bad', 'Forged or unknown: do not let in', 'The signature does not check out, or no such ticket exists.'],
};

function scannerPage(page) {
  const { main, signal, hooks } = page;
  const payload = el('input', { id: 'scan-payload', name: 'qr_payload', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true, placeholder: 'eyJ… . …' });
  const check = el('button', { type: 'submit', id: 'scan-check' }, 'Check ticket');
  const result = el('div', { class: 'scan-result', id: 'scan-result', role: 'status', 'aria-live': 'assertive', 'aria-atomic': 'true', hidden: true });
  const log = el('ol', { class: 'scan-log', id: 'scan-log', reversed: true });
  const counts = el('p', { class: 'small muted', id: 'scan-counts' });
  const form = el('form', { class: 'card stack', id: 'scan-form', 'aria-labelledby': 'scan-h' },
    el('h2', { id: 'scan-h' }, 'Check a ticket'),
    field('scan-payload', 'QR payload', payload, 'Paste it, type it, or let a USB or Bluetooth scanner type it (it ends with Enter).'),
    el('div', { class: 'row' }, check));
  const camera = el('section', { class: 'card stack', 'aria-labelledby': 'cam-h', id: 'camera' }, el('h2', { id: 'cam-h' }, 'Camera'));
  main.append(el('h1', {}, 'Ticket scanner'), result, el('div', { class: 'bo-grid' }, form, camera),
    el('section', { class: 'card', 'aria-labelledby': 'log-h' }, el('h2', { id: 'log-h' }, 'This session'), counts, log));
  hooks.admin.scans = [];
  const tally = {};

  let busy = false;
  const verify = async (text) => {
    const qr = text.trim();
    if (!qr || busy) return;
    busy = true;
    check.disabled = true;
    try {
      const r = await boApi('POST', '/v1/tickets/verify', { body: { qr_payload: qr }, signal });
      const [kind, head, detail] = SCAN_RESULTS[r.result] || ['bad', `Unknown answer: ${r.result}`, ''];
      result.className = `scan-result ${kind}`;
      result.dataset.result = r.result;
      result.replaceChildren(...[el('strong', { class: 'scan-head' }, head),
        r.seat ? el('span', { class: 'scan-seat' }, `Seat ${r.seat}`) : null,
        el('span', { class: 'small' }, detail), r.ticket_id ? el('code', { class: 'small' }, r.ticket_id) : null].filter(Boolean));
      result.hidden = false;
      hooks.admin.scans.push(r);
      tally[r.result] = (tally[r.result] || 0) + 1;
      counts.textContent = Object.entries(tally).map(([k, n]) => `${num(n)} ${k.replace('_', ' ')}`).join(' · ');
      log.prepend(el('li', { class: `scan-${r.result}` }, el('time', {}, new Date().toLocaleTimeString()), ' ', el('span', { class: `tag ${kind === 'warn' ? 'soon' : kind}` }, r.result.replace('_', ' ')), r.seat ? ` ${r.seat}` : ''));
      while (log.children.length > 200) log.lastChild.remove();
      payload.value = '';
    } catch (err) {
      if (err.name === 'AbortError') return;
      result.className = 'scan-result bad';
      result.dataset.result = 'error';
      result.replaceChildren(el('strong', { class: 'scan-head' }, 'Could not check'), el('span', { class: 'small' }, err.message));
      result.hidden = false;
    } finally {
      busy = false;
      check.disabled = false;
      payload.focus();
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    verify(payload.value);
  });
  payload.focus();

  // Camera reading where the browser can: the Shape Detection API's BarcodeDetector.
  const note = el('p', { class: 'small', id: 'camera-note' });
  camera.append(note);
  if (!('BarcodeDetector' in window)) {
    note.textContent = 'This browser cannot read QR codes from the camera (it has no BarcodeDetector; Chrome on Android and macOS, and Edge, do). Paste or type the payload, or use a scanner that types it.';
    hooks.admin.camera = 'unsupported';
    return;
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    note.textContent = 'The camera needs a secure page (HTTPS, or localhost). Paste or type the payload meanwhile.';
    hooks.admin.camera = 'insecure';
    return;
  }
  const start = el('button', { type: 'button', id: 'camera-start' }, 'Scan with the camera');
  const video = el('video', { class: 'scan-video', muted: true, playsinline: true, hidden: true, 'aria-label': 'Camera view' });
  camera.append(start, video);
  note.textContent = 'Point the camera at a ticket\'s QR code; each code is checked once, as it comes into view.';
  hooks.admin.camera = 'available';
  let stream = null;
  let timer = 0;
  const stop = () => {
    clearInterval(timer);
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = true;
    start.textContent = 'Scan with the camera';
  };
  page.onDestroy(stop);
  start.addEventListener('click', async () => {
    if (stream) return stop();
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (!formats.includes('qr_code')) {
        note.textContent = 'This browser\'s BarcodeDetector cannot read QR codes here. Paste or type the payload.';
        start.remove();
        return;
      }
      const detector = new window.BarcodeDetector({ formats: ['qr_code'] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      start.textContent = 'Stop the camera';
      let last = '', lastAt = 0;
      timer = setInterval(async () => {
        if (busy || video.readyState < 2) return;
        try {
          const codes = await detector.detect(video);
          const text = codes[0]?.rawValue;
          if (!text || (text === last && Date.now() - lastAt < 4000)) return;
          last = text;
          lastAt = Date.now();
          verify(text);
        } catch {
          /* a frame that could not be read */
        }
      }, 250);
    } catch (err) {
      stop();
      note.textContent = err.name === 'NotAllowedError' ? 'The camera was not allowed. Paste or type the payload, or allow the camera and try again.' : `The camera could not start: ${err.message}`;
    }
  });
  if (signal.aborted) stop();
}
