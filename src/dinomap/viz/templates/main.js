/* dinomap report page, part 5 of 5: wiring (legend, filters, tabs, side-by-side), test and
 * benchmark hooks, start. */
var $ = function (id) { return document.getElementById(id); };
var v1 = makeView(plot, $("dm-canvas"), $("dm-overlay"), $("dm-status"));
var v2 = null;
api.renderer = v1.renderer;
state.colorBy = D.default_color && (colorings[D.default_color] || D.default_color === "none") ? D.default_color : "none";

function renderLegend() {
  var c = colorings[state.colorBy], legend = $("dm-legend");
  legend.textContent = "";
  legend.appendChild(el("h3", null, c ? c.title + " (" + c.names.length + ")" : "No colouring"));
  if (!c) return;
  var ul = el("ul");
  c.names.forEach(function (name, k) {
    var li = el("li", c.hidden[k] ? "off" : "");
    li.setAttribute("data-code", String(k));
    li.title = "click: show or hide; double-click: show only this one";
    var sw = el("span", "sw"); sw.style.background = rgbCss(c.colors[k]);
    li.appendChild(sw); li.appendChild(el("span", "nm", name)); li.appendChild(el("span", "ct", c.counts[k].toLocaleString("en-US")));
    li.addEventListener("click", function () { c.hidden[k] = c.hidden[k] ? 0 : 1; refilterAll(); });
    li.addEventListener("dblclick", function () { c.hidden.fill(1); c.hidden[k] = 0; refilterAll(); });
    ul.appendChild(li);
  });
  legend.appendChild(ul);
  legend.appendChild(el("div", "dm-hint", "Click a class to hide it; double-click to show it alone."));
}
function refilterAll() { refilter(); renderLegend(); invalidate(); }
var colorSel = $("dm-colorby");
if (D.label_issues) colorSel.querySelector("option[value=issue]").hidden = false;
else colorSel.querySelector("option[value=issue]").remove();
fields.forEach(function (f) {
  if (!f.filter) return;
  var opt = el("option", null, f.name); opt.value = f.key; colorSel.appendChild(opt);
});
colorSel.value = state.colorBy;
colorSel.addEventListener("change", function () { state.colorBy = colorSel.value; api.colorBy = state.colorBy; renderLegend(); invalidate(); });
$("dm-hidemode").addEventListener("change", function () { filt.mode = $("dm-hidemode").value; invalidate(); });
function scoreFilter(scores, boxId, inputId, outId, key) {
  if (!scores) return;
  var lo = Infinity, hi = -Infinity;
  for (var i = 0; i < N; i++) if (isFinite(scores[i])) { lo = Math.min(lo, scores[i]); hi = Math.max(hi, scores[i]); }
  if (!(hi >= lo)) return;
  $(boxId).hidden = false;
  var input = $(inputId), out = $(outId);
  out.textContent = "any";
  input.addEventListener("input", function () {
    var f = Number(input.value) / 1000;
    filt[key] = f > 0 ? lo + f * (hi - lo) : -Infinity;
    out.textContent = f > 0 ? filt[key].toPrecision(3) : "any";
    refilterAll();
  });
}
scoreFilter(outlierScores, "dm-f-outlier", "dm-min-outlier", "dm-min-outlier-v", "minOutlier");
scoreFilter(issueScores, "dm-f-issue", "dm-min-issue", "dm-min-issue-v", "minIssue");
var sizeIn = $("dm-size");
sizeIn.value = String(state.size);
sizeIn.addEventListener("input", function () { state.size = Number(sizeIn.value) || state.size; invalidate(); });
$("dm-reset").addEventListener("click", function () { views.forEach(fitView); });
Array.prototype.forEach.call(document.querySelectorAll(".dm-tools button"), function (b) {
  b.addEventListener("click", function () { setTool(b.getAttribute("data-tool")); });
});

