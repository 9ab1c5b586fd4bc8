// The API client: bearer token from localStorage, JSON in and out, the API's error body
// turned into an ApiError with its code and message. Two sessions: the fan's (`auth`, the
// header's sign-in) and the box office's (`boxOffice`: an admin or staff token, pasted or
// minted by the dev login, used only by the box-office pages).

const AUTH_KEY = 'boxoffice.auth';
const BOX_OFFICE_KEY = 'boxoffice.box-office';

/** An answer >= 400 (or a network failure: status 0). */
export class ApiError extends Error {
  constructor(status, code, message, body, headers) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body || {};
    this.headers = headers;
  }
}

function decodeJwt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

/** The signed-in user: `{token, user, role, email, exp}` or null (expired tokens drop out). */
export const auth = {
  listeners: new Set(),
  get current() {
    return savedSession(AUTH_KEY);
  },
  get token() {
    return this.current?.token || null;
  },
  /** Mints a token with the server's dev login (`--dev-auth` or `--demo`). */
  async login(user, role, email) {
    const body = { user, role };
    if (email) body.email = email;
    const { token } = await api('POST', '/v1/auth/token', { body, auth: false });
    const claims = decodeJwt(token) || {};
    const saved = { token, user: claims.sub || user, role: claims.role || role, email: claims.email || email || null, exp: claims.exp || null };
    localStorage.setItem(AUTH_KEY, JSON.stringify(saved));
    this.changed();
    return saved;
  },
  logout() {
    localStorage.removeItem(AUTH_KEY);
    this.changed();
  },
  changed() {
    for (const f of this.listeners) f(this.current);
  },
};

/** Claims of a saved session, or null when absent or expired (then it is dropped). */
function savedSession(key) {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(key) || 'null');
  } catch {
    saved = null;
  }
  if (saved && saved.exp && saved.exp * 1000 <= Date.now()) {
    localStorage.removeItem(key);
    return null;
  }
  return saved;
}

const STAFF_ROLES = ['admin', 'staff'];

/**
 * The box office's session: `{token, user, role, exp, source}` with role `admin` (every
 * box-office page) or `staff` (the ticket scanner only). Its own token (`source: 'token'`
 * when pasted, `'dev'` when minted by the dev login) or, failing that, the header's sign-in
 * when that is an admin or staff one (`source: 'shared'`).
 */
export const boxOffice = {
  listeners: new Set(),
  get current() {
    const own = savedSession(BOX_OFFICE_KEY);
    if (own) return own;
    const fan = auth.current;
    return fan && STAFF_ROLES.includes(fan.role) ? { ...fan, source: 'shared' } : null;
  },
  get token() {
    return this.current?.token || null;
  },
  get isAdmin() {
    return this.current?.role === 'admin';
  },
  /**
   * Signs in with a token from elsewhere (e.g. minted with the server's JWT secret). The
   * server checks it: an admin route answers 404 for an unknown event only to an admin,
   * 403 to other roles and 401 to a token it does not accept.
   */
  async useToken(raw) {
    const token = raw.trim().replace(/^Bearer\s+/i, '');
    const claims = decodeJwt(token);
    if (!claims || !claims.sub) throw new ApiError(400, 'BAD_TOKEN', 'That is not a token (expected a JWT: three base64url parts separated by dots).');
    if (!STAFF_ROLES.includes(claims.role)) throw new ApiError(400, 'NOT_STAFF', `That token is for a ${claims.role || 'user without a role'}; the box office needs an admin or staff token.`);
    if (claims.exp && claims.exp * 1000 <= Date.now()) throw new ApiError(400, 'EXPIRED', 'That token has expired.');
    try {
      await api('GET', '/v1/events/ev_0/stats', { token, signOutOn401: false });
    } catch (err) {
      if (err.status === 401) throw new ApiError(401, err.code, 'The server does not accept that token (another server, or a different JWT secret).');
      if (!(err.status === 404 || (err.status === 403 && claims.role === 'staff'))) throw err;
    }
    return this.save({ token, user: claims.sub, role: claims.role, exp: claims.exp || null, source: 'token' });
  },
  /** Mints an admin token with the server's dev login (`--dev-auth` or `--demo`). */
  async devLogin(user) {
    const { token } = await api('POST', '/v1/auth/token', { body: { user, role: 'admin' }, auth: false });
    const claims = decodeJwt(token) || {};
    return this.save({ token, user: claims.sub || user, role: claims.role || 'admin', exp: claims.exp || null, source: 'dev' });
  },
  save(session) {
    localStorage.setItem(BOX_OFFICE_KEY, JSON.stringify(session));
    this.changed();
    return session;
  },
  signOut() {
    if (localStorage.getItem(BOX_OFFICE_KEY)) localStorage.removeItem(BOX_OFFICE_KEY);
    else if (this.current?.source === 'shared') auth.logout();
    this.changed();
  },
  changed() {
    for (const f of this.listeners) f(this.current);
  },
};
auth.listeners.add(() => boxOffice.changed());

