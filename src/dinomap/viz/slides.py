"""The slide deck of a run (``RUN/slides.md``), in Slidev markdown.

It follows the original presentation: title; setup and model; data processing; feature
embeddings; DINOv2 technical overview; dimensionality-reduction intuition; one slide per map
(plot, parameters, metrics); model export; summary. Every number comes from the run directory
(``run.json``, the embedding store, ``metrics.json``, ``maps.parquet``): nothing is hard-coded,
and a fact the run did not record is said to be missing rather than guessed.

Render it with ``npx @slidev/cli RUN/slides.md`` (images are referenced relative to the run).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dinomap.exceptions import DinomapError
from dinomap.store import atomic_write_text, load_embeddings
from dinomap.store.layout import SLIDES_FILE
from dinomap.viz._format import (
    HIDDEN_PARAMS,
    flatten_timings,
    fmt_number,
    fmt_seconds,
    fmt_value,
    run_rel,
)
from dinomap.viz._run_data import RunData, find_key, method_title, read_run_data

__all__ = ["SLIDES_FILE", "render_slides", "write_slides"]

logger = logging.getLogger(__name__)

_NOT_RECORDED = "_not recorded_"

#: What each method keeps, for the intuition slide (words only; parameters come from the run).
_METHOD_IDEAS: dict[str, str] = {
    "pca": "linear projection onto the directions of largest variance: global layout, fast, "
    "deterministic, crowds local detail",
    "tsne": "matches neighbour probabilities (Gaussian in the embedding space, Student-t on the "
    "map): keeps local neighbourhoods, distances between clusters mean little",
    "umap": "fuzzy k-nearest-neighbour graph laid out by attraction and repulsion: local "
    "neighbourhoods plus more of the global shape, faster than t-SNE",
    "parametric_umap": "a small neural network trained with the UMAP loss: maps new images "
    "without refitting",
    "tsne_nn": "a neural network trained to reproduce the t-SNE map: places new images on it",
}

_METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("trustworthiness", "Trustworthiness"),
    ("knn_preservation", "kNN preservation"),
    ("knn_accuracy", "kNN label accuracy"),
    ("agreement", "Agreement with the exact map"),
    ("fit_seconds", "Fit time"),
)


def _plural(count: Any, noun: str) -> str:
    if count is None:
        return f"? {noun}s"
    return f"{fmt_number(count)} {noun}" + ("" if count == 1 else "s")


def _md(text: Any) -> str:
    """Escape text for a markdown table cell or inline use."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _code(text: Any) -> str:
    return f"`{str(text).replace('`', '')}`"


def _run_rel(data: RunData, value: Any) -> Any:
    return run_rel(data.run_dir, value)


def _slide(body: str, front: Mapping[str, str] | None = None) -> str:
    """One slide; ``front`` is its Slidev per-slide frontmatter."""
    head = "\n---\n"
    if front:
        head += "".join(f"{k}: {v}\n" for k, v in front.items()) + "---\n"
    return head + "\n" + body.strip() + "\n"


def _patch_size(model: Mapping[str, Any]) -> int | None:
    if isinstance(model.get("patch_size"), int):
        return int(model["patch_size"])
    for key in ("timm_name", "name"):
        match = re.search(r"(?:patch|p|vit[sblg])(\d{1,2})(?!\d)", str(model.get(key, "")))
        if match:
            return int(match.group(1))
    return None


def _size(nbytes: int) -> str:
    if nbytes < 2**20:
        return f"{fmt_number(nbytes / 2**10, 3)} KiB"
    if nbytes < 2**30:
        return f"{fmt_number(nbytes / 2**20, 3)} MiB"
    return f"{fmt_number(nbytes / 2**30, 3)} GiB"


def _vector_shape(data: RunData) -> tuple[int, int] | None:
    try:
        emb = load_embeddings(data.run_dir)
    except (DinomapError, OSError, ValueError) as exc:
        logger.info("no embeddings to count in %s: %s", data.run_dir, exc)
        return None
    return int(emb.X.shape[0]), int(emb.X.shape[1])


def _random_init_note(data: RunData) -> str:
    if not data.random_init:
        return ""
    return (
        '\n\n<div class="p-2 mt-4 rounded bg-red-700 text-white font-bold">⚠ RANDOM-INIT WEIGHTS: '
        "this run used an untrained model; its maps carry no learned meaning.</div>\n"
    )


