/* dinomap report page, part 3 of 5: selection (lasso, box; shift adds, alt removes, escape
 * clears) and the mouse: pan, zoom, hover, click to inspect. */
var onSelection = [];  /* callbacks run after the selection changed */
function selectionChanged() {
  selVersion++;
  countSelected();
  onSelection.forEach(function (f) { f(); });
  invalidate();
}
function clearSelection() { if (api.selected) { sel.fill(0); selectionChanged(); } }

/* select the shown points of view v whose panel position lies inside the polygon (panel px);
 * mode "replace", "add" or "remove". Even-odd ray casting after a bounding-box test. */
function selectPolygon(v, poly, mode) {
  var t = performance.now(), m = method(v), c = cam(v), n = poly.length;
  if (n < 3) return 0;
  var xs = new Float64Array(n), ys = new Float64Array(n), minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (var k = 0; k < n; k++) {
    xs[k] = poly[k][0]; ys[k] = poly[k][1];
    minX = Math.min(minX, xs[k]); maxX = Math.max(maxX, xs[k]); minY = Math.min(minY, ys[k]); maxY = Math.max(maxY, ys[k]);
  }
  if (mode === "replace") sel.fill(0);
  var value = mode === "remove" ? 0 : 1, ppu = c.ppu, ox = v.W / 2 - c.cx * ppu, oy = v.H / 2 + c.cy * ppu, hits = 0;
  for (var j = 0; j < m.count; j++) {
    var i = m.index[j];
    if (!shown[i]) continue;
    var px = m.pos[2 * j] / 65535 * ppu + ox, py = oy - m.pos[2 * j + 1] / 65535 * ppu;
    if (px < minX || px > maxX || py < minY || py > maxY) continue;
    var inside = false;
    for (var a = 0, b = n - 1; a < n; b = a++) {
      if ((ys[a] > py) !== (ys[b] > py) && px < (xs[b] - xs[a]) * (py - ys[a]) / (ys[b] - ys[a]) + xs[a]) inside = !inside;
    }
    if (inside) { sel[i] = value; hits++; }
  }
  selectionChanged();
  api.lastSelectMs = performance.now() - t;
  return hits;
}
function modeOf(ev) { return ev.altKey ? "remove" : ev.shiftKey ? "add" : "replace"; }

function setTool(tool) {
  state.tool = tool;
  Array.prototype.forEach.call(document.querySelectorAll(".dm-tools button"), function (b) {
    b.setAttribute("aria-pressed", b.getAttribute("data-tool") === tool ? "true" : "false");
  });
  views.forEach(function (v) { v.el.setAttribute("data-tool", tool); });
}

function wireView(v) {
  var el = v.el, drag = null;
  function local(ev) { var r = el.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
  el.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) return;
    var p = local(ev);
    drag = { x: ev.clientX, y: ev.clientY, start: p, moved: false, tool: state.tool, mode: modeOf(ev) };
    el.setPointerCapture(ev.pointerId);
  });
  el.addEventListener("pointermove", function (ev) {
    var p = local(ev);
    if (drag) {
      var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (!drag.moved && Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) <= 2 && drag.tool === "pan") return;
      if (drag.tool === "pan") {
        drag.moved = true; el.classList.add("dm-dragging");
        var c = cam(v); c.cx -= dx / c.ppu; c.cy += dy / c.ppu;
        drag.x = ev.clientX; drag.y = ev.clientY; setHover(-1); moved(v);
        return;
      }
      drag.moved = drag.moved || Math.abs(p[0] - drag.start[0]) + Math.abs(p[1] - drag.start[1]) > 3;
      if (drag.tool === "lasso") { v.lasso = v.lasso || [drag.start]; v.lasso.push(p); }
      else { var s = drag.start; v.lasso = [[s[0], s[1]], [p[0], s[1]], [p[0], p[1]], [s[0], p[1]]]; }
      drawOverlay(v);
      return;
    }
    var j = nearest(v, p[0], p[1], Math.max(6, state.size + 3));
    setHover(j >= 0 ? method(v).index[j] : -1, ev);
  });
  function end(ev, cancelled) {
    if (!drag) return;
    try { el.releasePointerCapture(ev.pointerId); } catch (e) { /* released */ }
    var d = drag; drag = null; el.classList.remove("dm-dragging");
    if (!cancelled && d.tool !== "pan" && d.moved && v.lasso) selectPolygon(v, v.lasso, d.mode);
    else if (!cancelled && !d.moved) {
      var p = local(ev), j = nearest(v, p[0], p[1], Math.max(6, state.size + 3));
      if (j >= 0) inspect(method(v).index[j]);
    }
    v.lasso = null; drawOverlay(v);
  }
  el.addEventListener("pointerup", function (ev) { end(ev, false); });
  el.addEventListener("pointercancel", function (ev) { end(ev, true); });
  el.addEventListener("pointerleave", function () { if (!drag) setHover(-1); });
  el.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = local(ev), before = toData(v, p[0], p[1]), c = cam(v);
    var f = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    c.ppu = Math.min(Math.max(c.ppu * f, 1), 1e8);
    var after = toData(v, p[0], p[1]);
    c.cx += before[0] - after[0]; c.cy += before[1] - after[1];
    setHover(-1); moved(v);
  }, { passive: false });
  el.addEventListener("dblclick", function () { fitView(v); });
}

document.addEventListener("keydown", function (ev) {
  var tag = ev.target && ev.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { if (ev.key !== "Escape") return; }
  if (ev.key === "Escape") {
    if (views.some(function (v) { return v.lasso; })) { views.forEach(function (v) { v.lasso = null; drawOverlay(v); }); return; }
    if (api.selected) clearSelection(); else closeInspect();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  var k = ev.key.toLowerCase();
  if (k === "l") setTool("lasso"); else if (k === "b") setTool("box"); else if (k === "p") setTool("pan");
});
