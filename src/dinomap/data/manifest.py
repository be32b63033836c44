"""A CSV or Parquet manifest of image paths (local or object storage), with labels and any
other columns kept as fields."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dinomap.data.sources import FolderSource, Item
from dinomap.exceptions import InvalidParameterError, SourceNotFoundError

__all__ = ["ManifestSource"]

logger = logging.getLogger("dinomap.data.sources")  # where manifest messages always went


class ManifestSource(FolderSource):
    """A CSV or Parquet manifest with a ``path`` column and an optional ``label`` column.

    Relative paths are resolved against the manifest's folder; duplicate paths are kept once;
    any other column (``split``, ``source``, the scores of a selection exported from
    ``report.html``) is kept as text in :attr:`fields` (``RUN/metadata.parquet``). The
    manifest and its paths may be object-storage URLs (``s3://bucket/list.parquet`` listing
    ``s3://...`` keys, or keys relative to the manifest's prefix): a listing of ten million
    keys is then one file to read, not a bucket to list.
    """

    kind = "manifest"

    def __init__(self, manifest: str | os.PathLike[str]) -> None:
        from dinomap.store._fs import is_url, run_path

        self.manifest: Any = run_path(manifest) if is_url(manifest) else Path(manifest).resolve()
        if not self.manifest.is_file():
            raise SourceNotFoundError(f"manifest {manifest} does not exist.")
        df = _read_manifest(self.manifest)
        if "path" not in df.columns:
            raise InvalidParameterError(
                f"manifest {manifest} needs a 'path' column; it has {list(df.columns)}."
            )
        self.root = self.manifest.parent
        labels = df["label"] if "label" in df.columns else None
        extra = [c for c in df.columns if c not in ("path", "label")]
        fields: dict[str, list[str | None]] = {c: [] for c in extra}
        values = {c: df[c].tolist() for c in extra}  # a list per column: no per-cell lookup
        seen: set[str] = set()
        items: list[Item] = []
        for i, raw in enumerate(df["path"].astype(str)):
            full = _manifest_entry(self.root, raw) if raw else ""
            if not raw or full in seen:
                continue
            seen.add(full)
            for column in extra:
                fields[column].append(_text_or_none(values[column][i]))
            label = None
            if labels is not None:
                value = labels.iloc[i]
                label = None if value is None or str(value) in {"", "nan", "None"} else str(value)
            items.append(Item(full, label))
        if not items:
            raise SourceNotFoundError(f"manifest {manifest} lists no image paths.")
        if len(items) < len(df):
            logger.warning(
                "manifest %s: %d empty or repeated paths ignored", manifest, len(df) - len(items)
            )
        self._items = items
        self._fields = fields

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_items": len(self._items), "manifest": str(self.manifest)}


def _text_or_none(value: Any) -> str | None:
    """A manifest cell as text; empty and missing cells as None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return None if text in ("", "nan", "None", "NaN") else text


def _read_manifest(manifest: Any) -> Any:
    """The manifest's table (pandas), its column names stripped."""
    import pandas as pd

    suffix = Path(manifest.name).suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise InvalidParameterError(f"manifest must be .csv or .parquet; got {manifest.name!r}.")
    with manifest.open("rb") as fh:
        if suffix == ".csv":
            # utf-8-sig: a manifest saved by a browser or a spreadsheet may start with a BOM
            df = pd.read_csv(fh, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            df = pd.read_parquet(fh)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _manifest_entry(root: Any, raw: str) -> str:
    """A manifest's path entry as stored: a URL as it is, else resolved against ``root`` (the
    manifest's folder or URL prefix)."""
    from dinomap.store._fs import is_url

    if is_url(raw):
        return raw
    if isinstance(root, Path):
        return str((root / raw).resolve())
    import posixpath

    scheme, key = str(root).split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(key, raw.lstrip('/')))}"