function status(v) {
  var m = method(v), bits = [m.count.toLocaleString("en-US") + " points", m.title];
  if (m.count < N) bits.push((N - m.count) + " not placed");
  if (m.count > LOD_MAX) bits.push("a " + LOD_MAX.toLocaleString("en-US") + "-point sample while it changes");
  v.statusEl.textContent = bits.join(" \u00b7 ");
}
function setMethod(name, v) {
  v = v || v1;
  var k = api.methods.indexOf(name);
  if (k < 0) throw new Error("unknown method " + name);
  v.m = k; setHover(-1); status(v);
  if (v === v1) {
    api.method = name;
    Array.prototype.forEach.call($("dm-tabs").querySelectorAll("button"), function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-method") === name ? "true" : "false");
    });
    $("dm-methodinfo").textContent = methods[k].info;
  }
  invalidate(v);
}
Array.prototype.forEach.call($("dm-tabs").querySelectorAll("button"), function (b) {
  b.addEventListener("click", function () { setMethod(b.getAttribute("data-method")); });
});
function setSplit(on) {
  var p2 = $("dm-plot2");
  p2.hidden = !on;
  $("dm-plots-live").classList.toggle("dm-split", on);
  if (on && !v2) {
    v2 = makeView(p2, $("dm-canvas2"), $("dm-overlay2"), $("dm-status2"));
    wireView(v2);
    setTool(state.tool);
  }
  if (on) setMethod($("dm-second").value, v2);
  else if (v2) views.splice(views.indexOf(v2), 1), v2.el.hidden = true, (v2 = null);
  resizeAll();
}
$("dm-split").addEventListener("change", function () { setSplit($("dm-split").checked); });
$("dm-second").addEventListener("change", function () { if (v2) setMethod($("dm-second").value, v2); });
if (api.methods.length > 1) $("dm-second").value = api.methods[1];

/* selection bar and grid */
function renderSelbar() {
  $("dm-selcount").textContent = api.selected ? api.selected.toLocaleString("en-US") + " selected" : "no selection";
  $("dm-selbar").classList.toggle("on", api.selected > 0);
  message("");
}
onSelection.push(renderSelbar);
onSelection.push(function () { grid.page = 0; renderGrid(); });
$("dm-sel-clear").addEventListener("click", clearSelection);
$("dm-sel-csv").addEventListener("click", downloadCsv);
$("dm-sel-copy").addEventListener("click", copyPaths);
var sortSel = $("dm-grid-sort");
SORTS.forEach(function (s) { var o = el("option", null, s[1]); o.value = s[0]; sortSel.appendChild(o); });
sortSel.addEventListener("change", function () { grid.sort = sortSel.value; grid.page = 0; renderGrid(); });
$("dm-grid-prev").addEventListener("click", function () { if (grid.page > 0) { grid.page--; renderGrid(); } });
$("dm-grid-next").addEventListener("click", function () { if (grid.list && (grid.page + 1) * grid.per < grid.list.length) { grid.page++; renderGrid(); } });

/* ---------- test and benchmark hooks ---------- */
api.setMethod = function (name) { setMethod(name); draw(v1); v1.dirty = false; };
api.screenPosition = function (i, second) {
  var v = second ? v2 : v1, p = v && pointXY(v, i), r = v && v.el.getBoundingClientRect();
  if (!p) return null;
  return { x: r.left + p[0], y: r.top + p[1], inside: p[0] >= 0 && p[1] >= 0 && p[0] <= v.W && p[1] <= v.H };
};
/* client positions of every point on the first map, NaN where the method left a point out */
api.screenPositions = function () {
  var r = v1.el.getBoundingClientRect(), out = new Array(2 * N).fill(NaN);
  for (var i = 0; i < N; i++) { var p = pointXY(v1, i); if (p) { out[2 * i] = r.left + p[0]; out[2 * i + 1] = r.top + p[1]; } }
  return out;
};
api.selectPolygon = function (clientPoly, mode) {
  var r = v1.el.getBoundingClientRect();
  return selectPolygon(v1, clientPoly.map(function (p) { return [p[0] - r.left, p[1] - r.top]; }), mode || "replace");
};
api.selection = function () { var out = []; for (var i = 0; i < N; i++) if (sel[i]) out.push(i); return out; };
api.select = function (ids) { sel.fill(0); ids.forEach(function (i) { sel[i] = 1; }); selectionChanged(); };
api.selectionCsv = selectionCsv;
api.inspect = inspect;
api.neighbors = function (i) { var out = []; for (var k = 0; nbIds && k < nbK; k++) out.push([nbIds[i * nbK + k], nbSims[i * nbK + k]]); return out; };
api.shownCount = function () { var c = 0; for (var i = 0; i < N; i++) c += shown[i]; return c; };
api.path = pathOf;
api.fullPath = fullPath;
api.setSplit = setSplit;
api.drawNow = function () { views.forEach(function (v) { draw(v); v.dirty = false; }); };

/* ---------- start ---------- */
function resizeAll() { views.forEach(resizeView); }
if (window.ResizeObserver) new ResizeObserver(resizeAll).observe($("dm-plots-live"));
else window.addEventListener("resize", resizeAll);
wireView(v1);
setTool("pan");
resizeAll();
api.colorBy = state.colorBy;
renderLegend();
renderSelbar();
setMethod(api.methods[0]);
draw(v1); v1.dirty = false;  /* a sample first on a big map: setMethod invalidated it */
function frame() { views.forEach(function (v) { if (v.dirty) { v.dirty = false; draw(v); } }); requestAnimationFrame(frame); }
api.ready = true;
api.readyMs = performance.now();
requestAnimationFrame(frame);