def _title(data: RunData, shape: tuple[int, int] | None) -> str:
    info = data.info
    model = info.get("model") or {}
    src = info.get("source") or {}
    src_name = (src.get("kind") or src.get("name")) if isinstance(src, Mapping) else src
    n = shape[0] if shape else data.n_embedded
    front = (
        "---\n"
        "theme: default\n"
        f"title: {json.dumps(f'DINOv2 embedding maps of {src_name or data.run_dir.name}')}\n"
        "class: text-center\n"
        "transition: slide-left\n"
        "mdc: true\n"
        "---\n"
    )
    body = (
        f"# Image embeddings with {_md(model.get('name') or model.get('timm_name') or 'DINOv2')}\n\n"
        f"{fmt_number(n)} images of **{_md(src_name or 'this collection')}** → "
        f"{len(data.methods)} two-dimensional maps\n\n"
        f"Run {_code(data.run_dir.name)}" + _random_init_note(data)
    )
    return front + "\n" + body + "\n"


def _setup(data: RunData) -> str:
    info = data.info
    model = info.get("model") or {}
    weights = info.get("weights") or {}
    ts = _run_rel(data, data.export.get("torchscript_path"))
    lines = [
        "# Setup and model",
        "",
        f"- **Model**: {_md(model.get('name', _NOT_RECORDED))}"
        + (f" (timm {_code(model['timm_name'])})" if model.get("timm_name") else ""),
        f"- **Weights**: {_md(weights.get('source', _NOT_RECORDED))}"
        + (" — **random init, untrained**" if data.random_init else ""),
        f"- **Embedding size**: {fmt_number(model.get('embed_dim')) if model.get('embed_dim') is not None else _NOT_RECORDED}",
        f"- **Device**: {_md(data.device_text or _NOT_RECORDED)}, precision "
        f"{_md(info.get('precision', _NOT_RECORDED))}",
        "- **Scripted export**: "
        + (f"TorchScript saved to {_code(ts)}" if ts else "not exported in this run"),
    ]
    versions = info.get("versions")
    if isinstance(versions, Mapping) and versions:
        lines.append(
            "- **Versions**: " + ", ".join(f"{_md(k)} {_md(v)}" for k, v in versions.items())
        )
    return _slide("\n".join(lines))


def _processing(data: RunData) -> str:
    info = data.info
    prep = info.get("preprocessing") or {}
    src = info.get("source") or {}
    batch = find_key(info, "batch_size")

    def val(key: str) -> str:
        return fmt_value(prep[key]) if prep.get(key) is not None else _NOT_RECORDED

    lines = ["# Data processing", ""]
    if isinstance(src, Mapping) and src:
        lines.append(
            "- **Source**: "
            + ", ".join(f"{_md(k)} {_md(fmt_value(v))}" for k, v in src.items() if v is not None)
        )
    lines += [
        f"- **Images**: {fmt_number(data.n_total)} found, "
        f"{fmt_number(data.n_embedded)} embedded, "
        f"{fmt_number(data.n_failed_images)} failed"
        + (" (listed in `errors.csv`)" if data.n_failed else ""),
        (
            f"- **Sizes**: images resized to {val('source_size')} px, then to the model input "
            f"of {val('input_size')} px"
            if prep.get("source_size") is not None
            else f"- **Sizes**: images resized to the model input of {val('input_size')} px"
        ),
        f"- **Normalisation**: mean {val('mean')}, std {val('std')}",
        f"- **Batching**: {fmt_number(batch) if batch is not None else _NOT_RECORDED} images per batch",
    ]
    rows = flatten_timings(info.get("timings"))
    if rows:
        lines += ["", "| Stage | Time |", "| --- | ---: |"]
        lines += [f"| {_md(name)} | {fmt_seconds(sec)} |" for name, sec in rows]
    return _slide("\n".join(lines))


