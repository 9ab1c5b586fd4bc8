// The boxoffice web UI: event list, event page with the live seat map, hold, checkout,
// waiting room, and "My tickets". Hash routes (`#/`, `#/event/ev_1`, `#/tickets`), so
// the server serves one page at `/` and every other path stays the API's. The box office
// (`#/admin...`) lives in admin.js, loaded on its first visit.

import { api, auth, boxOffice, ApiError, money, dateTime, newKey, eventDetail, hasRoute, el } from './api.js';
import { SeatMap, tierColors, UNAVAILABLE_COLOR, SELECTED_COLOR, MINE_COLOR } from './seatmap.js';
import { solve } from './pow.js';

const MAX_SEATS = 8;
const main = document.getElementById('main');
const toastBox = document.getElementById('toast');
let view = null; // the current page: { destroy() }

// Hooks for tests and the curious: the live map's state, read-only.
const hooks = (window.__boxoffice = { ready: false, page: null, loads: 0 });

function toast(text) {
  toastBox.textContent = text;
  toastBox.classList.add('show');
  clearTimeout(toast.t);
  toast.t = setTimeout(() => toastBox.classList.remove('show'), 3500);
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    });
  });

function b64ToBytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function popcount(bytes, n) {
  let c = 0;
  for (let b = 0; b < bytes.length; b++) {
    let x = bytes[b];
    if (b === bytes.length - 1 && n % 8) x &= (1 << n % 8) - 1;
    while (x) {
      x &= x - 1;
      c++;
    }
  }
  return c;
}

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const plural = (n, one, many = one + 's') => `${n.toLocaleString()} ${n === 1 ? one : many}`;

// ---- account box --------------------------------------------------------------------------

function renderAccount() {
  const box = document.getElementById('account');
  const me = auth.current;
  if (me) {
    box.replaceChildren(
      el('span', { class: 'who' }, 'Signed in as ', el('strong', {}, me.user), me.role !== 'fan' ? ` (${me.role})` : ''),
      el('button', { type: 'button', class: 'link', onclick: () => { auth.logout(); toast('Signed out.'); } }, 'Sign out'),
    );
    return;
  }
  const user = el('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true, maxlength: 64, placeholder: 'name', 'aria-label': 'User name' });
  const email = el('input', { id: 'login-email', name: 'email', type: 'email', autocomplete: 'email', placeholder: 'email (optional)', 'aria-label': 'Email for tickets (optional)' });
  const role = el('select', { id: 'login-role', name: 'role', 'aria-label': 'Role' },
    el('option', { value: 'fan' }, 'fan'), el('option', { value: 'staff' }, 'staff'), el('option', { value: 'admin' }, 'admin'));
  const error = el('span', { class: 'error small', role: 'alert' });
  const form = el('form', { class: 'login', 'aria-label': 'Sign in (demo)' }, user, email, role, el('button', { type: 'submit' }, 'Sign in'), error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    try {
      const me = await auth.login(user.value.trim(), role.value, email.value.trim() || undefined);
      toast(`Signed in as ${me.user}.`);
    } catch (err) {
      error.textContent = err.status === 404 ? 'This server does not offer demo sign-in (run it with --demo or --dev-auth).' : err.message;
    }
  });
  box.replaceChildren(form);
}

function needLogin(where) {
  where?.(`Sign in first (top of the page) to continue.`);
  document.getElementById('login-user')?.focus();
}

// ---- routing ----------------------------------------------------------------------------------

