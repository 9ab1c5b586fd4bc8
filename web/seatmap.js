// The seat map: a canvas of every seat of an event, coloured by state, with pan and zoom,
// hover, click/tap and keyboard selection.
//
// Two stacked canvases: `base` holds the seats (a full draw only when the view changes or
// a snapshot arrives; a live delta repaints just the seats it names), `overlay` holds the
// few marks that move often (hover, keyboard focus, selection rings) and is redrawn
// whole, cheaply. Seats live in typed arrays by seat index; a uniform grid over the
// geometry answers "which seat is here" and "the next seat to the right" in O(1)-ish.

const BACKGROUND = '#ffffff';
export const UNAVAILABLE_COLOR = '#c9ced6';
export const SELECTED_COLOR = '#f59e0b';
export const MINE_COLOR = '#d61f69';
const TIER_PALETTE = ['#5b21b6', '#0b63c5', '#0f7b53', '#a34d05', '#0e7490', '#7c2d12', '#4d7c0f', '#9d174d'];
const FLAG_SELECTED = 1;
const FLAG_MINE = 2;
const MIN_SCALE_FACTOR = 0.5; // of the fitted scale
const MAX_PIXELS_PER_SEAT = 48;

export function tierColors(tiers) {
  const colors = {};
  tiers.forEach((t, i) => (colors[t] = TIER_PALETTE[i % TIER_PALETTE.length]));
  return colors;
}

export class SeatMap {
  /**
   * @param {HTMLElement} container an empty element sized by CSS
   * @param {object} hooks onToggle(i), onHover(i or -1, clientX, clientY), onFocus(i, byKeyboard),
   *   onBounds(bounds, pitch) before the first draw, onView() after each full draw
   */
  constructor(container, hooks = {}) {
    this.container = container;
    this.hooks = hooks;
    this.base = document.createElement('canvas');
    this.base.className = 'seatmap-base';
    this.base.setAttribute('aria-hidden', 'true');
    this.overlay = document.createElement('canvas');
    this.overlay.className = 'seatmap-overlay';
    this.overlay.tabIndex = 0;
    this.overlay.setAttribute('role', 'application');
    this.overlay.setAttribute('aria-roledescription', 'seat map');
    container.append(this.base, this.overlay);
    this.ctx = this.base.getContext('2d', { alpha: false });
    this.octx = this.overlay.getContext('2d');
    this.n = 0;
    this.focus = -1;
    this.hover = -1;
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.fitted = true;
    this.stats = { fullDraws: 0, seatRepaints: 0, lastFullDrawMs: 0 };
    this.pending = 0;
    this.pointers = new Map();
    this.bindInput();
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(container);
  }

