/* dinomap report page, part 2 of 5: the viewer. One View per map panel (the page has two for
 * the side-by-side mode): a WebGL scatter (2-D canvas fallback), its own zoom per method,
 * linked hover and selection through the shared point data of report.js. */
var VERT = "attribute vec2 a_pos; attribute vec4 a_col; uniform vec2 u_scale; uniform vec2 u_offset;" +
  "uniform float u_size; varying vec4 v_col; void main(){ gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);" +
  "gl_PointSize = u_size; v_col = a_col; }";
var FRAG = "precision mediump float; varying vec4 v_col; void main(){ float r = length(gl_PointCoord - 0.5);" +
  "float edge = 1.0 - smoothstep(0.38, 0.5, r); if (v_col.a < 0.01 || edge <= 0.0) discard;" +
  "gl_FragColor = vec4(v_col.rgb, v_col.a * edge); }";
var state = { colorBy: "none", size: D.point_size, tool: "pan" };
var views = [];

/* the colours of a method's points (shared by every view): class colour, filtered points hidden
 * or greyed, points outside a non-empty selection dimmed */
function colorArray(m) {
  var key = state.colorBy + "|" + filt.version + "|" + filt.mode + "|" + selVersion;
  if (m.colors && m.colorKey === key) return m.colors;
  var col = m.colors && m.colors.length === m.count * 4 ? m.colors : new Uint8Array(m.count * 4);
  var c = colorings[state.colorBy], alpha = D.alpha, any = api.selected > 0, grey = filt.mode === "grey";
  for (var j = 0; j < m.count; j++) {
    var i = m.index[j], rgb = c ? c.colors[c.codes[i]] : NONE_COLOR, a = alpha, o = 4 * j;
    if (!shown[i]) {
      if (grey) { col[o] = col[o + 1] = col[o + 2] = 205; col[o + 3] = 90; } else { col[o + 3] = 0; }
      continue;
    }
    if (any && !sel[i]) { col[o] = 175 + (rgb[0] >> 2); col[o + 1] = 175 + (rgb[1] >> 2); col[o + 2] = 175 + (rgb[2] >> 2); col[o + 3] = 140; continue; }
    if (any) a = 255;
    col[o] = rgb[0]; col[o + 1] = rgb[1]; col[o + 2] = rgb[2]; col[o + 3] = a;
  }
  m.colors = col; m.colorKey = key;
  return col;
}