function route() {
  view?.destroy?.();
  view = null;
  hooks.ready = false;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);
  main.replaceChildren();
  if (parts[0] === 'event' && parts[1]) view = eventPage(decodeURIComponent(parts[1]));
  else if (parts[0] === 'tickets') view = ticketsPage();
  else if (parts[0] === 'admin') view = boxOfficePage(parts.slice(1), params);
  else view = eventsPage(params);
  hooks.page = ['event', 'tickets', 'admin'].includes(parts[0]) ? parts[0] : 'events';
  const section = { events: '', tickets: 'tickets', admin: 'admin' }[hooks.page];
  for (const a of document.querySelectorAll('header nav a')) {
    if (section !== undefined && a.getAttribute('href') === `#/${section}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** The box office's pages, from admin.js (fetched on the first visit). */
function boxOfficePage(parts, params) {
  let inner = null;
  let gone = false;
  main.append(el('p', { class: 'muted' }, 'Loading the box office…'));
  import('./admin.js').then((m) => {
    if (gone) return;
    main.replaceChildren();
    inner = m.adminPage(parts, params, { main, toast, hooks });
  }).catch((err) => {
    if (!gone) main.replaceChildren(el('p', { class: 'message error', role: 'alert' }, `The box office could not load: ${err.message}`));
  });
  return {
    destroy() {
      gone = true;
      inner?.destroy();
    },
  };
}

/** The header's "Box office" link: there while a box-office session (admin or staff) is. */
function renderBoxOfficeLink() {
  const session = boxOffice.current;
  document.getElementById('nav-admin').hidden = !session;
  document.getElementById('foot-admin').textContent = session ? `Box office (${session.user})` : 'Box office sign-in';
}

// ---- events list ------------------------------------------------------------------------------

let facets = null; // {cities, categories} from the whole catalog, fetched once
async function loadFacets() {
  if (facets) return facets;
  const cities = new Set(), categories = new Set();
  let cursor = null;
  for (let page = 0; page < 10; page++) {
    const q = new URLSearchParams({ limit: '100' });
    if (cursor) q.set('cursor', cursor);
    const r = await api('GET', `/v1/events?${q}`, { auth: false });
    for (const e of r.items) {
      cities.add(e.city);
      categories.add(e.category);
    }
    cursor = r.next_cursor;
    if (!cursor) break;
  }
  facets = { cities: [...cities].sort(), categories: [...categories].sort() };
  return facets;
}

function eventsPage(params) {
  const abort = new AbortController();
  const q = Object.fromEntries(['q', 'city', 'category', 'from', 'to'].map((k) => [k, params.get(k) || '']));
  const h1 = el('h1', {}, 'Events');
  const list = el('ul', { class: 'events', 'aria-live': 'polite', 'aria-busy': 'true' });
  const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'More events');
  const status = el('p', { class: 'muted', role: 'status' });
  const city = el('select', { name: 'city', id: 'f-city' }, el('option', { value: '' }, 'All cities'));
  const category = el('select', { name: 'category', id: 'f-category' }, el('option', { value: '' }, 'All categories'));
  const from = el('input', { type: 'date', name: 'from', id: 'f-from', value: q.from });
  const to = el('input', { type: 'date', name: 'to', id: 'f-to', value: q.to });
  const search = el('input', { type: 'search', name: 'q', id: 'f-q', value: q.q, placeholder: 'Artist, team, show…' });
  const searchField = el('div', { class: 'field', hidden: true }, el('label', { for: 'f-q' }, 'Search'), search);
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    searchField,
    el('div', { class: 'field' }, el('label', { for: 'f-city' }, 'City'), city),
    el('div', { class: 'field' }, el('label', { for: 'f-category' }, 'Category'), category),
    el('div', { class: 'field' }, el('label', { for: 'f-from' }, 'From'), from),
    el('div', { class: 'field' }, el('label', { for: 'f-to' }, 'To'), to),
    el('div', { class: 'field actions' }, el('button', { type: 'submit' }, 'Show events'),
      el('a', { href: '#/', class: 'button secondary' }, 'Clear')));
  main.append(h1, form, status, list, more);

  const apply = () => {
    const p = new URLSearchParams();
    const values = { q: search.value.trim(), city: city.value, category: category.value, from: from.value, to: to.value };
    for (const [k, v] of Object.entries(values)) if (v) p.set(k, v);
    const next = `#/${p.toString() ? '?' + p : ''}`;
    if (location.hash === next || (next === '#/' && !location.hash)) route();
    else location.hash = next;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply();
  });
  for (const s of [city, category]) s.addEventListener('change', apply);

  loadFacets().then((f) => {
    for (const c of f.cities) city.append(el('option', { value: c, selected: c === q.city }, c));
    for (const c of f.categories) category.append(el('option', { value: c, selected: c === q.category }, cap(c)));
  }).catch(() => {});

  let useSearch = false;
  let cursor = null;
  const load = async () => {
    const p = new URLSearchParams({ limit: '20' });
    for (const k of ['city', 'category']) if (q[k]) p.set(k, q[k]);
    if (q.from) p.set('from', new Date(q.from + 'T00:00:00').toISOString());
    if (q.to) p.set('to', new Date(q.to + 'T23:59:59').toISOString());
    // Words go to the search index when the server has one; filters alone list the catalog by date.
    const viaSearch = useSearch && q.q;
    if (viaSearch) p.set('q', q.q);
    if (cursor) p.set('cursor', cursor);
    list.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', `${viaSearch ? '/v1/search' : '/v1/events'}?${p}`, { auth: false, signal: abort.signal });
      for (const e of r.items) list.append(eventCard(e));
      cursor = r.next_cursor;
      more.hidden = !cursor;
      const n = list.children.length;
      status.textContent = n ? `${plural(n, 'event')}${cursor ? ' so far' : ''}.` : 'No events match these filters.';
    } catch (e) {
      if (e.name !== 'AbortError') status.textContent = `Could not load events: ${e.message}`;
    } finally {
      list.setAttribute('aria-busy', 'false');
    }
  };
  more.addEventListener('click', load);
  hasRoute('/v1/search').then((yes) => {
    useSearch = yes;
    searchField.hidden = !yes;
    load();
  });
  return { destroy: () => abort.abort() };
}

function onSaleText(e) {
  if (e.status === 'cancelled') return ['Cancelled', 'bad'];
  const onsale = Date.parse(e.onsale_at);
  if (Date.parse(e.starts_at) <= Date.now()) return ['Started', 'muted'];
  if (onsale > Date.now()) return [`On sale ${dateTime(e.onsale_at)}`, 'soon'];
  return ['On sale now', 'good'];
}

function eventCard(e) {
  const [sale, kind] = onSaleText(e);
  return el('li', { class: 'event-card' },
    el('a', { href: `#/event/${encodeURIComponent(e.id)}`, class: 'event-link', 'data-event-id': e.id },
      el('span', { class: 'event-name' }, e.name)),
    el('p', { class: 'event-when' }, el('time', { datetime: e.starts_at }, dateTime(e.starts_at))),
    el('p', { class: 'event-where' }, `${e.venue_name}, ${e.city}`),
    el('p', { class: 'event-tags' },
      el('span', { class: 'tag' }, cap(e.category)),
      el('span', { class: `tag ${kind}` }, sale),
      el('span', { class: 'tag muted' }, plural(e.seat_count, 'seat'))));
}

// ---- event page -------------------------------------------------------------------------------

function holdKey(eventId) {
  return `boxoffice.hold.${auth.current?.user}.${eventId}`;
}

