/* dinomap report page, part 4 of 5: what is shown beside the map: tooltip, inspect panel with
 * the nearest neighbours, the selection grid, export (CSV, copy paths). Text via textContent. */
var TS = D.thumbs ? D.thumbs.size : 0;
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
/* a thumbnail of point i, px pixels wide: a crop of its sprite sheet */
function thumbBox(i, px, box) {
  box = box || el("div", "dm-thumb");
  box.textContent = "";
  box.style.width = box.style.height = px + "px";
  if (TS && hasThumb(i)) {
    var scale = px / TS, cols = D.thumbs.cols, per = cols * cols, sheet = Math.floor(i / per), k = i - sheet * per;
    var img = el("img"); img.alt = ""; img.src = D.thumbs.sheets[sheet];
    img.style.width = cols * px + "px";
    img.style.left = -(k % cols) * px + "px"; img.style.top = -Math.floor(k / cols) * px + "px";
    if (scale >= 3) img.style.imageRendering = "pixelated";
    box.appendChild(img);
  } else { box.appendChild(el("div", "dm-nothumb", "no thumbnail")); }
  box.setAttribute("data-index", String(i));
  return box;
}

/* ---------- tooltip ---------- */
var tip = document.getElementById("dm-tip"), tipThumb = document.getElementById("dm-tip-thumb");
var tipImg = document.getElementById("dm-tip-img"), tipNo = document.getElementById("dm-tip-nothumb");
var TSCALE = TS ? Math.max(1, Math.round(96 / TS)) : 1;
if (TS) {
  tipThumb.style.width = tipThumb.style.height = TS * TSCALE + "px";
  tipImg.style.width = D.thumbs.cols * TS * TSCALE + "px";
  if (TSCALE >= 3) tipImg.style.imageRendering = "pixelated";
} else { tipThumb.style.display = "none"; }
function pointFacts(i) {
  var extra = [];
  if (colorings.cluster) extra.push("cluster: " + clusterOf(i));
  if (outlierScores && isFinite(outlierScores[i])) extra.push("outlier score: " + fmtScore(outlierScores[i]));
  if (issueScores && isFinite(issueScores[i])) extra.push("label-issue score: " + fmtScore(issueScores[i]));
  return extra;
}
function showTip(i, ev) {
  document.getElementById("dm-tip-path").textContent = pathOf(i);
  var lab = labelOf(i);
  document.getElementById("dm-tip-label").textContent = lab != null ? lab : "";
  document.getElementById("dm-tip-extra").textContent = pointFacts(i).concat(["point #" + i]).join(" \u00b7 ");
  if (TS) {
    if (hasThumb(i)) {
      var per = D.thumbs.cols * D.thumbs.cols, sheet = Math.floor(i / per), k = i - sheet * per, src = D.thumbs.sheets[sheet];
      if (tipImg.getAttribute("src") !== src) tipImg.setAttribute("src", src);
      tipImg.style.left = -(k % D.thumbs.cols) * TS * TSCALE + "px"; tipImg.style.top = -Math.floor(k / D.thumbs.cols) * TS * TSCALE + "px";
      tipImg.style.display = ""; tipNo.style.display = "none"; tipThumb.setAttribute("data-index", String(i));
    } else { tipImg.style.display = "none"; tipNo.style.display = ""; tipThumb.setAttribute("data-index", ""); }
  }
  tip.classList.add("on");
  var w = tip.offsetWidth, h = tip.offsetHeight, x = ev.clientX + 16, y = ev.clientY + 16;
  if (x + w > window.innerWidth - 4) x = ev.clientX - w - 16;
  if (y + h > window.innerHeight - 4) y = ev.clientY - h - 16;
  tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
}
/* hover is linked: the hovered image is ringed on every map */
function setHover(i, ev) {
  if (i !== api.hovered) { api.hovered = i; views.forEach(drawOverlay); }
  if (i >= 0 && ev) showTip(i, ev); else tip.classList.remove("on");
  tip.setAttribute("data-index", String(i));
}