function makeView(el, canvas, overlay, statusEl) {
  var v = { el: el, canvas: canvas, overlay: overlay, octx: overlay.getContext("2d"), statusEl: statusEl,
    m: 0, W: 1, H: 1, dpr: 1, dirty: true, cams: {}, bufs: {}, gl: null, ctx2d: null, moving: 0,
    lasso: null, timer: null };
  try {
    v.gl = canvas.getContext("webgl", { antialias: false, alpha: false })
      || canvas.getContext("experimental-webgl", { antialias: false, alpha: false });
  } catch (e) { v.gl = null; }
  var gl = v.gl;
  function shader(type, src) {
    var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  if (gl) {
    try {
      v.prog = gl.createProgram();
      gl.attachShader(v.prog, shader(gl.VERTEX_SHADER, VERT));
      gl.attachShader(v.prog, shader(gl.FRAGMENT_SHADER, FRAG));
      gl.linkProgram(v.prog);
      if (!gl.getProgramParameter(v.prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(v.prog));
      v.loc = { pos: gl.getAttribLocation(v.prog, "a_pos"), col: gl.getAttribLocation(v.prog, "a_col"),
        scale: gl.getUniformLocation(v.prog, "u_scale"), offset: gl.getUniformLocation(v.prog, "u_offset"),
        size: gl.getUniformLocation(v.prog, "u_size") };
    } catch (e) { console.warn("dinomap: WebGL unusable, drawing with canvas 2D:", e.message); v.gl = gl = null; }
  }
  if (!gl) v.ctx2d = canvas.getContext("2d");
  v.renderer = gl ? "webgl" : "canvas2d";
  views.push(v);
  return v;
}
function method(v) { return methods[v.m]; }
function cam(v) {
  var m = method(v), c = v.cams[m.name];
  if (!c) c = v.cams[m.name] = fitCam(v, m);
  return c;
}
function fitCam(v, m) {
  var xr = Math.max(m.ext[0], 1e-6), yr = Math.max(m.ext[1], 1e-6);
  return { cx: xr / 2, cy: yr / 2, ppu: 0.9 * Math.min(v.W / xr, v.H / yr) };
}
function fitView(v) { v.cams[method(v).name] = fitCam(v, method(v)); invalidate(v); }
function toScreen(v, u, w) { var c = cam(v); return [(u - c.cx) * c.ppu + v.W / 2, v.H / 2 - (w - c.cy) * c.ppu]; }
function toData(v, sx, sy) { var c = cam(v); return [c.cx + (sx - v.W / 2) / c.ppu, c.cy - (sy - v.H / 2) / c.ppu]; }
/* screen position (px in the panel) of point i on view v, or null when the method left it out */
function pointXY(v, i) {
  var m = method(v), j = m.local[i];
  return j < 0 ? null : toScreen(v, m.pos[2 * j] / 65535, m.pos[2 * j + 1] / 65535);
}
/* a big map (more than LOD_MAX points) answers every change with a random LOD_MAX-point
 * sample in the next frame, and draws in full once nothing changed for 180 ms */
function invalidate(v) {
  (v ? [v] : views).forEach(function (w) { w.dirty = true; if (method(w).count > LOD_MAX) settle(w); });
}
function settle(v) {
  v.moving = performance.now();
  if (v.timer) clearTimeout(v.timer);
  v.timer = setTimeout(function () { v.moving = 0; v.timer = null; v.dirty = true; }, 180);
}
function moved(v) { invalidate(v); }

function draw(v) {
  var t = performance.now(), m = method(v), gl = v.gl, c = cam(v);
  var col = colorArray(m), W = v.W, H = v.H, dpr = v.dpr, size = state.size;
  var count = v.moving && m.count > LOD_MAX ? LOD_MAX : m.count;
  if (gl) {
    var b = v.bufs[m.name];
    if (!b) {
      b = v.bufs[m.name] = { pos: gl.createBuffer(), col: gl.createBuffer(), key: null };
      gl.bindBuffer(gl.ARRAY_BUFFER, b.pos); gl.bufferData(gl.ARRAY_BUFFER, m.pos, gl.STATIC_DRAW);
    }
    if (b.key !== m.colorKey) { gl.bindBuffer(gl.ARRAY_BUFFER, b.col); gl.bufferData(gl.ARRAY_BUFFER, col, gl.DYNAMIC_DRAW); b.key = m.colorKey; }
    gl.viewport(0, 0, v.canvas.width, v.canvas.height);
    gl.clearColor(1, 1, 1, 1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.useProgram(v.prog);
    var sx = 2 * c.ppu / W, sy = 2 * c.ppu / H;
    gl.uniform2f(v.loc.scale, sx, sy);
    gl.uniform2f(v.loc.offset, -c.cx * sx, -c.cy * sy);
    gl.uniform1f(v.loc.size, size * dpr);
    gl.bindBuffer(gl.ARRAY_BUFFER, b.pos); gl.enableVertexAttribArray(v.loc.pos);
    gl.vertexAttribPointer(v.loc.pos, 2, gl.UNSIGNED_SHORT, true, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, b.col); gl.enableVertexAttribArray(v.loc.col);
    gl.vertexAttribPointer(v.loc.col, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.drawArrays(gl.POINTS, 0, count);
  } else {
    var x = v.ctx2d, r = size / 2;
    x.setTransform(dpr, 0, 0, dpr, 0, 0); x.fillStyle = "#fff"; x.fillRect(0, 0, W, H);
    for (var j = 0; j < count; j++) {
      var a = col[4 * j + 3]; if (!a) continue;
      var p = toScreen(v, m.pos[2 * j] / 65535, m.pos[2 * j + 1] / 65535);
      if (p[0] < -r || p[1] < -r || p[0] > W + r || p[1] > H + r) continue;
      x.fillStyle = "rgba(" + col[4 * j] + "," + col[4 * j + 1] + "," + col[4 * j + 2] + "," + (a / 255) + ")";
      x.fillRect(p[0] - r, p[1] - r, size, size);
    }
  }
  if (v === views[0]) { api.drawn[m.name] = m.count; api.frames++; api.lastDrawMs = performance.now() - t; }
  v.canvas.setAttribute("data-points", String(m.count));
  v.canvas.setAttribute("data-drawn", String(count));
  v.canvas.setAttribute("data-method", m.name);
  drawOverlay(v);
}
function ring(v, i, radius, color, width) {
  var p = pointXY(v, i);
  if (!p) return;
  v.octx.beginPath(); v.octx.arc(p[0], p[1], radius, 0, 2 * Math.PI);
  v.octx.lineWidth = width; v.octx.strokeStyle = color; v.octx.stroke();
}
function drawOverlay(v) {
  var o = v.octx;
  o.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
  o.clearRect(0, 0, v.W, v.H);
  if (api.inspected >= 0) { ring(v, api.inspected, Math.max(8, state.size + 4), "#fff", 5); ring(v, api.inspected, Math.max(8, state.size + 4), "#d1242f", 2.5); }
  if (api.hovered >= 0) ring(v, api.hovered, Math.max(5, state.size), "#111", 2);
  if (v.lasso && v.lasso.length > 1) {
    o.beginPath(); o.moveTo(v.lasso[0][0], v.lasso[0][1]);
    for (var k = 1; k < v.lasso.length; k++) o.lineTo(v.lasso[k][0], v.lasso[k][1]);
    o.closePath(); o.fillStyle = "rgba(9,105,218,.08)"; o.fill();
    o.setLineDash([5, 4]); o.lineWidth = 1.5; o.strokeStyle = "#0969da"; o.stroke(); o.setLineDash([]);
  }
}
function resizeView(v) {
  var r = v.el.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
  var W = Math.max(1, Math.round(r.width)), H = Math.max(1, Math.round(r.height));
  if (W === v.W && H === v.H && dpr === v.dpr) return;
  var old = v.W;
  v.W = W; v.H = H; v.dpr = dpr;
  [v.canvas, v.overlay].forEach(function (c) { c.width = Math.round(W * dpr); c.height = Math.round(H * dpr); });
  for (var k in v.cams) { if (old > 1) v.cams[k].ppu *= W / old; else delete v.cams[k]; }
  invalidate(v);
}
/* nearest shown point within radiusPx of a panel position (local index j), or -1 */
function nearest(v, sx, sy, radiusPx) {
  var m = method(v), d = toData(v, sx, sy), r = radiusPx / cam(v).ppu, G = m.G;
  var x0 = Math.max(0, Math.floor((d[0] - r) * G)), x1 = Math.min(G - 1, Math.floor((d[0] + r) * G));
  var y0 = Math.max(0, Math.floor((d[1] - r) * G)), y1 = Math.min(G - 1, Math.floor((d[1] + r) * G));
  if (x0 > x1 || y0 > y1) return -1;
  var best = -1, bestD = r * r;
  for (var cy = y0; cy <= y1; cy++) for (var cx = x0; cx <= x1; cx++) {
    var cellNo = cy * G + cx;
    for (var k = m.start[cellNo]; k < m.start[cellNo + 1]; k++) {
      var j = m.items[k];
      if (!shown[m.index[j]]) continue;
      var dx = m.pos[2 * j] / 65535 - d[0], dy = m.pos[2 * j + 1] / 65535 - d[1], dd = dx * dx + dy * dy;
      if (dd <= bestD) { bestD = dd; best = j; }
    }
  }
  return best;
}