function eventPage(eventId) {
  const abort = new AbortController();
  const signal = abort.signal;
  const timers = new Set();
  performance.clearMarks('boxoffice:event-open');
  performance.mark('boxoffice:event-open');
  hooks.loads++;

  const S = {
    event: null,
    map: null,
    version: -1,
    selected: [], // seat indexes, in pick order
    hold: null,
    holdDeadline: 0,
    pending: null, // a hold request in flight: its seat indexes (or 'best')
    payKey: null,
    admission: null,
    refetching: false,
    es: null,
    labelIndex: null,
    stats: { deltas: 0, snapshots: 0, refetches: 0 },
  };

  // Layout.
  const title = el('h1', {}, 'Loading event…');
  const meta = el('p', { class: 'event-meta' });
  const legend = el('ul', { class: 'legend', 'aria-label': 'Seat colours' });
  const live = el('span', { class: 'live', role: 'status' }, 'Connecting…');
  const zoomOut = el('button', { type: 'button', class: 'icon', 'aria-label': 'Zoom out', title: 'Zoom out' }, '−');
  const zoomIn = el('button', { type: 'button', class: 'icon', 'aria-label': 'Zoom in', title: 'Zoom in' }, '+');
  const fit = el('button', { type: 'button', class: 'secondary small-btn', title: 'Show the whole venue' }, 'Fit');
  const mapBox = el('div', { class: 'seatmap', id: 'seatmap' });
  const tooltip = el('div', { class: 'tooltip', role: 'presentation', hidden: true });
  const help = el('p', { id: 'map-help', class: 'muted small' },
    'Drag to move, scroll or pinch to zoom, click a seat to pick it. Keyboard: arrow keys move between seats, Enter or Space picks, + and − zoom, 0 shows everything.');
  const announcer = el('p', { class: 'sr-only', 'aria-live': 'polite', id: 'seat-announcer' });
  const message = el('div', { class: 'message', role: 'alert', 'aria-live': 'assertive', id: 'message' });

  const selectionList = el('ul', { class: 'seat-list', id: 'selection-list' });
  const selectionTotal = el('p', { class: 'total' });
  const holdBtn = el('button', { type: 'button', id: 'hold-selected', disabled: true }, 'Hold selected seats');
  const clearBtn = el('button', { type: 'button', class: 'secondary', disabled: true }, 'Clear');
  const selectionBox = el('section', { class: 'card', 'aria-labelledby': 'sel-h' },
    el('h2', { id: 'sel-h' }, 'Your seats'), el('p', { class: 'muted small', id: 'sel-hint' }, `Pick up to ${MAX_SEATS} seats on the map, or let us find the best ones.`),
    selectionList, selectionTotal, el('div', { class: 'row' }, holdBtn, clearBtn));

  const bestCount = el('select', { id: 'best-count', 'aria-label': 'Number of seats' },
    ...Array.from({ length: MAX_SEATS }, (_, k) => el('option', { value: k + 1, selected: k === 1 }, String(k + 1))));
  const bestSection = el('select', { id: 'best-section', 'aria-label': 'Section' }, el('option', { value: '' }, 'any section'));
  const bestBtn = el('button', { type: 'button', id: 'hold-best' }, 'Hold best available');
  const bestBox = el('section', { class: 'card', 'aria-labelledby': 'best-h' },
    el('h2', { id: 'best-h' }, 'Best available'),
    el('div', { class: 'row wrap' }, el('label', { for: 'best-count' }, 'Seats'), bestCount, el('label', { for: 'best-section' }, 'in'), bestSection, bestBtn));

  const holdBox = el('section', { class: 'card hold', hidden: true, 'aria-labelledby': 'hold-h', id: 'hold-box' });
  const orderBox = el('section', { class: 'card order', hidden: true, 'aria-labelledby': 'order-h', id: 'order-box' });
  const queueBox = el('section', { class: 'card queue', hidden: true, 'aria-labelledby': 'queue-h', id: 'queue-box' });

  main.append(
    el('p', { class: 'crumbs' }, el('a', { href: '#/' }, '← All events')),
    title, meta,
    el('div', { class: 'event-grid' },
      el('div', { class: 'map-col' },
        el('div', { class: 'map-tools' }, legend, el('div', { class: 'row' }, live, zoomOut, zoomIn, fit)),
        mapBox, help, announcer),
      el('aside', { class: 'panel', 'aria-label': 'Booking' }, message, queueBox, orderBox, holdBox, selectionBox, bestBox)),
    tooltip);

  const say = (text, kind = 'error') => {
    message.className = `message ${kind}`;
    message.replaceChildren(...(Array.isArray(text) ? text : [text]));
    if (text) message.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  };
  const clearSay = () => say('', 'none');
  const interval = (f, ms) => {
    const t = setInterval(f, ms);
    timers.add(t);
    return t;
  };

  // Seat descriptions.
  const label = (i) => S.map.labels[i];
  const tierOf = (i) => S.map.tierNames[S.map.tier[i]];
  const priceOf = (i) => S.event?.prices?.[tierOf(i)];
  const stateOf = (i) =>
    S.map.isMine(i) ? 'yours' : S.map.isSelected(i) ? 'selected' : S.map.isAvailable(i) ? 'available' : 'unavailable';
  const describe = (i) => `${label(i)}, ${cap(tierOf(i))}${priceOf(i) ? ' ' + money(priceOf(i)) : ''}, ${stateOf(i)}`;

  // ---- map hooks
  const onHover = (i, x, y) => {
    if (i < 0) {
      tooltip.hidden = true;
      return;
    }
    tooltip.replaceChildren(el('strong', {}, label(i)), el('span', {}, `${cap(tierOf(i))} · ${money(priceOf(i))}`), el('span', { class: 'state' }, cap(stateOf(i))));
    tooltip.hidden = false;
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    tooltip.style.left = `${Math.min(x + 14, window.innerWidth - w - 8)}px`;
    tooltip.style.top = `${y + 14 + h > window.innerHeight ? y - h - 10 : y + 14}px`;
  };
  const onFocus = (i, keyboard) => {
    if (keyboard) announcer.textContent = describe(i);
    hooks.focus = i;
  };
  const onToggle = (i) => {
    clearSay();
    if (S.map.isMine(i)) {
      announcer.textContent = `${label(i)} is already yours.`;
      return;
    }
    if (S.hold) {
      say('Pay for or release the seats you are holding before picking others.', 'info');
      return;
    }
    const at = S.selected.indexOf(i);
    if (at >= 0) {
      S.selected.splice(at, 1);
      S.map.setSelected(i, false);
      announcer.textContent = `${label(i)} removed. ${plural(S.selected.length, 'seat')} picked.`;
    } else if (!S.map.isAvailable(i)) {
      announcer.textContent = `${label(i)} is not available.`;
      say(`${label(i)} is not available. Pick a coloured seat.`, 'info');
      return;
    } else if (S.selected.length >= MAX_SEATS) {
      say(`You can pick up to ${MAX_SEATS} seats at once.`, 'info');
      return;
    } else {
      S.selected.push(i);
      S.map.setSelected(i, true);
      announcer.textContent = `${label(i)} picked, ${money(priceOf(i))}. ${plural(S.selected.length, 'seat')} picked.`;
    }
    renderSelection();
  };

  function renderSelection() {
    selectionList.replaceChildren(
      ...S.selected.map((i) =>
        el('li', {},
          el('span', {}, label(i)), el('span', { class: 'muted' }, cap(tierOf(i))), el('span', {}, money(priceOf(i))),
          el('button', { type: 'button', class: 'icon small', 'aria-label': `Remove ${label(i)}`, onclick: () => onToggle(i) }, '×'))));
    const total = S.selected.reduce((sum, i) => sum + (priceOf(i)?.amount || 0), 0);
    const currency = S.selected.length ? priceOf(S.selected[0])?.currency : null;
    selectionTotal.textContent = S.selected.length ? `${plural(S.selected.length, 'seat')} · ${money({ amount: total, currency })}` : '';
    holdBtn.disabled = !S.selected.length || Boolean(S.pending) || Boolean(S.hold);
    clearBtn.disabled = !S.selected.length;
    holdBtn.textContent = S.selected.length ? `Hold ${plural(S.selected.length, 'seat')}` : 'Hold selected seats';
    bestBtn.disabled = Boolean(S.pending) || Boolean(S.hold);
    hooks.selected = S.selected.slice();
  }

  function clearSelection() {
    for (const i of S.selected) S.map.setSelected(i, false);
    S.selected = [];
    renderSelection();
  }

  /** Drops picked seats that someone else took (after a live update). */
  function dropTaken(indices) {
    if (S.pending) return;
    const taken = indices.filter((i) => S.map.isSelected(i) && !S.map.isAvailable(i) && !S.map.isMine(i));
    if (!taken.length) return;
    for (const i of taken) {
      S.map.setSelected(i, false);
      S.selected.splice(S.selected.indexOf(i), 1);
    }
    renderSelection();
    say(`Someone just took ${taken.map(label).join(', ')}. Pick another seat.`, 'warn');
  }

  // ---- live availability
  function setLive(text, ok) {
    const avail = S.map ? popcount(S.map.bits, S.map.n) : 0;
    live.textContent = text ?? `● Live · ${avail.toLocaleString()} of ${S.map.n.toLocaleString()} available`;
    live.classList.toggle('ok', ok !== false);
    hooks.version = S.version;
    hooks.availableCount = avail;
  }

  async function refetchSnapshot() {
    if (S.refetching) return;
    S.refetching = true;
    S.stats.refetches++;
    try {
      const r = await api('GET', `/v1/events/${encodeURIComponent(eventId)}/availability`, { raw: true, auth: false, headers: { accept: 'application/octet-stream' }, cache: 'no-store', signal });
      const v = Number(r.headers.get('seat-map-version'));
      const bytes = new Uint8Array(await r.arrayBuffer());
      if (v >= S.version) {
        dropTaken(S.map.diffAvailability(bytes));
        S.version = v;
        setLive();
      }
    } catch {
      /* the stream's next frame retries */
    } finally {
      S.refetching = false;
    }
  }

  function openStream() {
    const es = new EventSource(`/v1/events/${encodeURIComponent(eventId)}/availability/stream`);
    S.es = es;
    es.addEventListener('snapshot', (e) => {
      const d = JSON.parse(e.data);
      S.stats.snapshots++;
      if (d.version < S.version && e.lastEventId.split('.')[0] === S.epoch) return;
      S.epoch = e.lastEventId.split('.')[0];
      dropTaken(S.map.diffAvailability(b64ToBytes(d.bitmap_base64)));
      S.version = d.version;
      setLive();
    });
    es.addEventListener('delta', (e) => {
      const d = JSON.parse(e.data);
      if (d.version <= S.version) return; // already have it (a fetched snapshot got ahead)
      if (d.from !== S.version) {
        refetchSnapshot();
        return;
      }
      S.stats.deltas++;
      S.map.applyDelta(d.available, d.unavailable);
      S.version = d.version;
      dropTaken(d.unavailable);
      setLive();
    });
    es.addEventListener('open', () => setLive());
    es.addEventListener('error', () => {
      if (es.readyState !== EventSource.CLOSED) setLive('○ Reconnecting…', false);
      else setLive('○ Live updates stopped. Reload to resume.', false);
    });
  }

  // ---- hold
  function setHold(hold, deadline) {
    S.hold = hold;
    S.holdDeadline = deadline;
    clearSelection();
    for (const s of hold.seats) S.map.setMine(s.index, true);
    localStorage.setItem(holdKey(eventId), hold.hold_id);
    hooks.hold = hold;
    renderHold();
    renderSelection();
  }

  function endHold(keepMine) {
    if (!S.hold) return;
    if (!keepMine) for (const s of S.hold.seats) S.map.setMine(s.index, false);
    localStorage.removeItem(holdKey(eventId));
    S.hold = null;
    hooks.hold = null;
    holdBox.hidden = true;
    holdBox.replaceChildren();
    renderSelection();
  }

  const fmtLeft = (ms) => {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  };

  function renderHold() {
    const hold = S.hold;
    const countdown = el('span', { class: 'countdown', id: 'hold-countdown', role: 'timer', 'aria-live': 'off' }, fmtLeft(S.holdDeadline - Date.now()));
    const card = el('select', { id: 'card', name: 'card' },
      el('option', { value: 'tok_visa' }, 'Visa test card (approved)'),
      el('option', { value: 'tok_declined' }, 'Test card that is declined'));
    const email = el('input', { id: 'pay-email', type: 'email', name: 'email', autocomplete: 'email', value: auth.current?.email || '', placeholder: 'you@example.com' });
    const pay = el('button', { type: 'submit', id: 'pay' }, `Pay ${money(hold.total)}`);
    const release = el('button', { type: 'button', class: 'secondary', id: 'release' }, 'Release seats');
    const form = el('form', { class: 'pay-form', 'aria-label': 'Payment' },
      el('div', { class: 'field' }, el('label', { for: 'card' }, 'Card'), card),
      el('div', { class: 'field' }, el('label', { for: 'pay-email' }, 'Email for tickets (optional)'), email),
      el('div', { class: 'row' }, pay, release));
    holdBox.replaceChildren(
      el('h2', { id: 'hold-h' }, 'Held for you'),
      el('p', { class: 'hold-timer' }, 'Complete payment within ', countdown),
      el('ul', { class: 'seat-list' }, ...hold.seats.map((s) => el('li', {}, el('span', {}, s.label), el('span', {}, money(s.price))))),
      el('p', { class: 'total' }, `Total ${money(hold.total)}`),
      form);
    holdBox.hidden = false;
    let warned = false;
    const tick = () => {
      if (!S.hold || S.hold !== hold) return clearInterval(t);
      const left = S.holdDeadline - Date.now();
      countdown.textContent = fmtLeft(left);
      countdown.classList.toggle('urgent', left < 60_000);
      if (left < 60_000 && !warned) {
        warned = true;
        announcer.textContent = 'Less than a minute left to pay for your seats.';
      }
      if (left <= 0) {
        clearInterval(t);
        endHold(false);
        say('Your hold expired and the seats went back on sale. Pick seats again.', 'warn');
      }
    };
    const t = interval(tick, 250);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      pay.disabled = release.disabled = true;
      pay.textContent = 'Paying…';
      try {
        await checkout(card.value, email.value.trim());
      } finally {
        pay.disabled = release.disabled = false;
        pay.textContent = `Pay ${money(hold.total)}`;
      }
    });
    release.addEventListener('click', async () => {
      release.disabled = true;
      try {
        await api('DELETE', `/v1/holds/${encodeURIComponent(hold.hold_id)}`);
        endHold(false);
        say('Seats released.', 'info');
      } catch (err) {
        if (err.code === 'HOLD_EXPIRED') {
          endHold(false);
          say('That hold had already ended.', 'info');
        } else say(err.message);
      } finally {
        release.disabled = false;
      }
    });
  }

  async function requestHold(body, picked) {
    if (!auth.token) return needLogin(say);
    clearSay();
    S.pending = picked || 'best';
    renderSelection();
    try {
      for (;;) {
        const headers = {};
        if (S.admission && S.admission.until > Date.now()) headers['Admission-Token'] = S.admission.token;
        try {
          const started = Date.now();
          const hold = await api('POST', `/v1/events/${encodeURIComponent(eventId)}/holds`, { body, headers, signal });
          const ttl = Date.parse(hold.expires_at) - Date.parse(hold.created_at);
          setHold(hold, started + ttl);
          announcer.textContent = `Holding ${hold.seats.map((s) => s.label).join(', ')}.`;
          return;
        } catch (err) {
          if (err.code === 'NOT_ADMITTED') {
            S.admission = null;
            const ok = await waitingRoom();
            if (ok) continue;
            return;
          }
          throw err;
        }
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      if (err.code === 'SEATS_UNAVAILABLE') {
        const labels = err.body.seats || [];
        const gone = new Set(labels);
        for (const i of S.selected.filter((i) => gone.has(label(i)))) {
          S.map.setSelected(i, false);
          S.selected.splice(S.selected.indexOf(i), 1);
        }
        say(`Someone just took ${labels.join(', ') || 'one of those seats'}. ${S.selected.length ? 'The rest are still picked: ' : ''}Pick another seat and try again.`, 'warn');
      } else if (err.code === 'ORPHAN_SEAT') {
        say(`${err.message} Pick seats that leave no single empty seat between others.`, 'warn');
      } else if (err.status === 401) {
        needLogin(say);
      } else if (err.status === 429) {
        say(`${err.message} Try again in ${err.headers?.get('retry-after') || 'a few'} seconds.`);
      } else {
        say(err.message);
      }
    } finally {
      S.pending = null;
      renderSelection();
      dropTaken(S.selected.slice());
    }
  }

  holdBtn.addEventListener('click', () => {
    const picked = S.selected.slice();
    requestHold({ seats: picked.map(label) }, picked);
  });
  clearBtn.addEventListener('click', clearSelection);
  bestBtn.addEventListener('click', () => {
    clearSelection();
    const body = { best_available: { count: Number(bestCount.value) } };
    if (bestSection.value) body.best_available.section = bestSection.value;
    requestHold(body);
  });

  // ---- checkout
  async function checkout(token, email) {
    const hold = S.hold;
    if (!hold) return;
    clearSay();
    S.payKey ||= newKey();
    const body = { payment: { method: 'card', token } };
    if (email) body.email = email;
    try {
      const order = await api('POST', `/v1/holds/${encodeURIComponent(hold.hold_id)}/checkout`, { body, headers: { 'Idempotency-Key': S.payKey }, signal });
      S.payKey = null;
      if (order.status === 'pending_payment') {
        say('Your payment is being confirmed. Your tickets will appear under My tickets shortly.', 'info');
        return;
      }
      endHold(true);
      showOrder(order);
    } catch (err) {
      if (err.name === 'AbortError') return;
      // A final answer needs a new key next time; a lost or unfinished request retries with the same one.
      if (err.status && err.status < 500 && err.status !== 429 && err.code !== 'IN_PROGRESS') S.payKey = null;
      switch (err.code) {
        case 'PAYMENT_DECLINED':
          say(`Your card was declined. Your seats stay held for ${fmtLeft(S.holdDeadline - Date.now())}: try another card.`);
          break;
        case 'HOLD_EXPIRED':
          endHold(false);
          say('Your hold expired before the payment went through, and the seats went back on sale. Pick seats again.', 'warn');
          break;
        case 'ALREADY_CONFIRMED':
          endHold(true);
          say(['These seats are already yours. ', el('a', { href: '#/tickets' }, 'See your tickets')], 'info');
          break;
        case 'CHECKOUT_IN_PROGRESS':
        case 'IN_PROGRESS':
          say('A payment for these seats is already running. Wait a moment, then check My tickets.', 'info');
          break;
        default:
          say(err.message);
      }
    }
  }

  function showOrder(order) {
    hooks.order = order;
    orderBox.replaceChildren(
      el('h2', { id: 'order-h' }, 'Order confirmed'),
      el('p', {}, 'Order ', el('code', { class: 'order-id' }, order.order_id), ` · ${money(order.total)}`),
      el('ul', { class: 'seat-list' }, ...order.tickets.map((t) => el('li', {}, el('span', {}, t.seat), el('span', { class: 'muted' }, 'ticket issued')))),
      order.email ? el('p', { class: 'small' }, `Tickets are on their way to ${order.email}.`) : '',
      el('p', {}, el('a', { href: '#/tickets', class: 'button', id: 'to-tickets' }, 'See my tickets')));
    orderBox.hidden = false;
    say('Payment approved. Enjoy the show!', 'success');
    orderBox.querySelector('a')?.focus();
  }

  // ---- waiting room
  async function waitingRoom() {
    const qKey = `boxoffice.queue.${auth.current?.user}.${eventId}`;
    const progress = el('progress', { max: 100, value: 0, id: 'queue-progress' });
    const line = el('p', { class: 'queue-line', id: 'queue-status', role: 'status' }, 'Joining the waiting room…');
    const leave = el('button', { type: 'button', class: 'secondary' }, 'Leave the waiting room');
    const stop = new AbortController();
    const both = AbortSignal.any ? AbortSignal.any([signal, stop.signal]) : signal;
    leave.addEventListener('click', () => stop.abort());
    queueBox.replaceChildren(el('h2', { id: 'queue-h' }, 'Waiting room'),
      el('p', { class: 'small' }, 'This sale is busy, so fans go in a few at a time. Keep this page open: you move on by yourself when it is your turn.'),
      line, progress, leave);
    queueBox.hidden = false;
    hooks.queue = { state: 'joining' };
    const done = () => {
      queueBox.hidden = true;
      queueBox.replaceChildren();
    };
    try {
      const join = async () => {
        try {
          return await api('POST', `/v1/events/${encodeURIComponent(eventId)}/queue`, { signal: both });
        } catch (err) {
          if (err.code !== 'POW_REQUIRED' && err.code !== 'POW_INVALID') throw err;
          const ch = await api('POST', `/v1/events/${encodeURIComponent(eventId)}/queue/challenge`, { signal: both });
          let nonce = '0';
          if (ch.bits > 0) {
            line.textContent = 'Getting your place in line (a short computation)…';
            nonce = await solve(ch.challenge, ch.bits, { signal: both, progress: (n) => (progress.value = Math.min(99, (100 * n) / 2 ** ch.bits / 3)) });
          }
          return await api('POST', `/v1/events/${encodeURIComponent(eventId)}/queue`, { body: { pow: { challenge: ch.challenge, nonce } }, signal: both });
        }
      };
      let entry = null;
      const saved = localStorage.getItem(qKey);
      if (saved) entry = await api('GET', `/v1/events/${encodeURIComponent(eventId)}/queue/${encodeURIComponent(saved)}`, { signal: both }).catch(() => null);
      if (!entry || entry.state === 'expired') entry = await join();
      localStorage.setItem(qKey, entry.queue_id);
      let first = entry.position || null;
      for (;;) {
        hooks.queue = entry;
        if (entry.state === 'admitted' && entry.admission_token) {
          S.admission = { token: entry.admission_token, until: entry.admission_expires_at ? Date.parse(entry.admission_expires_at) : Date.now() + 60_000 };
          progress.value = 100;
          line.textContent = 'It is your turn! Holding your seats…';
          localStorage.removeItem(qKey);
          await sleep(300, both).catch(() => {});
          done();
          return true;
        }
        if (entry.state === 'expired') {
          localStorage.removeItem(qKey);
          line.textContent = 'Your place in line expired. Joining again…';
          entry = await join();
          localStorage.setItem(qKey, entry.queue_id);
          first = entry.position || null;
          continue;
        }
        if (entry.state === 'prequeue') {
          line.textContent = `The sale opens ${dateTime(S.event.onsale_at)}. You are in: places in line are drawn at random when it opens.`;
          progress.removeAttribute('value');
        } else {
          const pos = entry.position ?? 0;
          first ||= pos;
          const eta = entry.eta_seconds ?? 0;
          line.textContent = `You are number ${pos.toLocaleString()} in line · about ${eta < 60 ? `${Math.max(eta, 1)} s` : `${Math.ceil(eta / 60)} min`} to go.`;
          progress.value = first ? Math.round((100 * (first - pos + 1)) / (first + 1)) : 0;
        }
        await sleep(Math.max(1, entry.poll_after_seconds || 2) * 1000, both);
        try {
          entry = await api('GET', `/v1/events/${encodeURIComponent(eventId)}/queue/${encodeURIComponent(entry.queue_id)}`, { signal: both });
        } catch (err) {
          if (err.status !== 404) throw err;
          entry = { state: 'expired' }; // the server forgot it (restart): join again
        }
      }
    } catch (err) {
      done();
      if (err.name === 'AbortError') {
        if (!signal.aborted) say('You left the waiting room.', 'info');
      } else say(`Waiting room: ${err.message}`);
      return false;
    }
  }

  // ---- load
  // The map's box takes the venue's proportions (within the CSS limits) before the first draw.
  const onBounds = ({ minx, miny, maxx, maxy }, pitch) => {
    mapBox.style.aspectRatio = `${Math.max(maxx - minx, 1) + 8 * pitch} / ${Math.max(maxy - miny, 1) + 8 * pitch}`;
  };
  const mapHooks = { onHover, onFocus, onToggle, onBounds };
  S.map = new SeatMap(mapBox, mapHooks);
  S.map.overlay.setAttribute('aria-label', 'Seat map');
  S.map.overlay.setAttribute('aria-describedby', 'map-help');
  zoomIn.addEventListener('click', () => S.map.zoom(1.6));
  zoomOut.addEventListener('click', () => S.map.zoom(1 / 1.6));
  fit.addEventListener('click', () => S.map.fit());
  window.addEventListener('scroll', () => (tooltip.hidden = true), { passive: true, signal });

  Object.assign(hooks, {
    eventId,
    isAvailable: (i) => S.map.isAvailable(i),
    isMine: (i) => S.map.isMine(i),
    isSelected: (i) => S.map.isSelected(i),
    indexOf: (l) => (S.labelIndex ||= new Map(S.map.labels.map((x, i) => [x, i]))).get(l) ?? -1,
    labelOf: (i) => S.map.labels[i],
    seatToClient: (i) => S.map.seatToClient(i),
    centerOn: (i, px) => {
      S.map.centerOn(i, px);
      S.map.drawAll();
    },
    mapStats: () => ({ ...S.map.stats, ...S.stats }),
    hold: null,
    order: null,
    queue: null,
  });

  (async () => {
    try {
      const seatsP = fetch(`/v1/events/${encodeURIComponent(eventId)}/seats`, { signal }).then(async (r) => {
        if (!r.ok) throw new ApiError(r.status, 'SEATS', r.status === 404 ? 'No such event.' : `Could not load the seat map (${r.status}).`);
        return r.json();
      });
      const availP = api('GET', `/v1/events/${encodeURIComponent(eventId)}/availability`, { raw: true, auth: false, headers: { accept: 'application/octet-stream' }, cache: 'no-store', signal })
        .then(async (r) => ({ version: Number(r.headers.get('seat-map-version')), bytes: new Uint8Array(await r.arrayBuffer()) }));
      const event = await eventDetail(eventId);
      S.event = event;
      title.textContent = event.name;
      document.title = `${event.name} · boxoffice`;
      const [sale, kind] = onSaleText(event);
      meta.replaceChildren(el('time', { datetime: event.starts_at }, dateTime(event.starts_at)), ` · ${event.venue.name}, ${event.city} · `, el('span', { class: `tag ${kind}` }, sale));
      if (event.queue?.enabled) meta.append(el('span', { class: 'tag soon' }, 'Waiting room on'));
      const tiers = event.venue.tiers?.length ? event.venue.tiers : Object.keys(event.prices);
      const colors = tierColors(tiers);
      const swatch = (color, text) => el('li', {}, el('span', { class: 'swatch', dataset: { color } }), text);
      legend.replaceChildren(
        ...tiers.filter((t) => event.prices[t]).map((t) => swatch(colors[t], `${cap(t)} ${money(event.prices[t])}`)),
        swatch(SELECTED_COLOR, 'Picked'), swatch(MINE_COLOR, 'Yours'), swatch(UNAVAILABLE_COLOR, 'Taken'));
      for (const s of legend.querySelectorAll('.swatch')) s.style.background = s.dataset.color;

      const [doc, avail] = await Promise.all([seatsP, availP]);
      S.map.load(doc, colors);
      S.map.setAvailability(avail.bytes);
      S.version = avail.version;
      performance.mark('boxoffice:map-drawn');
      const m = performance.measure('boxoffice:map-first-paint', 'boxoffice:event-open', 'boxoffice:map-drawn');
      hooks.firstPaintMs = m.duration;
      hooks.fullDrawMs = S.map.stats.lastFullDrawMs;
      for (const sec of doc.sections) bestSection.append(el('option', { value: sec.name }, `section ${sec.name}`));
      setLive();
      openStream();
      hooks.ready = true;
      renderSelection();

      // What is already mine here: a hold from before a reload, and bought seats.
      if (auth.token) {
        const savedHold = localStorage.getItem(holdKey(eventId));
        if (savedHold) {
          try {
            const h = await api('GET', `/v1/holds/${encodeURIComponent(savedHold)}`, { signal });
            if (h.status === 'held' || h.status === 'confirming') setHold(h, Date.parse(h.expires_at));
            else localStorage.removeItem(holdKey(eventId));
          } catch {
            localStorage.removeItem(holdKey(eventId));
          }
        }
        const orders = await api('GET', '/v1/me/orders?limit=100', { signal }).catch(() => ({ items: [] }));
        for (const o of orders.items) {
          if (o.event_id !== eventId) continue;
          for (const t of o.tickets) if (t.status === 'valid' || t.status === 'scanned') S.map.setMine(t.seat_index, true);
        }
      }
    } catch (err) {
      if (err.name === 'AbortError') return;
      title.textContent = 'Event not available';
      say(err.message);
    }
  })();

  return {
    destroy() {
      abort.abort();
      for (const t of timers) clearInterval(t);
      S.es?.close();
      S.map?.destroy();
      tooltip.remove();
    },
  };
}