  destroy() {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.pending);
    this.container.replaceChildren();
  }

  /** Loads the geometry (`/seats` document) and the tier colours; all seats start unavailable. */
  load(doc, colors) {
    const seats = doc.seats;
    const n = seats.length;
    this.n = n;
    this.xs = new Float32Array(n);
    this.ys = new Float32Array(n);
    this.tier = new Uint8Array(n);
    this.labels = new Array(n);
    this.sections = new Array(n);
    this.tierNames = doc.tiers && doc.tiers.length ? doc.tiers.slice() : [...new Set(seats.map((s) => s.tier))];
    const tierIndex = new Map(this.tierNames.map((t, i) => [t, i]));
    let minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
    for (let k = 0; k < n; k++) {
      const s = seats[k];
      const i = s.index;
      this.xs[i] = s.x;
      this.ys[i] = s.y;
      this.labels[i] = s.label;
      this.sections[i] = s.section;
      let t = tierIndex.get(s.tier);
      if (t === undefined) {
        t = this.tierNames.length;
        this.tierNames.push(s.tier);
        tierIndex.set(s.tier, t);
      }
      this.tier[i] = t;
      if (s.x < minx) minx = s.x;
      if (s.x > maxx) maxx = s.x;
      if (s.y < miny) miny = s.y;
      if (s.y > maxy) maxy = s.y;
    }
    this.bounds = n ? { minx, miny, maxx, maxy } : { minx: 0, miny: 0, maxx: 1, maxy: 1 };
    this.pitch = this.estimatePitch(seats);
    this.bits = new Uint8Array(Math.ceil(n / 8));
    this.flags = new Uint8Array(n);
    this.cls = new Uint8Array(n); // 0 unavailable, 1+t tier t, T+1 selected, T+2 mine
    const T = this.tierNames.length;
    this.CLS_SELECTED = T + 1;
    this.CLS_MINE = T + 2;
    this.colors = [UNAVAILABLE_COLOR, ...this.tierNames.map((t, i) => colors[t] || TIER_PALETTE[i % TIER_PALETTE.length]), SELECTED_COLOR, MINE_COLOR];
    this.buildGrid();
    this.hooks.onBounds?.(this.bounds, this.pitch); // e.g. to size the container first
    this.resize(true);
  }

  /** Typical distance between neighbouring seats of a row (the 10th percentile of a sample). */
  estimatePitch(seats) {
    const d = [];
    for (let k = 1; k < seats.length && d.length < 4000; k += Math.max(1, Math.floor(seats.length / 8000))) {
      const a = seats[k - 1], b = seats[k];
      if (a.section === b.section && a.row === b.row) {
        const dist = Math.hypot(a.x - b.x, a.y - b.y);
        if (dist > 0) d.push(dist);
      }
    }
    if (!d.length) return 1;
    d.sort((p, q) => p - q);
    return d[Math.floor(d.length * 0.1)];
  }

  buildGrid() {
    const { minx, miny, maxx, maxy } = this.bounds;
    const area = Math.max((maxx - minx) * (maxy - miny), 1);
    const cell = Math.max(this.pitch * 2, Math.sqrt((area / Math.max(this.n, 1)) * 4));
    const gw = Math.max(1, Math.floor((maxx - minx) / cell) + 1);
    const gh = Math.max(1, Math.floor((maxy - miny) / cell) + 1);
    const counts = new Int32Array(gw * gh + 1);
    const cellOf = new Int32Array(this.n);
    for (let i = 0; i < this.n; i++) {
      const c = Math.floor((this.ys[i] - miny) / cell) * gw + Math.floor((this.xs[i] - minx) / cell);
      cellOf[i] = c;
      counts[c + 1]++;
    }
    for (let c = 0; c < gw * gh; c++) counts[c + 1] += counts[c];
    const fill = counts.slice(0, gw * gh);
    const items = new Int32Array(this.n);
    for (let i = 0; i < this.n; i++) items[fill[cellOf[i]]++] = i;
    this.grid = { cell, gw, gh, start: counts, items };
  }

  // ---- availability and marks ---------------------------------------------------------

  isAvailable(i) {
    return i >= 0 && i < this.n && ((this.bits[i >> 3] >> (i & 7)) & 1) === 1;
  }

  classOf(i) {
    const f = this.flags[i];
    if (f & FLAG_MINE) return this.CLS_MINE;
    if (f & FLAG_SELECTED) return this.CLS_SELECTED;
    return this.isAvailable(i) ? 1 + this.tier[i] : 0;
  }

  /** Replaces the whole bitmap and draws everything (the first paint). */
  setAvailability(bytes) {
    this.bits.set(bytes.subarray(0, this.bits.length));
    for (let i = 0; i < this.n; i++) this.cls[i] = this.classOf(i);
    this.drawAll();
  }

  /** Applies a snapshot as a difference: repaints only the seats whose bit changed. */
  diffAvailability(bytes) {
    const changed = [];
    for (let b = 0; b < this.bits.length; b++) {
      const x = this.bits[b] ^ bytes[b];
      if (!x) continue;
      for (let k = 0; k < 8; k++) if (x & (1 << k)) changed.push(b * 8 + k);
      this.bits[b] = bytes[b];
    }
    if (changed.length > this.n / 4) {
      for (let i = 0; i < this.n; i++) this.cls[i] = this.classOf(i);
      this.drawAll();
    } else {
      this.repaint(changed);
    }
    return changed.filter((i) => i < this.n);
  }

  /** Applies a delta's lists; repaints only those seats. */
  applyDelta(available, unavailable) {
    for (const i of available) if (i < this.n) this.bits[i >> 3] |= 1 << (i & 7);
    for (const i of unavailable) if (i < this.n) this.bits[i >> 3] &= ~(1 << (i & 7));
    this.repaint(available);
    this.repaint(unavailable);
  }

  setSelected(i, on) {
    this.setFlag(i, FLAG_SELECTED, on);
  }

  setMine(i, on) {
    this.setFlag(i, FLAG_MINE, on);
  }

  isSelected(i) {
    return (this.flags[i] & FLAG_SELECTED) !== 0;
  }

  isMine(i) {
    return (this.flags[i] & FLAG_MINE) !== 0;
  }

  setFlag(i, flag, on) {
    if (i < 0 || i >= this.n) return;
    const before = this.flags[i];
    this.flags[i] = on ? before | flag : before & ~flag;
    if (this.flags[i] !== before) {
      this.repaint([i]);
      this.drawOverlay();
    }
  }

  // ---- view -------------------------------------------------------------------------------

  resize(refit = false) {
    const r = this.container.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(r.width)), h = Math.max(1, Math.round(r.height));
    if (!refit && w === this.w && h === this.h && dpr === this.dpr) return;
    const old = { w: this.w, h: this.h };
    this.w = w;
    this.h = h;
    this.dpr = dpr;
    for (const c of [this.base, this.overlay]) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    if (!this.n) return;
    if (refit || this.fitted || !old.w) this.fit();
    else {
      this.view.tx += (w - old.w) / 2;
      this.view.ty += (h - old.h) / 2;
      this.schedule();
    }
  }

  fitScale() {
    const { minx, miny, maxx, maxy } = this.bounds;
    const pad = 12;
    return Math.min((this.w - 2 * pad) / (maxx - minx + this.pitch), (this.h - 2 * pad) / (maxy - miny + this.pitch));
  }

  fit() {
    const { minx, miny, maxx, maxy } = this.bounds;
    const scale = Math.max(this.fitScale(), 1e-6);
    this.view = { scale, tx: this.w / 2 - ((minx + maxx) / 2) * scale, ty: this.h / 2 - ((miny + maxy) / 2) * scale };
    this.fitted = true;
    this.schedule();
  }

  /** Zooms by `factor` keeping the point (cx, cy) (canvas CSS pixels) in place. */
  zoom(factor, cx = this.w / 2, cy = this.h / 2, gesture = false) {
    if (gesture) this.beginPreview();
    const min = this.fitScale() * MIN_SCALE_FACTOR;
    const max = MAX_PIXELS_PER_SEAT / this.pitch;
    const scale = Math.min(max, Math.max(min, this.view.scale * factor));
    const f = scale / this.view.scale;
    this.view = { scale, tx: cx - (cx - this.view.tx) * f, ty: cy - (cy - this.view.ty) * f };
    this.fitted = false;
    this.schedule();
  }

  pan(dx, dy, gesture = false) {
    if (gesture) this.beginPreview();
    this.view.tx += dx;
    this.view.ty += dy;
    this.fitted = false;
    this.schedule();
  }

  /** Centres seat `i`, at `pixelsPerSeat` if given. */
  centerOn(i, pixelsPerSeat) {
    if (pixelsPerSeat) this.view.scale = Math.min(MAX_PIXELS_PER_SEAT, pixelsPerSeat) / this.pitch;
    const s = this.view.scale;
    this.view.tx = this.w / 2 - this.xs[i] * s;
    this.view.ty = this.h / 2 - this.ys[i] * s;
    this.fitted = false;
    this.schedule();
  }

  /** Seat `i`'s centre in client (viewport) coordinates. */
  seatToClient(i) {
    const r = this.overlay.getBoundingClientRect();
    return { x: r.left + this.xs[i] * this.view.scale + this.view.tx, y: r.top + this.ys[i] * this.view.scale + this.view.ty };
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      if (this.preview) this.drawPreview();
      else this.drawAll();
    });
  }

  /**
   * During a drag, wheel or pinch on a big map (a full draw slower than a frame), frames
   * move and scale a copy of the last full draw instead of drawing every seat; the full
   * draw follows when the gesture settles.
   */
  beginPreview() {
    if (this.preview || this.stats.lastFullDrawMs < 12) return;
    const copy = (this.previewCanvas ||= document.createElement('canvas'));
    copy.width = this.base.width;
    copy.height = this.base.height;
    copy.getContext('2d').drawImage(this.base, 0, 0);
    this.preview = { ...this.view };
  }

  /** Ends the gesture's previews now (`delay` 0) or after `delay` ms without another. */
  settle(delay = 0) {
    clearTimeout(this.settleTimer);
    if (!this.preview) return;
    const done = () => {
      this.preview = null;
      this.schedule();
    };
    if (delay) this.settleTimer = setTimeout(done, delay);
    else done();
  }

  drawPreview() {
    const p = this.preview, v = this.view, d = this.dpr;
    const k = v.scale / p.scale;
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.base.width, this.base.height);
    ctx.drawImage(this.previewCanvas, (v.tx - p.tx * k) * d, (v.ty - p.ty * k) * d, this.base.width * k, this.base.height * k);
    this.stats.previewFrames = (this.stats.previewFrames || 0) + 1;
    this.drawOverlay();
  }

  // ---- drawing ----------------------------------------------------------------------------

  seatBox(i) {
    const d = this.dpr, s = this.view.scale;
    const size = Math.max(1, Math.round(Math.max(this.pitch * 0.8 * s, 1) * d));
    const x = Math.round((this.xs[i] * s + this.view.tx) * d - size / 2);
    const y = Math.round((this.ys[i] * s + this.view.ty) * d - size / 2);
    return [x, y, size];
  }

  /** Draws every seat (batched by colour, off-screen seats skipped) and the overlay. */
  drawAll() {
    if (this.pending) {
      cancelAnimationFrame(this.pending);
      this.pending = 0;
    }
    if (this.preview) {
      clearTimeout(this.settleTimer);
      this.preview = null;
    }
    const t0 = performance.now();
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.base.width, this.base.height);
    if (!this.n) return;
    const d = this.dpr, s = this.view.scale, tx = this.view.tx * d, ty = this.view.ty * d;
    const size = Math.max(1, Math.round(Math.max(this.pitch * 0.8 * s, 1) * d));
    const half = size / 2, sd = s * d, W = this.base.width, H = this.base.height;
    const xs = this.xs, ys = this.ys, cls = this.cls, n = this.n;
    // One pass to compute classes and screen positions of visible seats, bucketed by class.
    const buckets = this.colors.map(() => []);
    for (let i = 0; i < n; i++) {
      const c = this.classOf(i);
      cls[i] = c;
      const x = Math.round(xs[i] * sd + tx - half);
      const y = Math.round(ys[i] * sd + ty - half);
      if (x + size < 0 || y + size < 0 || x > W || y > H) continue;
      buckets[c].push(x, y);
    }
    for (let c = 0; c < buckets.length; c++) {
      const b = buckets[c];
      if (!b.length) continue;
      ctx.fillStyle = this.colors[c];
      for (let k = 0; k < b.length; k += 2) ctx.fillRect(b[k], b[k + 1], size, size);
    }
    this.stats.fullDraws++;
    this.stats.lastFullDrawMs = performance.now() - t0;
    this.drawOverlay();
    this.hooks.onView?.();
  }

  /** Repaints just these seats (a delta or a selection change). */
  repaint(indices) {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    for (const i of indices) {
      if (i < 0 || i >= this.n) continue;
      const c = this.classOf(i);
      this.cls[i] = c;
      const [x, y, size] = this.seatBox(i);
      if (x + size < 0 || y + size < 0 || x > this.base.width || y > this.base.height) continue;
      ctx.fillStyle = this.colors[c];
      ctx.fillRect(x, y, size, size);
      this.stats.seatRepaints++;
    }
  }

  drawOverlay() {
    const o = this.octx;
    o.setTransform(1, 0, 0, 1, 0, 0);
    o.clearRect(0, 0, this.overlay.width, this.overlay.height);
    if (!this.n) return;
    const d = this.dpr;
    const ring = (i, color, width, minSize, dash) => {
      const [x, y, size] = this.seatBox(i);
      const r = Math.max(size, minSize * d) / 2 + width * d;
      o.beginPath();
      o.setLineDash(dash ? [3 * d, 2 * d] : []);
      o.lineWidth = width * d;
      o.strokeStyle = color;
      o.arc(x + size / 2, y + size / 2, r, 0, Math.PI * 2);
      o.stroke();
    };
    for (let i = 0; i < this.n; i++) {
      if (this.flags[i] & FLAG_MINE) ring(i, MINE_COLOR, 1.5, 6);
      else if (this.flags[i] & FLAG_SELECTED) ring(i, '#111827', 1.5, 6);
    }
    if (this.hover >= 0) ring(this.hover, '#111827', 1.5, 8);
    if (this.focus >= 0 && document.activeElement === this.overlay) {
      ring(this.focus, '#ffffff', 4, 10);
      ring(this.focus, '#111827', 2, 10, true);
    }
  }

  // ---- finding seats ----------------------------------------------------------------------

  /** The seat at client-area point (cx, cy) in CSS pixels, or -1. */
  seatAt(cx, cy) {
    const s = this.view.scale;
    const wx = (cx - this.view.tx) / s, wy = (cy - this.view.ty) / s;
    const r = Math.max(this.pitch * 0.7, 6 / s);
    let best = -1, bestD = r * r;
    this.eachInBox(wx - r, wy - r, wx + r, wy + r, (i) => {
      const dx = this.xs[i] - wx, dy = this.ys[i] - wy, dd = dx * dx + dy * dy;
      if (dd <= bestD) {
        bestD = dd;
        best = i;
      }
    });
    return best;
  }

  eachInBox(x0, y0, x1, y1, f) {
    const { cell, gw, gh, start, items } = this.grid;
    const { minx, miny } = this.bounds;
    const cx0 = Math.max(0, Math.floor((x0 - minx) / cell)), cx1 = Math.min(gw - 1, Math.floor((x1 - minx) / cell));
    const cy0 = Math.max(0, Math.floor((y0 - miny) / cell)), cy1 = Math.min(gh - 1, Math.floor((y1 - miny) / cell));
    for (let gy = cy0; gy <= cy1; gy++) {
      for (let gx = cx0; gx <= cx1; gx++) {
        const c = gy * gw + gx;
        for (let k = start[c]; k < start[c + 1]; k++) f(items[k]);
      }
    }
  }

  /** The nearest seat from `i` in screen direction (dx, dy), within a 45° cone, or -1. */
  neighbour(i, dx, dy) {
    const x = this.xs[i], y = this.ys[i];
    const { cell } = this.grid;
    let best = -1, bestScore = Infinity;
    const maxRing = Math.max(this.grid.gw, this.grid.gh);
    for (let k = 1; k <= maxRing; k++) {
      const r = k * cell;
      this.eachInBox(x - r, y - r, x + r, y + r, (j) => {
        if (j === i) return;
        const ex = this.xs[j] - x, ey = this.ys[j] - y;
        const along = ex * dx + ey * dy;
        const across = Math.abs(ex * dy - ey * dx);
        if (along <= 1e-6 || across > along) return;
        const score = along + 2 * across;
        if (score < bestScore) {
          bestScore = score;
          best = j;
        }
      });
      if (best >= 0 && bestScore <= r) break;
      if (k > 12 && best >= 0) break;
    }
    return best;
  }

  // ---- input ------------------------------------------------------------------------------

  local(e) {
    const r = this.overlay.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  bindInput() {
    const o = this.overlay;
    o.addEventListener('pointerdown', (e) => {
      o.setPointerCapture(e.pointerId);
      const [x, y] = this.local(e);
      this.pointers.set(e.pointerId, { x, y, x0: x, y0: y, moved: false });
    });
    o.addEventListener('pointermove', (e) => {
      const [x, y] = this.local(e);
      const p = this.pointers.get(e.pointerId);
      if (!p) {
        if (e.pointerType === 'mouse') this.setHover(this.seatAt(x, y), e.clientX, e.clientY);
        return;
      }
      if (this.pointers.size === 2) {
        const [a, b] = [...this.pointers.values()];
        const before = Math.hypot(a.x - b.x, a.y - b.y);
        p.x = x;
        p.y = y;
        const after = Math.hypot(a.x - b.x, a.y - b.y);
        if (before > 0) this.zoom(after / before, (a.x + b.x) / 2, (a.y + b.y) / 2, true);
        a.moved = b.moved = true;
        return;
      }
      if (!p.moved && Math.hypot(x - p.x0, y - p.y0) > 5) p.moved = true;
      if (p.moved) {
        this.pan(x - p.x, y - p.y, true);
        this.setHover(-1);
      }
      p.x = x;
      p.y = y;
    });
    const end = (e) => {
      const p = this.pointers.get(e.pointerId);
      this.pointers.delete(e.pointerId);
      if (!this.pointers.size) this.settle();
      if (e.type === 'pointerup' && p && !p.moved && this.pointers.size === 0) {
        const i = this.seatAt(p.x, p.y);
        if (i >= 0) {
          this.focus = i;
          this.hooks.onToggle?.(i);
          this.hooks.onFocus?.(i, false);
          this.hooks.onHover?.(i, e.clientX, e.clientY); // its state changed
        }
      }
    };
    o.addEventListener('pointerup', end);
    o.addEventListener('pointercancel', end);
    o.addEventListener('pointerleave', (e) => {
      if (e.pointerType === 'mouse' && !this.pointers.size) this.setHover(-1);
    });
    o.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const [x, y] = this.local(e);
        this.zoom(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), x, y, true);
        this.settle(150);
      },
      { passive: false },
    );
    o.addEventListener('focus', () => {
      if (this.focus < 0) this.focus = this.firstFocus();
      this.drawOverlay();
      if (this.focus >= 0) this.hooks.onFocus?.(this.focus, true);
    });
    o.addEventListener('blur', () => this.drawOverlay());
    o.addEventListener('keydown', (e) => this.key(e));
  }

  /** The available seat nearest the view's centre (else any seat). */
  firstFocus() {
    if (!this.n) return -1;
    const cx = (this.w / 2 - this.view.tx) / this.view.scale, cy = (this.h / 2 - this.view.ty) / this.view.scale;
    let best = -1, bestD = Infinity;
    for (let i = 0; i < this.n; i++) {
      if (!this.isAvailable(i)) continue;
      const d = (this.xs[i] - cx) ** 2 + (this.ys[i] - cy) ** 2;
      if (d < bestD) {
        bestD = d;
        best = i;
      }
    }
    return best >= 0 ? best : 0;
  }

  key(e) {
    const dirs = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };
    if (dirs[e.key]) {
      e.preventDefault();
      if (this.focus < 0) this.focus = this.firstFocus();
      else {
        const j = this.neighbour(this.focus, ...dirs[e.key]);
        if (j >= 0) this.focus = j;
      }
      this.ensureVisible(this.focus);
      this.drawOverlay();
      this.hooks.onFocus?.(this.focus, true);
    } else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      if (this.focus >= 0) this.hooks.onToggle?.(this.focus);
    } else if (e.key === '+' || e.key === '=') {
      e.preventDefault();
      this.zoomAtFocus(1.5);
    } else if (e.key === '-') {
      e.preventDefault();
      this.zoomAtFocus(1 / 1.5);
    } else if (e.key === '0') {
      e.preventDefault();
      this.fit();
    }
  }

  zoomAtFocus(f) {
    if (this.focus >= 0) {
      this.zoom(f, this.xs[this.focus] * this.view.scale + this.view.tx, this.ys[this.focus] * this.view.scale + this.view.ty);
    } else this.zoom(f);
  }

  ensureVisible(i) {
    const x = this.xs[i] * this.view.scale + this.view.tx, y = this.ys[i] * this.view.scale + this.view.ty;
    const m = 4;
    if (x < m || y < m || x > this.w - m || y > this.h - m) this.centerOn(i);
  }

  setHover(i, clientX, clientY) {
    if (i === this.hover && i < 0) return;
    this.hover = i;
    this.drawOverlay();
    this.hooks.onHover?.(i, clientX, clientY);
  }
}