def _embeddings(data: RunData, shape: tuple[int, int] | None) -> str:
    info = data.info
    lines = ["# Feature embeddings", ""]
    if shape is None:
        lines.append("No embeddings are stored in this run yet.")
        return _slide("\n".join(lines))
    n, d = shape
    lines += [
        f"- **{fmt_number(n)} images** → one {fmt_number(d)}-dimensional vector each",
        f"- Embedding matrix: **{fmt_number(n)} × {fmt_number(d)}** float32 ({_size(n * d * 4)})",
        "- The vector is the class-token output of the last transformer layer",
    ]
    embed_time = None
    for name, sec in flatten_timings(info.get("timings")):
        if name.split(" / ")[-1].startswith("embed"):
            embed_time = sec
            break
    if embed_time:
        lines.append(
            f"- Embedding took {fmt_seconds(embed_time)}: "
            f"{fmt_number(round(n / embed_time, 1))} images/s on {_md(data.device_text or '?')}"
        )
    return _slide("\n".join(lines))


def _overview(data: RunData) -> str:
    model = data.info.get("model") or {}
    prep = data.info.get("preprocessing") or {}
    input_size = model.get("input_size") or prep.get("input_size")
    patch = _patch_size(model)
    dim = model.get("embed_dim")
    lines = ["# DINOv2: technical overview", ""]
    lines.append(
        "- **Vision Transformer**: the image is cut into square patches, each patch becomes a "
        "token, a learned class token is prepended, and transformer layers mix all tokens"
    )
    if isinstance(input_size, int) and patch:
        grid = input_size // patch
        lines.append(
            f"- This run: {input_size}×{input_size} px input, {patch}×{patch} px patches → "
            f"{grid}×{grid} = {fmt_number(grid * grid)} patch tokens + 1 class token"
            + (f", each a {fmt_number(dim)}-d vector" if dim is not None else "")
        )
    depth, heads = find_key(model, "depth"), find_key(model, "num_heads")
    if depth is not None or heads is not None:
        lines.append(f"- {_plural(depth, 'transformer block')}, {_plural(heads, 'attention head')}")
    lines += [
        "- **Self-supervised**: a student network learns to match a teacher (an exponential "
        "moving average of itself) across crops of the same image (DINO), plus masked-patch "
        "prediction (iBOT); no labels are used",
        "- The class-token features work off the shelf for retrieval, clustering and k-NN "
        "classification: no fine-tuning",
    ]
    if data.random_init:
        lines.append("- ⚠ **This run used random weights**: none of the above was learned")
    return _slide("\n".join(lines))


def _intuition(data: RunData) -> str:
    lines = [
        "# Dimensionality reduction: the intuition",
        "",
        "Hundreds of dimensions cannot be looked at; a map keeps what matters most and drops "
        "the rest. Each method chooses differently:",
        "",
    ]
    methods = data.methods or list(data.metrics.get("methods") or {})
    for m in methods:
        params = data.method_metrics(m).get("params") or {}
        key_params = {
            k: v
            for k, v in params.items()
            if k in {"perplexity", "n_neighbors", "min_dist", "metric"}
        }
        extra = (
            " (" + ", ".join(f"{k} = {fmt_value(v)}" for k, v in key_params.items()) + ")"
            if key_params
            else ""
        )
        idea = _METHOD_IDEAS.get(m, "a learned 2-D projection")
        lines.append(f"- **{_md(method_title(m))}**{extra}: {idea}")
    if not methods:
        lines.append("_No maps in this run yet._")
    lines += [
        "",
        "We judge a map by numbers, not looks: trustworthiness (are map neighbours true "
        "neighbours?), kNN preservation and kNN label accuracy on the map.",
    ]
    return _slide("\n".join(lines))


def _map_slide(data: RunData, method: str, plot: str | None) -> str:
    entry = data.method_metrics(method)
    params = entry.get("params") if isinstance(entry.get("params"), Mapping) else {}
    rows = ["| Metric | Value |", "| --- | ---: |"]
    for key, title in _METRIC_ROWS:
        if entry.get(key) is not None:
            value = fmt_seconds(entry[key]) if key == "fit_seconds" else fmt_number(entry[key])
            rows.append(f"| {title} | {value} |")
    n = data.metrics.get("n_samples")
    if n is not None:
        rows.append(f"| Samples | {fmt_number(n)} |")
    placed = None
    if method in data.coords:
        xy = data.coords[method]
        placed = int((~(xy != xy).any(axis=1)).sum())
    left = f'<img src="./{plot}" class="h-100 mx-auto" />' if plot else "_No static plot._"
    shown = {k: v for k, v in (params or {}).items() if k not in HIDDEN_PARAMS}
    right = ["**Parameters**", ""]
    right.append(
        " · ".join(f"{_code(f'{k}={fmt_value(v)}')}" for k, v in shown.items())
        if shown
        else "_not recorded_"
    )
    right += ["", "**Metrics**", "", *rows]
    if placed is not None:
        right += ["", f"{fmt_number(placed)} points on the map"]
    body = f"# {method_title(method)}\n\n{left}\n\n::right::\n\n" + "\n".join(right)
    if data.random_init:
        body += "\n\n<span class='text-red-600 font-bold'>random-init weights</span>"
    return _slide(body, {"layout": "two-cols", "layoutClass": "gap-6"})