// ---- my tickets -------------------------------------------------------------------------------

/** Parses the server's QR SVG and keeps only drawing elements (no scripts, no handlers, no links). */
function safeSvg(text, name) {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const svg = doc.documentElement;
  if (svg.nodeName !== 'svg' || doc.querySelector('parsererror')) return null;
  for (const bad of svg.querySelectorAll('script, foreignObject, a, use, image, style')) bad.remove();
  for (const node of [svg, ...svg.querySelectorAll('*')]) {
    for (const attr of [...node.attributes]) {
      if (/^on/i.test(attr.name) || /href$/i.test(attr.name) || attr.name === 'style') node.removeAttribute(attr.name);
    }
  }
  const out = document.importNode(svg, true);
  out.setAttribute('role', 'img');
  out.setAttribute('aria-label', name);
  out.removeAttribute('width');
  out.removeAttribute('height');
  out.classList.add('qr');
  return out;
}

function ticketsPage() {
  const abort = new AbortController();
  const signal = abort.signal;
  const status = el('p', { class: 'muted', role: 'status' });
  const list = el('ul', { class: 'orders' });
  const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'More orders');
  main.append(el('h1', {}, 'My tickets'), status, list, more);
  if (!auth.token) {
    status.textContent = 'Sign in (top of the page) to see your tickets.';
    return { destroy() {} };
  }
  const qrQueue = [];
  let running = 0;
  const pump = () => {
    while (running < 4 && qrQueue.length) {
      const job = qrQueue.shift();
      running++;
      job().finally(() => {
        running--;
        pump();
      });
    }
  };
  const loadQr = (ticket, box) => async () => {
    try {
      const r = await api('GET', `/v1/tickets/${encodeURIComponent(ticket.ticket_id)}/qr.svg`, { raw: true, headers: { accept: 'image/svg+xml' }, signal });
      const svg = safeSvg(await r.text(), `QR code of ticket ${ticket.seat}`);
      box.replaceChildren(svg || el('span', { class: 'muted small' }, 'QR code unavailable'));
    } catch (err) {
      if (err.name !== 'AbortError') box.replaceChildren(el('span', { class: 'muted small' }, `QR code unavailable: ${err.message}`));
    }
  };
  let cursor = null;
  const load = async () => {
    const p = new URLSearchParams({ limit: '20' });
    if (cursor) p.set('cursor', cursor);
    try {
      const page = await api('GET', `/v1/me/orders?${p}`, { signal });
      for (const o of page.items) {
        const eventName = el('span', {}, o.event_id);
        const eventWhen = el('span', { class: 'muted' });
        eventDetail(o.event_id).then((e) => {
          eventName.textContent = e.name;
          eventWhen.textContent = ` · ${dateTime(e.starts_at)} · ${e.venue.name}, ${e.city}`;
        }).catch(() => {});
        const tickets = el('ul', { class: 'tickets' });
        for (const t of o.tickets) {
          const qr = el('div', { class: 'qr-box', 'aria-busy': 'true' }, el('span', { class: 'muted small' }, 'Loading QR code…'));
          const live = t.status === 'valid' || t.status === 'scanned';
          tickets.append(el('li', { class: `ticket ${t.status}`, 'data-ticket-id': t.ticket_id },
            live ? qr : el('div', { class: 'qr-box void' }, cap(t.status)),
            el('div', {}, el('strong', { class: 'seat' }, t.seat), el('p', { class: 'small' }, `${money(t.price)} · ${cap(t.status)}`), el('p', { class: 'small muted mono' }, t.ticket_id))));
          if (live) qrQueue.push(loadQr(t, qr));
        }
        list.append(el('li', { class: 'order-card card' },
          el('h2', {}, el('a', { href: `#/event/${encodeURIComponent(o.event_id)}` }, eventName), eventWhen),
          el('p', { class: 'small' }, `Order `, el('code', {}, o.order_id), ` · ${cap(o.status.replace('_', ' '))} · ${money(o.total)} · ${dateTime(o.created_at)}`),
          tickets));
      }
      pump();
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = list.children.length ? '' : 'No tickets yet. Find an event and pick your seats!';
    } catch (err) {
      if (err.name !== 'AbortError') status.textContent = `Could not load your orders: ${err.message}`;
    }
  };
  more.addEventListener('click', load);
  load();
  return { destroy: () => abort.abort() };
}

// ---- start ------------------------------------------------------------------------------------

auth.listeners.add(renderAccount);
// Holds, orders and tickets belong to the signed-in user: show them afresh for another one.
auth.listeners.add(() => {
  if (hooks.page !== 'events' && hooks.page !== 'admin') route();
});
// The box office's pages follow its session (which may be the header's admin sign-in).
boxOffice.listeners.add(() => {
  renderBoxOfficeLink();
  if (hooks.page === 'admin') route();
});
renderAccount();
renderBoxOfficeLink();
window.addEventListener('hashchange', route);
route();
