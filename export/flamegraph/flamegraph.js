// Ember's interactive flame graph. It reads the profile's call tree from the
// #ember-data JSON (written by flamegraph.go, see writeHTML for its layout)
// and draws it on a canvas: only frames at least half a pixel wide are drawn,
// so the cost of a redraw depends on the window, not on the profile.
//
// State lives in the URL fragment (#type=cpu&zoom=main&node=12&search=re&layout=icicle),
// so a view can be shared, and is published after each drawing as data-
// attributes of #ember-state, which tests read with a headless browser.
'use strict';
(function () {
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById('ember-data').textContent);
  const S = D.strings;
  const KERNEL = 1, PROCESS = 2;
  const ROW = 16; // frame height in CSS pixels, as flamegraph.pl's
  const MIN_PX = 0.5; // frames narrower than this are not drawn
  const HIGHLIGHT = 'rgb(230,0,230)';

  // ---- Tree: parents and subtree ends from the preorder depths. ----
  // The tree drawn (T) is the page's tree (BASE), or a view derived from it
  // (views, below): hiding wakers or the cause grouping.
  let T, N, parent, end, maxDepth, values;
  function setTree(t) {
    T = t; N = t.frame.length; maxDepth = 0;
    parent = new Int32Array(N); end = new Int32Array(N);
    const open = [];
    for (let i = 0; i < N; i++) {
      const d = t.depth[i];
      while (open.length > d) end[open.pop()] = i;
      parent[i] = open.length ? open[open.length - 1] : -1;
      open.push(i);
      if (d > maxDepth) maxDepth = d;
    }
    while (open.length) end[open.pop()] = N;
    values = t.values;
    xsCol = -1;
  }
  // Values per column, multiplied back by their scale.
  const BASE = {
    frame: D.frame, depth: D.depth, line: D.line, cause: null,
    values: D.values.map((a, c) => {
      const s = D.types[c].scale, v = new Float64Array(a.length);
      for (let i = 0; i < a.length; i++) v[i] = a[i] * s;
      return v;
    }),
  };

  // ---- Colours: the same palette as flamegraph.go (frameColour, diffColour). ----
  const utf8 = new TextEncoder();
  function nameHash(s) { // FNV-1a over UTF-8, split in three numbers in [0, 1)
    let h = 0x811c9dc5;
    for (const b of utf8.encode(s)) h = Math.imul(h ^ b, 0x01000193);
    h >>>= 0;
    return [(h & 0x3ff) / 1024, ((h >>> 10) & 0x3ff) / 1024, ((h >>> 20) & 0x3ff) / 1024];
  }
  const ch = (base, span, v) => base + Math.floor(span * v);
  const rgb = (r, g, b) => 'rgb(' + r + ',' + g + ',' + b + ')';
  const colourCache = [new Map(), new Map()];
  function frameColour(f, off) {
    const cache = colourCache[off ? 1 : 0];
    let c = cache.get(f);
    if (c) return c;
    const [a, b, cc] = nameHash(S[D.frameName[f]]), kind = D.frameKind[f];
    if (kind === PROCESS) { const g = ch(190, 30, a); c = rgb(g, g, g); }
    else if (off && kind === KERNEL) c = rgb(ch(100, 40, a), ch(150, 40, b), ch(160, 30, cc));
    else if (off) c = rgb(ch(60, 60, a), ch(120, 60, b), ch(210, 45, cc));
    else if (kind === KERNEL) c = rgb(ch(180, 40, a), ch(130, 40, b), ch(70, 30, cc));
    else c = rgb(ch(205, 50, a), ch(30, 190, b), ch(0, 55, cc));
    cache.set(f, c);
    return c;
  }
  // A diff frame's colour is the change of its self value, scaled by the
  // largest change of any frame (as flamegraph.pl colours differentials).
  let xs = null, xsCol = -1; // xs[i]: left edge of node i in value units, for column xsCol
  setTree(BASE);
  let selfDelta = null, maxDelta = 0;
  if (D.diff) {
    selfDelta = new Float64Array(N);
    for (let i = 0; i < N; i++) selfDelta[i] = values[1][i] - values[0][i];
    for (let i = 1; i < N; i++) selfDelta[parent[i]] -= values[1][i] - values[0][i];
    for (let i = 0; i < N; i++) maxDelta = Math.max(maxDelta, Math.abs(selfDelta[i]));
  }
  function diffColour(d) {
    const fade = 255 - Math.floor(210 * Math.min(1, Math.abs(d)));
    return d > 0 ? rgb(255, fade, fade) : rgb(fade, fade, 255);
  }
  // Causes of off-CPU time (the cause label), each its own colour.
  const CAUSE = { lock: 'rgb(220,70,70)', poll: 'rgb(150,100,210)', net: 'rgb(60,120,220)', pipe: 'rgb(40,170,160)',
    disk: 'rgb(160,110,60)', sleep: 'rgb(130,160,190)', 'page-fault': 'rgb(240,150,40)', preempted: 'rgb(230,200,60)', other: 'rgb(170,170,170)' };
  function nodeColour(i) {
    if (D.diff) return diffColour(maxDelta > 0 ? selfDelta[i] / maxDelta : 0);
    if (st.colour === 'cause' && T.cause && T.cause[i]) return CAUSE[T.cause[i]] || CAUSE.other;
    const cls = D.types[st.col].class;
    let off = cls === 'off';
    if (cls === 'wall' && D.wall[0] >= 0) off = values[D.wall[1]][i] > values[D.wall[0]][i];
    return frameColour(T.frame[i], off);
  }

  // ---- Formatting. ----
  function fmtValue(v, unit) {
    const n = Math.round(v).toLocaleString('en-US');
    if (unit === 'nanoseconds') {
      const s = v / 1e9, a = Math.abs(s);
      const human = a >= 1 ? s.toFixed(2) + ' s' : a >= 1e-3 ? (s * 1e3).toFixed(2) + ' ms' : (s * 1e6).toFixed(1) + ' µs';
      return human + ' (' + n + ' ns)';
    }
    return n + ' ' + (unit === 'count' || !unit ? 'samples' : unit);
  }
  const pct = (a, b) => (b > 0 ? (100 * a / b).toFixed(2) : '0.00') + '%';
  const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  const frameName = (i) => S[D.frameName[T.frame[i]]];

  // ---- View state. ----
  const st = {
    col: D.default, // column (sample type) that gives widths
    zoom: 0, // node whose subtree fills the width
    search: '', // search term, a regexp (or a literal if it does not parse)
    icicle: false, // root at the top
    wakers: true, // the wakers beneath blocked stacks (--wakers profiles)
    groups: !D.groupHidden, // the group roots ("cause: lock"), where the page has them
    colour: 'kind', // 'kind', or 'cause' where the page has causes
  };
  // ---- Views: the page's tree with the wakers or the group roots left out. ----
  // A view re-roots each stack: without wakers, the frames from the root to
  // "[woken by ...]" go (the process and group roots stay); without groups,
  // the "cause: X" roots go. Each node's self value moves to the node of its
  // filtered path, and each node keeps the cause (group) that most of its
  // value came from, for colouring by cause.
  const isWoken = (f) => { const n = S[D.frameName[f]]; return n.startsWith('[woken by ') || n === '[not woken]'; };
  const groupPrefix = D.group ? D.group + ': ' : null;
  const isGroup = (f) => groupPrefix !== null && D.frameKind[f] === PROCESS && S[D.frameName[f]].startsWith(groupPrefix);
  const hasWakers = !D.diff && D.frameName.some((_, f) => isWoken(f));
  const hasViews = !D.diff && (hasWakers || groupPrefix !== null);
  function derive() {
    const B = BASE, n = B.frame.length, C = B.values.length, dc = D.default;
    const self = B.values.map((v) => Float64Array.from(v));
    const stack = [];
    for (let i = 0; i < n; i++) {
      stack.length = B.depth[i];
      if (stack.length) for (let c = 0; c < C; c++) self[c][stack[stack.length - 1]] -= B.values[c][i];
      stack.push(i);
    }
    const kids = [new Map()], tf = [B.frame[0]], tl = [0], ts = B.values.map(() => [0]), tc = [null];
    // Only nodes with a value of their own are placed: their ancestors in
    // the view are made on the way, so that a waker's frames, which have
    // none, do not survive as empty nodes.
    const path = [], lines = [];
    for (let i = 0; i < n; i++) {
      const d = B.depth[i];
      path.length = d; path.push(B.frame[i]);
      lines.length = d; lines.push(B.line[i]);
      let own = false;
      for (let c = 0; c < C; c++) if (self[c][i] !== 0) own = true;
      if (!own) continue;
      let w = -1, cause = null;
      if (!st.wakers) for (let k = 1; k <= d; k++) if (isWoken(path[k])) w = k;
      let t = 0;
      for (let k = 1; k <= d; k++) {
        const f = path[k];
        if (isGroup(f)) { cause = S[D.frameName[f]].slice(groupPrefix.length); if (!st.groups) continue; }
        else if (k <= w && D.frameKind[f] !== PROCESS) continue;
        let c = kids[t].get(f);
        if (c === undefined) {
          c = tf.length; kids[t].set(f, c); kids.push(new Map()); tf.push(f); tl.push(lines[k]); tc.push(null);
          for (const a of ts) a.push(0);
        } else if (tl[c] !== lines[k]) tl[c] = 0; // several lines
        t = c;
      }
      for (let c = 0; c < C; c++) ts[c][t] += self[c][i];
      if (cause !== null && self[dc][i] > 0) {
        if (!tc[t]) tc[t] = new Map();
        tc[t].set(cause, (tc[t].get(cause) || 0) + self[dc][i]);
      }
    }
    // Preorder, siblings by name, with inclusive values and causes.
    const out = { frame: [], depth: [], line: [], values: B.values.map(() => []), cause: [] };
    const name = (f) => S[D.frameName[f]];
    function emit(t, d) {
      const at = out.frame.length;
      out.frame.push(tf[t]); out.depth.push(d); out.line.push(tl[t]); out.cause.push(null);
      for (let c = 0; c < C; c++) out.values[c].push(ts[c][t]);
      const m = new Map(tc[t] || []);
      const ch = [...kids[t].entries()].sort((a, b) => (name(a[0]) < name(b[0]) ? -1 : name(a[0]) > name(b[0]) ? 1 : 0));
      for (const [, k] of ch) {
        const [sub, subCause] = emit(k, d + 1);
        for (let c = 0; c < C; c++) out.values[c][at] += out.values[c][sub];
        for (const [cz, v] of subCause) m.set(cz, (m.get(cz) || 0) + v);
      }
      let best = null, bv = -1;
      for (const [cz, v] of m) if (v > bv) { best = cz; bv = v; }
      out.cause[at] = best;
      return [at, m];
    }
    emit(0, 0);
    out.values = out.values.map((a) => Float64Array.from(a));
    return out;
  }
  function applyView() { if (hasViews) setTree(derive()); }

  let matchFrame = null; // per frame: 1 if its name matches the search
  let matchedShare = 0, matchedNodes = 0, highlighted = 0, drawn = 0;

  function layoutX() {
    if (xsCol === st.col) return;
    const v = values[st.col], next = new Float64Array(maxDepth + 2);
    xs = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      const d = T.depth[i];
      xs[i] = next[d];
      next[d] += v[i];
      next[d + 1] = xs[i];
    }
    xsCol = st.col;
  }

  // search computes which frames match and the share of the zoomed view
  // they cover, counting a node only if no ancestor also matched.
  function runSearch() {
    matchFrame = null; matchedShare = 0; matchedNodes = 0;
    if (!st.search) return;
    let re;
    try { re = new RegExp(st.search); } catch (e) { re = new RegExp(st.search.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')); }
    matchFrame = new Uint8Array(D.frameName.length);
    for (let f = 0; f < matchFrame.length; f++) matchFrame[f] = re.test(S[D.frameName[f]]) ? 1 : 0;
    const v = values[st.col], z = st.zoom;
    let sum = 0;
    for (let i = z; i < end[z];) {
      if (matchFrame[T.frame[i]] && v[i] > 0) {
        sum += v[i];
        for (let j = i; j < end[i]; j++) if (matchFrame[T.frame[j]] && v[j] > 0) matchedNodes++;
        i = end[i];
      } else i++;
    }
    matchedShare = v[z] > 0 ? sum / v[z] : 0;
  }

  // ---- Drawing. ----
  const canvas = document.getElementById('canvas');
  const ctx = canvas.getContext('2d');
  let rows = []; // rows[depth]: drawn nodes as [node, x, w] triples, for hit tests
  let charW = 7;

  function draw() {
    layoutX();
    const v = values[st.col];
    const width = Math.max(200, document.documentElement.clientWidth - 20);
    const height = (maxDepth + 1) * ROW + 2;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
      canvas.style.width = width + 'px'; canvas.style.height = height + 'px';
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = '12px Verdana, sans-serif';
    ctx.textBaseline = 'middle';
    charW = ctx.measureText('abcdefghijklmnopqrstuvwxyz').width / 26;
    rows = [];
    for (let d = 0; d <= maxDepth; d++) rows.push([]);
    drawn = 0; highlighted = 0;
    const z = st.zoom, zx = xs[z], zv = v[z];
    const k = zv > 0 ? width / zv : 0;
    const y = (d) => (st.icicle ? d * ROW : (maxDepth - d) * ROW);
    // Ancestors of the zoomed node span the width, faded.
    for (let a = parent[z]; a >= 0; a = parent[a]) box(a, 0, width, y(T.depth[a]), true);
    for (let i = z; i < end[z];) {
      const w = v[i] * k;
      if (w < MIN_PX) { i = end[i]; continue; } // children are narrower still
      box(i, (xs[i] - zx) * k, w, y(T.depth[i]), false);
      i++;
    }
    publish();
  }

  function box(i, x, w, y, faded) {
    const hit = matchFrame !== null && matchFrame[T.frame[i]] === 1;
    ctx.globalAlpha = faded ? 0.55 : 1;
    ctx.fillStyle = hit ? HIGHLIGHT : nodeColour(i);
    ctx.fillRect(x, y, Math.max(w - (w > 3 ? 1 : 0), 0.5), ROW - 1);
    if (w > 3 * charW + 6) {
      const name = frameName(i), fit = Math.floor((w - 6) / charW);
      ctx.fillStyle = '#000';
      ctx.fillText(name.length <= fit ? name : name.slice(0, fit - 2) + '..', x + 3, y + ROW / 2);
    }
    ctx.globalAlpha = 1;
    rows[T.depth[i]].push(i, x, w);
    drawn++;
    if (hit) highlighted++;
  }

  // publish writes the view's state where tests and users can read it.
  function publish() {
    const el = document.getElementById('ember-state').dataset;
    el.nodes = N;
    el.framesDrawn = drawn;
    el.highlighted = highlighted;
    el.matchedNodes = matchedNodes;
    el.matchedShare = matchedShare.toFixed(6);
    el.zoom = frameName(st.zoom);
    el.zoomNode = st.zoom;
    el.type = D.types[st.col].name;
    el.layout = st.icicle ? 'icicle' : 'flame';
    el.wakers = hasWakers ? (st.wakers ? 'shown' : 'hidden') : 'none';
    el.groups = groupPrefix ? (st.groups ? 'shown' : 'hidden') : 'none';
    el.colour = st.colour;
    document.body.classList.toggle('by-cause', st.colour === 'cause');
    if (!el.renderMs) el.renderMs = (performance.now()).toFixed(1); // first drawing, since navigation start
    if (!el.scriptMs) el.scriptMs = (performance.now() - t0).toFixed(1); // of which in this script
    const m = document.getElementById('matched');
    m.textContent = st.search ? 'Matched: ' + (100 * matchedShare).toFixed(2) + '% (' + matchedNodes + ' frames)' : '';
    document.getElementById('layout').textContent = st.icicle ? 'Flame' : 'Icicle';
    info(st.zoom);
  }

  function info(i) {
    const t = D.types[st.col], v = values[st.col];
    let s = frameName(i) + ': ' + fmtValue(v[i], t.unit) + ', ' + pct(v[i], v[0]) + ' of all';
    if (st.zoom !== 0) s += ' (zoomed to ' + frameName(st.zoom) + ')';
    document.getElementById('info').textContent = s;
  }

  // ---- Interaction. ----
  function nodeAt(ev) {
    const r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, yy = ev.clientY - r.top;
    let d = Math.floor(yy / ROW);
    if (!st.icicle) d = maxDepth - d;
    const row = rows[d];
    if (!row) return -1;
    for (let j = 0; j < row.length; j += 3) if (x >= row[j + 1] && x < row[j + 1] + row[j + 2]) return row[j];
    return -1;
  }

  const tip = document.getElementById('tip');
  function showTip(i, ev) {
    const f = T.frame[i], t = D.types[st.col], v = values[st.col];
    let self = v[i];
    for (let j = i + 1; j < end[i]; j = end[j]) self -= v[j];
    const file = D.frameFile[f] >= 0 ? S[D.frameFile[f]] + (T.line[i] > 0 ? ':' + T.line[i] : '') : '';
    const kind = ['user', 'kernel', 'process'][D.frameKind[f]];
    let h = '<b>' + esc(frameName(i)) + '</b><br>';
    if (file) h += '<span class="k">at</span> ' + esc(file) + '<br>';
    h += '<span class="k">' + kind + ' frame</span><br>';
    h += esc(t.name) + ': ' + esc(fmtValue(v[i], t.unit)) + ', ' + pct(v[i], v[0]) + ' of all';
    if (st.zoom !== 0) h += ', ' + pct(v[i], v[st.zoom]) + ' of view';
    h += '<br><span class="k">self</span> ' + esc(fmtValue(self, t.unit)) + ', ' + pct(self, v[0]);
    if (D.diff) {
      const b = values[0][i], n = values[1][i];
      h += '<br>base ' + esc(fmtValue(b, t.unit)) + ', new ' + esc(fmtValue(n, t.unit)) +
        '<br>change ' + (n >= b ? '+' : '') + pct(n - b, values[1][0]) + ' of all' + (b > 0 ? ', ' + (n >= b ? '+' : '') + pct(n - b, b) + ' of base' : ', new') +
        '<br><span class="k">self change</span> ' + (selfDelta[i] >= 0 ? '+' : '') + esc(fmtValue(selfDelta[i], t.unit));
    }
    tip.innerHTML = h;
    tip.style.display = 'block';
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = ev.clientY + 18 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 10 : ev.clientY + 18;
    tip.style.left = Math.max(0, x) + 'px'; tip.style.top = Math.max(0, y) + 'px';
  }

  canvas.addEventListener('mousemove', (ev) => {
    const i = nodeAt(ev);
    if (i < 0) { tip.style.display = 'none'; info(st.zoom); return; }
    showTip(i, ev); info(i);
  });
  canvas.addEventListener('mouseleave', () => { tip.style.display = 'none'; info(st.zoom); });
  canvas.addEventListener('click', (ev) => {
    const i = nodeAt(ev);
    if (i >= 0) { st.zoom = i; update(); }
  });
  document.getElementById('reset').addEventListener('click', () => { st.zoom = 0; update(); });
  document.getElementById('layout').addEventListener('click', () => { st.icicle = !st.icicle; update(); });
  const searchBox = document.getElementById('search');
  let searchTimer = 0;
  searchBox.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { st.search = searchBox.value; update(); }, 150);
  });
  const typeSel = document.getElementById('type');
  D.types.forEach((t, c) => { const o = document.createElement('option'); o.value = c; o.textContent = t.name + ' (' + t.unit + ')'; typeSel.appendChild(o); });
  if (D.types.length < 2) document.getElementById('typebox').hidden = true;
  typeSel.addEventListener('change', () => { st.col = +typeSel.value; update(); });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') { st.zoom = 0; update(); }
    if (ev.key === '/' && document.activeElement !== searchBox) { ev.preventDefault(); searchBox.focus(); }
  });
  window.addEventListener('resize', () => draw());

  const wakersBox = document.getElementById('wakers'), groupsBox = document.getElementById('groups');
  const colourSel = document.getElementById('colour');
  document.getElementById('wakerbox').hidden = !hasWakers;
  document.getElementById('groupbox').hidden = !hasViews || !groupPrefix;
  document.getElementById('colourbox').hidden = !hasViews || !groupPrefix;
  if (groupPrefix) document.getElementById('grouplabel').textContent = 'Group by ' + D.group;
  wakersBox.addEventListener('change', () => { st.wakers = wakersBox.checked; st.zoom = 0; applyView(); update(); });
  groupsBox.addEventListener('change', () => { st.groups = groupsBox.checked; st.zoom = 0; applyView(); update(); });
  colourSel.addEventListener('change', () => { st.colour = colourSel.value; update(); });

  document.getElementById('notes').textContent = (D.notes || []).join(' · ');

  // Legend of the colours in use.
  {
    const lg = document.getElementById('legend');
    const items = D.diff
      ? [['more in new', 'rgb(255,90,90)'], ['less in new', 'rgb(90,90,255)']]
      : [['on-CPU user', 'rgb(230,120,20)'], ['on-CPU kernel', 'rgb(200,150,85)'], ['off-CPU user', 'rgb(90,150,232)'], ['off-CPU kernel', 'rgb(120,170,175)']];
    for (const [name, c] of items) { const s = document.createElement('span'); s.textContent = name; s.style.setProperty('--c', c); lg.appendChild(s); }
    if (groupPrefix) for (const [name, c] of Object.entries(CAUSE)) { const s = document.createElement('span'); s.textContent = name; s.className = 'cause'; s.style.setProperty('--c', c); lg.appendChild(s); }
  }

  // ---- URL fragment: the view's state, read at load and on change. ----
  function fromHash() {
    const q = new URLSearchParams(location.hash.slice(1));
    const ty = q.get('type');
    if (ty !== null) {
      const c = D.types.findIndex((t) => t.name === ty || t.name + '/' + t.unit === ty || String(D.types.indexOf(t)) === ty);
      if (c >= 0) st.col = c;
    }
    st.search = q.get('search') || '';
    const view = [st.wakers, st.groups];
    st.wakers = q.get('wakers') !== '0';
    st.groups = q.has('groups') ? q.get('groups') === '1' : !D.groupHidden;
    st.colour = q.get('colour') === 'cause' && groupPrefix ? 'cause' : 'kind';
    if (view[0] !== st.wakers || view[1] !== st.groups || !T.cause) applyView();
    wakersBox.checked = st.wakers; groupsBox.checked = st.groups; colourSel.value = st.colour;
    // A graph taller than the window opens as an icicle (root at the top):
    // in the flame layout its root and widest frames would start below the
    // fold. #layout=flame or the button still choose the flame layout.
    const tall = (maxDepth + 1) * ROW > window.innerHeight - 120;
    st.icicle = q.get('layout') === 'icicle' || (q.get('layout') !== 'flame' && tall);
    st.zoom = 0;
    const zn = q.get('zoom'), node = +q.get('node');
    if (zn && node > 0 && node < N && frameName(node) === zn) st.zoom = node; // the node clicked
    else if (zn) st.zoom = widest(zn);
    searchBox.value = st.search;
    typeSel.value = st.col;
    tipName = q.get('tip') || '';
  }
  // widest returns the node of that name with the largest value, or 0.
  function widest(name) {
    const v = values[st.col];
    let best = -1;
    for (let i = 0; i < N; i++) if (frameName(i) === name && (best < 0 || v[i] > v[best])) best = i;
    return best >= 0 ? best : 0;
  }
  // tipName (#tip=name) shows the tooltip of the widest drawn frame of that
  // name, as if the mouse were on it: a hook for tests and screenshots.
  let tipName = '';
  function showNamedTip() {
    if (!tipName) return;
    const i = widest(tipName), d = T.depth[i], row = rows[d], r = canvas.getBoundingClientRect();
    for (let j = 0; j < row.length; j += 3) {
      if (row[j] !== i) continue;
      const y = st.icicle ? d * ROW : (maxDepth - d) * ROW;
      const ev = { clientX: r.left + row[j + 1] + row[j + 2] / 2, clientY: r.top + y + ROW / 2 };
      const hit = nodeAt(ev); // what a click there would zoom to
      showTip(hit >= 0 ? hit : i, ev);
      document.getElementById('ember-state').dataset.tip = tip.textContent;
      document.getElementById('ember-state').dataset.tipNode = hit;
      return;
    }
  }
  function toHash() {
    const q = new URLSearchParams();
    if (st.col !== D.default) q.set('type', D.types[st.col].name);
    if (st.zoom !== 0) { q.set('zoom', frameName(st.zoom)); q.set('node', st.zoom); }
    if (st.search) q.set('search', st.search);
    q.set('layout', st.icicle ? 'icicle' : 'flame');
    if (!st.wakers) q.set('wakers', '0');
    if (groupPrefix && st.groups === !!D.groupHidden) q.set('groups', st.groups ? '1' : '0');
    if (st.colour !== 'kind') q.set('colour', st.colour);
    const h = q.toString();
    if (h !== location.hash.slice(1)) history.replaceState(null, '', h ? '#' + h : location.pathname + location.search);
  }
  function update() { runSearch(); draw(); toHash(); }
  window.addEventListener('hashchange', () => { fromHash(); runSearch(); draw(); showNamedTip(); });

  fromHash();
  runSearch();
  draw();
  showNamedTip();
})();