/* ---------- inspect panel ---------- */
var insp = document.getElementById("dm-inspect");
function fact(dl, name, value) { dl.appendChild(el("dt", null, name)); dl.appendChild(el("dd", null, value)); }
function inspect(i) {
  var t = performance.now();
  api.inspected = i; insp.hidden = false; insp.textContent = "";
  var head = el("div", "dm-insp-head");
  head.appendChild(el("strong", null, "Point #" + i));
  var close = el("button", "dm-close", "\u00d7"); close.type = "button"; close.title = "close (Esc)"; close.setAttribute("aria-label", "close");
  close.addEventListener("click", closeInspect);
  head.appendChild(close); insp.appendChild(head);
  insp.appendChild(thumbBox(i, Math.max(144, TS * 2), el("div", "dm-thumb dm-insp-thumb")));
  var dl = el("dl");
  fact(dl, "path", pathOf(i));
  if (colorings.label) fact(dl, "label", labelOf(i));
  if (colorings.cluster) fact(dl, "cluster", clusterOf(i));
  if (outlierScores) fact(dl, "outlier score", fmtScore(outlierScores[i]));
  if (issueScores) {
    fact(dl, "label-issue score", fmtScore(issueScores[i]));
    if (suggestedCodes) fact(dl, "suggested label", suggested.names[suggestedCodes[i]]);
  }
  if (dupCodes) fact(dl, "duplicate group", dupCodes[i] >= 0 ? D.duplicates.names[dupCodes[i]] : "none");
  fields.forEach(function (f) { fact(dl, f.name, f.names[f.codes[i]]); });
  insp.appendChild(dl);
  var sb = el("button", "dm-insp-sel", sel[i] ? "remove from selection" : "add to selection"); sb.type = "button";
  sb.addEventListener("click", function () { sel[i] = sel[i] ? 0 : 1; selectionChanged(); inspect(i); });
  insp.appendChild(sb);
  insp.appendChild(el("h4", null, nbK ? nbK + " nearest neighbours (cosine similarity)" : "Neighbours"));
  var list = el("div", "dm-nbs");
  if (!nbIds) list.appendChild(el("p", "dm-muted", D.neighbors_note || "no neighbour graph in this page"));
  for (var k = 0; nbIds && k < nbK; k++) {
    var j = nbIds[i * nbK + k];
    if (j < 0) continue;
    var b = el("button", "dm-nb"); b.type = "button"; b.setAttribute("data-index", String(j));
    b.title = pathOf(j);
    b.appendChild(thumbBox(j, 48));
    b.appendChild(el("span", "dm-nb-sim", nbSims[i * nbK + k].toFixed(3)));
    b.appendChild(el("span", "dm-nb-lab", labelOf(j) != null ? labelOf(j) : ""));
    b.addEventListener("click", (function (jj) { return function () { inspect(jj); centerOn(jj); }; })(j));
    list.appendChild(b);
  }
  insp.appendChild(list);
  views.forEach(drawOverlay);
  api.lastInspectMs = performance.now() - t;
}
function closeInspect() { api.inspected = -1; insp.hidden = true; insp.textContent = ""; views.forEach(drawOverlay); }
/* move every map so that point i is in view (centred when it was outside) */
function centerOn(i) {
  views.forEach(function (v) {
    var p = pointXY(v, i);
    if (!p || (p[0] > 20 && p[1] > 20 && p[0] < v.W - 20 && p[1] < v.H - 20)) return;
    var m = method(v), j = m.local[i], c = cam(v);
    c.cx = m.pos[2 * j] / 65535; c.cy = m.pos[2 * j + 1] / 65535; invalidate(v);
  });
}

