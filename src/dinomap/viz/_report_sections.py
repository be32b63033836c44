"""The run sections of the report: banner, run summary, interactive map, metrics, static maps."""

from __future__ import annotations

import html
from collections.abc import Mapping

from dinomap.store import ERRORS_FILE
from dinomap.viz._format import (
    flatten_timings,
    fmt_number,
    fmt_seconds,
    fmt_value,
    params_text,
    run_rel,
)
from dinomap.viz._html import METRIC_COLUMNS, card_html, dl_html, esc, metric_text, rows_html
from dinomap.viz._run_data import RunData, find_key, method_title

__all__: list[str] = []


def banner_html(data: RunData) -> str:
    stale = "".join(
        f'<div class="dm-banner-stale" role="alert">⚠ {html.escape(line)}</div>'
        for line in data.stale
    )
    if not data.random_init:
        return stale
    return stale + (
        '<div class="dm-banner-random" id="random-init-banner" role="alert">'
        "⚠ RANDOM-INIT WEIGHTS — this run did not use trained DINOv2 weights"
        "<small>The model's weights were randomly initialised, so the embeddings and every map "
        "below carry no learned semantics. Use them to test the pipeline only, never to judge "
        "the data.</small></div>"
    )


def _timings_table(data: RunData) -> str:
    """Each stage's own time (embed, maps, export) with its parts indented under it, then the
    total of those stages: every total says what it adds up."""
    info = data.info

    def row(name: str, sec: float, part: bool = False, cls: str = "") -> str:
        pad = ' style="padding-left:18px"' if part else ""
        return (f"<tr{cls}><td{pad}>{esc(name)}</td>"
                f"<td class='num'>{fmt_seconds(sec)}</td></tr>")  # fmt: skip

    rows: list[str] = []
    totals: list[tuple[str, float]] = []
    embed = dict(flatten_timings(info.get("timings")))
    embed_total = embed.pop("total", None)
    if embed or embed_total is not None:
        total = embed_total if embed_total is not None else sum(embed.values())
        totals.append(("embed", total))
        rows.append(row("embed", total))
        parts = {"embed": "images through the model", "first batch": "of which the first batch"}
        rows += [row(parts.get(name, name), sec, part=True) for name, sec in embed.items()]
    maps_total = data.metrics.get("total_seconds")
    fits = []
    for method in data.methods or list(data.metrics.get("methods") or {}):
        fit = data.method_metrics(method).get("fit_seconds")
        if fit is not None:
            fits.append(row(f"{method_title(method)} fit", fit, part=True))
    if isinstance(maps_total, int | float) or fits:
        if isinstance(maps_total, int | float):
            totals.append(("maps", float(maps_total)))
            rows.append(row("maps (fits, metrics, plots, mappers)", float(maps_total)))
        rows += fits
    export = info.get("export") or {}
    if isinstance(export.get("seconds"), int | float):
        totals.append(("export", float(export["seconds"])))
        rows.append(row("export (with verification)", float(export["seconds"])))
    if len(totals) > 1:
        names = " + ".join(name for name, _ in totals)
        rows.append(
            row(f"total ({names})", sum(sec for _, sec in totals), cls=' id="timings-total"')
        )
    if not rows:
        return '<p class="dm-empty">No timings recorded.</p>'
    return ("<table class='dm-table' id='timings'><thead><tr><th>Stage</th><th>Time</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def summary_html(data: RunData, href: dict[str, str]) -> str:
    info = data.info
    counts = info.get("counts") or {}
    embedded, failed, total = data.n_embedded, data.n_failed_images, data.n_total
    img_rows = [
        (
            "embedded",
            f'<span class="dm-big" id="count-embedded">{esc(fmt_number(embedded))}</span>',
        )
    ]
    failed_html = f'<span id="count-failed">{esc(fmt_number(failed))}</span>'
    if "errors" in href:
        failed_html += f' — <a href="{esc(href["errors"])}">error list ({ERRORS_FILE})</a>'
    img_rows.append(("failed", failed_html))
    if total is not None:
        img_rows.append(("total found", esc(fmt_number(total))))
    shown = {"embedded", "stored", "failed", "total", "source_images"}
    for key, value in counts.items():
        if key not in shown:
            img_rows.append((key.replace("_", " "), esc(fmt_value(value))))
    if data.n_points:
        img_rows.append(("points in maps", esc(fmt_number(data.n_points))))

    model = info.get("model") or {}
    model_rows = rows_html(model)
    weights = info.get("weights") or {}
    source = weights.get("source", "unknown")
    if data.random_init:
        badge = '<span class="dm-badge danger" id="weights-badge">RANDOM-INIT (untrained)</span>'
    else:
        badge = f'<span class="dm-badge ok" id="weights-badge">{esc(source)}</span>'
    weight_rows = [("source", badge)]
    weight_rows += rows_html(weights, skip={"source"})
    prep = info.get("preprocessing") or {}
    prep_rows = rows_html(prep)
    batch = find_key(info, "batch_size")
    if batch is not None and "batch_size" not in prep:
        prep_rows.append(("batch size", fmt_number(batch)))
    device_rows = []
    if data.device_text:
        device_rows.append(("device", esc(data.device_text)))
    if info.get("precision") is not None:
        device_rows.append(("precision", esc(fmt_value(info["precision"]))))
    versions = info.get("versions")
    if isinstance(versions, Mapping):
        device_rows += [(str(k), esc(fmt_value(v))) for k, v in versions.items()]
    src = info.get("source") or {}
    src_rows = rows_html(src) if isinstance(src, Mapping) else [("source", esc(src))]

    cards = [
        card_html("Images", dl_html(img_rows)),
        card_html("Model", dl_html(model_rows)),
        card_html("Weights", dl_html(weight_rows)),
        card_html("Preprocessing", dl_html(prep_rows)),
        card_html("Device", dl_html(device_rows)),
        card_html("Source", dl_html(src_rows)),
    ]
    export = data.export
    if export:
        rows = []
        for k, v in export.items():
            text = esc(fmt_value(run_rel(data.run_dir, v)))
            if isinstance(v, str) and ("path" in k or "dir" in k or "repo" in k):
                text = f"<code>{text}</code>"
            rows.append((k.replace("_", " "), text))
        cards.append(card_html("Export", dl_html(rows)))

    timings = _timings_table(data)
    return (
        '<section id="summary"><h2>Run summary</h2>'
        f'<div class="dm-cards">{"".join(cards)}</div>'
        f'<h3 style="margin:16px 0 6px;font-size:15px">Time per stage</h3>{timings}</section>'
    )


def metrics_table(data: RunData) -> str:
    methods = list(data.methods)
    for m in data.metrics.get("methods") or {}:
        if m not in methods:
            methods.append(m)
    if not methods:
        return '<section id="metrics"><h2>Metrics</h2><p class="dm-empty">No maps in this run yet.</p></section>'
    columns = [
        (key, title)
        for key, title in METRIC_COLUMNS
        if any(data.method_metrics(m).get(key) is not None for m in methods)
    ]
    extra_keys = sorted(
        {
            k
            for m in methods
            for k, v in data.method_metrics(m).items()
            if k not in {c[0] for c in METRIC_COLUMNS} | {"params"}
            and isinstance(v, int | float)
            and not isinstance(v, bool)
        }
    )
    head = "".join(f"<th>{esc(t)}</th>" for _, t in columns)
    head += "".join(
        f"<th>{esc(k.replace('_seconds', ' time').replace('_', ' '))}</th>" for k in extra_keys
    )
    rows = []
    for m in methods:
        entry = data.method_metrics(m)
        cells = []
        for key, _ in columns:
            v = entry.get(key)
            text = fmt_seconds(v) if key == "fit_seconds" and v is not None else fmt_number(v)
            cells.append(f"<td class='num' data-key='{key}'>{esc(text)}</td>")
        cells += [f"<td class='num'>{esc(metric_text(k, entry.get(k)))}</td>" for k in extra_keys]
        params = entry.get("params")
        ptxt = params_text(params) if isinstance(params, Mapping) else ""
        rows.append(
            f"<tr data-method='{esc(m)}'><th>{esc(method_title(m))}</th>{''.join(cells)}"
            f"<td class='params'>{esc(ptxt)}</td></tr>"
        )
    n = data.metrics.get("n_samples")
    note = f"<p>Computed on {esc(fmt_number(n))} samples.</p>" if n is not None else ""
    note += _small_n_note(data)
    if data.metrics.get("random_init") or data.random_init:
        note += '<p><span class="dm-badge danger">random-init weights: metrics describe an untrained model</span></p>'
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        f"<table class='dm-table' id='metrics-table'><thead><tr><th>Method</th>{head}<th>Parameters</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
        "<p class='dm-methodinfo'>Trustworthiness: are the map's neighbours true neighbours (1 is best). "
        "kNN preservation: share of each point's nearest neighbours in the embedding space kept on "
        "the map. kNN label accuracy: a k-nearest-neighbour classifier on the 2-D map.</p></section>"
    )


