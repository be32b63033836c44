/* dinomap interactive map: a WebGL scatter (2-D canvas fallback) with hover thumbnails.
 * No dependencies, no network: the data is the JSON in #dinomap-data, thumbnails are JPEG sprite
 * sheets loaded on first hover. Test and benchmark hooks live on window.dinomap. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("dinomap-data").textContent);
  var api = (window.dinomap = {
    ready: false, error: null, n: D.n, renderer: null, methods: [], expected: {}, drawn: {},
    method: null, colorBy: null, hovered: -1, frames: 0, readyMs: null, lastDrawMs: 0,
  });
  var plot = document.getElementById("dm-plot");
  if (!plot || !D.methods.length) { api.ready = true; api.readyMs = performance.now(); return; }

  /* ---------- decoding ---------- */
  function bytes(s) {
    var bin = atob(s), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return u8;
  }
  function u16(s) { return new Uint16Array(bytes(s).buffer); }
  function u32(s) { return new Uint32Array(bytes(s).buffer); }
  var N = D.n;
  var dirIdx = D.paths.dir_index ? u32(D.paths.dir_index) : null;
  function pathOf(i) {
    var base = D.paths.names[i];
    if (!dirIdx) return base;
    var dir = D.paths.dirs[dirIdx[i]];
    return dir ? dir + "/" + base : base;
  }
  var thumbMissing = D.thumbs && D.thumbs.missing ? bytes(D.thumbs.missing) : null;
  function hasThumb(i) {
    if (!D.thumbs) return false;
    if (!thumbMissing) return true;
    return !((thumbMissing[i >> 3] >> (7 - (i & 7))) & 1);
  }

  /* ---------- colours ---------- */
  var BASE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"];
  function hsl2rgb(h, s, l) {
    var a = s * Math.min(l, 1 - l);
    function f(n) { var k = (n + h * 12) % 12; return l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)); }
    return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
  }
  function hex2rgb(h) { return [parseInt(h.substr(1, 2), 16), parseInt(h.substr(3, 2), 16), parseInt(h.substr(5, 2), 16)]; }
  function palette(k) {
    var out = [];
    for (var i = 0; i < k; i++) out.push(i < BASE.length ? hex2rgb(BASE[i]) : hsl2rgb((i * 0.618034) % 1, 0.62, 0.5));
    return out;
  }
  function rgbCss(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }

  /* colourings: {key, title, names, codes (Uint16Array, per point), colors, hidden} */
  var colorings = {};
  function addColoring(key, title, spec) {
    var codes = spec.bytes === 4 ? u32(spec.codes) : u16(spec.codes);
    var cols = spec.colors ? spec.colors.map(hex2rgb) : palette(spec.names.length);
    if (spec.grey != null && spec.grey >= 0) cols[spec.grey] = [160, 160, 160];
    var counts = new Array(spec.names.length).fill(0);
    for (var i = 0; i < N; i++) counts[codes[i]]++;
    colorings[key] = { key: key, title: title, names: spec.names, codes: codes, colors: cols,
      counts: counts, hidden: new Uint8Array(spec.names.length) };
  }
  if (D.labels) addColoring("label", "Label", D.labels);
  if (D.clusters) addColoring("cluster", "Cluster", D.clusters);
  if (D.outliers) addColoring("outlier", "Outlier score", D.outliers);
  var outlierScores = D.outliers && D.outliers.scores ? new Float32Array(bytes(D.outliers.scores).buffer) : null;
  var NONE_COLOR = [31, 119, 180];

  /* ---------- methods: compact valid points, spatial grid for hover ---------- */
  var methods = D.methods.map(function (m) {
    var x = u16(m.x), y = u16(m.y), idx = [], i;
    for (i = 0; i < N; i++) if (x[i] !== 65535 && y[i] !== 65535) idx.push(i);
    var count = idx.length, pos = new Uint16Array(count * 2), index = new Uint32Array(idx);
    for (i = 0; i < count; i++) { pos[2 * i] = x[idx[i]]; pos[2 * i + 1] = y[idx[i]]; }
    var G = Math.max(8, Math.min(512, Math.round(Math.sqrt(count / 2))));
    var cell = new Uint32Array(count), start = new Uint32Array(G * G + 1);
    for (i = 0; i < count; i++) {
      var cx = Math.min(G - 1, Math.floor(pos[2 * i] / 65535 * G));
      var cy = Math.min(G - 1, Math.floor(pos[2 * i + 1] / 65535 * G));
      cell[i] = cy * G + cx; start[cell[i] + 1]++;
    }
    for (i = 0; i < G * G; i++) start[i + 1] += start[i];
    var fill = start.slice(0, G * G), items = new Uint32Array(count);
    for (i = 0; i < count; i++) items[fill[cell[i]]++] = i;
    api.methods.push(m.name); api.expected[m.name] = count;
    return { name: m.name, title: m.title, info: m.info, ext: m.extent, count: count, pos: pos,
      index: index, G: G, start: start, items: items, view: null, buf: null, colBuf: null };
  });

  /* ---------- DOM ---------- */
  var canvas = document.getElementById("dm-canvas");
  var overlay = document.getElementById("dm-overlay");
  var octx = overlay.getContext("2d");
  var tip = document.getElementById("dm-tip");
  var tipThumb = document.getElementById("dm-tip-thumb");
  var tipImg = document.getElementById("dm-tip-img");
  var tipNo = document.getElementById("dm-tip-nothumb");
  var tipPath = document.getElementById("dm-tip-path");
  var tipLabel = document.getElementById("dm-tip-label");
  var tipExtra = document.getElementById("dm-tip-extra");
  var statusEl = document.getElementById("dm-status");
  var infoEl = document.getElementById("dm-methodinfo");
  var legendEl = document.getElementById("dm-legend");
  var colorSel = document.getElementById("dm-colorby");
  var sizeIn = document.getElementById("dm-size");
  var tabs = document.getElementById("dm-tabs");

  var state = { m: 0, colorBy: D.clusters && !D.labels ? "cluster" : (D.labels ? "label" : "none"),
    size: D.point_size, dirty: true, W: 1, H: 1, dpr: 1 };
  if (D.default_color && colorings[D.default_color]) state.colorBy = D.default_color;

  /* ---------- renderer ---------- */
  var gl = null, prog = null, loc = {};
  try {
    gl = canvas.getContext("webgl", { antialias: false, alpha: false })
      || canvas.getContext("experimental-webgl", { antialias: false, alpha: false });
  } catch (e) { gl = null; }
  function shader(type, src) {
    var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  if (gl) {
    try {
      prog = gl.createProgram();
      gl.attachShader(prog, shader(gl.VERTEX_SHADER,
        "attribute vec2 a_pos; attribute vec4 a_col; uniform vec2 u_scale; uniform vec2 u_offset;" +
        "uniform float u_size; varying vec4 v_col; void main(){ gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);" +
        "gl_PointSize = u_size; v_col = a_col; }"));
      gl.attachShader(prog, shader(gl.FRAGMENT_SHADER,
        "precision mediump float; varying vec4 v_col; void main(){ float r = length(gl_PointCoord - 0.5);" +
        "float edge = 1.0 - smoothstep(0.38, 0.5, r); if (v_col.a < 0.01 || edge <= 0.0) discard;" +
        "gl_FragColor = vec4(v_col.rgb, v_col.a * edge); }"));
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
      loc = { pos: gl.getAttribLocation(prog, "a_pos"), col: gl.getAttribLocation(prog, "a_col"),
        scale: gl.getUniformLocation(prog, "u_scale"), offset: gl.getUniformLocation(prog, "u_offset"),
        size: gl.getUniformLocation(prog, "u_size") };
      api.renderer = "webgl";
    } catch (e) { console.warn("dinomap: WebGL unusable, drawing with canvas 2D:", e.message); gl = null; }
  }
  var ctx2d = gl ? null : canvas.getContext("2d");
  if (!gl) api.renderer = "canvas2d";

  function colorArray(m) {
    var col = new Uint8Array(m.count * 4), c = colorings[state.colorBy], alpha = D.alpha;
    for (var i = 0; i < m.count; i++) {
      var rgb = NONE_COLOR, a = alpha;
      if (c) { var k = c.codes[m.index[i]]; rgb = c.colors[k]; if (c.hidden[k]) a = 0; }
      col[4 * i] = rgb[0]; col[4 * i + 1] = rgb[1]; col[4 * i + 2] = rgb[2]; col[4 * i + 3] = a;
    }
    return col;
  }
  function upload(m) {
    m.colors = colorArray(m);
    if (!gl) return;
    if (!m.buf) { m.buf = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, m.buf); gl.bufferData(gl.ARRAY_BUFFER, m.pos, gl.STATIC_DRAW); }
    if (!m.colBuf) m.colBuf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, m.colBuf); gl.bufferData(gl.ARRAY_BUFFER, m.colors, gl.DYNAMIC_DRAW);
  }
  function fitView(m) {
    var xr = Math.max(m.ext[0], 1e-6), yr = Math.max(m.ext[1], 1e-6);
    m.view = { cx: xr / 2, cy: yr / 2, ppu: 0.9 * Math.min(state.W / xr, state.H / yr) };
  }
  function toScreen(m, u, v) {
    return [(u - m.view.cx) * m.view.ppu + state.W / 2, state.H / 2 - (v - m.view.cy) * m.view.ppu];
  }
  function toData(m, sx, sy) {
    return [m.view.cx + (sx - state.W / 2) / m.view.ppu, m.view.cy - (sy - state.H / 2) / m.view.ppu];
  }
  function draw() {
    var t = performance.now(), m = methods[state.m];
    if (!m.view) fitView(m);
    if (!m.colors) upload(m);
    var W = state.W, H = state.H, dpr = state.dpr, size = state.size;
    if (gl) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
      gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
      gl.useProgram(prog);
      var sx = 2 * m.view.ppu / W, sy = 2 * m.view.ppu / H;
      gl.uniform2f(loc.scale, sx, sy);
      gl.uniform2f(loc.offset, -m.view.cx * sx, -m.view.cy * sy);
      gl.uniform1f(loc.size, size * dpr);
      gl.bindBuffer(gl.ARRAY_BUFFER, m.buf);
      gl.enableVertexAttribArray(loc.pos);
      gl.vertexAttribPointer(loc.pos, 2, gl.UNSIGNED_SHORT, true, 0, 0);
      gl.bindBuffer(gl.ARRAY_BUFFER, m.colBuf);
      gl.enableVertexAttribArray(loc.col);
      gl.vertexAttribPointer(loc.col, 4, gl.UNSIGNED_BYTE, true, 0, 0);
      gl.drawArrays(gl.POINTS, 0, m.count);
    } else {
      var c = ctx2d, r = size / 2;
      c.setTransform(dpr, 0, 0, dpr, 0, 0);
      c.fillStyle = "#fff"; c.fillRect(0, 0, W, H);
      for (var i = 0; i < m.count; i++) {
        var a = m.colors[4 * i + 3]; if (!a) continue;
        var p = toScreen(m, m.pos[2 * i] / 65535, m.pos[2 * i + 1] / 65535);
        if (p[0] < -r || p[1] < -r || p[0] > W + r || p[1] > H + r) continue;
        c.fillStyle = "rgba(" + m.colors[4 * i] + "," + m.colors[4 * i + 1] + "," + m.colors[4 * i + 2] + "," + (a / 255) + ")";
        c.fillRect(p[0] - r, p[1] - r, size, size);
      }
    }
    api.drawn[m.name] = m.count; api.frames++;
    canvas.setAttribute("data-points", String(m.count));
    canvas.setAttribute("data-method", m.name);
    drawOverlay();
    api.lastDrawMs = performance.now() - t;
  }
  function drawOverlay() {
    var dpr = state.dpr;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, state.W, state.H);
    if (api.hovered < 0) return;
    var m = methods[state.m], j = m.hoverLocal;
    if (j == null || j < 0) return;
    var p = toScreen(m, m.pos[2 * j] / 65535, m.pos[2 * j + 1] / 65535);
    octx.beginPath(); octx.arc(p[0], p[1], Math.max(5, state.size), 0, 2 * Math.PI);
    octx.lineWidth = 2; octx.strokeStyle = "#111"; octx.stroke();
  }
  function frame() { if (state.dirty) { state.dirty = false; draw(); } requestAnimationFrame(frame); }
  function invalidate() { state.dirty = true; }

  function resize() {
    var r = plot.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    var W = Math.max(1, Math.round(r.width)), H = Math.max(1, Math.round(r.height));
    if (W === state.W && H === state.H && dpr === state.dpr) return;
    var old = state.W;
    state.W = W; state.H = H; state.dpr = dpr;
    [canvas, overlay].forEach(function (c) { c.width = Math.round(W * dpr); c.height = Math.round(H * dpr); });
    methods.forEach(function (m) { if (m.view) m.view.ppu *= old > 1 ? W / old : 1; });
    if (old <= 1) methods.forEach(function (m) { m.view = null; });
    invalidate();
  }

  /* ---------- hover ---------- */
  function nearest(m, sx, sy, radiusPx) {
    var d = toData(m, sx, sy), r = radiusPx / m.view.ppu, G = m.G;
    var c = colorings[state.colorBy];
    var x0 = Math.max(0, Math.floor((d[0] - r) * G)), x1 = Math.min(G - 1, Math.floor((d[0] + r) * G));
    var y0 = Math.max(0, Math.floor((d[1] - r) * G)), y1 = Math.min(G - 1, Math.floor((d[1] + r) * G));
    if (x0 > x1 || y0 > y1) return -1;
    var best = -1, bestD = r * r;
    for (var cy = y0; cy <= y1; cy++) for (var cx = x0; cx <= x1; cx++) {
      var cellNo = cy * G + cx;
      for (var k = m.start[cellNo]; k < m.start[cellNo + 1]; k++) {
        var i = m.items[k];
        if (c && c.hidden[c.codes[m.index[i]]]) continue;
        var dx = m.pos[2 * i] / 65535 - d[0], dy = m.pos[2 * i + 1] / 65535 - d[1], dd = dx * dx + dy * dy;
        if (dd <= bestD) { bestD = dd; best = i; }
      }
    }
    return best;
  }
  var TS = D.thumbs ? D.thumbs.size : 0, TSCALE = TS ? Math.max(1, Math.round(96 / TS)) : 1;
  if (TS) {
    tipThumb.style.width = tipThumb.style.height = TS * TSCALE + "px";
    tipImg.style.width = D.thumbs.cols * TS * TSCALE + "px";
    if (TSCALE >= 3) tipImg.style.imageRendering = "pixelated";  // tiny images: crisp pixels
  }
  else { tipThumb.style.display = "none"; }
  function showTip(i, clientX, clientY) {
    tipPath.textContent = pathOf(i);
    var lab = colorings.label ? colorings.label.names[colorings.label.codes[i]] : null;
    tipLabel.textContent = lab != null ? lab : "";
    var extra = [];
    if (colorings.cluster) extra.push("cluster: " + colorings.cluster.names[colorings.cluster.codes[i]]);
    if (outlierScores && isFinite(outlierScores[i])) extra.push("outlier score: " + outlierScores[i].toPrecision(3));
    extra.push("point #" + i);
    tipExtra.textContent = extra.join(" \u00b7 ");
    if (TS) {
      if (hasThumb(i)) {
        var per = D.thumbs.cols * D.thumbs.cols, sheet = Math.floor(i / per), k = i - sheet * per;
        var col = k % D.thumbs.cols, row = Math.floor(k / D.thumbs.cols), src = D.thumbs.sheets[sheet];
        if (tipImg.getAttribute("src") !== src) tipImg.setAttribute("src", src);
        tipImg.style.left = -col * TS * TSCALE + "px"; tipImg.style.top = -row * TS * TSCALE + "px";
        tipImg.style.display = ""; tipNo.style.display = "none";
        tipThumb.setAttribute("data-index", String(i));
      } else {
        tipImg.style.display = "none"; tipNo.style.display = ""; tipThumb.setAttribute("data-index", "");
      }
    }
    tip.classList.add("on");
    var w = tip.offsetWidth, h = tip.offsetHeight, x = clientX + 16, y = clientY + 16;
    if (x + w > window.innerWidth - 4) x = clientX - w - 16;
    if (y + h > window.innerHeight - 4) y = clientY - h - 16;
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
  }
  function hideTip() { tip.classList.remove("on"); }
  function setHover(m, j, ev) {
    var i = j >= 0 ? m.index[j] : -1;
    if (i !== api.hovered || m.hoverLocal !== j) { api.hovered = i; m.hoverLocal = j; drawOverlay(); }
    if (i >= 0) showTip(i, ev.clientX, ev.clientY); else hideTip();
    tip.setAttribute("data-index", String(i));
  }

  /* ---------- interaction ---------- */
  var drag = null;
  function local(ev) { var r = plot.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
  plot.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, moved: false };
    plot.setPointerCapture(ev.pointerId);
  });
  plot.addEventListener("pointermove", function (ev) {
    var m = methods[state.m];
    if (!m.view) return;
    if (drag) {
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (drag.moved || Math.abs(dx) + Math.abs(dy) > 2) {
        drag.moved = true; plot.classList.add("dm-dragging");
        m.view.cx -= dx / m.view.ppu; m.view.cy += dy / m.view.ppu;
        drag.x = ev.clientX; drag.y = ev.clientY; hideTip(); api.hovered = -1; invalidate();
        return;
      }
    }
    var p = local(ev);
    setHover(m, nearest(m, p[0], p[1], Math.max(6, state.size + 3)), ev);
  });
  function endDrag(ev) {
    if (drag) { try { plot.releasePointerCapture(ev.pointerId); } catch (e) { /* released */ } }
    drag = null; plot.classList.remove("dm-dragging");
  }
  plot.addEventListener("pointerup", endDrag);
  plot.addEventListener("pointercancel", endDrag);
  plot.addEventListener("pointerleave", function () { if (!drag) { hideTip(); api.hovered = -1; drawOverlay(); } });
  plot.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var m = methods[state.m];
    if (!m.view) return;
    var p = local(ev), before = toData(m, p[0], p[1]);
    var f = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    m.view.ppu = Math.min(Math.max(m.view.ppu * f, 1), 1e8);
    var after = toData(m, p[0], p[1]);
    m.view.cx += before[0] - after[0]; m.view.cy += before[1] - after[1];
    hideTip(); api.hovered = -1; invalidate();
  }, { passive: false });
  plot.addEventListener("dblclick", function () { fitView(methods[state.m]); invalidate(); });
  document.getElementById("dm-reset").addEventListener("click", function () { fitView(methods[state.m]); invalidate(); });
  sizeIn.value = String(state.size);
  sizeIn.addEventListener("input", function () { state.size = Number(sizeIn.value) || state.size; invalidate(); });

  function renderLegend() {
    var c = colorings[state.colorBy];
    legendEl.textContent = "";
    var h = document.createElement("h3");
    h.textContent = c ? c.title + " (" + c.names.length + ")" : "No colouring";
    legendEl.appendChild(h);
    if (!c) return;
    var ul = document.createElement("ul");
    c.names.forEach(function (name, k) {
      var li = document.createElement("li");
      li.className = c.hidden[k] ? "off" : "";
      li.setAttribute("data-code", String(k));
      li.title = "click: show or hide; double-click: show only this one";
      var sw = document.createElement("span"); sw.className = "sw"; sw.style.background = rgbCss(c.colors[k]);
      var nm = document.createElement("span"); nm.className = "nm"; nm.textContent = name;
      var ct = document.createElement("span"); ct.className = "ct"; ct.textContent = c.counts[k].toLocaleString("en-US");
      li.appendChild(sw); li.appendChild(nm); li.appendChild(ct);
      li.addEventListener("click", function () { c.hidden[k] = c.hidden[k] ? 0 : 1; recolor(); });
      li.addEventListener("dblclick", function () { c.hidden.fill(1); c.hidden[k] = 0; recolor(); });
      ul.appendChild(li);
    });
    legendEl.appendChild(ul);
    var hint = document.createElement("div"); hint.className = "dm-hint";
    hint.textContent = "Click a class to hide it; double-click to show it alone.";
    legendEl.appendChild(hint);
  }
  function recolor() { methods.forEach(function (m) { m.colors = null; }); renderLegend(); invalidate(); }
  if (colorSel) {
    colorSel.value = state.colorBy;
    colorSel.addEventListener("change", function () { state.colorBy = colorSel.value; api.colorBy = state.colorBy; recolor(); });
  }
  function setMethod(name) {
    var k = api.methods.indexOf(name);
    if (k < 0) throw new Error("unknown method " + name);
    state.m = k; api.method = name; api.hovered = -1; hideTip();
    Array.prototype.forEach.call(tabs.querySelectorAll("button"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-method") === name ? "true" : "false");
    });
    var m = methods[k];
    infoEl.textContent = m.info;
    statusEl.textContent = m.count.toLocaleString("en-US") + " points \u00b7 " + m.title +
      (m.count < N ? " \u00b7 " + (N - m.count) + " not placed" : "") + " \u00b7 scroll to zoom, drag to pan, double-click to reset";
    invalidate();
  }
  Array.prototype.forEach.call(tabs.querySelectorAll("button"), function (b) {
    b.addEventListener("click", function () { setMethod(b.getAttribute("data-method")); });
  });

  /* ---------- test and benchmark hooks ---------- */
  api.setMethod = function (name) { setMethod(name); draw(); state.dirty = false; };
  api.screenPosition = function (i) {
    var m = methods[state.m], r = plot.getBoundingClientRect();
    for (var j = 0; j < m.count; j++) if (m.index[j] === i) {
      var p = toScreen(m, m.pos[2 * j] / 65535, m.pos[2 * j + 1] / 65535);
      return { x: r.left + p[0], y: r.top + p[1], inside: p[0] >= 0 && p[1] >= 0 && p[0] <= state.W && p[1] <= state.H };
    }
    return null;
  };
  api.path = pathOf;

  /* ---------- start ---------- */
  if (window.ResizeObserver) new ResizeObserver(resize).observe(plot);
  else window.addEventListener("resize", resize);
  resize();
  api.colorBy = state.colorBy;
  renderLegend();
  setMethod(api.methods[0]);
  draw(); state.dirty = false;
  api.ready = true;
  api.readyMs = performance.now();
  requestAnimationFrame(frame);
})();