/* ---------- selection grid ---------- */
var grid = { page: 0, per: 48, sort: "index", list: null };
var SORTS = [["index", "image order"]];
if (outlierScores) SORTS.push(["outlier", "outlier score (highest first)"]);
if (issueScores) SORTS.push(["issue", "label-issue score (highest first)"]);
if (colorings.cluster) SORTS.push(["cluster", "cluster"]);
if (colorings.label) SORTS.push(["label", "label"]);
function selectedList() {
  var out = [];
  for (var i = 0; i < N; i++) if (sel[i]) out.push(i);
  var key = grid.sort, desc = function (s) { return function (a, b) { var x = s[a], y = s[b]; x = isFinite(x) ? x : -Infinity; y = isFinite(y) ? y : -Infinity; return y - x || a - b; }; };
  if (key === "outlier") out.sort(desc(outlierScores));
  else if (key === "issue") out.sort(desc(issueScores));
  else if (key === "cluster" || key === "label") {
    var c = colorings[key]; out.sort(function (a, b) { return c.codes[a] - c.codes[b] || a - b; });
  }
  return out;
}
function renderGrid() {
  var box = document.getElementById("dm-grid"), cells = document.getElementById("dm-grid-cells");
  box.hidden = api.selected === 0;
  if (box.hidden) { cells.textContent = ""; grid.list = null; return; }
  grid.list = selectedList();
  var pages = Math.max(1, Math.ceil(grid.list.length / grid.per));
  grid.page = Math.min(grid.page, pages - 1);
  document.getElementById("dm-grid-page").textContent = "page " + (grid.page + 1) + " of " + pages;
  cells.textContent = "";
  grid.list.slice(grid.page * grid.per, (grid.page + 1) * grid.per).forEach(function (i) {
    var b = el("button", "dm-cell"); b.type = "button"; b.setAttribute("data-index", String(i)); b.title = pathOf(i);
    b.appendChild(thumbBox(i, 72));
    var cap = grid.sort === "outlier" ? fmtScore(outlierScores[i]) : grid.sort === "issue" ? fmtScore(issueScores[i])
      : grid.sort === "cluster" ? clusterOf(i) : labelOf(i);
    b.appendChild(el("span", "dm-cell-cap", cap != null ? cap : ""));
    b.addEventListener("click", function () { inspect(i); centerOn(i); });
    cells.appendChild(b);
  });
}

/* ---------- export ---------- */
function csvField(s) {
  s = s == null ? "" : String(s);
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}
/* the selection as a manifest `dinomap embed` / `run` read as it is: path,label + the scores */
function selectionCsv() {
  var cols = ["path", "label"];
  if (colorings.cluster) cols.push("cluster");
  if (outlierScores) cols.push("outlier_score");
  if (issueScores) cols.push("label_issue_score", "suggested_label");
  var lines = [cols.join(",")];
  for (var i = 0; i < N; i++) {
    if (!sel[i]) continue;
    var row = [fullPath(i), labelOf(i) === "(unlabelled)" ? "" : labelOf(i)];
    if (colorings.cluster) row.push(clusterOf(i));
    if (outlierScores) row.push(isFinite(outlierScores[i]) ? String(outlierScores[i]) : "");
    if (issueScores) row.push(isFinite(issueScores[i]) ? String(issueScores[i]) : "", suggestedCodes ? suggested.names[suggestedCodes[i]] : "");
    lines.push(row.map(csvField).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}
function selectionPaths() { var out = []; for (var i = 0; i < N; i++) if (sel[i]) out.push(fullPath(i)); return out.join("\n"); }
function message(text) { document.getElementById("dm-sel-msg").textContent = text; }
function downloadCsv() {
  if (!api.selected) { message("select points first (lasso or box)"); return; }
  var url = URL.createObjectURL(new Blob([selectionCsv()], { type: "text/csv;charset=utf-8" }));
  var a = el("a"); a.href = url; a.download = "selection.csv"; document.body.appendChild(a); a.click();
  setTimeout(function () { URL.revokeObjectURL(url); a.remove(); }, 1000);
  message("selection.csv: " + api.selected + " rows");
}
function copyPaths() {
  if (!api.selected) { message("select points first (lasso or box)"); return; }
  var text = selectionPaths(), ta = el("textarea");
  ta.value = text; ta.setAttribute("readonly", ""); ta.style.position = "fixed"; ta.style.left = "-9999px";
  document.body.appendChild(ta); ta.select();
  var ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  ta.remove();
  if (!ok && navigator.clipboard) navigator.clipboard.writeText(text).catch(function () { /* shown below */ });
  api.lastCopied = text;
  message("copied " + api.selected + " paths");
}