window.addEventListener('storage', (e) => {
  if (e.key === AUTH_KEY) auth.changed();
  if (e.key === BOX_OFFICE_KEY) boxOffice.changed();
});

/**
 * Calls the API. `body` is sent as JSON; `auth` (default true) adds the fan's bearer token
 * when signed in, `token` sends that one instead (the box office's); `raw` returns the
 * Response itself. Resolves to the parsed JSON (null for 204). A 401 to a saved token
 * signs that session out (unless `signOutOn401` is false).
 */
export async function api(method, path, { body, headers = {}, auth: withAuth = true, token: explicit, signOutOn401 = true, raw = false, signal, cache } = {}) {
  const h = { accept: 'application/json', ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  const token = explicit || (withAuth ? auth.token : null);
  if (token) h.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal, cache });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK', 'The server could not be reached. Check your connection and try again.');
  }
  if (response.ok && raw) return response;
  const type = response.headers.get('content-type') || '';
  const data = type.startsWith('application/json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    const error = data?.error || {};
    if (response.status === 401 && token && signOutOn401) {
      // The token no longer verifies (expired or another server's secret): sign out.
      if (auth.token === token) {
        localStorage.removeItem(AUTH_KEY);
        auth.changed();
      }
      if (savedSession(BOX_OFFICE_KEY)?.token === token) {
        localStorage.removeItem(BOX_OFFICE_KEY);
        boxOffice.changed();
      }
    }
    throw new ApiError(
      response.status,
      error.code || `HTTP_${response.status}`,
      error.message || `The server answered ${response.status} ${response.statusText}.`,
      error,
      response.headers,
    );
  }
  if (raw) return response;
  return response.status === 204 ? null : data;
}

/** `{amount, currency}` as text, e.g. `$95.00`. */
export function money(m) {
  if (!m) return '';
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency }).format(m.amount / 100);
  } catch {
    return `${(m.amount / 100).toFixed(2)} ${m.currency}`;
  }
}

export function dateTime(iso) {
  const d = new Date(iso);
  return d.toLocaleString(undefined, { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** A fresh idempotency key (crypto.randomUUID needs a secure context; fall back to getRandomValues). */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Event details, cached per page load (they change rarely; the server caches them 60 s). */
const eventCache = new Map();
export function eventDetail(id) {
  if (!eventCache.has(id)) {
    const p = api('GET', `/v1/events/${encodeURIComponent(id)}`, { auth: false });
    p.catch(() => eventCache.delete(id));
    eventCache.set(id, p);
  }
  return eventCache.get(id);
}

/** Whether the server serves a route (read from /openapi.json once). */
let openapi = null;
export async function hasRoute(path) {
  openapi ||= fetch('/openapi.json').then((r) => (r.ok ? r.json() : { paths: {} })).catch(() => ({ paths: {} }));
  return Boolean((await openapi).paths?.[path]);
}

/** Minimal element builder: `el('p', {class: 'x', onclick}, 'text', child)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
