/* dinomap report page, part 1 of 5: the data. The five template files (report.js, viewer.js,
 * select.js, panels.js, main.js) are joined in one strict-mode function by report.py.
 * No dependencies, no network: the data is the JSON in #dinomap-data (binary arrays as base64),
 * thumbnails are JPEG sprite sheets loaded when first shown. Every label and path is put in
 * the page with textContent, never as markup. Test and benchmark hooks live on window.dinomap. */
var D = JSON.parse(document.getElementById("dinomap-data").textContent);
var api = (window.dinomap = {
  ready: false, error: null, n: D.n, renderer: null, methods: [], expected: {}, drawn: {},
  method: null, colorBy: null, hovered: -1, frames: 0, readyMs: null, lastDrawMs: 0,
  selected: 0, lastSelectMs: null, lastInspectMs: null, inspected: -1, lastCopied: null,
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
function i32(s) { return new Int32Array(bytes(s).buffer); }
function u24(s) {  /* 3-byte little-endian ids, 0xFFFFFF for none -> Int32Array with -1 */
  var b = bytes(s), n = b.length / 3, out = new Int32Array(n);
  for (var i = 0, o = 0; i < n; i++, o += 3) {
    var v = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
    out[i] = v === 0xFFFFFF ? -1 : v;
  }
  return out;
}
function f32(s) { return new Float32Array(bytes(s).buffer); }
function codesOf(spec) { return spec.bytes === 4 ? u32(spec.codes) : u16(spec.codes); }
function simsQ8(s) {  /* one byte a similarity: s = 1 - 2 (q / 255)^2 */
  var q = bytes(s), out = new Float32Array(q.length);
  for (var i = 0; i < q.length; i++) { var r = q[i] / 255; out[i] = 1 - 2 * r * r; }
  return out;
}
function bit(u8, i) { return (u8[i >> 3] >> (7 - (i & 7))) & 1; }

var N = D.n;
var dirIdx = D.paths.dir_index ? u32(D.paths.dir_index) : null;
var inRun = D.paths.in_run ? bytes(D.paths.in_run) : null;
/* the path as shown: relative to the run where it points inside it */
function pathOf(i) {
  var base = D.paths.names[i];
  if (!dirIdx) return base;
  var dir = D.paths.dirs[dirIdx[i]];
  return dir ? dir + "/" + base : base;
}
/* the path as exported: absolute again where the page shows it relative to the run */
function fullPath(i) {
  var p = pathOf(i);
  return inRun && bit(inRun, i) ? D.paths.root + "/" + p : p;
}
var thumbMissing = D.thumbs && D.thumbs.missing ? bytes(D.thumbs.missing) : null;
function hasThumb(i) { return !!D.thumbs && (!thumbMissing || !bit(thumbMissing, i)); }

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

/* colourings: {key, title, names, codes (per point), colors, counts, hidden} */
var colorings = {};
function addColoring(key, title, spec) {
  var codes = codesOf(spec);
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
if (D.label_issues) addColoring("issue", "Label-issue score", D.label_issues);
/* the source's own columns (a manifest's split, source...): shown when inspecting a point, and
 * a colouring (whose legend filters) when they have few values */
var fields = (D.fields || []).map(function (f) {
  var key = "field:" + f.name;
  if (f.filter) addColoring(key, f.name, f);
  return { key: key, name: f.name, names: f.names, codes: codesOf(f), filter: !!f.filter };
});
var outlierScores = D.outliers && D.outliers.scores ? f32(D.outliers.scores) : null;
var issueScores = D.label_issues ? f32(D.label_issues.scores) : null;
var suggested = D.label_issues && D.label_issues.suggested ? D.label_issues.suggested : null;
var suggestedCodes = suggested ? codesOf(suggested) : null;
var NONE_COLOR = [31, 119, 180];
var nbK = D.neighbors ? D.neighbors.k : 0;
var nbIds = D.neighbors ? u24(D.neighbors.ids) : null;
var nbSims = D.neighbors ? simsQ8(D.neighbors.sims_q8) : null;
var dupCodes = D.duplicates ? i32(D.duplicates.codes) : null;

function labelOf(i) { return colorings.label ? colorings.label.names[colorings.label.codes[i]] : null; }
function clusterOf(i) { return colorings.cluster ? colorings.cluster.names[colorings.cluster.codes[i]] : null; }
function fmtScore(v) { return v == null || !isFinite(v) ? "\u2013" : v.toPrecision(3); }

/* ---------- filters: legend classes hidden, score thresholds ---------- */
var filt = { mode: "hide", minOutlier: -Infinity, minIssue: -Infinity, version: 0 };
function passes(i) {
  for (var key in colorings) { var c = colorings[key]; if (c.hidden[c.codes[i]]) return false; }
  if (outlierScores && filt.minOutlier > -Infinity && !(outlierScores[i] >= filt.minOutlier)) return false;
  if (issueScores && filt.minIssue > -Infinity && !(issueScores[i] >= filt.minIssue)) return false;
  return true;
}
/* per-point visibility, rebuilt when a filter changes: 1 shown, 0 filtered out */
var shown = new Uint8Array(N).fill(1);
function refilter() {
  for (var i = 0; i < N; i++) shown[i] = passes(i) ? 1 : 0;
  filt.version++;
}

/* ---------- the selection: one set of images, shared by every map ---------- */
var sel = new Uint8Array(N), selVersion = 0;
function countSelected() { var c = 0; for (var i = 0; i < N; i++) c += sel[i]; api.selected = c; return c; }

/* ---------- methods: compact valid points, draw order, spatial grid for hover ---------- */
var LOD_MAX = 200000;  /* above this many points a map draws a random subset while moving */
function shuffled(idx) {  /* seeded Fisher-Yates, so that any prefix is a uniform sample */
  var s = 12345;
  for (var i = idx.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    var j = s % (i + 1), t = idx[i]; idx[i] = idx[j]; idx[j] = t;
  }
  return idx;
}
var methods = D.methods.map(function (m) {
  var x = u16(m.x), y = u16(m.y), i, count = 0;
  for (i = 0; i < N; i++) if (x[i] !== 65535 && y[i] !== 65535) count++;
  var index = new Uint32Array(count), k = 0;
  for (i = 0; i < N; i++) if (x[i] !== 65535 && y[i] !== 65535) index[k++] = i;
  if (count > LOD_MAX) shuffled(index);
  var pos = new Uint16Array(count * 2), local = new Int32Array(N).fill(-1);
  for (i = 0; i < count; i++) { pos[2 * i] = x[index[i]]; pos[2 * i + 1] = y[index[i]]; local[index[i]] = i; }
  var G = Math.max(8, Math.min(1024, Math.round(Math.sqrt(count / 2))));
  var cell = new Uint32Array(count), start = new Uint32Array(G * G + 1);
  for (i = 0; i < count; i++) {
    var cx = Math.min(G - 1, (pos[2 * i] * G / 65535) | 0), cy = Math.min(G - 1, (pos[2 * i + 1] * G / 65535) | 0);
    cell[i] = cy * G + cx; start[cell[i] + 1]++;
  }
  for (i = 0; i < G * G; i++) start[i + 1] += start[i];
  var fill = start.slice(0, G * G), items = new Uint32Array(count);
  for (i = 0; i < count; i++) items[fill[cell[i]]++] = i;
  api.methods.push(m.name); api.expected[m.name] = count;
  return { name: m.name, title: m.title, info: m.info, ext: m.extent, count: count, pos: pos,
    index: index, local: local, G: G, start: start, items: items, colors: null, colorKey: "" };
});