def _export(data: RunData) -> str:
    export = data.export
    lines = ["# Model export", ""]
    if not export:
        lines.append(
            "The model was not exported in this run. `dinomap export` writes a TorchScript "
            "model in a Triton model repository and an ONNX file, checked against the eager model."
        )
        return _slide("\n".join(lines))
    for key, value in export.items():
        pathlike = isinstance(value, str) and key.endswith(("path", "repository", "dir"))
        text = _code(_run_rel(data, value)) if pathlike else _md(fmt_value(value))
        lines.append(f"- **{_md(key.replace('_', ' '))}**: {text}")
    return _slide("\n".join(lines))


def _summary(data: RunData, shape: tuple[int, int] | None) -> str:
    info = data.info
    model = info.get("model") or {}
    lines = ["# Summary", ""]
    n = shape[0] if shape else data.n_embedded
    lines.append(
        f"- {fmt_number(n)} images embedded with {_md(model.get('name', 'the model'))}"
        + (f" into {fmt_number(shape[1])}-d vectors" if shape else "")
        + f"; {fmt_number(data.n_failed_images)} failed"
    )
    methods = [m for m in data.metrics.get("methods") or {} if data.method_metrics(m)]
    for key, title in (
        ("trustworthiness", "trustworthiness"),
        ("knn_accuracy", "kNN label accuracy"),
    ):
        scored = [(data.method_metrics(m).get(key), m) for m in methods]
        scored = [(v, m) for v, m in scored if isinstance(v, int | float)]
        if scored:
            best_v, best_m = max(scored)
            lines.append(f"- Best {title}: **{method_title(best_m)}** ({fmt_number(best_v)})")
    total = None
    for name, sec in flatten_timings(info.get("timings")):
        if name.split(" / ")[-1] == "total":
            total = sec
    if total is not None:
        lines.append(f"- Total time: {fmt_seconds(total)} on {_md(data.device_text or '?')}")
    if data.export.get("torchscript_path"):
        lines.append(
            f"- Deployable model: {_code(_run_rel(data, data.export['torchscript_path']))}"
        )
    lines.append("- Interactive map with thumbnails: `report.html` in the run folder")
    return _slide("\n".join(lines) + _random_init_note(data))


def render_slides(run_dir: str | os.PathLike[str]) -> str:
    """Render the Slidev deck of a run as markdown.

    Examples
    --------
    >>> print(render_slides("runs/fm")[:40])  # doctest: +SKIP
    ---
    theme: default
    """
    data = read_run_data(run_dir)
    shape = _vector_shape(data)
    parts = [
        _title(data, shape),
        _setup(data),
        _processing(data),
        _embeddings(data, shape),
        _overview(data),
        _intuition(data),
    ]
    methods = data.methods or list(data.metrics.get("methods") or {})
    for m in methods:
        parts.append(_map_slide(data, m, data.plots.get(m)))
    if "all_maps" in data.plots:
        parts.append(
            _slide(
                f'# All maps side by side\n\n<img src="./{data.plots["all_maps"]}" class="h-110 mx-auto" />'
            )
        )
    parts += [_export(data), _summary(data, shape)]
    return "".join(parts)


def write_slides(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the Slidev deck of a run (``RUN/slides.md`` by default) and return its path.

    Examples
    --------
    >>> write_slides("runs/fm")  # doctest: +SKIP
    PosixPath('runs/fm/slides.md')
    """
    target = Path(out) if out is not None else Path(run_dir) / SLIDES_FILE
    text = render_slides(run_dir)
    atomic_write_text(target, text)
    logger.info("slides written to %s", target)
    return target