def _small_n_note(data: RunData) -> str:
    """What a small collection changed: adapted defaults and skipped methods (``small_n``)."""
    small = data.metrics.get("small_n")
    if not isinstance(small, Mapping):
        return ""
    items = [
        f"{method_title(m)}: {k} {fmt_number(v.get('default'))} -> {fmt_number(v.get('used'))}"
        for m, keys in (small.get("adapted") or {}).items()
        for k, v in keys.items()
        if isinstance(v, Mapping)
    ]
    items += [
        f"{method_title(m)} skipped: {why}" for m, why in (small.get("skipped") or {}).items()
    ]
    if small.get("metrics"):
        items.append(f"metrics: {small['metrics']}")
    if not items:
        return ""
    lis = "".join(f"<li>{esc(t)}</li>" for t in items)
    return (
        f"<div id='small-n'><p>Defaults adapted to {esc(fmt_number(small.get('n_samples')))} "
        f"images (values you set are never changed):</p><ul>{lis}</ul></div>"
    )


def map_section(data: RunData) -> str:
    if not data.methods:
        skipped = (data.info.get("maps") or {}).get("skipped")
        why = (
            f"No 2-D maps in this run: {esc(skipped)}"
            if skipped
            else "No 2-D maps in this run yet: run the maps stage, then the report again."
        )
        return f'<section id="map"><h2>Interactive map</h2><p class="dm-empty">{why}</p></section>'

    tabs = "".join(
        f'<button type="button" data-method="{esc(m)}" aria-pressed="false">{esc(method_title(m))}</button>'
        for m in data.methods
    )
    second = "".join(
        f'<option value="{esc(m)}">{esc(method_title(m))}</option>' for m in data.methods
    )
    options = []
    if data.labels is not None:
        options.append('<option value="label">label</option>')
    if data.clusters is not None:
        options.append('<option value="cluster">cluster</option>')
    if data.downstream.outlier_scores is not None:
        options.append('<option value="outlier">outlier score</option>')
    options.append('<option value="issue" hidden>label-issue score</option>')
    options.append('<option value="none">none</option>')
    watermark = (
        '<div class="dm-watermark">RANDOM-INIT WEIGHTS<br>not a trained map</div>'
        if data.random_init
        else ""
    )
    return f"""<section id="map"><h2>Interactive map</h2>
<div class="dm-toolbar">
  <div class="dm-tabs" id="dm-tabs" role="group" aria-label="map method">{tabs}</div>
  <div class="dm-tools" role="group" aria-label="mouse tool">
    <button type="button" data-tool="pan" aria-pressed="true" title="drag to pan (P)">pan</button>
    <button type="button" data-tool="lasso" aria-pressed="false" title="drag to lasso (L); shift adds, alt removes">lasso</button>
    <button type="button" data-tool="box" aria-pressed="false" title="drag a box (B); shift adds, alt removes">box</button>
  </div>
  <label>colour by <select id="dm-colorby">{"".join(options)}</select></label>
  <label>point size <input id="dm-size" type="range" min="1" max="16" step="0.5"></label>
  <button type="button" class="dm-reset" id="dm-reset">reset view</button>
  <label><input type="checkbox" id="dm-split"> side by side with <select id="dm-second">{second}</select></label>
</div>
<div class="dm-toolbar dm-filters" id="dm-filters">
  <label>hidden points <select id="dm-hidemode"><option value="hide">hide</option><option value="grey">grey out</option></select></label>
  <label id="dm-f-outlier" hidden>outlier score &ge; <input type="range" id="dm-min-outlier" min="0" max="1000" value="0"> <output id="dm-min-outlier-v"></output></label>
  <label id="dm-f-issue" hidden>label-issue score &ge; <input type="range" id="dm-min-issue" min="0" max="1000" value="0"> <output id="dm-min-issue-v"></output></label>
</div>
<div class="dm-selbar" id="dm-selbar">
  <span id="dm-selcount" aria-live="polite">no selection</span>
  <button type="button" id="dm-sel-clear">clear (Esc)</button>
  <button type="button" id="dm-sel-csv">export CSV</button>
  <button type="button" id="dm-sel-copy">copy paths</button>
  <span class="dm-muted" id="dm-sel-msg"></span>
</div>
<div class="dm-mapwrap">
  <div class="dm-plots-live" id="dm-plots-live">
    <div class="dm-plot" id="dm-plot" tabindex="0" aria-label="map">
      <canvas id="dm-canvas"></canvas><canvas id="dm-overlay"></canvas>{watermark}
      <div class="dm-status" id="dm-status"></div>
    </div>
    <div class="dm-plot" id="dm-plot2" tabindex="0" aria-label="second map" hidden>
      <canvas id="dm-canvas2"></canvas><canvas id="dm-overlay2"></canvas>{watermark}
      <div class="dm-status" id="dm-status2"></div>
    </div>
  </div>
  <div class="dm-side">
    <div class="dm-inspect" id="dm-inspect" hidden></div>
    <div class="dm-legend" id="dm-legend"></div>
  </div>
</div>
<p class="dm-methodinfo" id="dm-methodinfo"></p>
<div class="dm-grid" id="dm-grid" hidden>
  <div class="dm-toolbar"><strong>Selection</strong>
    <label>sort by <select id="dm-grid-sort"></select></label>
    <button type="button" id="dm-grid-prev">&larr; previous</button>
    <span id="dm-grid-page"></span>
    <button type="button" id="dm-grid-next">next &rarr;</button>
  </div>
  <div class="dm-grid-cells" id="dm-grid-cells"></div>
</div>
<div class="dm-tip" id="dm-tip" data-index="-1">
  <div class="dm-thumb" id="dm-tip-thumb"><img id="dm-tip-img" alt="thumbnail"><div class="dm-nothumb" id="dm-tip-nothumb">no thumbnail</div></div>
  <div class="dm-tipinfo"><div class="p" id="dm-tip-path"></div><div class="l" id="dm-tip-label"></div><div class="c" id="dm-tip-extra"></div></div>
</div>
</section>"""


def plots_section(data: RunData, href: dict[str, str]) -> str:
    figs = []
    for caption, rel in data.iter_plots():
        src = href.get(rel, rel)
        figs.append(
            f'<figure><img src="{esc(src)}" alt="{esc(caption)} map" loading="lazy">'
            f"<figcaption>{esc(caption)} — <code>{esc(rel)}</code></figcaption></figure>"
        )
    body = (
        f'<div class="dm-plots">{"".join(figs)}</div>'
        if figs
        else '<p class="dm-empty">No static maps in plots/ yet.</p>'
    )
    return f'<section id="plots"><h2>Static maps</h2>{body}</section>'
